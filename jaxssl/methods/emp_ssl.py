"""EMP-SSL: many fixed-size patches per image, total coding rate + patch-to-mean invariance.

The patches are the view group ``batch["global"]`` ``[B, n, S, S, 3]``: ``data.num_views = n``
(20 by default, up to 200), ``data.image_size`` the patch size, ``data.crop_scale`` /
``crop_ratio`` the patch extent (the reference: 32 px patches from 1/4 of the image area,
square). The backbone sees all ``B * n`` patches as one batch.

References:
  Tong, Chen, Ma & LeCun, EMP-SSL: Towards Self-Supervised Learning in One Training Epoch,
  2023. https://arxiv.org/abs/2304.03977
"""

import flax.linen as nn
import jax
import ml_collections

from jaxssl.losses import coding_rate, normalize
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
    """``coding_rate.emp_ssl_loss`` of the L2-normalized projections of all patches.

    ``config``: ``eps`` (0.2), ``invariance_weight`` (200), ``tcr_weight`` (1).
    """
    del rng, step
    views = batch["global"]
    b, n = views.shape[:2]
    if n < 2:
        raise ValueError(f"EMP-SSL needs several patches per image, got {n}.")
    (features, projections), batch_stats = ssl_model.apply_views(model, variables, views)
    z = normalize.l2_normalize(projections)  # [B, n, P]
    loss, terms = coding_rate.emp_ssl_loss(
        z, config.eps, config.invariance_weight, config.tcr_weight
    )
    metrics = {f"train/emp_{k}": jax.lax.stop_gradient(v) for k, v in terms.items()}
    return loss, base.LossAux(features, batch_stats, method_state, metrics)


# The model: backbone + the reference 2-layer projector (4096 hidden, 1024 out on CIFAR).
METHOD = base.Method(build_model=ssl_model.build_model, loss_fn=loss_fn)
