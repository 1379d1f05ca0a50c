"""Barlow Twins and VICReg: losses against numpy, invariants, gradients, train steps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import sharding
from jaxssl.configs import barlow_twins_cifar10, vicreg_cifar10
from jaxssl.losses import redundancy
from tests import helpers

# --- Independent float64 references (other formulas than the library's where possible) ---


def _np_barlow_twins(z1, z2, lambd=0.0051, eps=1e-5):
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    n = z1.shape[0]
    z1n = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + eps)  # np.var: biased, like BatchNorm
    z2n = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + eps)
    c = z1n.T @ z2n / n
    on_diagonal = np.sum((np.diag(c) - 1.0) ** 2)
    off_diagonal = np.sum(c**2) - np.sum(np.diag(c) ** 2)
    return on_diagonal + lambd * off_diagonal, on_diagonal, off_diagonal


def _np_vicreg(z1, z2, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4):
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    d = z1.shape[1]
    invariance = np.mean((z1 - z2) ** 2)
    variance = sum(
        np.mean(np.maximum(0.0, 1.0 - np.sqrt(z.var(0, ddof=1) + eps))) / 2 for z in (z1, z2)
    )
    covariance = 0.0
    for z in (z1, z2):
        cov = np.cov(z, rowvar=False)  # unbiased
        covariance += (np.sum(cov**2) - np.sum(np.diag(cov) ** 2)) / d
    loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
    return loss, invariance, variance, covariance


def _random(shape, seed, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _whitened(n, d, seed):
    """``[n, d]`` with zero column means, biased variance 1, zero cross-correlation (n > d)."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    q, _ = np.linalg.qr(x - x.mean(0))  # columns orthonormal and orthogonal to ones
    return (np.sqrt(n) * q).astype(np.float32)


_barlow = jax.jit(redundancy.barlow_twins_loss, static_argnums=(2, 3))
_barlow_terms = jax.jit(redundancy.barlow_twins_terms)
_vicreg = jax.jit(redundancy.vicreg_loss, static_argnums=(2, 3, 4, 5))

# --- Barlow Twins ---


@pytest.mark.parametrize("shape", [(64, 16), (24, 40)], ids=["n>d", "n<d"])
def test_barlow_twins_matches_numpy(shape):
    z1, z2 = _random(shape, 0, 3.0) + 1.0, _random(shape, 1, 0.5)
    expected, on_diagonal, off_diagonal = _np_barlow_twins(z1, z2)
    np.testing.assert_allclose(_barlow(z1, z2, 0.0051, 1e-5), expected, rtol=1e-5)
    terms = _barlow_terms(z1, z2)
    np.testing.assert_allclose(terms["on_diagonal"], on_diagonal, rtol=1e-5)
    np.testing.assert_allclose(terms["off_diagonal"], off_diagonal, rtol=1e-5)
    # Other lambda / eps go through.
    np.testing.assert_allclose(
        _barlow(z1, z2, 0.1, 1e-3), _np_barlow_twins(z1, z2, 0.1, 1e-3)[0], rtol=1e-5
    )
    # Cross-correlation entries are correlations: within [-1, 1].
    c = jax.jit(redundancy.cross_correlation)(z1, z2)
    assert np.abs(np.asarray(c)).max() <= 1.0 + 1e-5


def test_barlow_twins_identical_views():
    # Whitened, identical views: C = I / (1 + eps), so both terms vanish.
    z = _whitened(64, 16, 0)
    terms = _barlow_terms(z, z)
    np.testing.assert_allclose(terms["on_diagonal"], 0.0, atol=1e-6)
    np.testing.assert_allclose(terms["off_diagonal"], 0.0, atol=1e-6)
    np.testing.assert_allclose(_barlow(z, z, 0.0051, 1e-5), 0.0, atol=1e-6)
    # Identical but correlated views: the on-diagonal term is still 0 (each dimension is
    # perfectly correlated with itself), all the loss is redundancy.
    z = _random((64, 16), 1) @ _random((16, 16), 2)
    terms = _barlow_terms(z, z)
    np.testing.assert_allclose(terms["on_diagonal"], 0.0, atol=1e-6)
    assert terms["off_diagonal"] > 0.1
    np.testing.assert_allclose(_barlow(z, z, 0.5, 1e-5), 0.5 * terms["off_diagonal"], rtol=1e-5)
    # Opposite views are maximally wrong on the diagonal: (1 - (-1))^2 per dimension.
    np.testing.assert_allclose(_barlow_terms(z, -z)["on_diagonal"], 4.0 * 16, rtol=1e-4)


