"""Losses on the spread of the embedding distribution: TiCo's covariance contrast, MMCR's
manifold capacity (nuclear norm of the view centroids) and the KoLeo regularizer of DINOv2.

Both act on L2-normalized embeddings of the **global** batch under ``jax.jit`` (the
references all-gather). Computed in float32; the ``[D, D]`` and SVD inputs at full precision.

References:
  Zhu, Liu, Shen & LeCun, TiCo: Transformation Invariance and Covariance Contrast for
  Self-Supervised Visual Representation Learning, 2022. https://arxiv.org/abs/2206.10698
  Yerxa, Kuang, Simoncelli & Chung, Learning Efficient Coding of Natural Images with Maximum
  Manifold Capacity Representations (MMCR), NeurIPS 2023. https://arxiv.org/abs/2303.03307
  (code: ThomasYerxa/mmcr)
  Sablayrolles, Douze, Schmid & Jegou, Spreading Vectors for Similarity Search (KoLeo), ICLR
  2019. https://arxiv.org/abs/1806.03198; Oquab et al., DINOv2, 2023 (its ``KoLeoLoss``).
  https://arxiv.org/abs/2304.07193
"""

import chex
import jax
import jax.numpy as jnp

from jaxssl.losses import normalize


def tico_loss(
    z1: jax.Array,
    z2: jax.Array,
    covariance: jax.Array,
    beta: float = 0.9,
    rho: float = 20.0,
    center: bool = False,
) -> tuple[jax.Array, jax.Array]:
    r"""TiCo: transformation invariance plus contrast against an EMA covariance of view 1.

    With :math:`u_i, v_i` the L2-normalized rows of ``z1``, ``z2`` (global batch :math:`N`),

    .. math::
      C_t = \beta \, C_{t-1} + (1 - \beta) \frac{1}{N} U^\top U, \qquad
      \mathcal{L} = -\frac{1}{N} \sum_i u_i^\top v_i
        + \rho \, \frac{1}{N} \sum_i u_i^\top C_t \, u_i ,

    the paper's Algorithm 1: gradients flow through this step's :math:`U^\top U` inside
    :math:`C_t`, :math:`C_{t-1}` is a constant (the method state, detached after each step).
    With ``center``, each view's embeddings first lose their mean over the global batch, as
    lightly's ``TiCoLoss`` does (it also adds a constant 1, which changes no gradient and is
    not added here).

    Args:
      z1: ``[N, D]`` embeddings of the first view (the covariance's).
      z2: ``[N, D]`` embeddings of the second view.
      covariance: ``[D, D]`` the EMA covariance :math:`C_{t-1}` (zeros at the start).
      beta: EMA coefficient (0.9).
      rho: weight of the covariance term (20 in lightly's and the paper's ImageNet setting).
      center: subtract each view's batch mean before normalizing (lightly); False: the
        paper's Algorithm 1.

    Returns:
      ``(loss, C_t)``; the caller stores ``stop_gradient(C_t)`` as the next state.
    """
    chex.assert_equal_shape((z1, z2))
    chex.assert_rank(z1, 2)
    z1, z2 = z1.astype(jnp.float32), z2.astype(jnp.float32)
    if center:
        z1 = z1 - jnp.mean(z1, axis=0, keepdims=True)
        z2 = z2 - jnp.mean(z2, axis=0, keepdims=True)
    u = normalize.l2_normalize(z1)
    v = normalize.l2_normalize(z2)
    n, d = u.shape
    chex.assert_shape(covariance, (d, d))
    gram = jnp.einsum("nd,ne->de", u, u, precision=jax.lax.Precision.HIGHEST) / n
    updated = beta * jax.lax.stop_gradient(covariance.astype(jnp.float32)) + (1.0 - beta) * gram
    invariance = -jnp.mean(jnp.sum(u * v, axis=-1))
    contrast = jnp.mean(
        jnp.sum(jnp.einsum("nd,de->ne", u, updated, precision=jax.lax.Precision.HIGHEST) * u, -1)
    )
    return invariance + rho * contrast, updated


def nuclear_norm(matrix: jax.Array) -> jax.Array:
    """Sum of the singular values of ``[..., M, K]`` matrices (one per leading index)."""
    return jnp.sum(jnp.linalg.svd(matrix.astype(jnp.float32), compute_uv=False), axis=-1)


def mmcr_loss(z: jax.Array, lmbda: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""MMCR: maximize the nuclear norm of the matrix of view centroids.

    With :math:`u_{bk}` the L2-normalized embedding of view :math:`k` of image :math:`b` and
    :math:`c_b = \frac{1}{K} \sum_k u_{bk}` (the centroid of the image's manifold),

    .. math::
      \mathcal{L} = -\lVert C \rVert_* + \frac{\lambda}{B} \sum_b \lVert U_b \rVert_*,

    :math:`C = [c_1, \dots, c_B]^\top` (``[B, D]``) and :math:`U_b` the ``[D, K]`` matrix of
    image :math:`b`'s views, as the reference (``mmcr/cifar_stl/loss_mmcr.py``: the global
    term is not divided by the batch; its CIFAR default is :math:`\lambda = 0`). Views of an
    image that agree make long centroids; centroids that spread over many directions make a
    large nuclear norm: invariance and spread in one term.

    Args:
      z: ``[B, K, D]`` embeddings, ``K >= 2`` views per image.
      lmbda: weight of the per-image (local) nuclear norms.

    Returns:
      ``(loss, {"global_nuclear": ..., "local_nuclear": ...})``.
    """
    chex.assert_rank(z, 3)
    u = normalize.l2_normalize(z.astype(jnp.float32))  # [B, K, D]
    centroids = jnp.mean(u, axis=1)  # [B, D]
    global_nuclear = nuclear_norm(centroids)
    local_nuclear = jnp.sum(nuclear_norm(u)) if lmbda else jnp.zeros((), jnp.float32)
    loss = lmbda * local_nuclear / z.shape[0] - global_nuclear
    return loss, {"global_nuclear": global_nuclear, "local_nuclear": local_nuclear}


def koleo(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    r"""KoLeo: the negative log distance of each L2-normalized row to its nearest other row.

    .. math::
      \mathcal{L} = -\frac{1}{N} \sum_i \log\left(\min_{j \ne i}
        \lVert u_i - u_j \rVert + \epsilon\right)

    the Kozachenko-Leonenko entropy estimator up to constants: it falls as points spread.
    As DINOv2's ``KoLeoLoss``: the neighbour is the largest inner product (no gradient
    through the choice), the distance is ``torch.nn.PairwiseDistance``'s
    :math:`\lVert u_i - u_j + \epsilon \rVert` (finite for duplicate points). DINOv2 takes
    neighbours within each GPU's batch; under ``jit`` here they come from the global batch.

    Args:
      x: ``[N, D]`` (normalized here).
      eps: the distance's and the logarithm's epsilon (1e-8).
    """
    chex.assert_rank(x, 2)
    u = normalize.l2_normalize(x.astype(jnp.float32))
    dots = jnp.einsum("nd,md->nm", u, u, precision=jax.lax.Precision.HIGHEST)
    dots = jnp.where(jnp.eye(u.shape[0], dtype=bool), -jnp.inf, dots)
    nearest = jax.lax.stop_gradient(jnp.argmax(dots, axis=1))  # [N]
    distances = jnp.sqrt(jnp.sum(jnp.square(u - u[nearest] + eps), axis=-1))
    return -jnp.mean(jnp.log(distances + eps))
