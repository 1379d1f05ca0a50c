"""The train step: the same result on 1 and 8 devices; the crops coloured keyed by step."""

import chex
import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxssl import methods, sharding
from jaxssl import state as state_lib
from jaxssl import step as step_lib
from jaxssl.data import color, fake
from tests import helpers


def _run(num_devices, method_name):
    config, mesh, state, _, grads, train_step = helpers.method_loss_and_grads(
        method_name, num_devices
    )
    history = []
    for seed in range(2):
        batch = sharding.to_global(helpers.random_views_batch(config, seed), mesh)
        state, metrics = train_step(state, batch)
        history.append(jax.device_get(metrics))
    return jax.device_get(state), history, grads, train_step


# The default lane covers SimCLR (no state; global negatives); every other registered method,
# EMA teachers (BYOL) and queues (MoCo v2) included, runs in the slow lane. The default lane
# still steps an EMA teacher on 1 and 8 devices in tests/test_fsdp.py (BYOL) and a queue in
# tests/test_moco.py.
DEFAULT_LANE = ("simclr",)


@pytest.mark.parametrize(
    "method_name",
    [
        name if name in DEFAULT_LANE else pytest.param(name, marks=pytest.mark.slow)
        for name in sorted(methods.METHODS)
    ],
)
def test_one_and_eight_devices_agree(method_name):
    state1, history1, grads1, _ = _run(1, method_name)
    state8, history8, grads8, step8 = _run(8, method_name)
    for m1, m8 in zip(history1, history8, strict=True):
        np.testing.assert_allclose(m1["train/loss"], m8["train/loss"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(m1["probe/loss"], m8["probe/loss"], rtol=1e-5, atol=1e-5)
    # Gradients: relative error of the whole tree <= 1e-5. Single entries that nearly cancel
    # (BatchNorm biases of a width-4 net) can differ by more: the 8-device reduction order is
    # not the 1-device one, and float32 rounding is all that differs.
    diff = np.sqrt(
        sum(
            np.sum((a - b) ** 2)
            for a, b in zip(*map(jax.tree.leaves, (grads1, grads8)), strict=True)
        )
    )
    norm = np.sqrt(sum(np.sum(a**2) for a in jax.tree.leaves(grads1)))
    assert diff / norm <= 1e-5, diff / norm
    for a, b in zip(jax.tree.leaves(grads1), jax.tree.leaves(grads8), strict=True):
        assert np.linalg.norm(a - b) <= 1e-2 * np.linalg.norm(a) + 1e-6
    chex.assert_trees_all_close(state1.batch_stats, state8.batch_stats, atol=1e-5, rtol=1e-5)
    # Queues, centers, EMA teachers: the method state is as global as the batch.
    chex.assert_trees_all_close(state1.method_state, state8.method_state, atol=1e-5, rtol=1e-5)
    # After two updates, compare parameters as a whole (same rounding caveat as above).
    param_diff = np.sqrt(
        sum(
            np.sum((a - b) ** 2)
            for a, b in zip(*map(jax.tree.leaves, (state1.params, state8.params)), strict=True)
        )
    )
    param_norm = np.sqrt(sum(np.sum(a**2) for a in jax.tree.leaves(state1.params)))
    assert param_diff / param_norm <= 1e-5, param_diff / param_norm
    assert step8._cache_size() == 1  # the second step reused the first compilation
    # The step moved the parameters (the comparison above is not vacuous).
    _, _, fresh, _, _, _ = helpers.method_loss_and_grads(method_name, 1)
    diff = jax.tree.map(
        lambda a, b: float(np.abs(a - b).max()), jax.device_get(fresh.params), state1.params
    )
    assert max(jax.tree.leaves(diff)) > 1e-4


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_im2col_matches_native(dtype):
    from jaxssl.models import conv

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 9, 5)).astype(np.float32)
    for kernel_size, strides in [((3, 3), 1), ((3, 3), 2), ((1, 1), 2), ((7, 7), 2)]:
        outs, grads = [], []
        for impl in ("native", "im2col"):
            layer = conv.Conv(6, kernel_size, strides, dtype=dtype, implementation=impl)
            variables = layer.init(jax.random.key(0), x)
            f = jax.jit(lambda v, x, layer=layer: layer.apply(v, x).astype(np.float32).sum())
            outs.append(jax.jit(layer.apply)(variables, x))
            grads.append(jax.grad(f)(variables, x))
        tol = 1e-5 if dtype == "float32" else 5e-2
        np.testing.assert_allclose(
            np.asarray(outs[0], np.float32), np.asarray(outs[1], np.float32), atol=tol, rtol=tol
        )
        chex.assert_trees_all_close(grads[0], grads[1], atol=tol * 10, rtol=tol)


