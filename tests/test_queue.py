"""The FIFO queue of MoCo v2, NNCLR and SwAV: initialization, writes, sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.methods import queue as queue_lib


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_queue_is_fifo_and_wraps():
    queue = queue_lib.init(jax.random.key(0), 8, 3)
    np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0, rtol=1e-5)
    pointer = jnp.zeros((), jnp.int32)
    batches = [np.random.default_rng(i).normal(size=(4, 3)).astype(np.float32) for i in range(3)]
    for keys in batches:
        queue, pointer = queue_lib.enqueue(queue, pointer, jnp.asarray(keys))
    # 3 batches of 4 into 8 rows: rows 0:4 hold the third batch, rows 4:8 the second.
    np.testing.assert_allclose(queue[:4], _unit(batches[2]), rtol=1e-5)
    np.testing.assert_allclose(queue[4:], _unit(batches[1]), rtol=1e-5)
    assert int(pointer) == 4


def test_init_depends_on_the_key():
    first = queue_lib.init(jax.random.key(1), 16, 4)
    np.testing.assert_array_equal(first, queue_lib.init(jax.random.key(1), 16, 4))
    assert np.abs(first - queue_lib.init(jax.random.key(2), 16, 4)).max() > 0.1


def test_enqueue_normalizes_without_gradient_and_sizes_must_divide():
    queue, pointer = jnp.zeros((8, 3)), jnp.zeros((), jnp.int32)
    keys = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    grad = jax.grad(lambda k: jnp.sum(queue_lib.enqueue(queue, pointer, k)[0]))(keys)
    np.testing.assert_array_equal(grad, 0.0)
    queue_lib.check_size(8, 4, "queue_size")
    with pytest.raises(ValueError, match="method.queue_size=10 must be a multiple of the 4 rows"):
        queue_lib.check_size(10, 4, "queue_size")
