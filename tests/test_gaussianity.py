"""SIGReg's pieces: the Epps-Pulley statistic, its sliced form, LeJEPA's prediction loss."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import sharding
from jaxssl.losses import gaussianity

_epps_pulley = jax.jit(gaussianity.epps_pulley, static_argnums=(1, 2))
_sliced = jax.jit(gaussianity.sliced_epps_pulley, static_argnums=(2, 3, 4))

# E[EP] for a standard Gaussian sample of any size N: N E|ecf(t) - phi(t)|^2 = 1 - exp(-t^2),
# so the statistic's mean is the integral of (1 - exp(-t^2)) exp(-t^2 / 2) over [-3, 3],
# sqrt(2 pi) - sqrt(2 pi / 3) up to the tails beyond 3.
GAUSSIAN_MEAN = np.sqrt(2 * np.pi) - np.sqrt(2 * np.pi / 3)


def _np_epps_pulley(x, t_max=3.0, num_knots=17):
    """The statistic with complex exponentials on the symmetric grid of [-t_max, t_max]."""
    x = np.asarray(x, np.float64)
    t = np.linspace(-t_max, t_max, 2 * num_knots - 1)  # the same spacing, mirrored
    ecf = np.mean(np.exp(1j * x[:, :, None] * t), axis=0)  # [S, T]
    gaussian = np.exp(-(t**2) / 2)
    return x.shape[0] * np.trapezoid(np.abs(ecf - gaussian) ** 2 * gaussian, t, axis=-1)


@pytest.mark.parametrize("t_max,num_knots", [(3.0, 17), (5.0, 9)])
def test_epps_pulley_matches_numpy(t_max, num_knots):
    x = np.random.default_rng(0).normal(0.3, 1.4, size=(96, 5)).astype(np.float32)
    np.testing.assert_allclose(
        _epps_pulley(x, t_max, num_knots), _np_epps_pulley(x, t_max, num_knots), rtol=1e-4
    )


def test_sliced_statistic_is_the_mean_over_the_key_s_directions():
    z = np.random.default_rng(1).normal(size=(64, 12)).astype(np.float32)
    key = jax.random.key(3)
    directions = np.asarray(gaussianity.random_directions(key, 12, 32), np.float64)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1.0, rtol=1e-5)
    expected = _np_epps_pulley(z @ directions).mean()
    np.testing.assert_allclose(_sliced(z, key, 32, 3.0, 17), expected, rtol=1e-4)
    # Another key, other directions: another value; the same key, the same value.
    assert float(_sliced(z, jax.random.key(4), 32, 3.0, 17)) != pytest.approx(float(expected))
    assert float(_sliced(z, key, 32, 3.0, 17)) == float(_sliced(z, key, 32, 3.0, 17))


@pytest.mark.parametrize("n", [256, 4096])
def test_a_gaussian_sample_scores_its_expectation_whatever_its_size(n):
    z = np.random.default_rng(n).normal(size=(n, 32)).astype(np.float32)
    value = float(_sliced(z, jax.random.key(0), 256, 3.0, 17))
    assert value == pytest.approx(GAUSSIAN_MEAN, rel=0.3), value


def test_collapse_and_wrong_scale_score_far_worse_and_collapse_grows_with_the_batch():
    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    gaussian = float(_sliced(rng.normal(size=(512, 16)).astype(np.float32), key, 256, 3.0, 17))
    narrow = float(_sliced(0.2 * rng.normal(size=(512, 16)).astype(np.float32), key, 256, 3.0, 17))
    row = rng.normal(size=(1, 16)).astype(np.float32)
    collapsed = [float(_sliced(np.tile(row, (n, 1)), key, 256)) for n in (256, 512)]
    assert narrow > 20 * gaussian and collapsed[0] > 20 * gaussian
    np.testing.assert_allclose(collapsed[1], 2 * collapsed[0], rtol=0.05)


def test_gradients_are_finite_even_when_collapsed():
    z = jnp.ones((32, 8), jnp.bfloat16)
    value, grad = jax.jit(jax.value_and_grad(gaussianity.sliced_epps_pulley), static_argnums=2)(
        z, jax.random.key(0), 16
    )
    assert value.dtype == jnp.float32 and np.isfinite(value)
    assert np.all(np.isfinite(np.asarray(grad, np.float32)))


def test_the_statistic_is_over_the_global_batch():
    z = np.random.default_rng(2).normal(size=(64, 16)).astype(np.float32)
    mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=8, fsdp=1)))
    sharded = sharding.to_global({"z": z}, mesh)["z"]
    assert len(sharded.sharding.device_set) == 8
    key = jax.random.key(1)
    np.testing.assert_allclose(
        _sliced(sharded, key, 64, 3.0, 17), _sliced(z, key, 64, 3.0, 17), rtol=1e-5
    )


def test_mean_view_prediction_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(16, 6, 8)).astype(np.float32)  # 2 global views, then 4 local ones
    center = z[:, :2].astype(np.float64).mean(1, keepdims=True)
    expected = np.mean((center - z) ** 2)
    predict = jax.jit(gaussianity.mean_view_prediction)
    np.testing.assert_allclose(predict(z[:, :2], z), expected, rtol=1e-5)
    # Two views alone: a quarter of their mean squared error.
    np.testing.assert_allclose(
        predict(z[:, :2], z[:, :2]), np.mean((z[:, 0] - z[:, 1]) ** 2) / 4, rtol=1e-5
    )
