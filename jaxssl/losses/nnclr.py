"""NNCLR: the nearest neighbour of a view's projection in a support set is its positive.

References:
  Dwibedi et al., With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning
  of Visual Representations, ICCV 2021. https://arxiv.org/abs/2104.14548
"""

import jax
import jax.numpy as jnp

from jaxssl.losses.moco import unit


def nearest_neighbours(z: jax.Array, support: jax.Array) -> jax.Array:
    """For each row of ``z`` ``[N, D]``, the most cosine-similar row of ``support`` ``[K, D]``
    (unit rows), without gradient: ``[N, D]``."""
    support = jax.lax.stop_gradient(support.astype(jnp.float32))
    nearest = jnp.argmax(jax.lax.stop_gradient(unit(z)) @ support.T, axis=1)
    return support[nearest]


def nnclr_loss(neighbours: jax.Array, predictions: jax.Array, temperature: float = 0.2):
    r"""``CE(nn_i \cdot p_j / T, i)``: the neighbour of view 1 of image ``i`` must pick view 2's
    prediction of image ``i`` among the (global) batch's. Mean over the ``N`` rows.

    Args:
      neighbours: ``[N, D]`` support-set neighbours of one view's projections.
      predictions: ``[N, D]`` the other view's predictions.
      temperature: ``T`` (0.1 in the paper, 0.2 in solo-learn's CIFAR recipe).
    """
    logits = unit(neighbours) @ unit(predictions).T / temperature  # [N, N]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(logits))
