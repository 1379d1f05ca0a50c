"""Redundancy-reduction losses (Barlow Twins, VICReg): statistics of the embedding dimensions.

Both losses compare two views ``z1, z2`` of the same images through per-dimension statistics
over the batch (means, variances, cross-correlations, covariances), so they need neither
negatives nor a stop-gradient. Under ``jax.jit`` over a mesh the inputs are global arrays: the
statistics are those of the **global** batch, as in the official multi-GPU implementations
(synchronized BatchNorm in Barlow Twins, all-gather in VICReg); nothing here is per device.

Everything is computed in float32 whatever the input dtype, and the ``[D, D]`` matrix products
use ``Precision.HIGHEST``: on TPU the default float32 matmul rounds its inputs to bfloat16,
which would blur the ``1 - c_ii`` that Barlow Twins drives to 0.
"""

import chex
import jax
import jax.numpy as jnp

from jaxssl.losses import duality


def _check_views(z1: jax.Array, z2: jax.Array) -> tuple[jax.Array, jax.Array]:
    chex.assert_equal_shape((z1, z2))
    chex.assert_rank(z1, 2)
    if z1.shape[0] < 2:
        raise ValueError(f"Batch statistics need at least 2 rows, got {z1.shape[0]}.")
    return z1.astype(jnp.float32), z2.astype(jnp.float32)


