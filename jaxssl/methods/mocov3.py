"""MoCo v3: momentum encoder, predictor, symmetric in-batch InfoNCE; no queue.

Structurally BYOL (EMA target of backbone + projector, a predictor on the online side, cosine
momentum schedule) with BYOL's regression replaced by MoCo v3's contrastive ``ctr``.

References:
  Chen, Xie & He, An Empirical Study of Training Self-Supervised Vision Transformers, ICCV
  2021. https://arxiv.org/abs/2104.02057
"""

import flax.linen as nn
import jax
import ml_collections

from jaxssl.losses import contrastive
from jaxssl.methods import base, teacher
from jaxssl.models import ssl_model


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """Backbone + BN projector (``projector_layers``, last BN affine-free as in the paper) +
    2-layer predictor ``P -> predictor_hidden_dim -> P``."""
    predictor = ssl_model.make_head(
        config.model,
        config.method.predictor_hidden_dim,
        config.model.projector_dim,
        2,
        last_bn=True,
    )
    return ssl_model.SSLModel(
        backbone=ssl_model.make_backbone(config.model),
        projector=ssl_model.make_projector(config.model, last_bn=True),
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
    """``ctr(q1, k2) + ctr(q2, k1)`` over the global batch (``contrastive.infonce_in_batch``).

    Queries are the online predictions, keys the EMA target's projections.

    Args:
      batch: ``batch["global"]``: the views ``[B, 2, H, W, 3]``.
      config: ``config.method``: ``temperature``.
    """
    del rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    if v != 2:
        raise ValueError(f"MoCo v3 takes exactly 2 views per image, got {v}.")
    (features, _, q), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, 2, .]
    (_, k), _ = ssl_model.apply_views(model, method_state["target"], views, project_only=True)
    t = config.temperature
    loss = contrastive.infonce_in_batch(q[:, 0], k[:, 1], t) + contrastive.infonce_in_batch(
        q[:, 1], k[:, 0], t
    )
    return loss, base.LossAux(features, batch_stats, method_state, {})


# The momentum encoder: an EMA of backbone + projector with the cosine momentum schedule.
METHOD = base.Method(
    build_model=build_model,
    loss_fn=loss_fn,
    init_state=teacher.init_state,
    update_state=teacher.update_state,
)
