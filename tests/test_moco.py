"""MoCo v2: the queue in the train step (the losses are in test_contrastive.py, the queue in
test_queue.py)."""

import jax
import numpy as np
import pytest

from jaxssl import sharding, trainer
from jaxssl.configs import mocov2_cifar10
from jaxssl.data import color
from jaxssl.losses import contrastive
from jaxssl.methods import mocov2


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


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
        contrastive.infonce_with_queue(q[:, 0], k[:, 1], initial_queue, 0.2)
        + contrastive.infonce_with_queue(q[:, 1], k[:, 0], initial_queue, 0.2)
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
    with pytest.raises(ValueError, match="multiple of the 64 rows"):
        run.train_step(run.init_state(), sharding.to_global(_batch(config, 0), mesh))