def _gram(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a.T @ b`` in full float32, ``[D, D]``."""
    return jnp.einsum("nd,ne->de", a, b, precision=jax.lax.Precision.HIGHEST)


def _batch_standardize(z: jax.Array, eps: float) -> jax.Array:
    """BatchNorm without affine parameters, train mode: biased variance over the batch."""
    mean = jnp.mean(z, axis=0)
    variance = jnp.mean(jnp.square(z - mean), axis=0)
    return (z - mean) * jax.lax.rsqrt(variance + eps)


def cross_correlation(z1: jax.Array, z2: jax.Array, eps: float = 1e-5) -> jax.Array:
    r"""Barlow Twins' empirical cross-correlation matrix of two views.

    .. math::
      \hat z = \frac{z - \mu_B(z)}{\sqrt{\sigma_B^2(z) + \epsilon}}, \qquad
      \mathcal{C} = \frac{1}{N} \hat z_1^\top \hat z_2,

    with :math:`\mu_B, \sigma_B^2` the per-dimension mean and biased variance over the batch.

    Args:
      z1: embeddings of view 1, ``[N, D]``.
      z2: embeddings of view 2, ``[N, D]``, row ``i`` the same image as in ``z1``.
      eps: added to the variance (PyTorch's BatchNorm default).

    Returns:
      ``[D, D]`` float32; entries in ``[-1, 1]`` up to ``eps``.

    References:
      Zbontar et al., Barlow Twins: Self-Supervised Learning via Redundancy Reduction,
      ICML 2021, Eq. 2. https://arxiv.org/abs/2103.03230
    """
    z1, z2 = _check_views(z1, z2)
    n = z1.shape[0]
    return _gram(_batch_standardize(z1, eps), _batch_standardize(z2, eps)) / n  # [D, D]


def barlow_twins_terms(z1: jax.Array, z2: jax.Array, eps: float = 1e-5) -> dict[str, jax.Array]:
    r"""The two unweighted terms of the Barlow Twins loss (see ``barlow_twins_loss``).

    Args:
      z1: embeddings of view 1, ``[N, D]``.
      z2: embeddings of view 2, ``[N, D]``.
      eps: BatchNorm epsilon of the standardization.

    Returns:
      ``{"on_diagonal": sum_i (1 - C_ii)^2, "off_diagonal": sum_{i != j} C_ij^2}``, float32
      scalars.
    """
    c = cross_correlation(z1, z2, eps)  # [D, D]
    return {
        "on_diagonal": jnp.sum(jnp.square(1.0 - jnp.diagonal(c))),
        "off_diagonal": duality.off_diagonal_square_sum(c),
    }


def barlow_twins_loss(
    z1: jax.Array, z2: jax.Array, lambd: float = 0.0051, eps: float = 1e-5
) -> jax.Array:
    r"""Barlow Twins' redundancy-reduction loss.

    .. math::
      \mathcal{L} = \sum_i (1 - \mathcal{C}_{ii})^2
        + \lambda \sum_i \sum_{j \neq i} \mathcal{C}_{ij}^2,

    with :math:`\mathcal{C}` the cross-correlation of the batch-standardized views
    (``cross_correlation``). The invariance term pushes each dimension of the two views to be
    perfectly correlated, the redundancy term decorrelates different dimensions.

    Reduction as in the official code (facebookresearch/barlowtwins): the correlation averages
    over the ``N`` rows of the (global) batch, then both terms *sum* over the matrix entries,
    so the loss grows with ``D``; it is not normalized by ``D``. The standardization is over the
    global batch (the official code converts its affine-free ``BatchNorm1d`` to SyncBatchNorm).

    Args:
      z1: embeddings of view 1, ``[N, D]``, any float dtype.
      z2: embeddings of view 2, ``[N, D]``, row ``i`` the same image as in ``z1``.
      lambd: weight :math:`\lambda` of the off-diagonal term (paper and official default
        0.0051, for ``D = 8192``).
      eps: BatchNorm epsilon of the standardization (PyTorch's default, 1e-5).

    Returns:
      The scalar loss, float32, ``>= 0``: 0 for identical, whitened views.

    References:
      Zbontar et al., Barlow Twins: Self-Supervised Learning via Redundancy Reduction,
      ICML 2021, Eq. 1. https://arxiv.org/abs/2103.03230
    """
    terms = barlow_twins_terms(z1, z2, eps)
    return terms["on_diagonal"] + lambd * terms["off_diagonal"]


def _variance_term(z: jax.Array, eps: float) -> jax.Array:
    """Hinge on the per-dimension standard deviation (unbiased), averaged over dimensions."""
    std = jnp.sqrt(jnp.var(z, axis=0, ddof=1) + eps)  # [D]
    return jnp.mean(jax.nn.relu(1.0 - std))


def _covariance_term(z: jax.Array) -> jax.Array:
    """Squared off-diagonal entries of the (unbiased) covariance, summed, divided by ``D``."""
    n, d = z.shape
    centered = z - jnp.mean(z, axis=0)
    covariance = _gram(centered, centered) / (n - 1)  # [D, D]
    return duality.off_diagonal_square_sum(covariance) / d


def vicreg_loss(
    z1: jax.Array,
    z2: jax.Array,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
    variant: str = "vicreg",
    temperature: float = 0.1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""VICReg: variance-invariance-covariance regularization of two views.

    .. math::
      s(z_1, z_2) &= \frac{1}{N D} \sum_{n, d} (z_{1,nd} - z_{2,nd})^2, \\
      v(z) &= \frac{1}{D} \sum_d \max\left(0, 1 - \sqrt{\mathrm{Var}(z_{:,d}) + \epsilon}\right),
      \\
      c(z) &= \frac{1}{D} \sum_{i \neq j} \mathrm{Cov}(z)_{ij}^2, \\
      \mathcal{L} &= \mu_s \, s(z_1, z_2)
        + \mu_v \, \frac{v(z_1) + v(z_2)}{2} + \mu_c \, \left(c(z_1) + c(z_2)\right),

    with the unbiased variance and covariance (divided by ``N - 1``) over the batch. This is the
    official code's reduction (facebookresearch/vicreg ``main_vicreg.py``): the variance term
    *averages* the two views, the covariance term *sums* them. (solo-learn sums the two
    variance terms, so its ``var_loss_weight=w`` is ``std_coeff=2 * w`` here.)

    All three terms are over the global batch (the official code all-gathers before the
    variance and covariance; its per-GPU MSE averages to the global one).

    Args:
      z1: embeddings of view 1, ``[N, D]``, any float dtype; ``N >= 2``.
      z2: embeddings of view 2, ``[N, D]``, row ``i`` the same image as in ``z1``.
      sim_coeff: weight :math:`\mu_s` of the invariance term (official default 25).
      std_coeff: weight :math:`\mu_v` of the variance term (official default 25).
      cov_coeff: weight :math:`\mu_c` of the covariance term (official default 1).
      eps: added to the variance inside the square root (official default 1e-4).
      variant: ``"vicreg"`` (the loss above); ``"exp"``: VICReg-exp, the covariance term
        replaced by ``duality.logsumexp_covariance`` of each view; ``"ctr"``: VICReg-ctr,
        VICReg-exp with variance and covariance terms on the transposed embeddings
        (``z.T``: the variance hinge then holds each embedding's spread over its dimensions,
        the LogSumExp repels samples): a sample-contrastive method. Garrido et al. 2023,
        Eq. 11-13; the invariance term is the same in all three.
      temperature: :math:`\tau` of the ``"exp"`` and ``"ctr"`` LogSumExp.

    Returns:
      ``(loss, terms)``: the scalar loss and the unweighted terms ``{"invariance",
      "variance", "covariance"}`` (the variance already averaged over the views, the
      covariance summed), all float32 scalars.

    References:
      Bardes, Ponce & LeCun, VICReg: Variance-Invariance-Covariance Regularization for
      Self-Supervised Learning, ICLR 2022, Eq. 1-6. https://arxiv.org/abs/2105.04906
    """
    z1, z2 = _check_views(z1, z2)
    invariance = jnp.mean(jnp.square(z1 - z2))
    if variant == "ctr":
        z1, z2 = z1.T, z2.T  # [D, N]: regularize the samples instead of the dimensions
    if variant == "vicreg":
        covariance = _covariance_term(z1) + _covariance_term(z2)
    elif variant in ("exp", "ctr"):
        covariance = duality.logsumexp_covariance(z1, temperature) + duality.logsumexp_covariance(
            z2, temperature
        )
    else:
        raise ValueError(f"Unknown VICReg variant {variant!r}; valid: 'vicreg', 'exp', 'ctr'.")
    terms = {
        "invariance": invariance,
        "variance": _variance_term(z1, eps) / 2 + _variance_term(z2, eps) / 2,
        "covariance": covariance,
    }
    loss = (
        sim_coeff * terms["invariance"]
        + std_coeff * terms["variance"]
        + cov_coeff * terms["covariance"]
    )
    return loss, terms


# --- SIE: VICReg with an invariant and an equivariant part ---


def sie_loss(
    inv1: jax.Array,
    inv2: jax.Array,
    equi1: jax.Array,
    equi2: jax.Array,
    prediction: jax.Array,
    sim_coeff: float = 10.0,
    equi_factor: float = 4.5,
    std_coeff: float = 10.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
    prediction_variance: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""SIE: split invariant-equivariant VICReg (Garrido, Najman & LeCun 2023).

    .. math::
      \mathcal{L} = \mu_s \, s(z^{inv}_1, z^{inv}_2)
        + \lambda \mu_s \, s(\hat z^{eq}_2, z^{eq}_2)
        + \mu_v \left(\frac{v(z_1) + v(z_2)}{2} + \frac{v(\hat z^{eq}_2)}{2}\right)
        + \mu_c \left(c(z_1) + c(z_2)\right),

    with ``s`` the mean squared error, ``v`` and ``c`` VICReg's variance hinge and covariance
    term (`vicreg_loss`) of the whole embeddings :math:`z = [z^{inv}, z^{eq}]`, so the two
    parts do not carry the same information, and :math:`\hat z^{eq}_2` the prediction of view
    2's equivariant embedding from view 1's (a hypernetwork's linear map of the relative
    transformation; ``models.equivariant``). The reference code (facebookresearch/SIE,
    ``src/models.py``, class ``SIE``): no symmetrization (only view 1 -> view 2 is predicted),
    ``F.mse_loss`` means, the variance hinge on the prediction halved, defaults
    ``sim 10, equi_factor 4.5, std 10, cov 1``. Over the global batch.

    Args:
      inv1: invariant embeddings of view 1, ``[N, Di]``.
      inv2: of view 2, ``[N, Di]``.
      equi1: equivariant embeddings of view 1, ``[N, De]``.
      equi2: of view 2, ``[N, De]``.
      prediction: the predicted ``equi2``, ``[N, De]``.
      sim_coeff: :math:`\mu_s`.
      equi_factor: :math:`\lambda`, the equivariance term's weight relative to ``sim_coeff``.
      std_coeff: :math:`\mu_v`.
      cov_coeff: :math:`\mu_c`.
      eps: added to the variance inside the square root.
      prediction_variance: include the prediction's variance hinge (the reference's class
        ``SIE``); False is its class ``SIENoVar``. The term is still reported.

    Returns:
      ``(loss, terms)``: unweighted ``{"invariance", "equivariance", "variance",
      "prediction_variance", "covariance"}``.
    """
    inv1, inv2 = _check_views(inv1, inv2)
    equi1, equi2 = _check_views(equi1, equi2)
    prediction = prediction.astype(jnp.float32)
    z1 = jnp.concatenate([inv1, equi1], axis=1)
    z2 = jnp.concatenate([inv2, equi2], axis=1)
    terms = {
        "invariance": jnp.mean(jnp.square(inv1 - inv2)),
        "equivariance": jnp.mean(jnp.square(prediction - equi2)),
        "variance": _variance_term(z1, eps) / 2 + _variance_term(z2, eps) / 2,
        "prediction_variance": _variance_term(prediction, eps) / 2,
        "covariance": _covariance_term(z1) + _covariance_term(z2),
    }
    loss = (
        sim_coeff * (terms["invariance"] + equi_factor * terms["equivariance"])
        + std_coeff * (terms["variance"] + prediction_variance * terms["prediction_variance"])
        + cov_coeff * terms["covariance"]
    )
    return loss, terms


# --- VICRegL: VICReg on the pooled embeddings and on matched feature-map vectors ---


def location_grid(boxes: jax.Array, rows: int, cols: int) -> jax.Array:
    """Where the cells of a ``rows x cols`` feature map of each view lie in its source image.

    The centres of the map's cells, ``(y, x)`` in source pixels, from the views' crop boxes
    ``(top, left, height, width, flipped)`` (`jaxssl.data.crops.view_boxes`), as the
    reference's ``_location_to_NxN_grid``. A flipped view's grid is mirrored left-right (its
    cell ``(r, c)`` shows what the unflipped crop shows at column ``cols - 1 - c``); the
    reference's default (``--no-flip-grid 1``) leaves grids unmirrored.

    Args:
      boxes: ``[..., 5]`` float crop boxes.
      rows: feature-map height.
      cols: feature-map width.

    Returns:
      ``[..., rows * cols, 2]`` float32, row-major over the map.
    """
    boxes = boxes.astype(jnp.float32)
    top, left, height, width, flipped = (boxes[..., i] for i in range(5))
    r = (jnp.arange(rows, dtype=jnp.float32) + 0.5) / rows  # [rows]
    c = (jnp.arange(cols, dtype=jnp.float32) + 0.5) / cols  # [cols]
    c = jnp.where(flipped[..., None] > 0.5, 1.0 - c, c)  # [..., cols]
    y = top[..., None] + height[..., None] * r  # [..., rows]
    x = left[..., None] + width[..., None] * c  # [..., cols]
    shape = y.shape[:-1] + (rows, cols)
    grid = jnp.stack(
        [jnp.broadcast_to(y[..., :, None], shape), jnp.broadcast_to(x[..., None, :], shape)], -1
    )
    return grid.reshape(y.shape[:-1] + (rows * cols, 2))


def nearest_matches(distances: jax.Array, num_matches: int | None) -> tuple[jax.Array, jax.Array]:
    """The reference's ``neirest_neighbores``: each input vector's nearest candidate, and the
    ``num_matches`` inputs nearest to theirs (all with None).

    Args:
      distances: ``[B, N, M]`` distances (or any increasing function of them) from each of an
        image's ``N`` input vectors to its ``M`` candidates.
      num_matches: how many of the ``N`` inputs to keep (those with the smallest distance to
        their nearest candidate), in ascending index order as the reference keeps them.

    Returns:
      ``(inputs [B, K], candidates [B, K])`` int32 indices, ``K = num_matches`` or ``N``.
    """
    distances = jax.lax.stop_gradient(distances)
    b, n, _ = distances.shape
    nearest = jnp.argmin(distances, axis=-1).astype(jnp.int32)  # [B, N]
    if num_matches is None or num_matches >= n:
        return jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n)), nearest
    best = jnp.min(distances, axis=-1)  # [B, N]
    _, chosen = jax.lax.top_k(-best, num_matches)  # the inputs with the closest matches
    chosen = jnp.sort(chosen, axis=-1).astype(jnp.int32)
    return chosen, jnp.take_along_axis(nearest, chosen, axis=-1)


def _square_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    """``[B, N, M]`` squared Euclidean distances between ``[B, N, C]`` and ``[B, M, C]`` rows
    (the same order as the reference's ``cdist``)."""
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    cross = jnp.einsum("bnc,bmc->bnm", a, b, precision=jax.lax.Precision.HIGHEST)
    return jnp.sum(a * a, -1)[..., :, None] + jnp.sum(b * b, -1)[..., None, :] - 2.0 * cross


def matched_vicreg_terms(
    x: jax.Array, y: jax.Array, eps: float = 1e-4
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The reference's ``_vicreg_loss`` of matched vectors ``x``, ``y`` ``[B, K, C]``:
    invariance (MSE over everything), variance (hinge on each (match, channel)'s std over the
    global batch, averaged, mean of x's and y's) and covariance (per match slot over the batch,
    squared off-diagonal entries summed over ``C``, averaged over the slots, mean of x's and
    y's), unweighted, float32."""
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    invariance = jnp.mean(jnp.square(x - y))

    def variance(z):
        return jnp.mean(jax.nn.relu(1.0 - jnp.sqrt(jnp.var(z, axis=0, ddof=1) + eps)))

    def covariance(z):
        n, _, c = z.shape
        centered = z - jnp.mean(z, axis=0)
        cov = jnp.einsum(
            "bkc,bkd->kcd", centered, centered, precision=jax.lax.Precision.HIGHEST
        ) / (n - 1)  # [K, C, C]
        off = jnp.sum(jnp.square(cov), axis=(1, 2)) - jnp.sum(
            jnp.square(jnp.diagonal(cov, axis1=1, axis2=2)), axis=-1
        )
        return jnp.mean(off / c)

    return (
        invariance,
        variance(x) / 2 + variance(y) / 2,
        covariance(x) / 2 + covariance(y) / 2,
    )


def vicregl_local_terms(
    maps_1: jax.Array,
    maps_2: jax.Array,
    locations_1: jax.Array,
    locations_2: jax.Array,
    num_matches: tuple[int, int],
    l2_all_matches: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The reference's ``_local_loss`` of one pair of views: unweighted ``(invariance,
    variance, covariance)``, each the sum of a feature-space and a location matching, each of
    those the mean of its two directions (`matched_vicreg_terms`).

    Feature space: every vector of one view's map against its nearest (L2) vector in the
    other's (``l2_all_matches``; else the ``num_matches`` best). Location: the
    ``num_matches[0]`` vectors of view 1 nearest in the image to a cell of view 2, and the
    ``num_matches[1]`` of view 2 nearest to one of view 1.

    Args:
      maps_1, maps_2: ``[B, N1, C]``, ``[B, N2, C]`` projected feature-map vectors.
      locations_1, locations_2: ``[B, N1, 2]``, ``[B, N2, 2]`` their cells' centres in the
        source image (`location_grid`).
      num_matches: ``(K1, K2)`` (reference: 20 and 4 of a 7x7 and a 3x3 map).
      l2_all_matches: match every vector in feature space (reference default).
    """

    def both_ways(distances, k_forward, k_backward):
        terms = []
        for src, dst, dist, k in (
            (maps_1, maps_2, distances, k_forward),
            (maps_2, maps_1, jnp.swapaxes(distances, 1, 2), k_backward),
        ):
            rows, cols = nearest_matches(dist, k)
            terms.append(
                matched_vicreg_terms(
                    jnp.take_along_axis(src, rows[..., None], axis=1),
                    jnp.take_along_axis(dst, cols[..., None], axis=1),
                )
            )
        return [(a + b) / 2 for a, b in zip(*terms, strict=True)]

    k_l2 = (None, None) if l2_all_matches else num_matches
    feature = both_ways(_square_distances(maps_1, maps_2), *k_l2)
    location = both_ways(_square_distances(locations_1, locations_2), *num_matches)
    return tuple(f + g for f, g in zip(feature, location, strict=True))


def vicregl_global_terms(z: jax.Array, eps: float = 1e-4) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The reference's ``global_loss`` of ``[B, V, P]`` embeddings, unweighted: invariance
    averaged over the pairs (each of the first two views with every other view), variance and
    covariance (as `vicreg_loss`'s per view) averaged over the views. With two views it is
    `vicreg_loss`'s terms, except that the covariance is the views' mean, not their sum."""
    z = z.astype(jnp.float32)
    v = z.shape[1]
    pairs = [(i, j) for i in range(min(2, v)) for j in range(v) if j != i]
    invariance = sum(jnp.mean(jnp.square(z[:, i] - z[:, j])) for i, j in pairs) / len(pairs)
    variance = sum(_variance_term(z[:, i], eps) for i in range(v)) / v
    covariance = sum(_covariance_term(z[:, i]) for i in range(v)) / v
    return invariance, variance, covariance
