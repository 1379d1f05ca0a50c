"""SimCLR: two augmented views, a projector, NT-Xent over the global batch.

References:
  Chen et al., A Simple Framework for Contrastive Learning of Visual Representations,
  ICML 2020. https://arxiv.org/abs/2002.05709
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import contrastive
from jaxssl.models import heads, resnet, ssl_model


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """ResNet backbone + MLP projector from ``config.model``."""
    dtype = jnp.dtype(config.model.dtype)
    backbone = resnet.make_backbone(
        config.model.backbone,
        width=config.model.width,
        stem=config.model.stem,
        dtype=dtype,
        conv_impl=config.model.conv_impl,
        bn_momentum=config.model.bn_momentum,
    )
    projector = heads.MLP(
        hidden_dim=config.model.projector_hidden_dim,
        output_dim=config.model.projector_dim,
        num_layers=config.model.projector_layers,
        dtype=dtype,
        bn_momentum=config.model.bn_momentum,
    )
    return ssl_model.SSLModel(backbone=backbone, projector=projector)


def loss_fn(
    model: nn.Module, variables, views: jax.Array, config: ml_collections.ConfigDict, rng: jax.Array
):
    """SimCLR loss of a batch of view pairs.

    Both views go through the model as one batch of ``2B`` images, so BatchNorm statistics are
    those of the whole global batch of views (SimCLR's global BN).

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      views: ``[B, 2, H, W, 3]``.
      config: the ``config.method`` section (``temperature``).
      rng: unused (SimCLR's model is deterministic); part of the method protocol.

    Returns:
      ``(loss, (features [B, V, D], new_batch_stats, metrics))``.
    """
    del rng
    b, v = views.shape[:2]
    chex.assert_equal(v, 2)
    # Batch-major flattening keeps each device's rows on that device (no resharding).
    images = views.reshape((b * v,) + views.shape[2:])  # [B*V, H, W, 3]
    (features, projections), updates = model.apply(
        variables, images, train=True, mutable=["batch_stats"]
    )
    z = projections.reshape(b, v, -1)  # [B, V, P]
    loss = contrastive.nt_xent(z[:, 0], z[:, 1], config.temperature)
    metrics = {"train/contrastive_top1": contrastive.contrastive_top1(z[:, 0], z[:, 1])}
    return loss, (features.reshape(b, v, -1), updates["batch_stats"], metrics)
