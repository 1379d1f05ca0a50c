"""BYOL: an online network predicts an EMA target network's projection of the other view.

References:
  Grill et al., Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning,
  NeurIPS 2020. https://arxiv.org/abs/2006.07733
"""

import flax.linen as nn
import jax
import ml_collections

from jaxssl.losses import regression
from jaxssl.methods import base, teacher
from jaxssl.models import ssl_model


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


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """BYOL loss of a batch of two augmented views.

    Both views go through the online network (backbone, projector, predictor) as one batch and
    through the target network (the EMA backbone and projector in ``method_state``) as one
    batch. The target runs in train mode, so its BatchNorm uses the batch statistics as in
    BYOL; its own running-average updates are discarded (the EMA in ``teacher.update_state``
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
      ``(loss, base.LossAux)``.
    """
    del config, rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    if v != 2:
        raise ValueError(f"BYOL takes exactly 2 views per image, got {v}.")
    (features, online, p), batch_stats = ssl_model.apply_views(model, variables, views)
    (_, z), _ = ssl_model.apply_views(model, method_state["target"], views, project_only=True)
    # The target is a regression target, not a trained network: no gradient reaches it (it is
    # not in `params` either, so this documents the method more than it changes anything).
    z = jax.lax.stop_gradient(z)  # [B, 2, P]
    loss = regression.symmetric_normalized_mse(p[:, 0], p[:, 1], z[:, 0], z[:, 1])
    metrics = {"train/prediction_cosine": 1.0 - loss / 4.0}  # mean cos(p, z') over both pairs
    return loss, base.LossAux(features, batch_stats, method_state, metrics, online)


# The target network: an EMA of backbone + projector with the cosine momentum schedule.
METHOD = base.Method(
    build_model=build_model,
    loss_fn=loss_fn,
    init_state=teacher.init_state,
    update_state=teacher.update_state,
)