def test_barlow_twins_invariances():
    z1, z2 = _random((32, 8), 0), _random((32, 8), 1)
    loss = _barlow(z1, z2, 0.0051, 1e-5)
    # Symmetric in the views (C -> C^T).
    np.testing.assert_allclose(_barlow(z2, z1, 0.0051, 1e-5), loss, rtol=1e-6)
    # The same permutation of both views' rows (the batch is a set).
    perm = np.random.default_rng(2).permutation(32)
    np.testing.assert_allclose(_barlow(z1[perm], z2[perm], 0.0051, 1e-5), loss, rtol=1e-5)
    # Per-dimension positive scale and shift of a view (the standardization removes them).
    scale, shift = np.exp(_random((8,), 3)), _random((8,), 4, 5.0)
    np.testing.assert_allclose(
        _barlow(z1 * scale + shift, z2, 0.0051, 1e-5), loss, rtol=1e-4, atol=1e-5
    )


# --- VICReg ---


@pytest.mark.parametrize("shape", [(64, 16), (24, 40)], ids=["n>d", "n<d"])
def test_vicreg_matches_numpy(shape):
    # Scale 0.5: some dimensions' std below 1, so the variance hinge is active.
    z1, z2 = _random(shape, 0, 0.5) + 2.0, _random(shape, 1, 1.5)
    loss, terms = _vicreg(z1, z2, 25.0, 25.0, 1.0, 1e-4)
    expected, invariance, variance, covariance = _np_vicreg(z1, z2)
    assert variance > 0.1
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(terms["invariance"], invariance, rtol=1e-5)
    np.testing.assert_allclose(terms["variance"], variance, rtol=1e-5)
    np.testing.assert_allclose(terms["covariance"], covariance, rtol=1e-5)
    np.testing.assert_allclose(
        _vicreg(z1, z2, 1.0, 2.0, 3.0, 1e-2)[0],
        _np_vicreg(z1, z2, 1.0, 2.0, 3.0, 1e-2)[0],
        rtol=1e-5,
    )


def test_vicreg_terms_vanish_where_they_should():
    # Identical views: no invariance loss.
    z = _random((32, 8), 0, 0.3)
    _, terms = _vicreg(z, z, 25.0, 25.0, 1.0, 1e-4)
    np.testing.assert_allclose(terms["invariance"], 0.0, atol=0.0)
    assert terms["variance"] > 0.1  # std ~0.3 < 1
    # Every per-dimension std >= 1: no variance loss (the hinge is flat there).
    z1, z2 = _random((64, 16), 1, 3.0), _random((64, 16), 2, 3.0)
    _, terms = _vicreg(z1, z2, 25.0, 25.0, 1.0, 1e-4)
    np.testing.assert_array_equal(terms["variance"], 0.0)
    # Identical, decorrelated views with std 2: the whole loss is 0.
    z = 2.0 * _whitened(64, 16, 3)
    loss, terms = _vicreg(z, z, 25.0, 25.0, 1.0, 1e-4)
    np.testing.assert_allclose(terms["covariance"], 0.0, atol=1e-8)
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)
    # Fully collapsed views: variance term 1 - sqrt(eps) (both views), nothing else.
    z = np.ones((16, 8), np.float32)
    loss, terms = _vicreg(z, z, 25.0, 25.0, 1.0, 1e-4)
    np.testing.assert_allclose(terms["variance"], 1.0 - 1e-2, rtol=1e-6)
    np.testing.assert_allclose(loss, 25.0 * (1.0 - 1e-2), rtol=1e-6)


