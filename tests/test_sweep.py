"""Sweeps in one program: replica r of a sweep is the single run with its seed and values."""

import json
import os

import jax
import numpy as np
import pytest

from jaxssl import errors, evaluate, export, sharding, sweep, trainer
from jaxssl.evals import dynamics
from tests import helpers
from tools import model_selection


def _config(method_name="simclr", **method):
    config = helpers.method_smoke_config(method_name)
    config.optim.name = "sgd"  # LARS+warmup starts at lr 0; SGD moves params on step 1
    config.optim.warmup_epochs = 0.0
    config.method.update(method)
    return config


def test_parse_takes_the_product_in_flag_order():
    config = _config()
    parsed = sweep.parse(["optim.base_lr=0.1,0.3", "seed=0,1,2"], config)
    assert parsed.size == 6
    assert parsed.fields == ("optim.base_lr", "seed")
    assert parsed.values[:3] == ((0.1, 0), (0.1, 1), (0.1, 2))
    assert isinstance(parsed.values[0][1], int)
    assert sweep.Sweep.from_json(parsed.to_json()) == parsed
    assert parsed.label(4) == "optim.base_lr=0.3 seed=1"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("model.width=4,8", "model.width"),  # an int: changes shapes
        ("train.time_budget_minutes=1.0,2.0", "train.time_budget_minutes"),  # read by the host
        ("optim.nope=1,2", "no field"),
        ("optim.base_lr", "FIELD=V1,V2"),
        ("optim.base_lr=fast", "float values"),
    ],
)
def test_parse_refuses_with_the_field_named(spec, message):
    with pytest.raises(errors.ConfigError, match=message):
        sweep.parse([spec], _config())


def test_derived_fields_follow_and_shape_changes_are_refused():
    config = _config()
    parsed = sweep.parse(["optim.base_lr=0.1,0.3"], config)
    _, values = sweep.hyperparameters([parsed.replica_config(config, r) for r in range(2)])
    # lr = base_lr * batch / 256 follows its reference; both become traced arrays.
    scale = config.train.batch_size / 256
    np.testing.assert_allclose(values["optim.lr"], [0.1 * scale, 0.3 * scale], rtol=1e-6)
    assert set(values) == {"optim.base_lr", "optim.lr"}
    # A float whose derived field is a step count, which the schedule reads as a Python int.
    warmup = sweep.parse(["optim.warmup_epochs=0.0,0.5"], config)
    mesh = sharding.make_mesh(config.mesh, replicas=2)
    with pytest.raises(errors.ConfigError, match="optim.warmup_epochs.*\n.*Python value"):
        trainer.build(config, mesh, warmup)


