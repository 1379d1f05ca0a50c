"""SimSiam: a predictor maps one view's projection to the other's; stop-gradient, no EMA.

References:
  Chen & He, Exploring Simple Siamese Representation Learning, CVPR 2021.
  https://arxiv.org/abs/2011.10566
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import normalize, regression
from jaxssl.methods import base
from jaxssl.models import ssl_model


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """ResNet backbone + BN projector + bottleneck predictor (``config.model``, ``config.method``).

    The projector is SimSiam's: BN after every linear layer, the last one without affine
    parameters and without ReLU (``config.model.projector_layers``: 3 on ImageNet). The
    predictor is the 2-layer bottleneck ``P -> predictor_hidden_dim -> P``.
    """
    predictor = ssl_model.make_head(
        config.model, config.method.predictor_hidden_dim, config.model.projector_dim, 2
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
    """SimSiam loss of a batch of two augmented views.

    Both views go through backbone, projector and predictor as one batch. Loss:
    ``0.5 * D(p1, sg(z2)) + 0.5 * D(p2, sg(z1))`` (``regression.symmetric_negative_cosine``;
    the stop-gradient is inside ``negative_cosine``).

    Args:
      model: the ``SSLModel`` with a predictor.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: the views ``[B, 2, H, W, 3]``.
      method_state: SimSiam has none (``{}``); returned as is.
      config: the ``config.method`` section.
      rng: unused (the model is deterministic); part of the method protocol.
      step: unused (no schedule inside the loss); part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; ``train/projection_std`` is the std over the batch of the
      L2-normalized projections, averaged over channels: ~``1/sqrt(P)`` when healthy, 0 when
      collapsed (SimSiam Fig. 2).
    """
    del config, rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    if v != 2:
        raise ValueError(f"SimSiam takes exactly 2 views per image, got {v}.")
    (features, z, p), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, 2, .]
    loss = regression.symmetric_negative_cosine(p[:, 0], p[:, 1], z[:, 0], z[:, 1])
    z_unit = normalize.l2_normalize(jax.lax.stop_gradient(z).reshape(b * v, -1))  # [B*2, P]
    metrics = {"train/projection_std": jnp.mean(jnp.std(z_unit, axis=0))}
    return loss, base.LossAux(features, batch_stats, method_state, metrics, z)


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn)
