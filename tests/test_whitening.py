"""W-MSE: whitening and the loss against numpy; the method through the train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import sharding, trainer
from jaxssl.configs import wmse_cifar10
from jaxssl.losses import whitening


def _np_whiten(z, eps=0.0):
    z = z.astype(np.float64)
    centred = z - z.mean(0)
    cov = centred.T @ centred / (len(z) - 1)
    cov = (1 - eps) * cov + eps * np.eye(z.shape[1])
    chol = np.linalg.cholesky(cov)
    return centred @ np.linalg.inv(chol).T


def _np_loss(z, permutations, w):
    b, v, d = z.shape
    total, pairs = 0.0, 0
    for permutation in permutations:
        white = np.empty_like(z, dtype=np.float64)
        for group in permutation.reshape(-1, w):
            for view in range(v):
                white[group, view] = _np_whiten(z[group, view])
        for i in range(v):
            for j in range(i + 1, v):
                a = white[:, i] / np.linalg.norm(white[:, i], axis=1, keepdims=True)
                c = white[:, j] / np.linalg.norm(white[:, j], axis=1, keepdims=True)
                total += np.mean(2 - 2 * np.sum(a * c, axis=1))
                pairs += 1
    return total / pairs


def test_whiten_matches_numpy_and_has_identity_covariance():
    z = np.random.default_rng(0).normal(size=(64, 8)) @ np.random.default_rng(1).normal(size=(8, 8))
    white = np.asarray(whitening.whiten(jnp.asarray(z, jnp.float32)))
    np.testing.assert_allclose(white, _np_whiten(z), atol=2e-3)
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(8), atol=1e-3)
    np.testing.assert_allclose(
        whitening.whiten(jnp.asarray(z, jnp.float32), eps=0.1), _np_whiten(z, 0.1), atol=2e-3
    )


def test_w_mse_loss_matches_numpy_and_invariances():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(48, 3, 6)).astype(np.float32)
    permutations = np.stack([rng.permutation(48) for _ in range(2)])
    loss = float(whitening.w_mse_loss(jnp.asarray(z), jnp.asarray(permutations), 16))
    np.testing.assert_allclose(loss, _np_loss(z, permutations, 16), rtol=1e-4)
    # Whitening removes per-view shifts and scales.
    shifted = z * np.array([1.0, 3.0, 0.5], np.float32)[None, :, None] + 2.0
    shifted_loss = whitening.w_mse_loss(jnp.asarray(shifted), jnp.asarray(permutations), 16)
    np.testing.assert_allclose(float(shifted_loss), loss, rtol=1e-4)
    # Identical views: zero loss.
    same = np.repeat(z[:, :1], 2, axis=1)
    np.testing.assert_allclose(
        float(whitening.w_mse_loss(jnp.asarray(same), jnp.asarray(permutations), 16)),
        0.0,
        atol=1e-5,
    )
    grads = jax.grad(lambda x: whitening.w_mse_loss(x, jnp.asarray(permutations), 16))(z)
    assert np.isfinite(grads).all()
    with pytest.raises(ValueError, match="multiple of w_size"):
        whitening.w_mse_loss(jnp.asarray(z), jnp.asarray(permutations), 20)


def test_wmse_trains():
    config = wmse_cifar10.get_config("smoke")
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = run.init_state()
    rng = np.random.default_rng(0)
    b = config.train.batch_size
    batch = {
        "global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32),
        "label": np.zeros(b, np.int32),
        "index": np.arange(b, dtype=np.int32),
    }
    for _ in range(2):
        state, metrics = run.train_step(state, sharding.to_global(batch, mesh))
        assert np.isfinite(float(metrics["train/loss"]))
