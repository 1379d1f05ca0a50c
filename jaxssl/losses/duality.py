r"""Sample- and dimension-contrastive criteria: the duality of Garrido et al. (ICLR 2023).

With the embeddings of a batch as the rows of :math:`Z \in \mathbb{R}^{N \times M}` (the
paper's :math:`\mathcal{K} = Z^\top`, ``M`` dimensions by ``N`` samples),

.. math::
  L_c = \|Z Z^\top - \mathrm{diag}(Z Z^\top)\|_F^2, \qquad
  L_{nc} = \|Z^\top Z - \mathrm{diag}(Z^\top Z)\|_F^2

penalize the similarities between different samples (sample-contrastive: SimCLR, DCL) and
between different dimensions (dimension-contrastive: VICReg, Barlow Twins), and since
:math:`\|Z Z^\top\|_F = \|Z^\top Z\|_F`,

.. math::
  L_{nc} + \sum_{j=1}^{M} \|Z_{:, j}\|_2^4 = L_c + \sum_{i=1}^{N} \|Z_{i, :}\|_2^4

(the paper's Theorem 3.3): up to the norms of rows and columns the two are one criterion. No
centring and no ``1/N`` factor, as the paper defines them.

``logsumexp_covariance`` is VICReg-exp's covariance term (the paper's Eq. 11); applied to
:math:`Z^\top` it becomes VICReg-ctr's (Eq. 13): the same LogSumExp over the Gram matrix of
samples that DCL uses. `jaxssl.losses.redundancy.vicreg_loss` takes both as ``variant``; the
SimCLR-abs/-sq variants are `jaxssl.losses.contrastive.multi_positive_nt_xent`'s
``negative_similarity``.

References:
  Garrido, Chen, Bardes, Najman & LeCun, On the duality between contrastive and
  non-contrastive self-supervised learning, ICLR 2023, Sec. 3-4.
  https://arxiv.org/abs/2206.02574
"""

import chex
import jax
import jax.numpy as jnp


def off_diagonal_square_sum(matrix: jax.Array) -> jax.Array:
    """Sum of the squared off-diagonal entries (masked, not ``total - diagonal``: exact)."""
    return jnp.sum(jnp.square(jnp.where(jnp.eye(matrix.shape[0], dtype=bool), 0.0, matrix)))


def _gram(a: jax.Array) -> jax.Array:
    """``a @ a.T`` in full float32."""
    return jnp.einsum("nd,md->nm", a, a, precision=jax.lax.Precision.HIGHEST)


def sample_contrastive(z: jax.Array) -> jax.Array:
    """:math:`L_c = \\sum_{i \\ne j} (z_i^\\top z_j)^2` over the rows (samples) of ``z``."""
    chex.assert_rank(z, 2)
    return off_diagonal_square_sum(_gram(z.astype(jnp.float32)))


def dimension_contrastive(z: jax.Array) -> jax.Array:
    """:math:`L_{nc} = \\sum_{k \\ne l} (Z_{:,k}^\\top Z_{:,l})^2` over the columns (dimensions)
    of ``z`` ``[N, M]``."""
    chex.assert_rank(z, 2)
    return off_diagonal_square_sum(_gram(z.astype(jnp.float32).T))


def duality_gap(z: jax.Array) -> jax.Array:
    r""":math:`\sum_i \|Z_{i,:}\|^4 - \sum_j \|Z_{:,j}\|^4`, so that
    :math:`L_{nc} = L_c + \mathrm{duality\_gap}(Z)` (Theorem 3.3): zero when rows and columns
    have norms that make the two sums equal (e.g. an orthogonal ``Z``)."""
    z = z.astype(jnp.float32)
    squares = jnp.square(z)
    return jnp.sum(jnp.square(jnp.sum(squares, 1))) - jnp.sum(jnp.square(jnp.sum(squares, 0)))


def logsumexp_covariance(z: jax.Array, temperature: float) -> jax.Array:
    r"""VICReg-exp's covariance criterion of ``z`` ``[N, D]``:

    .. math::
      c_{exp}(z) = \frac{1}{D} \sum_{i=1}^{D} \log \sum_{j \ne i} e^{C(z)_{ij} / \tau},

    with :math:`C(z)` VICReg's covariance of the dimensions (centred over the batch, divided by
    ``N - 1``). Where VICReg's :math:`c` pushes every off-diagonal covariance to 0 with a
    square, this pushes the largest ones down, as SimCLR's LogSumExp does with similarities.
    ``logsumexp_covariance(z.T, tau)`` is VICReg-ctr's term: the covariance of the *samples*
    (each centred over its dimensions), a LogSumExp over the other samples: a DCL-like
    repulsion between samples.

    Args:
      z: ``[N, D]``, ``N >= 2``.
      temperature: :math:`\tau`. The paper's value is in its supplementary table, which we could
        not read; jaxssl's VICReg presets use 0.1 (a SimCLR-like choice), measured in
        docs/research.md.

    Returns:
      The scalar criterion, float32.
    """
    chex.assert_rank(z, 2)
    z = z.astype(jnp.float32)
    n, d = z.shape
    centered = z - jnp.mean(z, axis=0)
    covariance = _gram(centered.T) / (n - 1)  # [D, D]
    logits = jnp.where(jnp.eye(d, dtype=bool), -jnp.inf, covariance / temperature)
    return jnp.mean(jax.nn.logsumexp(logits, axis=1))
