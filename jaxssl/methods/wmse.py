"""W-MSE: whitened embeddings of the views pulled together; whitening prevents collapse.

References:
  Ermolov et al., Whitening for Self-Supervised Representation Learning, ICML 2021.
  https://arxiv.org/abs/2007.06346
"""

import flax.linen as nn
import jax
import ml_collections

from jaxssl.losses import whitening
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
    """W-MSE loss (``whitening.w_mse_loss``) of the views ``batch["global"]`` ``[B, V, ...]``.

    ``config``: ``w_size`` (images per whitening sub-batch), ``w_iter`` (random sub-batch
    partitions per step, drawn from ``rng``: the same on any device count), ``w_eps``.
    """
    del step
    views = batch["global"]
    b, v = views.shape[:2]
    (features, z), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, V, .]
    permutations = jax.vmap(lambda k: jax.random.permutation(k, b))(
        jax.random.split(rng, config.w_iter)
    )
    loss = whitening.w_mse_loss(z, permutations, config.w_size, config.w_eps)
    return loss, base.LossAux(features, batch_stats, method_state, {}, z)


# The model: backbone + the reference 2-layer head (``projector_hidden_dim`` -> ``projector_dim``,
# BN + ReLU in between; 1024 -> 64 on CIFAR).
METHOD = base.Method(build_model=ssl_model.build_model, loss_fn=loss_fn)
