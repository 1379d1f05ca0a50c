"""Regression losses of the non-contrastive methods: BYOL, SimSiam, W-MSE.

Both losses compare a prediction ``p`` of one view with a projection ``z`` of the other view
by cosine similarity; neither needs negatives. All reductions are means over the global batch,
computed in float32 whatever the input dtype.
"""

import chex
import jax
import jax.numpy as jnp

from jaxssl.losses import normalize


def _cosine(p: jax.Array, z: jax.Array) -> jax.Array:
    """Row-wise cosine similarity in float32, ``[N]``; a zero vector gives 0, not NaN."""
    chex.assert_equal_shape((p, z))
    chex.assert_rank(p, 2)
    return jnp.sum(normalize.l2_normalize(p) * normalize.l2_normalize(z), axis=-1)  # [N]


def normalized_mse(p: jax.Array, z: jax.Array) -> jax.Array:
    r"""Mean squared error of L2-normalized vectors, BYOL's regression loss.

    .. math::
      \ell(p, z) = \frac{1}{N} \sum_{i=1}^{N}
        \left\| \frac{p_i}{\|p_i\|} - \frac{z_i}{\|z_i\|} \right\|_2^2
        = \frac{1}{N} \sum_{i=1}^{N} \left(2 - 2 \cos(p_i, z_i)\right).

    No stop-gradient inside: the caller puts ``jax.lax.stop_gradient`` on the target branch.

    Args:
      p: online predictions, ``[N, D]``.
      z: target projections, ``[N, D]``.

    Returns:
      The scalar loss, in ``[0, 4]``; 0 for identical directions.

    References:
      Grill et al., Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning
      (BYOL), NeurIPS 2020. https://arxiv.org/abs/2006.07733
    """
    return jnp.mean(2.0 - 2.0 * _cosine(p, z))


def symmetric_normalized_mse(
    p1: jax.Array, p2: jax.Array, z1: jax.Array, z2: jax.Array
) -> jax.Array:
    r"""BYOL's symmetrized loss: :math:`\ell(p_1, z'_2) + \ell(p_2, z'_1)`.

    The two directions are *summed* (each a mean over the batch), as in the reference
    implementation (deepmind-research ``byol/byol_experiment.py``: per-example
    ``regression_loss(p1, z2') + regression_loss(p2, z1')``, then the batch mean; solo-learn
    sums ``byol_loss_func`` over the view pairs). So the loss lies in ``[0, 8]``.

    Args:
      p1: online predictions of view 1, ``[N, D]``.
      p2: online predictions of view 2, ``[N, D]``.
      z1: target projections of view 1, ``[N, D]``.
      z2: target projections of view 2, ``[N, D]``.

    Returns:
      The scalar loss.

    References:
      Grill et al., BYOL, NeurIPS 2020, Eq. 2 and the symmetrization below it.
      https://arxiv.org/abs/2006.07733
    """
    return normalized_mse(p1, z2) + normalized_mse(p2, z1)


def negative_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
    r"""Negative cosine similarity with a stop-gradient on ``z``, SimSiam's :math:`D`.

    .. math::
      D(p, z) = -\frac{1}{N} \sum_{i=1}^{N} \cos\left(p_i, \mathrm{sg}(z_i)\right).

    The stop-gradient is part of the loss (SimSiam's Eq. 3): without it the method collapses.

    Args:
      p: predictions, ``[N, D]``.
      z: projections of the other view, ``[N, D]``; no gradient flows into them.

    Returns:
      The scalar loss, in ``[-1, 1]``.

    References:
      Chen & He, Exploring Simple Siamese Representation Learning (SimSiam), CVPR 2021.
      https://arxiv.org/abs/2011.10566
    """
    return -jnp.mean(_cosine(p, jax.lax.stop_gradient(z)))


def symmetric_negative_cosine(
    p1: jax.Array, p2: jax.Array, z1: jax.Array, z2: jax.Array
) -> jax.Array:
    r"""SimSiam's symmetrized loss :math:`\frac12 D(p_1, z_2) + \frac12 D(p_2, z_1)`.

    Args:
      p1: predictions of view 1, ``[N, D]``.
      p2: predictions of view 2, ``[N, D]``.
      z1: projections of view 1, ``[N, D]``.
      z2: projections of view 2, ``[N, D]``.

    Returns:
      The scalar loss, in ``[-1, 1]`` (-1: perfectly predicted).

    References:
      Chen & He, SimSiam, CVPR 2021, Eq. 2-4. https://arxiv.org/abs/2011.10566
    """
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)
