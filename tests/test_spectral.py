"""Label-free diagnostics: RankMe, alignment, uniformity, covariance spectrum."""

import jax.numpy as jnp
import numpy as np

from jaxssl.evals import spectral


def test_rankme_of_equal_singular_values_is_the_rank():
    rng = np.random.default_rng(5)
    for rank in (1, 3, 17):
        u, _ = np.linalg.qr(rng.normal(size=(300, rank)))
        v, _ = np.linalg.qr(rng.normal(size=(64, rank)))
        z = jnp.asarray(5.0 * u @ v.T, jnp.float32)  # [300, 64], rank r, all sigma = 5
        np.testing.assert_allclose(spectral.rankme(z), rank, rtol=1e-3)
        # Zero rows (zeroed padding) leave it unchanged.
        padded = jnp.concatenate([z, jnp.zeros((40, 64))])
        np.testing.assert_allclose(spectral.rankme(padded), rank, rtol=1e-3)


def test_rankme_matches_its_formula():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(200, 32)) * np.logspace(0, -3, 32)
    sigma = np.linalg.svd(z, compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    np.testing.assert_allclose(
        spectral.rankme(jnp.asarray(z, jnp.float32)), np.exp(-np.sum(p * np.log(p))), rtol=1e-4
    )


def test_alignment_and_uniformity_match_numpy():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(50, 6))
    y = x + 0.3 * rng.normal(size=(50, 6))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    expected_alignment = np.mean(np.sum((xn - yn) ** 2, axis=1))
    pairs = [(i, j) for i in range(50) for j in range(i + 1, 50)]
    expected_uniformity = np.log(
        np.mean([np.exp(-2 * np.sum((xn[i] - xn[j]) ** 2)) for i, j in pairs])
    )
    np.testing.assert_allclose(spectral.alignment(x, y), expected_alignment, rtol=1e-5)
    np.testing.assert_allclose(spectral.uniformity(x), expected_uniformity, rtol=1e-5)
    np.testing.assert_allclose(spectral.alignment(x, x), 0.0, atol=1e-6)


def test_covariance_spectrum_matches_numpy():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(100, 5)) @ rng.normal(size=(5, 5))
    expected = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False)))[::-1]
    np.testing.assert_allclose(spectral.covariance_spectrum(z), expected, rtol=1e-4, atol=1e-5)


def test_first_real_rows_skip_padding_in_order():
    mask = jnp.asarray([False, True, True, False, True])
    np.testing.assert_array_equal(spectral.first_real_rows(mask, 3), [1, 2, 4])
