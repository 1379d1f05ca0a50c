"""SwAV's method: prototypes, frozen prototypes, the queue, multi-crop, and the smoke preset's
train steps (the losses are in test_clustering.py)."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import sharding, trainer
from jaxssl.configs import swav_cifar10
from jaxssl.losses import normalize
from jaxssl.methods import swav
from jaxssl.models import heads, ssl_model
from tests import helpers


def _cosines(shape, seed):
    """Scores in [-1, 1] like SwAV's cosine similarities."""
    return np.tanh(np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


# --- The method on a tiny model (compiles in a moment) ---


class _TinyBackbone(nn.Module):
    """A strided conv and global pooling: any resolution, so global and local views fit."""

    @nn.compact
    def __call__(self, images, train=True):
        del train
        return jnp.mean(nn.relu(nn.Conv(8, (3, 3), strides=2)(images)), axis=(1, 2))  # [B, 8]


def _tiny(**changes):
    config = ml_collections.ConfigDict(
        dict(
            num_prototypes=10,
            temperature=0.1,
            epsilon=0.05,
            sinkhorn_iters=3,
            freeze_prototypes_steps=1,
            queue_length=0,
            queue_start_steps=0,
        )
    )
    config.update(changes)
    model = ssl_model.SSLModel(
        backbone=_TinyBackbone(),
        projector=heads.MLP(hidden_dim=16, output_dim=6, num_layers=2),
        predictor=swav.Prototypes(config.num_prototypes),
    )
    variables = model.init(jax.random.key(0), jnp.zeros((2, 16, 16, 3)), train=True)
    return model, variables, config, swav.init_state(model, variables, config, jax.random.key(0))


def _views(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _loss(model, config):
    return jax.jit(
        lambda variables, batch, state, step: swav.loss_fn(
            model, variables, batch, state, config, None, step
        )
    )


@functools.partial(jax.jit, static_argnums=0)
def _projections_and_scores(model, variables, views):
    (_, z, scores), _ = ssl_model.apply_views(model, variables, views)
    return z, scores


def _outputs(model, variables, views):
    return tuple(map(np.asarray, _projections_and_scores(model, variables, views)))


def test_prototypes_are_unit_vectors_and_scores_are_cosines():
    model, variables, _, _ = _tiny()
    kernel = variables["params"]["predictor"]["kernel"]
    assert kernel.shape == (6, 10)
    np.testing.assert_allclose(
        np.linalg.norm(normalize.l2_normalize(kernel, axis=0), axis=0), 1.0, 1e-6
    )
    views = _views((4, 2, 16, 16, 3), 0)
    z, scores = _outputs(model, variables, views)
    unit = lambda x, axis: x / np.linalg.norm(x, axis=axis, keepdims=True)  # noqa: E731
    expected = unit(z, -1) @ unit(np.asarray(kernel), 0)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    # Scaling the kernel (weight decay, LARS) does not move the prototypes.
    scaled = jax.tree.map(lambda x: x, variables)
    scaled["params"]["predictor"]["kernel"] = 0.3 * kernel
    np.testing.assert_allclose(_outputs(model, scaled, views)[1], scores, rtol=1e-5, atol=1e-6)


def test_loss_fn_with_local_views_matches_the_loss_by_hand():
    model, variables, config, state = _tiny()
    batch = {"global": _views((4, 2, 16, 16, 3), 1), "local": _views((4, 3, 8, 8, 3), 2)}
    loss, aux = _loss(model, config)(variables, batch, state, 0)
    _, global_scores = _outputs(model, variables, batch["global"])
    _, local_scores = _outputs(model, variables, batch["local"])
    codes = np.stack([helpers.numpy_sinkhorn(global_scores[:, c]) for c in range(2)], axis=1)
    scores = np.concatenate([global_scores, local_scores], axis=1)  # [B, 5, K]
    np.testing.assert_allclose(float(loss), helpers.numpy_swav_loss(scores, codes, 0.1), rtol=1e-5)
    global_only, _ = _loss(model, config)(variables, {"global": batch["global"]}, state, 0)
    np.testing.assert_allclose(
        float(global_only), helpers.numpy_swav_loss(global_scores, codes, 0.1), rtol=1e-5
    )
    assert abs(float(loss) - float(global_only)) > 1e-4
    chex.assert_shape(aux.features, (4, 2, 8))  # the probe reads the global views only


def test_wrong_view_count_and_queue_length_are_errors():
    model, variables, config, state = _tiny()
    with pytest.raises(ValueError, match="exactly 2 global views"):
        swav.loss_fn(
            model, variables, {"global": jnp.zeros((4, 3, 8, 8, 3))}, state, config, None, 0
        )
    model, variables, config, state = _tiny(queue_length=6)
    with pytest.raises(ValueError, match="multiple of the 4 rows a step enqueues"):
        swav.loss_fn(
            model, variables, {"global": jnp.zeros((4, 2, 8, 8, 3))}, state, config, None, 0
        )


def test_prototypes_get_no_gradient_while_frozen():
    model, variables, config, state = _tiny(freeze_prototypes_steps=3)
    batch = {"global": _views((8, 2, 16, 16, 3), 3), "local": _views((8, 2, 8, 8, 3), 4)}

    @jax.jit
    def loss_and_grads(params, step):
        def loss(params):
            variables_ = {"params": params, "batch_stats": variables["batch_stats"]}
            return swav.loss_fn(model, variables_, batch, state, config, None, step)[0]

        return jax.value_and_grad(loss)(params)

    for step, frozen in [(0, True), (2, True), (3, False), (100, False)]:
        loss, grads = loss_and_grads(variables["params"], jnp.asarray(step, jnp.int32))
        kernel_grad = np.abs(np.asarray(grads["predictor"]["kernel"])).max()
        assert (kernel_grad == 0.0) if frozen else (kernel_grad > 1e-5), (step, kernel_grad)
        assert np.abs(np.asarray(grads["projector"]["dense1"]["kernel"])).max() > 1e-5
        if step == 0:
            first_loss = float(loss)
        np.testing.assert_allclose(float(loss), first_loss, rtol=1e-6)  # same forward pass


def test_queue_fills_from_its_start_step_and_joins_the_codes_once_full():
    model, variables, config, state = _tiny(queue_length=8, queue_start_steps=1)
    assert state["queue"].shape == (2, 8, 6)
    loss_fn = _loss(model, config)
    batches = [{"global": _views((4, 2, 16, 16, 3), 10 + i)} for i in range(4)]

    def step(state, i):
        loss, aux = loss_fn(variables, batches[i], state, i)
        return float(loss), aux, aux.method_state

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    def embeddings(i):  # [2, B, P] unit projections of batch i's global views
        return unit(np.swapaxes(_outputs(model, variables, batches[i]["global"])[0], 0, 1))

    # Step 0: before queue_start_steps, nothing enters.
    loss0, aux, state = step(state, 0)
    np.testing.assert_array_equal(state["queue"], 0.0)
    assert int(state["queue_filled"]) == 0 and not aux.metrics["train/queue_in_use"]
    # Steps 1, 2: written in order into the ring buffer; unused until full.
    _, aux, state = step(state, 1)
    np.testing.assert_allclose(state["queue"][:, :4], embeddings(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(state["queue"][:, 4:], 0.0)
    _, aux, state = step(state, 2)
    assert not aux.metrics["train/queue_in_use"] and int(state["queue_filled"]) == 8
    np.testing.assert_allclose(state["queue"][:, :4], embeddings(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["queue"][:, 4:], embeddings(2), rtol=1e-5, atol=1e-6)
    # Step 3: full, so the codes equipartition over queue + batch; then batch 1 falls off.
    queue = np.asarray(state["queue"])
    loss3, aux, state = step(state, 3)
    assert aux.metrics["train/queue_in_use"]
    _, scores = _outputs(model, variables, batches[3]["global"])
    kernel = np.asarray(variables["params"]["predictor"]["kernel"])
    prototypes = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    codes = np.stack(
        [
            helpers.numpy_sinkhorn(np.concatenate([queue[c] @ prototypes, scores[:, c]]))[-4:]
            for c in (0, 1)
        ],
        axis=1,
    )
    np.testing.assert_allclose(loss3, helpers.numpy_swav_loss(scores, codes, 0.1), rtol=1e-5)
    batch_codes = np.stack([helpers.numpy_sinkhorn(scores[:, c]) for c in (0, 1)], axis=1)
    without_queue = helpers.numpy_swav_loss(scores, batch_codes, 0.1)
    assert abs(loss3 - without_queue) > 1e-4
    np.testing.assert_allclose(state["queue"][:, :4], embeddings(3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["queue"][:, 4:], embeddings(2), rtol=1e-5, atol=1e-6)
    # Rows written so far, kept in [L, 2L) once full: the next write goes to row 12 % 8 = 4.
    assert int(state["queue_filled"]) == 12
    queue = np.asarray(state["queue"])
    _, aux, state = step(state, 3)  # batch 3 again, at a step past the start
    np.testing.assert_allclose(state["queue"][:, :4], queue[:, :4], rtol=1e-6)
    np.testing.assert_allclose(state["queue"][:, 4:], embeddings(3), rtol=1e-5, atol=1e-6)
    assert int(state["queue_filled"]) == 8


def test_queue_and_loss_are_the_same_on_one_and_eight_devices():
    model, variables, config, initial = _tiny(queue_length=16, queue_start_steps=0)
    batches = [
        {"global": np.asarray(_views((8, 2, 16, 16, 3), 20 + i)), "label": np.zeros(8, np.int32)}
        for i in range(3)
    ]
    results = []
    for devices in (1, 8):
        mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=devices, fsdp=1)))
        loss_fn = _loss(model, config)
        state, losses = initial, []
        for step, host_batch in enumerate(batches):  # the third step uses the (full) queue
            batch = sharding.to_global(host_batch, mesh)
            assert len(batch["global"].sharding.device_set) == devices
            loss, aux = loss_fn(variables, batch, state, step)
            state = aux.method_state
            losses.append(float(loss))
        results.append((losses, jax.device_get(state)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    # The projector's BatchNorm over 8 rows amplifies the float32 rounding of a different
    # reduction order to ~1e-5; a per-device (not global) queue would differ by O(1).
    chex.assert_trees_all_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-4)
    # 24 rows written to a queue of 16: full, the next write goes to row 24 % 16 = 8.
    assert int(results[1][1]["queue_filled"]) == 24


# --- The smoke preset through the real train step ---


# Compiles a whole train step: the slow lane.
@pytest.mark.slow
def test_smoke_train_steps_with_multi_crop_freeze_then_train_the_prototypes():
    config = swav_cifar10.get_config("smoke")
    config.optim.name = "sgd"  # LARS+warmup starts at lr 0; SGD moves params on step 1
    config.optim.warmup_epochs = 0.0
    config.optim.weight_decay = 1e-2  # visible, so that the frozen kernel is seen to shrink
    config.data.local_views = 2
    config.mesh.data = 2
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = run.init_state()
    b = config.train.batch_size

    def batch(seed):
        rng = np.random.default_rng(seed)
        host_batch = {
            "global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32),
            "local": rng.normal(size=(b, 2, 16, 16, 3)).astype(np.float32),
            "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
            "index": np.arange(b, dtype=np.int32),
        }
        return sharding.to_global(host_batch, mesh)

    def kernel(state):
        return np.asarray(jax.device_get(state.params["predictor"]["kernel"]))

    kernels, history = [kernel(state)], []
    for seed in range(3):
        state, metrics = run.train_step(state, batch(seed))
        kernels.append(kernel(state))
        history.append(jax.device_get(metrics))
    assert [m["train/prototypes_frozen"] for m in history] == [1.0, 0.0, 0.0]
    assert [m["train/queue_in_use"] for m in history] == [0.0, 1.0, 1.0]
    assert all(np.isfinite(m["train/loss"]) and not m["train/nonfinite"] for m in history)
    # Step 0 (frozen): only weight decay scaled the kernel; the prototypes did not move.
    assert np.abs(kernels[1] - kernels[0]).max() > 1e-6
    np.testing.assert_allclose(
        normalize.l2_normalize(kernels[1], axis=0),
        normalize.l2_normalize(kernels[0], axis=0),
        atol=1e-6,
    )
    # Step 1 on: they train.
    assert (
        np.abs(
            normalize.l2_normalize(kernels[2], axis=0) - normalize.l2_normalize(kernels[1], axis=0)
        ).max()
        > 1e-4
    )
    assert int(state.step) == 3
    assert int(state.method_state["queue_filled"]) == config.method.queue_length
    chex.assert_tree_all_finite(jax.device_get((state.params, state.method_state)))


def test_fewer_prototypes_than_projection_dimensions_is_an_error():
    config = swav_cifar10.get_config("smoke")
    config.method.num_prototypes = config.model.projector_dim - 1
    with pytest.raises(ValueError, match="collapse orthogonal to every prototype"):
        swav.build_model(config)
    config.method.num_prototypes = config.model.projector_dim
    swav.build_model(config)