def _single_runs_and_sweep(config, parsed, num_devices, steps=3):
    """Each replica alone on as many devices as its group of the sweep's mesh, then the sweep."""
    devices = jax.devices()[:num_devices]
    axis = sweep.replica_axis_size(parsed.size, num_devices, config.train.batch_size)
    config.mesh.data = num_devices // axis
    batches = [helpers.random_views_batch(config, seed) for seed in range(steps)]

    singles = []
    for replica in range(parsed.size):
        replica_config = parsed.replica_config(config, replica)
        mesh = sharding.make_mesh(replica_config.mesh, devices[: num_devices // axis])
        run = trainer.build(replica_config, mesh)
        state, losses = run.init_state(), []
        for batch in batches:
            state, metrics = run.train_step(state, sharding.to_global(batch, mesh))
            losses.append(float(metrics["train/loss"]))
        singles.append((jax.device_get(state.params), losses))

    mesh = sharding.make_mesh(config.mesh, devices, replicas=axis)
    run = trainer.build(config, mesh, parsed)
    state, losses = run.init_state(), []
    for batch in batches:
        state, metrics = run.train_step(state, sharding.to_global(batch, mesh))
        losses.append(np.asarray(metrics["train/loss"]))
    assert run.train_step._cache_size() == 1
    return singles, jax.device_get(state.params), np.stack(losses, axis=1), mesh


def _replica(tree, replica):
    return jax.tree.map(lambda x: x[replica], tree)


def _relative(a, b):
    diff = np.sqrt(
        sum(np.sum((x - y) ** 2) for x, y in zip(*map(jax.tree.leaves, (a, b)), strict=True))
    )
    return diff / np.sqrt(sum(np.sum(x**2) for x in jax.tree.leaves(a)))


@pytest.mark.parametrize(
    ("method_name", "specs", "num_devices"),
    [
        # Two replicas of traced seeds (keys) in the default lane; the slow lane's cases trace
        # the learning rate, a teacher's momentum and the weight decay.
        ("simclr", ["seed=0,3"], 1),
        # 8 devices: 2 replica groups of 4 devices; the replicas batched by vmap (slow lane:
        # the default lane's 1-device case and the end-to-end sweep on 8 devices cover the rest).
        pytest.param("simclr", ["optim.base_lr=0.1,0.4", "seed=3"], 8, marks=pytest.mark.slow),
        # An EMA teacher's momentum and the weight decay, traced.
        pytest.param(
            "byol",
            ["method.base_momentum=0.9,0.99", "optim.weight_decay=0.01"],
            8,
            marks=pytest.mark.slow,
        ),
    ],
)
def test_replica_equals_single_run(method_name, specs, num_devices):
    config = _config(method_name)
    # The CPU's default ("auto") unrolls the replicas; GPUs and TPUs vmap them.
    parsed = sweep.parse(specs, config, mode="vmap" if num_devices == 8 else "unroll")
    singles, params, losses, mesh = _single_runs_and_sweep(config, parsed, num_devices)
    if num_devices == 8:
        assert mesh.shape["replica"] == 2 and mesh.shape["data"] == 4
    for replica, (single_params, single_losses) in enumerate(singles):
        np.testing.assert_allclose(losses[replica], single_losses, rtol=1e-5, atol=1e-6)
        assert _relative(single_params, _replica(params, replica)) <= 1e-5
    # The replicas differ (the comparison is not vacuous).
    first = _replica(params, 0)
    assert all(_relative(first, _replica(params, r)) > 1e-4 for r in range(1, parsed.size))


@pytest.mark.slow  # ~2.5 min of compiles; the replica equality above stays in the default lane
def test_sweep_trains_resumes_evaluates_and_exports(tmp_path):
    workdir = str(tmp_path / "sweep")
    config = helpers.smoke_run_config(steps=4, checkpoint_every_steps=2)
    config.evals.dynamics.update(every_steps=2, num_images=64, batch_size=32)
    parsed = sweep.parse(["optim.base_lr=0.1,0.5"], config, data="independent")
    # Two steps, then the same command resumes to four (the time budget is off).
    trainer.train_and_evaluate(trainer.with_num_steps(config, 2), workdir, parsed)
    results = trainer.train_and_evaluate(config, workdir)  # the sweep is read from the workdir
    assert np.shape(results["knn/top1"]) == (2,)
    records = helpers.read_metrics(workdir)
    losses = [(r["step"], r["replica"]) for r in records if "train/loss" in r]
    assert losses == [(s, r) for s in (1, 2, 3, 4) for r in (0, 1)]
    assert {r["sweep/optim.base_lr"] for r in records} == {0.1, 0.5}
    assert sorted(os.listdir(os.path.join(workdir, "tensorboard"))) == ["replica_0", "replica_1"]
    with open(os.path.join(workdir, sweep.SWEEP_FILE)) as f:
        assert json.load(f)["data"] == "independent"
    # Training dynamics per replica, measured at steps 0, 2, 4 across the resume, with plots.
    for replica in (0, 1):
        spectrum = dynamics.load(workdir, f"replica_{replica}")["spectrum"]
        np.testing.assert_array_equal(spectrum["step"], [0, 2, 4])
        plots = os.path.join(workdir, "dynamics", "plots", f"replica_{replica}")
        assert os.path.exists(os.path.join(plots, "dynamics_summary.png"))
    # The two replicas' optimizers differ: so do their update-to-weight ratios.
    ratios = [
        dynamics.load(workdir, f"replica_{r}")["scalars"]["update_ratio/total"][-1] for r in (0, 1)
    ]
    assert ratios[1] > 2 * ratios[0]

    # Label-free model selection reads every replica (training's final evaluation).
    selection = model_selection.select([workdir])
    assert sorted(r["workdir"] for r in selection["runs"]) == [
        f"{workdir}#0 optim.base_lr=0.1",
        f"{workdir}#1 optim.base_lr=0.5",
    ]
    with pytest.raises(errors.ConfigError, match="another sweep"):
        trainer.train_and_evaluate(config, workdir, sweep.parse(["seed=1,2"], config))

    eval_config = config.copy_and_resolve_references()
    eval_config.evals.run = ("knn",)
    reports = list(evaluate.evaluate_replicas(eval_config, workdir))
    assert [r["replica"] for r in reports] == [0, 1]
    for replica, report in enumerate(reports):
        knn = report["metrics"][f"knn/top1_k{config.evals.knn.k}"]
        np.testing.assert_allclose(knn, results[f"knn/top1_k{config.evals.knn.k}"][replica])
        assert os.path.exists(os.path.join(workdir, "eval", f"4_replica{replica}.json"))
    with pytest.raises(errors.ConfigError, match="--replica"):
        export.export(workdir, str(tmp_path / "x.msgpack"))
    path = export.export(workdir, str(tmp_path / "r1.msgpack"), replica=1)
    backbone, variables = export.load(path)
    _, restored, _ = evaluate.restore_state(
        config, workdir, sharding.make_mesh(config.mesh), None, replica=1
    )
    np.testing.assert_allclose(
        jax.tree.leaves(variables["params"])[0],
        jax.tree.leaves(jax.device_get(restored["params"]["backbone"]))[0],
    )


@pytest.mark.slow
def test_sweep_resumes_exactly(tmp_path):
    config = helpers.smoke_run_config(steps=4, checkpoint_every_steps=2)
    parsed = sweep.parse(["optim.base_lr=0.1,0.5", "seed=0,1"], config)
    resumed, fresh = str(tmp_path / "resumed"), str(tmp_path / "fresh")
    trainer.train_and_evaluate(trainer.with_num_steps(config, 2), resumed, parsed)
    trainer.train_and_evaluate(config, resumed, parsed)
    trainer.train_and_evaluate(config, fresh, parsed)

    def losses(workdir):
        return [
            (r["step"], r["replica"], r["train/loss"])
            for r in helpers.read_metrics(workdir)
            if "train/loss" in r
        ]

    assert [x[:2] for x in losses(resumed)] == [x[:2] for x in losses(fresh)]
    np.testing.assert_allclose(
        [x[2] for x in losses(resumed)], [x[2] for x in losses(fresh)], rtol=1e-6
    )
