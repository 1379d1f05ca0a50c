"""EMP-SSL: total coding rate and the patch loss against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import coding_rate


def _np_tcr(z, eps):
    m, d = z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + d / (m * eps) * z.T @ z)[1]


def test_total_coding_rate_matches_numpy():
    z = np.random.default_rng(0).normal(size=(12, 5))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(
        float(coding_rate.total_coding_rate(jnp.asarray(z), 0.2)), _np_tcr(z, 0.2), rtol=1e-5
    )
    # Collapsed embeddings (all equal) code at a far lower rate than spread ones.
    collapsed = np.repeat(z[:1], 12, axis=0)
    assert float(coding_rate.total_coding_rate(jnp.asarray(collapsed))) < _np_tcr(z, 0.2) / 2


def test_emp_ssl_loss_matches_numpy():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(10, 4, 6))
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    mean = z.mean(1, keepdims=True)
    cos = np.sum(z * mean, -1) / (np.linalg.norm(z, axis=-1) * np.linalg.norm(mean, axis=-1))
    tcr = np.mean([_np_tcr(z[:, i], 0.2) for i in range(4)])
    loss, terms = coding_rate.emp_ssl_loss(jnp.asarray(z, jnp.float32))
    np.testing.assert_allclose(float(terms["tcr"]), tcr, rtol=1e-5)
    np.testing.assert_allclose(float(terms["invariance"]), cos.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), -tcr - 200 * cos.mean(), rtol=1e-5)
    same = np.repeat(z[:, :1], 4, axis=1)
    _, same_terms = coding_rate.emp_ssl_loss(jnp.asarray(same, jnp.float32))
    np.testing.assert_allclose(float(same_terms["invariance"]), 1.0, rtol=1e-6)
    grads = jax.grad(lambda x: coding_rate.emp_ssl_loss(x)[0])(jnp.asarray(z, jnp.float32))
    assert np.isfinite(grads).all()


@pytest.mark.slow
def test_emp_ssl_smoke_trains_and_evaluates_on_bags_of_patches(tmp_path):
    from jaxssl import trainer
    from jaxssl.configs import emp_ssl_cifar10

    config = emp_ssl_cifar10.get_config("smoke")
    config.train.progress_bar = False
    assert config.evals.patches.num == config.data.num_views == 4
    results = trainer.train_and_evaluate(config, str(tmp_path))
    # The fake classes are colour-coded: the patch-mean features separate them far above
    # chance (0.1) unless the bag-of-patches path is broken.
    assert results["knn/top1"] > 0.5, results
