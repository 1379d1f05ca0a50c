"""W-MSE: MSE between views after whitening the embeddings of sub-batches (pure jax.numpy).

References:
  Ermolov, Siarohin, Sangineto & Sebe, Whitening for Self-Supervised Representation
  Learning, ICML 2021. https://arxiv.org/abs/2007.06346 (reference code: htdt/self-supervised)
"""

import jax
import jax.numpy as jnp

from jaxssl.losses import regression


def whiten(z: jax.Array, eps: float = 0.0) -> jax.Array:
    r"""Cholesky whitening of ``z`` ``[n, d]`` over its rows (the reference ``Whitening2d``).

    :math:`\Sigma = \frac{1}{n-1}(z-\mu)^\top(z-\mu)`, shrunk to :math:`(1-\epsilon)\Sigma +
    \epsilon I`; with :math:`LL^\top = \Sigma`, returns :math:`(z-\mu)L^{-\top}`, whose
    covariance is the identity. Computed in float32 at full matmul precision. Needs ``n > d``
    (or ``eps > 0``) for a positive-definite covariance.
    """
    z = z.astype(jnp.float32)
    n, d = z.shape
    centred = z - jnp.mean(z, axis=0, keepdims=True)
    cov = jnp.einsum("nd,ne->de", centred, centred, precision=jax.lax.Precision.HIGHEST) / (n - 1)
    cov = (1.0 - eps) * cov + eps * jnp.eye(d, dtype=jnp.float32)
    chol = jnp.linalg.cholesky(cov)
    # (z - mu) L^{-T}: solve L X^T = (z - mu)^T.
    return jax.scipy.linalg.solve_triangular(chol, centred.T, lower=True).T


def w_mse_loss(
    z: jax.Array,
    permutations: jax.Array,
    sub_batch_size: int,
    eps: float = 0.0,
) -> jax.Array:
    r"""W-MSE loss of ``z`` ``[B, V, d]`` (V views of B images).

    For each of the ``w_iter`` rows of ``permutations`` (``[w_iter, B]``, each a permutation of
    the batch): split the permuted batch into sub-batches of ``sub_batch_size`` images; whiten
    each view's embeddings within each sub-batch (``whiten``); then for every pair of views
    ``i < j`` add ``regression.normalized_mse`` of the whitened embeddings. The sum is divided by
    ``w_iter x`` the number of pairs, as in the reference code. Over the global batch: the
    sub-batches mix images of all devices.

    Args:
      z: ``[B, V, d]`` projector outputs.
      permutations: ``[w_iter, B]`` integer permutations of ``range(B)``.
      sub_batch_size: images per whitening sub-batch (``B`` must be a multiple; > ``d``).
      eps: covariance shrinkage (0 in the reference defaults).

    Returns:
      Scalar loss.
    """
    b, v, d = z.shape
    if b % sub_batch_size:
        raise ValueError(f"W-MSE: batch {b} is not a multiple of w_size={sub_batch_size}.")
    if v < 2:
        raise ValueError(f"W-MSE needs at least 2 views per image, got {v}.")
    pairs = [(i, j) for i in range(v) for j in range(i + 1, v)]

    def one_iteration(permutation):
        groups = z[permutation].reshape(b // sub_batch_size, sub_batch_size, v, d)
        # Whiten each (sub-batch, view) block: [G, w, V, d] -> [G, V, w, d].
        white = jax.vmap(jax.vmap(lambda x: whiten(x, eps), in_axes=1), in_axes=0)(groups)
        white = white.reshape(b // sub_batch_size, v, sub_batch_size, d)
        return sum(
            regression.normalized_mse(white[:, i].reshape(-1, d), white[:, j].reshape(-1, d))
            for i, j in pairs
        )

    total = jnp.sum(jax.vmap(one_iteration)(permutations))
    return total / (permutations.shape[0] * len(pairs))
