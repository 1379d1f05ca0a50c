"""BYOL and SimSiam: the EMA target in the train step, stop-gradients, smoke train steps (the
losses are in test_regression.py, the momentum schedule in test_schedules.py)."""

import chex
import jax
import numpy as np
import pytest

from jaxssl import schedules, sharding, trainer
from jaxssl.configs import byol_cifar10, simsiam_cifar10
from jaxssl.losses import regression
from jaxssl.methods import byol, teacher


def _np_cosine(p, z):
    p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
    return np.sum(p * z, -1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(z, axis=-1))


def _random(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _build(module, **changes):
    config = module.get_config("smoke")
    config.optim.name = "sgd"  # LARS+warmup starts at lr 0; SGD moves params on step 1
    config.optim.warmup_epochs = 0.0
    config.mesh.data = 2
    for key, value in changes.items():
        section, name = key.split("__")
        config[section][name] = value
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = jax.jit(run.init_fn, out_shardings=sharding.replicated(mesh))(run.init_key)
    return config, mesh, run, state


def _batch(config, mesh, seed=0):
    rng = np.random.default_rng(seed)
    b = config.train.batch_size
    host_batch = {
        "global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
        "index": np.arange(b, dtype=np.int32),
    }
    return sharding.to_global(host_batch, mesh)


def test_byol_target_starts_as_online_copy_and_gets_no_gradient():
    config, mesh, run, state = _build(byol_cifar10)
    target = state.method_state["target"]
    assert set(target["params"]) == {"backbone", "projector"}  # no predictor
    assert "target" not in state.params  # the optimizer never sees the target
    chex.assert_trees_all_equal(target["params"], teacher.target_part(state.params))
    chex.assert_trees_all_equal(target["batch_stats"], teacher.target_part(state.batch_stats))
    batch = _batch(config, mesh)

    def loss(params, method_state):
        variables = {"params": params, "batch_stats": state.batch_stats}
        return byol.loss_fn(run.model, variables, batch, method_state, config.method, None, 0)[0]

    online_grads, target_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(
        state.params, state.method_state
    )
    for g in jax.tree.leaves(target_grads):
        np.testing.assert_array_equal(g, 0.0)
    assert max(float(np.abs(g).max()) for g in jax.tree.leaves(online_grads)) > 1e-4


def test_byol_ema_update_after_one_train_step():
    # A momentum far from 1 so the EMA is visibly not "target = online" nor "unchanged".
    config, mesh, run, state = _build(byol_cifar10, method__base_momentum=0.5)
    old = jax.device_get(state.method_state["target"])
    new_state, metrics = run.train_step(state, _batch(config, mesh))  # donates `state`
    new_state = jax.device_get(new_state)
    assert not metrics["train/nonfinite"]
    m = float(schedules.cosine_momentum(0, config.train.num_steps, 0.5))
    np.testing.assert_allclose(m, 0.5, rtol=1e-7)
    online = {
        "params": teacher.target_part(new_state.params),
        "batch_stats": teacher.target_part(new_state.batch_stats),
    }
    expected = jax.tree.map(lambda t, o: m * t + (1 - m) * o, old, online)
    chex.assert_trees_all_close(new_state.method_state["target"], expected, rtol=1e-6, atol=1e-7)
    kernel = lambda tree: tree["params"]["projector"]["dense1"]["kernel"]  # noqa: E731
    assert np.abs(kernel(new_state.method_state["target"]) - kernel(old)).max() > 1e-6


def test_simsiam_loss_has_no_gradient_through_projections():
    config, mesh, run, state = _build(simsiam_cifar10)
    batch = _batch(config, mesh)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    images = batch["global"].reshape((-1,) + batch["global"].shape[2:])
    (_, z, p), _ = run.model.apply(variables, images, train=True, mutable=["batch_stats"])
    b = config.train.batch_size
    z, p = z.reshape(b, 2, -1), p.reshape(b, 2, -1)
    grad_z = jax.grad(
        lambda z: regression.symmetric_negative_cosine(p[:, 0], p[:, 1], z[:, 0], z[:, 1])
    )(z)
    np.testing.assert_array_equal(grad_z, 0.0)


@pytest.mark.slow  # ~40 s of train steps; the EMA update after a step stays in the default lane
@pytest.mark.parametrize("module", [byol_cifar10, simsiam_cifar10], ids=["byol", "simsiam"])
def test_smoke_train_steps_stay_finite(module):
    config, mesh, run, state = _build(module)
    losses = []
    for seed in range(3):
        state, metrics = run.train_step(state, _batch(config, mesh, seed))
        metrics = jax.device_get(metrics)
        assert not metrics["train/nonfinite"]
        losses.append(metrics["train/loss"])
    assert np.isfinite(losses).all()
    chex.assert_tree_all_finite(jax.device_get((state.params, state.method_state)))
    assert int(state.nonfinite_steps) == 0
