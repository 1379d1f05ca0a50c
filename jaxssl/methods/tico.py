"""TiCo: invariance between two views, contrast against an EMA covariance of the embeddings.

Two forms (``config.method.base_momentum``):

* 0: the paper's Algorithm 1: one network embeds both views; view 1's embeddings enter the
  covariance and the contrast, view 2's only the invariance (through which it gets gradient).
* > 0: lightly's form (every TiCo example of lightly's): the online network embeds view 1
  (the covariance's) and an EMA copy of its backbone and projector (``teacher.py``, cosine
  momentum ``base_momentum`` -> 1, as BYOL) embeds view 2, without gradient. Cheaper per step
  (one view through backward, one forward only, where Algorithm 1 runs two of each) and
  asymmetric, as those examples are.

``config.method.center_embeddings`` subtracts each view's mean over the global batch before
normalizing, as lightly's ``TiCoLoss`` (``capacity.tico_loss``).

References:
  Zhu, Liu, Shen & LeCun, TiCo: Transformation Invariance and Covariance Contrast for
  Self-Supervised Visual Representation Learning, 2022. https://arxiv.org/abs/2206.10698
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import capacity
from jaxssl.methods import base, teacher
from jaxssl.models import ssl_model


def _momentum_encoder(config: ml_collections.ConfigDict) -> bool:
    return config.get("base_momentum", 0.0) > 0.0


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """The EMA covariance starts at zero (the paper's Algorithm 1): ``{"covariance": [P, P]}``,
    and with ``base_momentum`` > 0 the EMA network (``teacher.init_state``) beside it."""
    projector = variables["params"]["projector"]
    p = projector[f"dense{len([k for k in projector if k.startswith('dense')])}"]["kernel"]
    state = {"covariance": jnp.zeros((p.shape[-1], p.shape[-1]), jnp.float32)}
    if _momentum_encoder(config):
        state.update(teacher.init_state(model, variables, config, key))
    return state


def update_state(method_state, params, batch_stats, step, num_steps, config):
    """The EMA network follows the online one (``teacher.update_state``) when there is one."""
    if not _momentum_encoder(config):
        return method_state
    return teacher.update_state(method_state, params, batch_stats, step, num_steps, config)


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """TiCo's loss of a batch of two views (``capacity.tico_loss``); the EMA covariance of the
    first view's normalized projections over the global batch is the method state, with the
    EMA network when ``config.base_momentum`` > 0 (module docstring).

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, 2, H, W, 3]``.
      method_state: ``{"covariance": [P, P]}``, the EMA covariance (and ``"target"``, the EMA
        network); the updated covariance (without gradient) is returned.
      config: ``config.method``: ``beta``, ``rho``, ``center_embeddings``, ``base_momentum``.
      rng: unused; part of the method protocol.
      step: unused; part of the method protocol.
    """
    del rng, step
    views = batch["global"]
    if views.shape[1] != 2:
        raise ValueError(f"TiCo takes exactly 2 views per image, got {views.shape[1]}.")
    if _momentum_encoder(config):
        (features, z1), batch_stats = ssl_model.apply_views(model, variables, views[:, :1])
        (_, z2), _ = ssl_model.apply_views(
            model, method_state["target"], views[:, 1:], project_only=True
        )
        z = jnp.concatenate([z1, jax.lax.stop_gradient(z2)], axis=1)  # [B, 2, P]
    else:
        (features, z), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, 2, .]
    loss, covariance = capacity.tico_loss(
        z[:, 0],
        z[:, 1],
        method_state["covariance"],
        config.beta,
        config.rho,
        config.get("center_embeddings", False),
    )
    state = {**method_state, "covariance": jax.lax.stop_gradient(covariance)}
    return loss, base.LossAux(features, batch_stats, state, {}, z)


METHOD = base.Method(
    build_model=ssl_model.build_model,
    loss_fn=loss_fn,
    init_state=init_state,
    update_state=update_state,
)
