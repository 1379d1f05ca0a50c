"""Regression losses (BYOL, SimSiam) against numpy, and their stop-gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.losses import regression


def _np_cosine(p, z):
    p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
    return np.sum(p * z, -1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(z, axis=-1))


def _random(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_normalized_mse_matches_numpy():
    p, z = _random((16, 8), 0), _random((16, 8), 1)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    expected = np.mean(np.sum((unit(p.astype(np.float64)) - unit(z.astype(np.float64))) ** 2, -1))
    np.testing.assert_allclose(jax.jit(regression.normalized_mse)(p, z), expected, rtol=1e-5)
    np.testing.assert_allclose(expected, np.mean(2 - 2 * _np_cosine(p, z)), rtol=1e-10)
    # 0 for identical directions, whatever the scale; float32 for bfloat16 inputs.
    np.testing.assert_allclose(jax.jit(regression.normalized_mse)(p, 3.0 * p), 0.0, atol=1e-6)
    bf16 = jax.jit(regression.normalized_mse)(jnp.bfloat16(p), jnp.bfloat16(z))
    assert bf16.dtype == jnp.float32


def test_symmetric_losses_match_numpy():
    p1, p2, z1, z2 = (_random((16, 8), seed) for seed in range(4))
    byol_expected = np.mean(2 - 2 * _np_cosine(p1, z2)) + np.mean(2 - 2 * _np_cosine(p2, z1))
    simsiam_expected = -0.5 * np.mean(_np_cosine(p1, z2)) - 0.5 * np.mean(_np_cosine(p2, z1))
    byol_loss = jax.jit(regression.symmetric_normalized_mse)(p1, p2, z1, z2)
    simsiam_loss = jax.jit(regression.symmetric_negative_cosine)(p1, p2, z1, z2)
    np.testing.assert_allclose(byol_loss, byol_expected, rtol=1e-5)
    np.testing.assert_allclose(simsiam_loss, simsiam_expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        jax.jit(regression.negative_cosine)(p1, z2), -np.mean(_np_cosine(p1, z2)), rtol=1e-5
    )


def test_negative_cosine_stops_the_gradient_of_z():
    p, z = _random((16, 8), 0), _random((16, 8), 1)
    grad_p, grad_z = jax.jit(jax.grad(regression.negative_cosine, argnums=(0, 1)))(p, z)
    assert np.abs(grad_p).max() > 1e-4
    np.testing.assert_array_equal(grad_z, 0.0)
    p1, p2, z1, z2 = (_random((16, 8), seed) for seed in range(4))
    grads = jax.grad(regression.symmetric_negative_cosine, argnums=(2, 3))(p1, p2, z1, z2)
    for g in grads:
        np.testing.assert_array_equal(g, 0.0)