def test_the_step_colours_the_crops_keyed_by_step():
    # The real step function around a stand-in method whose loss hands the views it got back
    # as a metric, on the batch split over 8 devices as the trainer jits it.
    config = helpers.method_smoke_config("simclr")
    config.data.blur_prob = 0.5

    def loss_fn(model, variables, batch, method_state, method_config, rng, step):
        del model, method_config, rng, step
        views = batch["global"]  # [B, V, S, S, 3]
        features = views.mean(axis=(2, 3)) * variables["params"]["scale"]  # [B, V, 3]
        aux = methods.LossAux(features, variables["batch_stats"], method_state, {"views": views})
        return jnp.mean(features**2), aux

    def make_state(scale):
        params = {"scale": jnp.asarray(scale, jnp.float32)}
        probe_params = probe.init(jax.random.key(0), jnp.zeros((1, 3)))["params"]
        return state_lib.TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats={},
            method_state={},
            opt_state=tx.init(params),
            probe_params=probe_params,
            probe_opt_state=tx.init(probe_params),
            nonfinite_steps=jnp.zeros((), jnp.int32),
        )

    def make_step(config):
        step_fn = step_lib.make_train_step(
            None,
            methods.Method(build_model=None, loss_fn=loss_fn),
            probe,
            tx,
            tx,
            optax.constant_schedule(0.1),
            config,
            jax.random.key(11),
        )
        return jax.jit(
            step_fn, in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh))
        )

    probe, tx = flax.linen.Dense(10), optax.sgd(0.1)
    mesh = sharding.make_mesh(config.mesh)
    images = fake.make_examples("train", 32)[0]
    host_batch = {
        "global": np.repeat(images[:, None], 2, axis=1),  # [32, 2, 32, 32, 3] uint8 crops
        "label": np.zeros(32, np.int32),
        "index": np.arange(32, dtype=np.int32),
    }
    batch = sharding.to_global(host_batch, mesh)
    assert len(batch["global"].sharding.device_set) == 8
    train_step = make_step(config)

    def views_at(step, scale=1.0):
        state = make_state(scale).replace(step=jnp.asarray(step, jnp.int32))
        new_state, metrics = train_step(state, batch)
        assert int(new_state.step) == step + 1 and np.isfinite(metrics["train/loss"])
        return np.asarray(metrics["views"])

    views = views_at(7)
    assert views.shape == (32, 2, 32, 32, 3) and views.dtype == np.float32
    # A resumed step redraws its views: they depend on the step, not on the rest of the state.
    np.testing.assert_array_equal(views, views_at(7, scale=2.0))
    # Another step, other colours (a view the jitter skips at both steps may stay the same).
    assert (np.abs(views - views_at(8)).mean(axis=(2, 3, 4)) > 0.01).mean() > 0.8
    # The two views of each crop got their own colours.
    assert (np.abs(views[:, 0] - views[:, 1]).mean(axis=(1, 2, 3)) > 0.01).mean() > 0.8
    # With every colour probability 0 the step feeds the model the normalized crops.
    config.data.update(dict(color_jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0))
    plain = make_step(config)(make_state(1.0), batch)[1]["views"]
    expected = color.to_model_input(host_batch["global"], config.data.mean, config.data.std)
    np.testing.assert_allclose(plain, expected, atol=1e-6)