def test_vicreg_invariances():
    z1, z2 = _random((32, 8), 0), _random((32, 8), 1)
    loss, _ = _vicreg(z1, z2, 25.0, 25.0, 1.0, 1e-4)
    np.testing.assert_allclose(_vicreg(z2, z1, 25.0, 25.0, 1.0, 1e-4)[0], loss, rtol=1e-6)
    perm = np.random.default_rng(2).permutation(32)
    np.testing.assert_allclose(
        _vicreg(z1[perm], z2[perm], 25.0, 25.0, 1.0, 1e-4)[0], loss, rtol=1e-5
    )
    # A shift shared by both views changes nothing (so the expander's last bias learns nothing).
    shift = _random((8,), 3, 5.0)
    np.testing.assert_allclose(
        _vicreg(z1 + shift, z2 + shift, 25.0, 25.0, 1.0, 1e-4)[0], loss, rtol=1e-4
    )


# --- Both ---


def _losses():
    return {
        "barlow_twins": lambda z1, z2: redundancy.barlow_twins_loss(z1, z2),
        "vicreg": lambda z1, z2: redundancy.vicreg_loss(z1, z2)[0],
    }


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg"])
def test_gradients_finite_even_when_collapsed(name):
    loss = _losses()[name]
    for z1, z2 in [
        (_random((16, 8), 0), _random((16, 8), 1)),
        (np.ones((16, 8), np.float32), np.ones((16, 8), np.float32)),  # collapsed
    ]:
        grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(z1, z2)
        chex.assert_tree_all_finite(grads)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(_random((16, 8), 0), _random((16, 8), 1))
    assert max(float(np.abs(g).max()) for g in grads) > 1e-4


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg"])
def test_float32_for_bfloat16_inputs(name):
    z1, z2 = _random((32, 8), 0), _random((32, 8), 1)
    loss = jax.jit(_losses()[name])
    low = loss(jnp.bfloat16(z1), jnp.bfloat16(z2))
    assert low.dtype == jnp.float32
    # Same value as float32 on the bfloat16-rounded inputs: nothing else is rounded.
    rounded = [np.asarray(jnp.bfloat16(z), np.float32) for z in (z1, z2)]
    np.testing.assert_allclose(low, loss(*rounded), rtol=1e-6)


def test_batch_of_one_is_an_error():
    z = np.ones((1, 8), np.float32)
    with pytest.raises(ValueError, match="at least 2 rows"):
        redundancy.vicreg_loss(z, z)


# --- Train steps through jaxssl.trainer ---


def _build(module):
    return helpers.smoke_run(module.get_config("smoke"))


def _batch(config, mesh, seed=0):
    rng = np.random.default_rng(seed)
    b = config.train.batch_size
    host_batch = {
        "global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
        "index": np.arange(b, dtype=np.int32),
    }
    return sharding.to_global(host_batch, mesh)


def _loss_from_terms(config, metrics):
    """The logged loss, rebuilt from the logged terms and the config's weights."""
    method = config.method
    if method.name == "barlow_twins":
        return method.loss_scale * (
            metrics["train/barlow_on_diagonal"]
            + method.lambd * metrics["train/barlow_off_diagonal"]
        )
    return (
        method.sim_coeff * metrics["train/vicreg_invariance"]
        + method.std_coeff * metrics["train/vicreg_variance"]
        + method.cov_coeff * metrics["train/vicreg_covariance"]
    )


@pytest.mark.slow  # ~60 s of train steps (both); the losses are checked in the default lane
@pytest.mark.parametrize(
    "module", [barlow_twins_cifar10, vicreg_cifar10], ids=["barlow_twins", "vicreg"]
)
def test_smoke_train_steps_stay_finite(module):
    config, mesh, run, state = _build(module)
    for seed in range(2):
        state, metrics = run.train_step(state, _batch(config, mesh, seed))
        metrics = jax.device_get(metrics)
        assert not metrics["train/nonfinite"]
        assert np.isfinite(metrics["train/loss"])
        np.testing.assert_allclose(
            metrics["train/loss"], _loss_from_terms(config, metrics), rtol=1e-5
        )
    chex.assert_tree_all_finite(jax.device_get(state.params))
    assert int(state.nonfinite_steps) == 0
