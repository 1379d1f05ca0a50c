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

from jaxssl.losses import moco as moco_losses
from jaxssl.methods import byol
from jaxssl.methods.base import LossAux
from jaxssl.models import ssl_model

init_method_state = byol.init_method_state
update_method_state = byol.update_method_state


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
) -> tuple[jax.Array, LossAux]:
    """``ctr(q1, k2) + ctr(q2, k1)`` over the global batch (``moco.infonce_in_batch``).

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
    images = views.reshape((b * v,) + views.shape[2:])
    (features, _, predictions), updates = model.apply(
        variables, images, train=True, mutable=["batch_stats"]
    )
    (_, keys), _ = model.apply(
        method_state["target"], images, train=True, method=model.project, mutable=["batch_stats"]
    )
    q, k = predictions.reshape(b, v, -1), keys.reshape(b, v, -1)
    t = config.temperature
    loss = moco_losses.infonce_in_batch(q[:, 0], k[:, 1], t) + moco_losses.infonce_in_batch(
        q[:, 1], k[:, 0], t
    )
    return loss, LossAux(features.reshape(b, v, -1), updates["batch_stats"], method_state, {})
