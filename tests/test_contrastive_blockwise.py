"""Blockwise multi-positive NT-Xent: the dense loss's value and gradients in bounded memory."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import sharding
from jaxssl.losses import contrastive, contrastive_blockwise


def _random_graph(seed, m=24, d=8, num_labels=6):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, d)).astype(np.float32)
    ids = rng.integers(0, num_labels, size=m).astype(np.int32)
    ids[:2] = [100, 101]  # two anchors with no positive: excluded from the mean
    return z, ids


def _data_mesh():
    return sharding.make_mesh(ml_collections.ConfigDict(dict(data=8)))


def _value_and_grad(loss_fn, **kwargs):
    return jax.jit(jax.value_and_grad(lambda z, ids: loss_fn(z, 0.2, ids=ids, **kwargs)))


def _assert_close(got, expected, rtol=1e-5):
    (value, grad), (expected_value, expected_grad) = got, expected
    np.testing.assert_allclose(value, expected_value, rtol=rtol)
    error = np.linalg.norm(np.asarray(grad) - expected_grad) / np.linalg.norm(expected_grad)
    assert error <= rtol, error


def _sharded_graph(seed=6):
    z, ids = _random_graph(seed, m=128, d=16, num_labels=40)
    mesh = _data_mesh()
    batch = jax.sharding.NamedSharding(mesh, jax.P("data"))
    return z, ids, mesh, (jax.device_put(z, batch), jax.device_put(ids, batch))


@pytest.mark.parametrize("chunk_size", [16, 40, 1024])  # 40: the last chunk is padded
def test_blockwise_equals_dense_on_eight_devices(chunk_size):
    z, ids, _, sharded = _sharded_graph()
    dense = _value_and_grad(contrastive.multi_positive_nt_xent)(z, ids)
    step = _value_and_grad(
        contrastive_blockwise.multi_positive_nt_xent_blockwise, chunk_size=chunk_size
    )
    _assert_close(step(*sharded), dense)
    # It ran as a shard_map over the 8 devices, found from the inputs' sharding alone.
    assert "shard_map" in str(step.trace(*sharded).jaxpr)
    top1 = jax.jit(
        contrastive_blockwise.multi_positive_top1_blockwise, static_argnames="chunk_size"
    )
    np.testing.assert_allclose(
        top1(sharded[0], ids=sharded[1], chunk_size=chunk_size),
        contrastive.multi_positive_top1(z, ids=ids),
    )


def test_blockwise_finds_the_mesh_and_takes_a_matrix():
    z, ids, mesh, sharded = _sharded_graph(seed=8)
    dense = _value_and_grad(contrastive.multi_positive_nt_xent)(z, ids)
    step = _value_and_grad(contrastive_blockwise.multi_positive_nt_xent_blockwise, chunk_size=40)
    # The mesh from jax.set_mesh or the mesh argument, with unsharded inputs.
    with jax.set_mesh(mesh):
        assert "shard_map" in str(step.trace(z, ids).jaxpr)
        _assert_close(step(z, ids), dense)
    with_mesh = _value_and_grad(
        contrastive_blockwise.multi_positive_nt_xent_blockwise, chunk_size=40, mesh=mesh
    )
    assert "shard_map" in str(with_mesh.trace(z, ids).jaxpr)
    _assert_close(with_mesh(z, ids), dense)
    # A row-sharded positives matrix gives the same.
    positives = jax.device_put(
        contrastive.positives_from_ids(jnp.asarray(ids)), sharded[0].sharding
    )
    matrix_step = jax.jit(
        jax.value_and_grad(
            lambda z, p: contrastive_blockwise.multi_positive_nt_xent_blockwise(
                z, 0.2, positives=p, chunk_size=40
            )
        )
    )
    _assert_close(matrix_step(sharded[0], positives), dense)


def test_blockwise_without_mesh_or_uneven_batch_falls_back_to_one_device():
    z, ids = _random_graph(7, m=36, d=8)  # 36 rows do not split over 8 devices
    dense = _value_and_grad(contrastive.multi_positive_nt_xent)(z, ids)
    step = _value_and_grad(contrastive_blockwise.multi_positive_nt_xent_blockwise, chunk_size=8)
    _assert_close(step(z, ids), dense)
    assert "shard_map" not in str(step.trace(z, ids).jaxpr)
    with jax.set_mesh(_data_mesh()):
        _assert_close(step(z, ids), dense)


def test_blockwise_memory_is_bounded():
    m, d, chunk_size = 4096, 16, 256
    z = jax.ShapeDtypeStruct((m, d), jnp.float32)
    ids = jax.ShapeDtypeStruct((m,), jnp.int32)
    mesh = _data_mesh()
    batch = jax.sharding.NamedSharding(mesh, jax.P("data"))

    def temp_bytes(loss_fn, **kwargs):
        step = jax.jit(
            jax.value_and_grad(lambda z, ids: loss_fn(z, 0.2, ids=ids, **kwargs)),
            in_shardings=(batch, batch),
        )
        return step.lower(z, ids).compile().memory_analysis().temp_size_in_bytes

    blockwise_bytes = temp_bytes(
        contrastive_blockwise.multi_positive_nt_xent_blockwise, chunk_size=chunk_size
    )
    dense_bytes = temp_bytes(contrastive.multi_positive_nt_xent)
    # Per device: a [M / 8, C] chunk of logits is 0.5 MiB, a 1/8 share of [M, M] is 8 MiB.
    chunk_bytes = m // 8 * chunk_size * 4
    assert blockwise_bytes < 8 * chunk_bytes, blockwise_bytes / chunk_bytes
    assert dense_bytes > m * m * 4 / 8, dense_bytes
