"""Gaussianity of embeddings: the Epps-Pulley statistic and its sliced form (LeJEPA's SIGReg).

SIGReg pushes the distribution of a batch of embeddings towards an isotropic standard
Gaussian: it projects the embeddings on random unit directions and, along each, compares the
empirical characteristic function with the Gaussian's ``exp(-t^2 / 2)`` (the Epps-Pulley
test). The means over the batch are over the **global** batch, as the reference's all-reduce
makes them. Everything is computed in float32 whatever the input dtype.
"""

import chex
import jax
import jax.numpy as jnp


def _knots(t_max: float, num_knots: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Knots ``t`` on ``[0, t_max]``, the Gaussian's characteristic function there, and the
    trapezoid weights of ``[-t_max, t_max]`` folded onto ``t >= 0`` times the Gaussian window."""
    # t_max may be traced (a swept hyper-parameter): only a Python number is checked.
    if num_knots < 2 or (isinstance(t_max, int | float) and t_max <= 0):
        raise ValueError(f"Need num_knots >= 2 and t_max > 0, got {num_knots} and {t_max}.")
    t = jnp.linspace(0.0, t_max, num_knots, dtype=jnp.float32)  # [T]
    dt = t_max / (num_knots - 1)
    # The integrand is even in t (the empirical characteristic function of real samples at -t
    # is the conjugate of that at t), so the integral over [-t_max, t_max] is twice the one
    # over [0, t_max]: trapezoid weights dt/2 at the ends and dt inside, doubled.
    weights = jnp.full((num_knots,), 2.0 * dt, jnp.float32).at[jnp.array([0, -1])].set(dt)
    gaussian = jnp.exp(-0.5 * jnp.square(t))  # [T]
    return t, gaussian, weights * gaussian


def epps_pulley(x: jax.Array, t_max: float = 3.0, num_knots: int = 17) -> jax.Array:
    r"""The Epps-Pulley statistic of each column of ``x`` against a standard Gaussian.

    .. math::
      EP(x) = N \int_{-t_{max}}^{t_{max}}
        \left| \frac{1}{N} \sum_{n=1}^{N} e^{i t x_n} - e^{-t^2/2} \right|^2 e^{-t^2/2} \, dt,

    by the trapezoid rule on ``num_knots`` knots of ``[0, t_max]`` (the integrand is even, so
    the half-range is integrated and doubled), as the LeJEPA reference does (rbalestr-lab/lejepa
    ``lejepa/univariate/epps_pulley.py`` and MINIMAL.md: ``t_max=3``, 17 knots; the paper's
    listing integrates ``[-5, 5]`` on 17 knots). The factor ``N`` (the global batch) makes it a
    test statistic whose expectation under the Gaussian does not grow with ``N``.

    Args:
      x: samples ``[N, S]``, one univariate sample per column.
      t_max: the integration range ``[-t_max, t_max]``.
      num_knots: knots on ``[0, t_max]``.

    Returns:
      ``[S]``, float32: 0 only when the empirical characteristic function matches the
      Gaussian's at every knot; larger the further the sample is from ``N(0, 1)``.

    References:
      Epps & Pulley, A test for normality based on the empirical characteristic function,
      Biometrika 1983. Balestriero & LeCun, LeJEPA: Provable and Scalable Self-Supervised
      Learning Without the Heuristics, 2025, Sec. 4. https://arxiv.org/abs/2511.08544
    """
    chex.assert_rank(x, 2)
    n = x.shape[0]
    t, gaussian, weights = _knots(t_max, num_knots)
    xt = x.astype(jnp.float32)[:, :, None] * t  # [N, S, T]
    real = jnp.mean(jnp.cos(xt), axis=0)  # [S, T]
    imaginary = jnp.mean(jnp.sin(xt), axis=0)  # [S, T]
    error = jnp.square(real - gaussian) + jnp.square(imaginary)  # [S, T]
    return n * (error @ weights)  # [S]


def random_directions(key: jax.Array, dim: int, num_slices: int) -> jax.Array:
    """``num_slices`` directions uniform on the unit sphere of ``R^dim``, as columns
    ``[dim, num_slices]`` (normalized Gaussian draws)."""
    directions = jax.random.normal(key, (dim, num_slices), jnp.float32)
    return directions / jnp.linalg.norm(directions, axis=0, keepdims=True)


def sliced_epps_pulley(
    z: jax.Array,
    key: jax.Array,
    num_slices: int = 256,
    t_max: float = 3.0,
    num_knots: int = 17,
) -> jax.Array:
    r"""SIGReg: the Epps-Pulley statistic of ``z`` along random directions, averaged.

    .. math::
      \mathrm{SIGReg}(z) = \frac{1}{S} \sum_{s=1}^{S} EP(z a_s), \qquad
      a_s \sim \mathrm{Uniform}(\mathbb{S}^{D-1}),

    with ``S = num_slices`` directions drawn from ``key`` (LeJEPA redraws them every step; the
    caller passes the step's key, so every device and every view of a step share them). An
    isotropic standard Gaussian ``z`` gives a small value that does not grow with the batch; a
    collapsed one (every row equal) gives a value that grows linearly with it.

    Args:
      z: embeddings ``[N, D]`` of the global batch, any float dtype.
      key: the key of the directions.
      num_slices: the number of directions (reference: 256).
      t_max: see `epps_pulley`.
      num_knots: see `epps_pulley`.

    Returns:
      The scalar statistic, float32.

    References:
      Balestriero & LeCun, LeJEPA, 2025, Sec. 4 and the SIGReg listing.
      https://arxiv.org/abs/2511.08544
    """
    chex.assert_rank(z, 2)
    directions = random_directions(key, z.shape[1], num_slices)  # [D, S]
    projected = z.astype(jnp.float32) @ directions  # [N, S]
    return jnp.mean(epps_pulley(projected, t_max, num_knots))


def mean_view_prediction(global_views: jax.Array, all_views: jax.Array) -> jax.Array:
    r"""LeJEPA's prediction loss: every view's embedding against the mean of the global views'.

    .. math::
      \mathcal{L}_{pred} = \frac{1}{N V D} \sum_{n, v, d} (\bar z_{n d} - z_{n v d})^2, \qquad
      \bar z_n = \frac{1}{G} \sum_{g=1}^{G} z^{global}_{n g},

    with gradients through the mean as well (no stop-gradient, as in the reference). For two
    views and no local ones this is a quarter of the mean squared error between them.

    Args:
      global_views: ``[N, G, D]``, the embeddings of the global views.
      all_views: ``[N, V, D]``, the embeddings of every view (global ones included).

    Returns:
      The scalar loss, float32.
    """
    chex.assert_rank((global_views, all_views), 3)
    center = jnp.mean(global_views.astype(jnp.float32), axis=1, keepdims=True)  # [N, 1, D]
    return jnp.mean(jnp.square(center - all_views.astype(jnp.float32)))
