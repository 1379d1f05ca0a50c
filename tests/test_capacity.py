"""TiCo and MMCR: the losses against numpy, their invariants, and their methods' steps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import sharding
from jaxssl.configs import mmcr_cifar10, tico_cifar10
from jaxssl.losses import capacity
from jaxssl.methods import mmcr, tico
from tests import helpers


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_tico_matches_the_papers_algorithm():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, 16, 5)).astype(np.float32)
    previous = rng.normal(size=(5, 5)).astype(np.float32)
    previous = previous @ previous.T / 5
    u, v = _unit(z1), _unit(z2)
    c = 0.9 * previous + 0.1 * u.T @ u / 16
    expected = -np.mean(np.sum(u * v, 1)) + 20.0 * np.mean(np.sum((u @ c) * u, 1))
    loss, updated = capacity.tico_loss(jnp.asarray(z1), jnp.asarray(z2), jnp.asarray(previous))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(updated, c, rtol=1e-5, atol=1e-6)
    # The previous covariance is a constant: no gradient reaches it.
    grad = jax.grad(lambda c: capacity.tico_loss(jnp.asarray(z1), jnp.asarray(z2), c)[0])(
        jnp.asarray(previous)
    )
    np.testing.assert_array_equal(grad, 0.0)


def test_tico_centred_matches_lightlys_form():
    rng = np.random.default_rng(4)
    z1, z2 = rng.normal(loc=2.0, size=(2, 16, 5)).astype(np.float32)
    u, v = _unit(z1 - z1.mean(0)), _unit(z2 - z2.mean(0))
    c = 0.1 * u.T @ u / 16
    expected = -np.mean(np.sum(u * v, 1)) + 20.0 * np.mean(np.sum((u @ c) * u, 1))
    zero = jnp.zeros((5, 5))
    loss, updated = capacity.tico_loss(jnp.asarray(z1), jnp.asarray(z2), zero, center=True)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(updated, c, rtol=1e-5, atol=1e-6)
    # A shift common to a view's embeddings changes nothing once centred (it does otherwise).
    shifted = capacity.tico_loss(jnp.asarray(z1 + 5.0), jnp.asarray(z2), zero, center=True)[0]
    np.testing.assert_allclose(shifted, loss, rtol=1e-4)
    assert (
        abs(
            float(capacity.tico_loss(jnp.asarray(z1 + 5.0), jnp.asarray(z2), zero)[0])
            - float(capacity.tico_loss(jnp.asarray(z1), jnp.asarray(z2), zero)[0])
        )
        > 1e-3
    )


@pytest.mark.slow  # ~25 s of eager gradients; its train step is in the slow smoke test
def test_tico_momentum_form_embeds_view_two_with_the_ema_network_only():
    config = tico_cifar10.get_config("smoke")
    config.method.base_momentum = 0.99
    config.method.center_embeddings = True
    config, mesh, run, state = helpers.smoke_run(config)
    assert set(state.method_state) == {"covariance", "target"}
    rng = np.random.default_rng(0)
    b = config.train.batch_size
    batch = sharding.to_global(
        {"global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32)}, mesh
    )
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def loss_of(target_params):
        method_state = {
            **state.method_state,
            "target": {**state.method_state["target"], "params": target_params},
        }
        return tico.loss_fn(run.model, variables, batch, method_state, config.method, None, 0)[0]

    # The EMA network's output is a constant target: no gradient reaches its weights, yet the
    # loss depends on them (it embeds view 2).
    target = state.method_state["target"]["params"]
    grads = jax.grad(loss_of)(target)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))
    moved = jax.tree.map(lambda x: x + rng.normal(size=x.shape).astype(np.float32), target)
    assert abs(float(loss_of(moved)) - float(loss_of(target))) > 1e-3


def test_tico_rewards_agreeing_views_and_penalizes_collapse():
    rng = np.random.default_rng(1)
    spread = rng.normal(size=(64, 8)).astype(np.float32)
    collapsed = np.ones((64, 8), np.float32) + 0.01 * spread
    zero = jnp.zeros((8, 8))
    loss_spread, _ = capacity.tico_loss(spread, spread, zero)
    loss_collapsed, _ = capacity.tico_loss(collapsed, collapsed, zero)
    loss_disagree, _ = capacity.tico_loss(spread, -spread, zero)
    assert loss_spread < loss_collapsed and loss_spread < loss_disagree


def test_mmcr_matches_numpy_svd():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(12, 4, 6)).astype(np.float32)
    u = _unit(z)
    centroids = u.mean(1)
    global_nuc = np.linalg.svd(centroids, compute_uv=False).sum()
    local_nuc = sum(np.linalg.svd(u[b].T, compute_uv=False).sum() for b in range(12))
    for lmbda in (0.0, 0.5):
        loss, terms = capacity.mmcr_loss(jnp.asarray(z), lmbda)
        np.testing.assert_allclose(loss, lmbda * local_nuc / 12 - global_nuc, rtol=1e-5)
        np.testing.assert_allclose(terms["global_nuclear"], global_nuc, rtol=1e-5)
    assert np.all(np.isfinite(jax.grad(lambda z: capacity.mmcr_loss(z)[0])(jnp.asarray(z))))


def test_mmcr_is_lowest_for_invariant_views_of_spread_images():
    # B = D orthonormal images, every view the same: centroids are the identity, ||C||_* = B;
    # collapse (all images alike) gives the rank-one ||C||_F = sqrt(B); views that cancel ~0.
    eye = np.eye(6, dtype=np.float32)
    invariant = np.repeat(eye[:, None], 3, axis=1)
    collapsed = np.ones((6, 3, 6), np.float32)
    cancelling = np.stack([eye, -eye], axis=1)
    values = [
        float(capacity.mmcr_loss(jnp.asarray(z))[0]) for z in (invariant, collapsed, cancelling)
    ]
    np.testing.assert_allclose(values, [-6.0, -np.sqrt(6.0), 0.0], atol=1e-4)


@pytest.mark.slow  # ~40 s of train steps (all three); the losses are checked in the default lane
@pytest.mark.parametrize("name", ["tico", "tico_momentum", "mmcr"])
def test_smoke_train_steps_stay_finite_and_lower_the_loss(name):
    module, config_module = {
        "tico": (tico, tico_cifar10),
        "tico_momentum": (tico, tico_cifar10),
        "mmcr": (mmcr, mmcr_cifar10),
    }[name]
    config = config_module.get_config("smoke")
    if name == "tico_momentum":  # lightly's form: centred, an EMA network embeds view 2
        config.method.base_momentum = 0.99
        config.method.center_embeddings = True
    config, mesh, run, state = helpers.smoke_run(config)
    if name == "tico_momentum":
        target_before = jax.device_get(state.method_state["target"]["params"])
    rng = np.random.default_rng(0)
    b = config.train.batch_size
    views = config.data.num_views
    host = {
        "global": rng.normal(size=(b, views, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
    }
    batch = sharding.to_global(host, mesh)

    @jax.jit
    def loss(state):
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        zero_state = jax.tree.map(jnp.zeros_like, state.method_state)
        return module.loss_fn(run.model, variables, batch, zero_state, config.method, None, 0)[0]

    before = float(loss(state))
    for _ in range(4):
        state, metrics = run.train_step(state, batch)
        assert not jax.device_get(metrics["train/nonfinite"])
    chex.assert_tree_all_finite(jax.device_get(state.params))
    assert float(loss(state)) < before
    if name == "tico_momentum":  # the EMA network moved towards the online one
        after = jax.tree.leaves(jax.device_get(state.method_state["target"]["params"]))
        before = jax.tree.leaves(target_before)
        assert any(not np.allclose(a, b) for a, b in zip(after, before, strict=True))
    if name.startswith("tico"):  # the EMA covariance moved from zero towards the Gram
        covariance = np.asarray(state.method_state["covariance"])
        assert covariance.shape == (16, 16) and np.trace(covariance) > 0.1


def test_koleo_matches_numpy_and_falls_as_points_spread():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 5)).astype(np.float32)
    u = _unit(x)
    dots = u @ u.T
    np.fill_diagonal(dots, -np.inf)
    nearest = dots.argmax(1)
    distances = np.linalg.norm(u - u[nearest] + 1e-8, axis=1)
    np.testing.assert_allclose(
        capacity.koleo(jnp.asarray(x)), -np.mean(np.log(distances + 1e-8)), rtol=1e-5
    )
    clustered = np.ones((20, 5), np.float32) + 0.05 * x
    assert float(capacity.koleo(jnp.asarray(x))) < float(capacity.koleo(jnp.asarray(clustered)))
    # Duplicates stay finite, with finite gradients.
    duplicated = np.concatenate([x[:10], x[:10]])
    assert np.isfinite(float(capacity.koleo(jnp.asarray(duplicated))))
    assert np.all(np.isfinite(jax.grad(capacity.koleo)(jnp.asarray(duplicated))))
