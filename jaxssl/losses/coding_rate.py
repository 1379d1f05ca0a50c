"""EMP-SSL's losses: total coding rate of a batch of embeddings, patch-to-mean similarity.

References:
  Tong, Chen, Ma & LeCun, EMP-SSL: Towards Self-Supervised Learning in One Training Epoch,
  2023. https://arxiv.org/abs/2304.03977 (reference code: tsb0601/EMP-SSL)
"""

import jax
import jax.numpy as jnp


def total_coding_rate(z: jax.Array, eps: float = 0.2) -> jax.Array:
    r"""``R(Z) = 1/2 logdet(I + d / (m eps) Z^T Z)`` for ``m`` embeddings ``z`` ``[m, d]``.

    As in the reference code's ``TotalCodingRate`` (there negated, to be minimized). Computed
    in float32 at full matmul precision, by Cholesky (the matrix is symmetric positive
    definite): ``logdet = 2 sum log diag(L)``.
    """
    z = z.astype(jnp.float32)
    m, d = z.shape
    gram = jnp.einsum("md,me->de", z, z, precision=jax.lax.Precision.HIGHEST)
    matrix = jnp.eye(d, dtype=jnp.float32) + (d / (m * eps)) * gram
    return jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(matrix))))


def emp_ssl_loss(
    z: jax.Array, eps: float = 0.2, invariance_weight: float = 200.0, tcr_weight: float = 1.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""EMP-SSL loss of ``z`` ``[B, n, d]``: ``n`` patch embeddings (unit rows) of ``B`` images.

    ``-tcr_weight * mean_i R(Z_i) - invariance_weight * mean_i mean_b cos(z_bi, zbar_b)``,
    where ``Z_i`` ``[B, d]`` holds patch ``i`` of every image (the reference ``cal_TCR`` over
    chunks) and ``zbar_b`` the mean of image ``b``'s patch embeddings; the gradient flows
    through the mean, as in the reference code. Over the global batch.

    Returns:
      ``(loss, {"tcr": mean R, "invariance": mean cosine})``.
    """
    tcr = jnp.mean(jax.vmap(lambda zi: total_coding_rate(zi, eps), in_axes=1)(z))
    mean = jnp.mean(z, axis=1, keepdims=True)  # [B, 1, d]
    cos = jnp.sum(z * mean, axis=-1) / (
        jnp.linalg.norm(z, axis=-1) * jnp.linalg.norm(mean, axis=-1)
    ).clip(1e-8)
    invariance = jnp.mean(cos)
    loss = -tcr_weight * tcr - invariance_weight * invariance
    return loss, {"tcr": tcr, "invariance": invariance}
