"""LeJEPA: the loss is its two logged terms weighted by lambd; local views; train steps. SIGReg
as a drop-in regularizer of other methods (``config.sigreg``)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import errors, sharding, sweep
from jaxssl import step as step_lib
from jaxssl.configs import lejepa_cifar10, vicreg_cifar10
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


@pytest.mark.slow  # ~19 s of train steps; the loss check stays in the default lane
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


# --- SIGReg as a drop-in regularizer of other methods (config.sigreg, added by the step) ---


def _vicreg_sigreg_run(weight, **method_changes):
    config = vicreg_cifar10.get_config("smoke")
    config.sigreg.weight = weight
    config.method.update(method_changes)
    return helpers.smoke_run(config)


def test_sigreg_penalty_is_the_views_mean_with_shared_directions_and_flags_collapse():
    rng = jax.random.key(3)
    z = jax.random.normal(jax.random.key(0), (512, 2, 16))
    config = vicreg_cifar10.get_config("smoke").sigreg
    key = jax.random.fold_in(rng, step_lib._SIGREG_STREAM)
    expected = np.mean([gaussianity.sliced_epps_pulley(z[:, v], key) for v in range(2)])
    gaussian = float(step_lib.sigreg_penalty(z, rng, config))
    np.testing.assert_allclose(gaussian, expected, rtol=1e-6)
    collapsed = float(step_lib.sigreg_penalty(jnp.ones_like(z), rng, config))
    assert gaussian < 1.0 < 50 * gaussian < collapsed
    with pytest.raises(errors.ConfigError, match="sigreg.weight"):
        step_lib.sigreg_penalty(None, rng, config)


def test_sigreg_dropin_adds_its_weighted_term_to_the_step_loss():
    weight = 0.25
    plain_config, mesh, plain_run, state = _vicreg_sigreg_run(0.0)
    _, _, run, _ = _vicreg_sigreg_run(weight)
    batch = sharding.to_global(helpers.random_views_batch(plain_config), mesh)
    _, plain = plain_run.train_step(jax.tree.map(jnp.copy, state), batch)
    _, metrics = run.train_step(jax.tree.map(jnp.copy, state), batch)
    assert "train/sigreg" not in plain and float(metrics["train/sigreg"]) > 0
    np.testing.assert_allclose(
        metrics["train/loss"],
        plain["train/loss"] + weight * metrics["train/sigreg"],
        rtol=1e-5,
    )


@pytest.mark.slow  # ~15 s of train steps
def test_invariance_plus_sigreg_alone_trains():
    # EB-JEPA's variant: VICReg's variance and covariance terms replaced by SIGReg.
    config, mesh, run, state = _vicreg_sigreg_run(1.0, std_coeff=0.0, cov_coeff=0.0)
    batch = sharding.to_global(helpers.random_views_batch(config), mesh)
    first = None
    for _ in range(4):
        state, metrics = run.train_step(state, batch)
        assert not jax.device_get(metrics["train/nonfinite"])
        first = float(metrics["train/loss"]) if first is None else first
    assert float(metrics["train/loss"]) < first


def test_a_method_without_embeddings_refuses_the_sigreg_dropin():
    # MAE reconstructs pixels: no embeddings to regularize, a clear error at the first step.
    mae = helpers.method_smoke_config("mae")
    mae.sigreg.weight = 0.1
    mae_config, mae_mesh, mae_run, mae_state = helpers.smoke_run(mae)
    mae_batch = sharding.to_global(helpers.random_views_batch(mae_config), mae_mesh)
    with pytest.raises(errors.ConfigError, match="LossAux.embeddings"):
        mae_run.train_step(mae_state, mae_batch)


def test_the_sigreg_weight_can_be_swept():
    config = vicreg_cifar10.get_config("smoke")
    parsed = sweep.parse(["sigreg.weight=0.0,0.5"], config)
    _, values = sweep.hyperparameters([parsed.replica_config(config, r) for r in range(2)])
    np.testing.assert_allclose(values["sigreg.weight"], [0.0, 0.5])
