"""BYOL: an online network predicts an EMA target network's projection of the other view.

References:
  Grill et al., Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning,
  NeurIPS 2020. https://arxiv.org/abs/2006.07733
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import byol as byol_losses
from jaxssl.methods.base import LossAux
from jaxssl.models import ssl_model

# The submodules of SSLModel that the target network copies (not the predictor).
TARGET_MODULES = ("backbone", "projector")


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """ResNet backbone + MLP projector + MLP predictor (``config.model``, ``config.method``)."""
    # BYOL's predictor has the projector's shape: Linear -> BN -> ReLU -> Linear.
    predictor = ssl_model.make_head(
        config.model, config.method.predictor_hidden_dim, config.model.projector_dim, 2
    )
    return ssl_model.SSLModel(
        backbone=ssl_model.make_backbone(config.model),
        projector=ssl_model.make_projector(config.model),
        predictor=predictor,
    )


def _target_part(tree):
    """The backbone and projector entries of a ``params`` / ``batch_stats`` tree."""
    return {name: tree[name] for name in TARGET_MODULES if name in tree}


def init_method_state(model: nn.Module, variables, config: ml_collections.ConfigDict):
    """The target network starts as a copy of the online backbone + projector.

    Returns:
      ``{"target": {"params": ..., "batch_stats": ...}}``, a variables dict for
      ``model.project``.
    """
    del model, config
    # jnp.copy: the target must not share buffers with the online params (the state is donated).
    return {
        "target": {
            "params": jax.tree.map(jnp.copy, _target_part(variables["params"])),
            "batch_stats": jax.tree.map(jnp.copy, _target_part(variables.get("batch_stats", {}))),
        }
    }


def update_method_state(
    method_state,
    params,
    batch_stats,
    step: jax.Array,
    num_steps: int,
    config: ml_collections.ConfigDict,
):
    """``target = m * target + (1 - m) * online`` with BYOL's cosine momentum schedule.

    Called after the optimizer update with the new online parameters. The BatchNorm running
    averages follow the same EMA; they matter only if the target is ever run in inference mode
    (it is run in train mode, with batch statistics).

    Args:
      method_state: ``{"target": {"params": ..., "batch_stats": ...}}``.
      params: the new online parameters.
      batch_stats: the new online BatchNorm statistics.
      step: the step that produced them (0 for the first update).
      num_steps: the run's total number of steps (the schedule ends at 1 there).
      config: ``config.method`` (``base_momentum``).

    Returns:
      The updated method state.
    """
    momentum = byol_losses.cosine_momentum(step, num_steps, config.base_momentum)
    online = {"params": _target_part(params), "batch_stats": _target_part(batch_stats)}
    target = jax.tree.map(
        lambda t, o: momentum * t + (1.0 - momentum) * o, method_state["target"], online
    )
    return {**method_state, "target": target}


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, LossAux]:
    """BYOL loss of a batch of two augmented views.

    Both views go through the online network (backbone, projector, predictor) as one batch and
    through the target network (the EMA backbone and projector in ``method_state``) as one
    batch. The target runs in train mode, so its BatchNorm uses the batch statistics as in
    BYOL; its own running-average updates are discarded (the EMA in ``update_method_state``
    sets them). Loss: ``normalized_mse(p1, z2') + normalized_mse(p2, z1')``.

    Args:
      model: the ``SSLModel`` with a predictor.
      variables: ``{"params": ..., "batch_stats": ...}`` of the online network.
      batch: ``batch["global"]``: the views ``[B, 2, H, W, 3]``.
      method_state: ``{"target": variables of the target network}``; returned unchanged.
      config: the ``config.method`` section.
      rng: unused (the model is deterministic); part of the method protocol.
      step: unused (no schedule inside the loss); part of the method protocol.

    Returns:
      ``(loss, LossAux)``.
    """
    del config, rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    if v != 2:
        raise ValueError(f"BYOL takes exactly 2 views per image, got {v}.")
    # Batch-major flattening keeps each device's rows on that device (no resharding).
    images = views.reshape((b * v,) + views.shape[2:])  # [B*2, H, W, 3]
    (features, _, predictions), updates = model.apply(
        variables, images, train=True, mutable=["batch_stats"]
    )
    (_, target_projections), _ = model.apply(
        method_state["target"], images, train=True, method=model.project, mutable=["batch_stats"]
    )
    # The target is a regression target, not a trained network: no gradient reaches it (it is
    # not in `params` either, so this documents the method more than it changes anything).
    target_projections = jax.lax.stop_gradient(target_projections)
    p = predictions.reshape(b, v, -1)  # [B, 2, P]
    z = target_projections.reshape(b, v, -1)  # [B, 2, P]
    loss = byol_losses.symmetric_normalized_mse(p[:, 0], p[:, 1], z[:, 0], z[:, 1])
    metrics = {"train/prediction_cosine": 1.0 - loss / 4.0}  # mean cos(p, z') over both pairs
    return loss, LossAux(features.reshape(b, v, -1), updates["batch_stats"], method_state, metrics)
