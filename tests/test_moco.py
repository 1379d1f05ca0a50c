"""MoCo v2/v3: InfoNCE against numpy, the FIFO queue, and the queue in the train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import sharding, trainer
from jaxssl.configs import mocov2_cifar10
from jaxssl.data import color
from jaxssl.losses import moco
from jaxssl.methods import mocov2


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_cross_entropy(logits, labels):
    logits = logits - logits.max(1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -np.mean(log_probs[np.arange(len(labels)), labels])


def test_infonce_with_queue_matches_numpy():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    queue = _unit(rng.normal(size=(10, 5)))
    logits = np.concatenate(
        [np.sum(_unit(q) * _unit(k), 1, keepdims=True), _unit(q) @ queue.T], axis=1
    )
    expected = _np_cross_entropy(logits / 0.2, np.zeros(6, int))
    got = moco.infonce_with_queue(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), 0.2)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    # No gradient reaches keys or queue.
    grads = jax.grad(moco.infonce_with_queue, argnums=(1, 2))(
        jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), jnp.asarray(queue, jnp.float32)
    )
    assert all(float(jnp.abs(g).max()) == 0.0 for g in grads)


def test_infonce_in_batch_matches_numpy():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(8, 4)), rng.normal(size=(8, 4))
    expected = _np_cross_entropy(_unit(q) @ _unit(k).T / 0.2, np.arange(8)) * 0.4
    got = moco.infonce_in_batch(jnp.asarray(q), jnp.asarray(k), 0.2)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_queue_is_fifo_and_wraps():
    queue = moco.init_queue(jax.random.key(0), 8, 3)
    np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0, rtol=1e-5)
    pointer = jnp.zeros((), jnp.int32)
    batches = [np.random.default_rng(i).normal(size=(4, 3)).astype(np.float32) for i in range(3)]
    for keys in batches:
        queue, pointer = moco.enqueue(queue, pointer, jnp.asarray(keys))
    # 3 batches of 4 into 8 rows: rows 0:4 hold the third batch, rows 4:8 the second.
    np.testing.assert_allclose(queue[:4], _unit(batches[2]), rtol=1e-5)
    np.testing.assert_allclose(queue[4:], _unit(batches[1]), rtol=1e-5)
    assert int(pointer) == 4


def _batch(config, seed):
    rng = np.random.default_rng(seed)
    b = config.train.batch_size
    return {
        "global": rng.integers(0, 256, (b, 2, 32, 32, 3), np.uint8),  # the host's crops
        "label": np.zeros(b, np.int32),
        "index": np.arange(b, dtype=np.int32),
    }


def test_train_step_uses_the_old_queue_then_enqueues_the_global_batch():
    config = mocov2_cifar10.get_config("smoke")  # batch 32: 64 keys per step, queue 128
    config.mesh.data = 8
    # No colour augmentation: the step feeds the model the normalized crops, as below.
    config.data.update(dict(color_jitter_prob=0.0, grayscale_prob=0.0))
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = run.init_state()
    initial_queue = np.asarray(state.method_state["queue"])
    batch = sharding.to_global(_batch(config, 0), mesh)
    views = color.to_model_input(batch["global"], config.data.mean, config.data.std)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    loss, aux = jax.jit(lambda v, s, b: mocov2.loss_fn(run.model, v, b, s, config.method, None, 0))(
        variables, state.method_state, batch | {"global": views}
    )
    # The keys this step enqueues: the target network's projections of both views.
    images = np.asarray(views).reshape(64, 32, 32, 3)
    (_, keys), _ = run.model.apply(
        state.method_state["target"],
        images,
        train=True,
        method=run.model.project,
        mutable=["batch_stats"],
    )
    np.testing.assert_allclose(aux.method_state["queue"][:64], _unit(np.asarray(keys)), atol=1e-5)
    np.testing.assert_array_equal(aux.method_state["queue"][64:], initial_queue[64:])
    assert int(aux.method_state["queue_pointer"]) == 64
    # The loss saw the initial queue: recomputing it by hand with that queue agrees.
    (_, queries), _ = run.model.apply(variables, images, train=True, mutable=["batch_stats"])
    q, k = np.asarray(queries).reshape(32, 2, -1), np.asarray(keys).reshape(32, 2, -1)
    by_hand = 0.5 * (
        moco.infonce_with_queue(q[:, 0], k[:, 1], initial_queue, 0.2)
        + moco.infonce_with_queue(q[:, 1], k[:, 0], initial_queue, 0.2)
    )
    np.testing.assert_allclose(float(loss), float(by_hand), rtol=1e-4)
    state, _ = run.train_step(state, batch)
    np.testing.assert_allclose(state.method_state["queue"][:64], _unit(np.asarray(keys)), atol=1e-5)
    state, _ = run.train_step(state, sharding.to_global(_batch(config, 1), mesh))
    state, _ = run.train_step(state, sharding.to_global(_batch(config, 2), mesh))
    assert int(state.method_state["queue_pointer"]) == 64  # 3 x 64 keys in 128 rows: wrapped
    assert np.isfinite(float(loss))


def test_queue_size_must_be_a_multiple_of_the_keys_per_step():
    config = mocov2_cifar10.get_config("smoke")
    config.method.queue_size = 100
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    with pytest.raises(ValueError, match="multiple of the 64 keys"):
        run.train_step(run.init_state(), sharding.to_global(_batch(config, 0), mesh))


def test_nnclr_neighbours_and_loss_match_numpy():
    from jaxssl.losses import nnclr

    rng = np.random.default_rng(3)
    support = _unit(rng.normal(size=(16, 4)))
    z, p = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    expected_nn = support[np.argmax(_unit(z) @ support.T, axis=1)]
    got_nn = nnclr.nearest_neighbours(jnp.asarray(z), jnp.asarray(support))
    np.testing.assert_allclose(got_nn, expected_nn, rtol=1e-6)
    expected = _np_cross_entropy(_unit(expected_nn) @ _unit(p).T / 0.2, np.arange(5))
    np.testing.assert_allclose(
        float(nnclr.nnclr_loss(got_nn, jnp.asarray(p), 0.2)), expected, rtol=1e-5
    )
    # A support row equal to z is its own neighbour.
    support[7] = _unit(z[2])
    assert int(np.argmax(_unit(z[2]) @ support.T)) == 7
