"""Label-free diagnostics of embeddings: RankMe, alignment, uniformity, spectrum, collapse.

Pure functions of embedding matrices, computed in float32; callers choose which rows (padding
rows must be dropped or zeroed first, see each function). The evaluators `run` (all of them)
and `run_rankme` (RankMe of the backbone alone, which training logs beside kNN) apply them to
extracted features.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.evals import features
from jaxssl.losses import normalize


def first_real_rows(mask: jax.Array, n: int) -> jax.Array:
    """Indices of the first ``n`` rows where ``mask`` is True (padding rows sort last)."""
    return jnp.argsort(~mask, stable=True)[:n]


@jax.jit
def rankme(embeddings: jax.Array, eps: float = 1e-7) -> jax.Array:
    """RankMe: the effective rank of an embedding matrix.

    ``RankMe(Z) = exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / ||sigma||_1 + eps`` and
    ``sigma`` the singular values of ``Z`` (not centred, as in the paper). It lies in
    ``[1, min(N, D)]``; a rank-r matrix with r equal singular values gives r. Rows of zeros
    (e.g. zeroed padding) do not change the singular values.

    Args:
      embeddings: ``[N, D]``; the paper uses N = 25,600.
      eps: the paper's ``epsilon = 1e-7``.

    Returns:
      The scalar effective rank.

    References:
      Garrido, Balestriero, Najman, LeCun, RankMe: Assessing the Downstream Performance of
      Pretrained Self-Supervised Representations by Their Rank, ICML 2023, Eq. 1.
      https://arxiv.org/abs/2210.02885
    """
    singular_values = jnp.linalg.svd(embeddings.astype(jnp.float32), compute_uv=False)
    p = singular_values / jnp.maximum(jnp.sum(jnp.abs(singular_values)), 1e-30) + eps
    return jnp.exp(-jnp.sum(p * jnp.log(p)))


@jax.jit
def alignment(x: jax.Array, y: jax.Array, alpha: float = 2.0) -> jax.Array:
    """Alignment of positive pairs: ``E ||f(x) - f(y)||_2^alpha`` on L2-normalized embeddings.

    Lower is better (positives map close together); in ``[0, 2^alpha]``.

    Args:
      x: ``[N, D]`` embeddings of the first views (normalized here).
      y: ``[N, D]`` embeddings of their positives, row for row.
      alpha: the exponent; the paper uses 2.

    Returns:
      The scalar mean over the N pairs.

    References:
      Wang, Isola, Understanding Contrastive Representation Learning through Alignment and
      Uniformity on the Hypersphere, ICML 2020, Eq. 4. https://arxiv.org/abs/2005.10242
    """
    x = normalize.l2_normalize(x)
    y = normalize.l2_normalize(y)
    return jnp.mean(jnp.sum(jnp.square(x - y), axis=-1) ** (alpha / 2))


@jax.jit
def uniformity(x: jax.Array, t: float = 2.0) -> jax.Array:
    """Uniformity: ``log E_{i != j} exp(-t ||f(x_i) - f(x_j)||_2^2)`` on L2-normalized embeddings.

    Lower is better (embeddings spread over the sphere). It is 0 when all embeddings coincide
    and, by Jensen's inequality with ``E ||u - v||^2 <= 2`` on the sphere, at least about
    ``-2t`` (approached by the uniform distribution in high dimension). Computed in log space
    from the ``[N, N]`` Gram matrix (``||u - v||^2 = 2 - 2 u.v``), so keep ``N`` to a few
    thousand.

    Args:
      x: ``[N, D]`` embeddings (normalized here).
      t: the temperature; the paper uses 2.

    Returns:
      The scalar log mean over all ``N (N - 1)`` ordered pairs ``i != j``.

    References:
      Wang, Isola, Understanding Contrastive Representation Learning through Alignment and
      Uniformity on the Hypersphere, ICML 2020, Eq. 5. https://arxiv.org/abs/2005.10242
    """
    x = normalize.l2_normalize(x)
    n = x.shape[0]
    squared_distances = jnp.maximum(2.0 - 2.0 * x @ x.T, 0.0)  # [N, N]
    off_diagonal = ~jnp.eye(n, dtype=bool)
    log_kernel = jnp.where(off_diagonal, -t * squared_distances, -jnp.inf)
    return jax.nn.logsumexp(log_kernel) - jnp.log(n * (n - 1.0))


@jax.jit
def covariance_spectrum(embeddings: jax.Array) -> jax.Array:
    """Eigenvalues of the embedding covariance, largest first.

    ``C = (Z - mean)^T (Z - mean) / (N - 1)``; a collapsed dimension shows as an eigenvalue
    orders of magnitude below the rest (Jing et al. 2022 plot their log, sorted).

    Args:
      embeddings: ``[N, D]`` (all rows real: padding rows would shift the mean).

    Returns:
      ``[D]`` eigenvalues, sorted descending, clipped at 0.

    References:
      Jing, Vincent, LeCun, Tian, Understanding Dimensional Collapse in Contrastive
      Self-supervised Learning, ICLR 2022, Fig. 2. https://arxiv.org/abs/2110.09348
    """
    z = embeddings.astype(jnp.float32)
    z = z - jnp.mean(z, axis=0)
    covariance = z.T @ z / jnp.maximum(z.shape[0] - 1, 1)  # [D, D]
    return jnp.maximum(jnp.linalg.eigvalsh(covariance)[::-1], 0.0)


@jax.jit
def collapse_indicator(embeddings: jax.Array) -> jax.Array:
    """``sqrt(D)`` times the mean over dimensions of the std of L2-normalized embeddings.

    Isotropic embeddings on the unit sphere have a per-dimension std of about ``1/sqrt(D)``,
    so the indicator is about 1 when healthy and 0 when every embedding is the same vector.

    Args:
      embeddings: ``[N, D]``.

    Returns:
      The scalar indicator.

    References:
      Chen & He, Exploring Simple Siamese Representation Learning, CVPR 2021, Sec. 4.1
      (Fig. 2, middle). https://arxiv.org/abs/2011.10566
    """
    z = normalize.l2_normalize(embeddings.astype(jnp.float32))
    return jnp.mean(jnp.std(z, axis=0)) * math.sqrt(z.shape[-1])


def _host(x: jax.Array) -> np.ndarray:
    return np.asarray(jax.device_get(x))


def run(context: features.Context) -> features.Result:
    """RankMe, covariance spectrum, alignment and uniformity of backbone and projector outputs.

    Args:
      context: the extracted features; alignment embeds ``evals.spectral.num_pairs`` pairs of
        augmented train views here.

    Returns:
      ``rankme/<name>``, ``uniformity/<name>`` and ``alignment/<name>`` metrics for ``name``
      in backbone, projector; details ``{"covariance_eigenvalues": {name: [D]}}``.
    """
    config = context.config.evals.spectral
    num_embeddings = min(config.num_embeddings, context.num_real(context.train))
    train_rows = first_real_rows(context.train.mask, num_embeddings)
    num_uniformity = min(config.num_uniformity, context.num_real(context.test))
    test_rows = first_real_rows(context.test.mask, num_uniformity)
    pairs = features.view_pairs(context, config.num_pairs) if config.num_pairs else {}
    metrics, eigenvalues = {}, {}
    for name, split_features in context.train.features.items():
        embeddings = split_features[train_rows]  # [N, D]
        metrics[f"rankme/{name}"] = float(_host(rankme(embeddings)))
        eigenvalues[name] = _host(covariance_spectrum(embeddings)).tolist()
        metrics[f"uniformity/{name}"] = float(
            _host(uniformity(context.test.features[name][test_rows]))
        )
        if name in pairs:
            metrics[f"alignment/{name}"] = float(_host(alignment(*pairs[name])))
    data = context.config.data
    protocol = (
        f"RankMe (eps=1e-7) and covariance spectrum on the first {num_embeddings} "
        f"{data.eval_train_split} embeddings; alignment (alpha=2) on {config.num_pairs} pairs "
        f"of augmented {data.train_split} views; uniformity (t=2) on the first "
        f"{num_uniformity} {data.eval_test_split} embeddings; L2-normalized for alignment and "
        "uniformity; inference-mode BatchNorm"
    )
    return features.Result(metrics, protocol, {"covariance_eigenvalues": eigenvalues})


def run_rankme(context: features.Context) -> features.Result:
    """RankMe of the backbone features of the first ``evals.spectral.num_embeddings`` train rows.

    Args:
      context: the extracted features.

    Returns:
      ``{"rankme/backbone"}`` and the protocol.
    """
    num_embeddings = min(
        context.config.evals.spectral.num_embeddings, context.num_real(context.train)
    )
    rows = first_real_rows(context.train.mask, num_embeddings)
    value = float(_host(rankme(context.train.features["backbone"][rows])))
    protocol = (
        f"RankMe (eps=1e-7) of backbone features on the first {num_embeddings} "
        f"{context.config.data.eval_train_split} embeddings; inference-mode BatchNorm"
    )
    return features.Result({"rankme/backbone": value}, protocol, {})
