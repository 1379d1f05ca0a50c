"""LeJEPA: the loss is its two logged terms weighted by lambd; local views; train steps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import sharding
from jaxssl.configs import lejepa_cifar10
from jaxssl.losses import gaussianity
from jaxssl.methods import lejepa
from tests import helpers


def _build(**method_changes):
    config = lejepa_cifar10.get_config("smoke")
    config.method.update(method_changes)
    return helpers.smoke_run(config)


def _views(config, seed=0, num_local=0):
    rng = np.random.default_rng(seed)
    b = config.train.batch_size
    batch = {
        "global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
    }
    if num_local:
        batch["local"] = rng.normal(size=(b, num_local, 16, 16, 3)).astype(np.float32)
    return batch


def test_the_loss_is_lambd_weighted_and_local_views_join_both_terms():
    config, _, run, state = _build(lambd=0.3)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    key = jax.random.key(5)

    @jax.jit
    def loss(batch):
        value, aux = lejepa.loss_fn(run.model, variables, batch, {}, config.method, key, 0)
        return value, aux.metrics, aux.batch_stats

    batch = _views(config, num_local=3)
    value, metrics, _ = loss({"global": batch["global"], "label": batch["label"]})
    np.testing.assert_allclose(
        value,
        0.7 * metrics["train/lejepa_prediction"] + 0.3 * metrics["train/lejepa_sigreg"],
        rtol=1e-6,
    )
    with_local, local_metrics, local_stats = loss(batch)
    assert float(with_local) != float(value)
    # The terms rebuilt from the projections: the local views predict the global mean too, and
    # SIGReg is the mean over all five views with the step's directions.
    (_, z_global), stats = jax.jit(
        lambda v: run.model.apply(variables, v, mutable=["batch_stats"])
    )(batch["global"].reshape((-1, 32, 32, 3)))
    (_, z_local), _ = jax.jit(lambda v: run.model.apply(variables, v, mutable=["batch_stats"]))(
        batch["local"].reshape((-1, 16, 16, 3))
    )
    b = config.train.batch_size
    z_global, z_local = z_global.reshape((b, 2, -1)), z_local.reshape((b, 3, -1))
    z_all = jnp.concatenate([z_global, z_local], axis=1)
    np.testing.assert_allclose(
        local_metrics["train/lejepa_prediction"],
        gaussianity.mean_view_prediction(z_global, z_all),
        rtol=1e-5,
    )
    sigreg = np.mean([gaussianity.sliced_epps_pulley(z_all[:, v], key) for v in range(5)])
    np.testing.assert_allclose(local_metrics["train/lejepa_sigreg"], sigreg, rtol=1e-5)
    # The running BatchNorm statistics are the global views' only.
    chex.assert_trees_all_close(local_stats, stats["batch_stats"], rtol=1e-6)


def test_smoke_train_steps_stay_finite_and_lower_the_loss():
    config, mesh, run, state = _build()
    batch = sharding.to_global(_views(config), mesh)

    @jax.jit
    def loss(state):  # with fixed directions: the step redraws them from its own key
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        value, _ = lejepa.loss_fn(run.model, variables, batch, {}, config.method, key, 0)
        return value

    key = jax.random.key(0)
    before = float(loss(state))
    for _ in range(4):
        state, metrics = run.train_step(state, batch)
        assert not jax.device_get(metrics["train/nonfinite"])
    chex.assert_tree_all_finite(jax.device_get(state.params))
    assert float(loss(state)) < before
