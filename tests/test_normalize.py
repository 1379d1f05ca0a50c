"""The one L2 normalization: unit norms along any axis, zero stays zero, float32 out."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.losses import normalize


def test_rows_and_columns_have_unit_norm_and_zero_stays_zero():
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    x[2] = 0.0
    rows = jax.jit(normalize.l2_normalize)(x)
    expected = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), np.where(expected > 0, 1.0, 0.0), 1e-6)
    np.testing.assert_array_equal(rows[2], 0.0)  # no NaN from 0 / 0
    np.testing.assert_allclose(rows[0], x[0] / np.linalg.norm(x[0]), rtol=1e-6)
    columns = normalize.l2_normalize(x, axis=0)
    np.testing.assert_allclose(np.linalg.norm(columns, axis=0), 1.0, rtol=1e-6)


def test_output_is_float32_for_bfloat16_input():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 128)), jnp.bfloat16)
    out = normalize.l2_normalize(x)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
