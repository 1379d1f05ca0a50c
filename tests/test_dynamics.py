"""Training-dynamics instruments: the probe set, the measurement, its files and plots."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import errors, methods, optim, sharding, trainer
from jaxssl.data import color
from jaxssl.evals import dynamics, dynamics_plots, features, layers, spectral
from tests import helpers
from tools import plot_dynamics

NUM_IMAGES, BATCH_SIZE = 64, 32  # two chunks: the gradient is a mean over chunks


def _smoke(method_name: str):
    """The method's smoke config, a 64-image probe set, LARS with no warm-up (so the first
    update is not zero), its mesh, model, method and fresh state."""
    config = helpers.method_smoke_config(method_name)
    config.evals.dynamics.num_images = NUM_IMAGES
    config.evals.dynamics.batch_size = BATCH_SIZE
    config.optim.name = "lars"
    config.optim.warmup_epochs = 0.0
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    return config, mesh, run, methods.get_method(config.method.name), run.init_state()


@pytest.fixture(scope="module")
def vicreg(tmp_path_factory):
    """VICReg measured at steps 0, 2, 4 (the same state) in a fresh workdir."""
    config, mesh, run, method, state = _smoke("vicreg")
    workdir = str(tmp_path_factory.mktemp("vicreg"))
    instrument = dynamics.Dynamics(config, run.model, method, mesh, workdir)
    measured = [instrument.measure(state, step) for step in (0, 2, 4)]
    return config, mesh, run, method, state, workdir, instrument, measured


# --- Pure functions ---


def test_collapse_indicator_is_zero_when_collapsed_and_one_when_isotropic():
    rng = np.random.default_rng(0)
    constant = jnp.ones((512, 64)) * rng.normal(size=(1, 64))
    np.testing.assert_allclose(spectral.collapse_indicator(constant), 0.0, atol=1e-5)
    isotropic = jnp.asarray(rng.normal(size=(4096, 64)), jnp.float32)
    np.testing.assert_allclose(spectral.collapse_indicator(isotropic), 1.0, atol=0.03)
    # Collapsed onto a 1-D subspace (a line through 0): the std of z / |z| is that of a sign.
    line = jnp.asarray(rng.normal(size=(4096, 1)) * np.ones((1, 64)), jnp.float32)
    np.testing.assert_allclose(spectral.collapse_indicator(line), 1.0, atol=0.03)


def test_layer_statistics_match_numpy():
    params = {"dense": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.zeros(3)}}
    updates = {"dense": {"kernel": jnp.full((2, 3), 0.02), "bias": jnp.ones(3)}}
    norms = layers.leaf_norms(params)
    assert set(norms) == {"dense/kernel", "dense/bias"}
    np.testing.assert_allclose(norms["dense/kernel"], np.sqrt(6 * 4.0), rtol=1e-6)
    ratios = layers.update_ratios(updates, params)
    np.testing.assert_allclose(ratios["dense/kernel"], 0.01, rtol=1e-6)
    assert np.isnan(ratios["dense/bias"])  # |w| = 0: undefined, not infinite
    trust = layers.lars_trust_ratios(updates, params, trust_coefficient=0.5, weight_decay=1.0)
    assert set(trust) == {"dense/kernel"}  # biases are not adapted
    np.testing.assert_allclose(trust["dense/kernel"], 0.5 * 2.0 / 2.02, rtol=1e-6)
    excluded = layers.lars_trust_ratios(updates, params, 0.5, 1.0, exclude=("dense",))
    assert excluded == {}  # optim.exclude_from_adaptation: not adapted either
    np.testing.assert_allclose(layers.relative_distance(params, params), 0.0)
    scaled = jax.tree.map(lambda x: 1.5 * x, params)
    np.testing.assert_allclose(layers.relative_distance(scaled, params), 0.5, rtol=1e-6)


# --- The probe set ---


def test_probe_set_is_deterministic_and_sized(vicreg):
    config, *_, instrument, _ = vicreg
    probe = instrument.probe
    again = dynamics.make_probe_set(config.data, NUM_IMAGES, config.evals.dynamics.seed)
    for a, b in zip(jax.tree.leaves(probe), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert probe.images.shape == (NUM_IMAGES, 32, 32, 3) and probe.images.dtype == np.uint8
    assert probe.views["global"].shape == (NUM_IMAGES, 2, 32, 32, 3)
    assert len(np.unique(probe.indices)) == NUM_IMAGES
    other = dynamics.make_probe_set(config.data, NUM_IMAGES, seed=1)
    assert not np.array_equal(other.indices, probe.indices)


# --- The measurement and its files ---


def test_files_are_columnar_keyed_by_step(vicreg):
    *_, workdir, instrument, measured = vicreg
    loaded = dynamics.load(workdir)
    assert set(loaded) == set(dynamics.FILES)
    projector_dim = measured[0]["spectrum"]["projector"].shape[0]
    for file, columns in loaded.items():
        np.testing.assert_array_equal(columns["step"], [0, 2, 4])
        assert set(columns) == {"step", *measured[0][file]}
    assert loaded["spectrum"]["backbone"].shape == (3, 32)  # smoke ResNet: 32 features
    assert loaded["spectrum"]["projector"].shape == (3, projector_dim)
    scalars = loaded["scalars"]
    for key in ("rankme/backbone", "collapse/projector", "alignment/projector", "loss/total"):
        assert scalars[key].shape == (3,) and np.all(np.isfinite(scalars[key]))
    assert "aux/vicreg_invariance" in scalars  # the method's own terms
    assert "grad_norm/projector/dense1/kernel" in loaded["layers"]
    assert "trust_ratio/projector/dense1/kernel" in loaded["layers"]  # LARS
    assert "trust_ratio/projector/dense3/bias" not in loaded["layers"]
    # The same state measured three times gives the same numbers (a fixed probe set).
    np.testing.assert_allclose(scalars["loss/total"], scalars["loss/total"][0], rtol=1e-5)


def test_resume_drops_later_steps_and_remeasuring_replaces(vicreg):
    config, mesh, run, method, state, workdir, instrument, _ = vicreg
    copy = os.path.join(workdir, "copy")
    shutil.copytree(os.path.join(workdir, dynamics.DIRECTORY), copy)
    resumed = dynamics.Dynamics(
        config, run.model, method, mesh, copy, resume_step=2, probe=instrument.probe
    )
    for columns in dynamics.load(copy).values():
        np.testing.assert_array_equal(columns["step"], [0, 2])
    del resumed
    # A named copy shares the compiled measurement and writes to its own subdirectory.
    replica = instrument.with_name("replica_1")
    replica.measure(state, 3)
    replica.measure(state, 1)  # a step at or before the last replaces what follows
    np.testing.assert_array_equal(dynamics.load(workdir, "replica_1")["scalars"]["step"], [1])
    np.testing.assert_array_equal(dynamics.load(workdir)["scalars"]["step"], [0, 2, 4])


def test_chunks_must_divide_the_probe_set_and_nothing_written_loads_empty(vicreg, tmp_path):
    config, mesh, run, method, *_ = vicreg
    config = config.copy_and_resolve_references()
    config.evals.dynamics.batch_size = 48
    with pytest.raises(errors.ConfigError, match="must divide"):
        dynamics.Dynamics(config, run.model, method, mesh, str(tmp_path))
    assert dynamics.load(str(tmp_path)) == {}


def test_spectrum_is_sorted_nonnegative_and_sums_to_the_trace(vicreg):
    config, mesh, run, _, state, _, instrument, measured = vicreg
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    images = color.to_model_input(instrument.probe.images, config.data.mean, config.data.std)
    embedded = jax.device_get(
        jax.jit(features.embed_views, static_argnums=0)(run.model, variables, images)
    )
    for name in dynamics.EMBEDDINGS:
        eigenvalues = measured[0]["spectrum"][name]
        assert np.all(eigenvalues >= 0) and np.all(np.diff(eigenvalues) <= 0)
        trace = np.trace(np.cov(np.asarray(embedded[name], np.float64), rowvar=False))
        np.testing.assert_allclose(eigenvalues.sum(), trace, rtol=1e-3)
        np.testing.assert_allclose(
            measured[0]["scalars"][f"rankme/{name}"], spectral.rankme(embedded[name]), rtol=1e-3
        )


def test_update_ratio_is_the_optimizer_update_over_the_weight(vicreg):
    """One leaf, from the loss's gradient computed here, chunk by chunk.

    Only that leaf's gradient is taken (a smaller backward pass to compile); LARS updates a
    leaf from its own gradient, weight and momentum alone, so the other leaves' gradients
    can be zeros.
    """
    config, mesh, run, method, state, _, instrument, measured = vicreg
    seed_key = jax.random.key(config.evals.dynamics.seed)
    augment_key = jax.random.fold_in(seed_key, dynamics._AUGMENT_STREAM)
    loss_key = jax.random.fold_in(seed_key, dynamics._LOSS_STREAM)
    probe = instrument.probe
    weight = state.params["projector"]["dense1"]["kernel"]

    def with_leaf(leaf):
        projector = {**state.params["projector"], "dense1": {"kernel": leaf}}
        return {**state.params, "projector": projector}

    @jax.jit
    def leaf_grad(views, labels, indices, chunk):
        batch = {"global": views, "label": labels, "index": indices}
        batch = color.augment_batch(jax.random.fold_in(augment_key, chunk), batch, config.data)

        def loss(leaf):
            variables = {"params": with_leaf(leaf), "batch_stats": state.batch_stats}
            value, _ = method.loss_fn(
                run.model,
                variables,
                batch,
                state.method_state,
                config.method,
                jax.random.fold_in(loss_key, chunk),
                state.step,
            )
            return value

        return jax.grad(loss)(weight)

    chunks = np.split(np.arange(NUM_IMAGES), NUM_IMAGES // BATCH_SIZE)
    grad = np.mean(
        [
            leaf_grad(probe.views["global"][rows], probe.labels[rows], probe.indices[rows], chunk)
            for chunk, rows in enumerate(chunks)
        ],
        axis=0,
    )
    grads = jax.tree.map(jnp.zeros_like, state.params)
    grads["projector"]["dense1"]["kernel"] = jnp.asarray(grad)
    tx, _ = optim.make_optimizer(config.optim, int(config.train.num_steps))
    updates, _ = tx.update(grads, state.opt_state, state.params)
    update = np.asarray(updates["projector"]["dense1"]["kernel"])
    weight = np.asarray(weight)
    path = "projector/dense1/kernel"
    per_layer = measured[0]["layers"]
    np.testing.assert_allclose(per_layer[f"grad_norm/{path}"], np.linalg.norm(grad), rtol=1e-3)
    ratio = np.linalg.norm(update) / np.linalg.norm(weight)
    assert ratio > 0  # no warm-up: the first update moves the weights
    np.testing.assert_allclose(per_layer[f"update_ratio/{path}"], ratio, rtol=1e-3)
    trust = (
        config.optim.trust_coefficient
        * np.linalg.norm(weight)
        / np.linalg.norm(grad + config.optim.weight_decay * weight)
    )
    np.testing.assert_allclose(per_layer[f"trust_ratio/{path}"], trust, rtol=1e-3)


@pytest.mark.slow  # ~26 s of BYOL steps
def test_teacher_distance_is_zero_at_init_and_tracks_the_student(tmp_path):
    config, mesh, run, method, state = _smoke("byol")
    instrument = dynamics.Dynamics(config, run.model, method, mesh, str(tmp_path))
    scalars = instrument.measure(state, 0)["scalars"]
    np.testing.assert_allclose(scalars["teacher/relative_distance"], 0.0, atol=1e-7)
    assert "aux/prediction_cosine" in scalars
    # The student's backbone + projector 10% larger than the teacher's: distance 0.1.
    scaled = {**state.params}
    for name in ("backbone", "projector"):
        scaled[name] = jax.tree.map(lambda x: 1.1 * x, state.params[name])
    scalars = instrument.measure(state.replace(params=scaled), 1)["scalars"]
    np.testing.assert_allclose(scalars["teacher/relative_distance"], 0.1, rtol=1e-4)


# --- Plots ---


def test_plots_and_the_tool_draw_every_run(vicreg, tmp_path):
    *_, workdir, instrument, _ = vicreg
    files = dynamics_plots.plot(workdir, str(tmp_path / "one"))
    assert set(files) == {"spectrum", "rank", "summary"}
    assert os.path.basename(files["summary"]) == "dynamics_summary.png"
    for path in files.values():
        assert os.path.getsize(path) > 0
    # A sweep's workdir holds only dynamics/replica_*/ sets: the tool draws each of them.
    sweep = tmp_path / "sweep"
    for name in ("replica_0", "replica_1"):
        for file in dynamics.FILES:
            os.makedirs(sweep / dynamics.DIRECTORY / name, exist_ok=True)
            shutil.copy(
                os.path.join(workdir, dynamics.DIRECTORY, f"{file}.npz"),
                sweep / dynamics.DIRECTORY / name,
            )
    assert set(dynamics_plots.find_runs(str(sweep))) == {"replica_0", "replica_1"}
    plot_dynamics.main([str(sweep / dynamics.DIRECTORY)])
    plots = sweep / dynamics.DIRECTORY / "plots"
    assert (plots / "replica_0" / "dynamics_summary.png").exists()
    assert (plots / "replica_1" / "dynamics_spectrum.png").exists()
    medians = dynamics_plots.median_by_group(dynamics.load(workdir)["layers"], "update_ratio")
    assert "backbone/stage1" in medians and "projector/dense1" in medians
