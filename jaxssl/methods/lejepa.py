"""LeJEPA: views predict the mean embedding of the global views, SIGReg keeps them Gaussian.

References:
  Balestriero & LeCun, LeJEPA: Provable and Scalable Self-Supervised Learning Without the
  Heuristics, 2025. https://arxiv.org/abs/2511.08544 (code: rbalestr-lab/lejepa)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import gaussianity
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
    r"""LeJEPA's loss of a batch of global views (and optional multi-crop local views).

    .. math::
      \mathcal{L} = (1 - \lambda) \, \mathcal{L}_{pred}
        + \lambda \, \frac{1}{V} \sum_{v=1}^{V} \mathrm{SIGReg}(z_{:, v}),

    ``gaussianity.mean_view_prediction`` (every view against the mean of the global views'
    projections, gradients through both) and ``gaussianity.sliced_epps_pulley`` of each view's
    projections over the global batch, with the same random directions for every view of the
    step (drawn from the step's key, as the reference seeds them with the step). This is the
    paper's listing and the reference's MINIMAL.md; no stop-gradient, teacher or predictor.

    The global views go through the model as one batch, the local views (``batch["local"]``)
    as another; the running BatchNorm averages kept are those of the global views, as in
    SwAV's and DINO's multi-crop here.

    Args:
      model: the ``SSLModel`` (backbone + projector).
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, G, H, W, 3]``, ``G >= 1`` (2 in the paper);
        optionally ``batch["local"]``: ``[B, L, h, w, 3]``.
      method_state: LeJEPA has none (``{}``); returned as is.
      config: ``config.method``: ``lambd`` (the one trade-off), ``num_slices``, ``t_max``,
        ``num_knots``.
      rng: the step's key; the SIGReg directions are drawn from it.
      step: unused (no schedule inside the loss); part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; metrics ``train/lejepa_prediction`` and ``train/lejepa_sigreg``,
      unweighted.
    """
    del step
    views = batch["global"]
    (features, z_global), batch_stats = ssl_model.apply_views(model, variables, views)
    z_all = z_global  # [B, V, P], the global views first
    if "local" in batch:
        (_, z_local), _ = ssl_model.apply_views(model, variables, batch["local"])
        z_all = jnp.concatenate([z_global, z_local], axis=1)

    prediction = gaussianity.mean_view_prediction(z_global, z_all)
    per_view = jax.vmap(
        lambda z: gaussianity.sliced_epps_pulley(
            z, rng, config.num_slices, config.t_max, config.num_knots
        ),
        in_axes=1,
    )(z_all)  # [V]
    sigreg = jnp.mean(per_view)
    loss = (1.0 - config.lambd) * prediction + config.lambd * sigreg
    metrics = {
        "train/lejepa_prediction": jax.lax.stop_gradient(prediction),
        "train/lejepa_sigreg": jax.lax.stop_gradient(sigreg),
    }
    return loss, base.LossAux(features, batch_stats, method_state, metrics)


# The model: backbone + projector (``config.model.projector_layers`` linear layers, BN + ReLU
# after the hidden ones, the last plain), as in the reference's MINIMAL.md (torchvision MLP
# with BatchNorm1d) and FAIR's EB-JEPA CIFAR example.
METHOD = base.Method(build_model=ssl_model.build_model, loss_fn=loss_fn)
