"""TiCo: invariance between two views, contrast against an EMA covariance of the embeddings.

References:
  Zhu, Liu, Shen & LeCun, TiCo: Transformation Invariance and Covariance Contrast for
  Self-Supervised Visual Representation Learning, 2022. https://arxiv.org/abs/2206.10698
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import capacity
from jaxssl.methods import base
from jaxssl.models import ssl_model


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """The EMA covariance starts at zero (the paper's Algorithm 1): ``{"covariance": [P, P]}``."""
    del model, config, key
    projector = variables["params"]["projector"]
    p = projector[f"dense{len([k for k in projector if k.startswith('dense')])}"]["kernel"]
    return {"covariance": jnp.zeros((p.shape[-1], p.shape[-1]), jnp.float32)}


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
    first view's normalized projections over the global batch is the method state.

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, 2, H, W, 3]``.
      method_state: ``{"covariance": [P, P]}``, the EMA covariance; the updated one (without
        gradient) is returned.
      config: ``config.method``: ``beta``, ``rho``.
      rng: unused; part of the method protocol.
      step: unused; part of the method protocol.
    """
    del rng, step
    views = batch["global"]
    if views.shape[1] != 2:
        raise ValueError(f"TiCo takes exactly 2 views per image, got {views.shape[1]}.")
    (features, z), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, 2, .]
    loss, covariance = capacity.tico_loss(
        z[:, 0], z[:, 1], method_state["covariance"], config.beta, config.rho
    )
    state = {**method_state, "covariance": jax.lax.stop_gradient(covariance)}
    return loss, base.LossAux(features, batch_stats, state, {}, z)


METHOD = base.Method(build_model=ssl_model.build_model, loss_fn=loss_fn, init_state=init_state)
