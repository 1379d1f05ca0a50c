"""MMCR: maximum manifold capacity, the nuclear norm of the images' view centroids.

References:
  Yerxa, Kuang, Simoncelli & Chung, Learning Efficient Coding of Natural Images with Maximum
  Manifold Capacity Representations, NeurIPS 2023. https://arxiv.org/abs/2303.03307
  (code: ThomasYerxa/mmcr)
"""

import flax.linen as nn
import jax
import ml_collections

from jaxssl.losses import capacity
from jaxssl.methods import base
from jaxssl.models import ssl_model


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """MMCR's loss of a batch of ``K >= 2`` views per image (``capacity.mmcr_loss``): all
    ``B * K`` views go through the model as one batch, the centroids are over the global batch.
    The reference's CIFAR/STL code trains without a momentum network (its ImageNet variant
    adds one; not here).

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, K, H, W, 3]``.
      method_state: MMCR has none (``{}``).
      config: ``config.method``: ``lmbda`` (local nuclear-norm weight).
      rng: unused; part of the method protocol.
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; metrics ``train/mmcr_global_nuclear`` (and local).
    """
    del rng, step
    views = batch["global"]
    if views.shape[1] < 2:
        raise ValueError(f"MMCR needs at least 2 views per image, got {views.shape[1]}.")
    (features, z), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, K, .]
    loss, terms = capacity.mmcr_loss(z, config.lmbda)
    metrics = {f"train/mmcr_{k}": jax.lax.stop_gradient(v) for k, v in terms.items()}
    return loss, base.LossAux(features, batch_stats, method_state, metrics, z)


METHOD = base.Method(build_model=ssl_model.build_model, loss_fn=loss_fn)
