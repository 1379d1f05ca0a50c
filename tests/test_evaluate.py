"""`jaxssl eval`: restore any checkpoint onto the current devices, evaluate, report."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import errors, evaluate, methods, saved_config, sharding, trainer
from jaxssl.configs import byol_cifar10, simclr_cifar10
from jaxssl.evals import features
from tests import helpers


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory):
    """A workdir as `jaxssl train` leaves it: config.json and a checkpoint saved on 8 devices.

    The state is the smoke model at init (training it would only add compile time here; the
    smoke tests train it), saved at step 2.
    """
    workdir = str(tmp_path_factory.mktemp("eval_smoke"))
    assert jax.device_count() == 8
    helpers.save_init_checkpoint(workdir, simclr_cifar10.get_config("smoke"), step=2)
    return workdir


def test_restore_on_one_device_gives_the_saved_variables(smoke_workdir):
    config = saved_config.load(smoke_workdir)
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 1}))
    model, variables, step = evaluate.restore_state(config, smoke_workdir, mesh, None)
    saved = helpers.restore_checkpoint(smoke_workdir, config)
    assert step == 2 and int(saved.step) == 2
    expected = {"params": saved.params, "batch_stats": saved.batch_stats}
    for got, want in zip(*map(jax.tree.leaves, (variables, expected)), strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.sharding.device_set == {jax.devices()[0]}
    images = jnp.zeros((2, 32, 32, 3))
    assert model.apply(variables, images, method=model.embed).shape == (2, 32)


def test_offline_knn_and_rankme_equal_what_training_logs(smoke_workdir):
    config = saved_config.load(smoke_workdir)
    config.evals.run = ("knn", "rankme")
    report = evaluate.evaluate(config, smoke_workdir)
    state = helpers.restore_checkpoint(smoke_workdir, config)
    model = methods.get_method(config.method.name).build_model(config)
    extractor = features.Extractor(config, model, sharding.make_mesh(config.mesh))
    logged = trainer.evaluate_state(extractor, state)
    assert logged["knn/top1"] == logged[f"knn/top1_k{config.evals.knn.k}"]
    for key, value in report["metrics"].items():
        np.testing.assert_allclose(logged[key], value, rtol=1e-5, err_msg=key)
    assert set(logged) == set(report["metrics"]) | {"knn/top1"}


def test_eval_restores_an_8_device_checkpoint_on_1_device(smoke_workdir):
    result = helpers.run_jaxssl(
        "eval",
        "--workdir",
        smoke_workdir,
        "--config.evals.linear.max_steps=50",
        "--config.evals.linear.weight_decays=(0.0001, 0.01)",
        "--config.evals.spectral.num_pairs=64",
        "--config.evals.plots.num_queries=4",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(smoke_workdir, "eval", "2.json")) as f:
        report = json.load(f)
    assert report["devices"] == 1 and report["step"] == 2
    metrics = report["metrics"]
    for key in (
        "knn/top1_k200",
        "knn/majority_top1_k10",
        "linear/top1",
        "linear/top5",
        "rankme/backbone",
        "rankme/projector",
        "alignment/backbone",
        "uniformity/projector",
    ):
        assert np.isfinite(metrics[key]), key
    assert metrics["linear/weight_decay"] in (1e-4, 1e-2)
    assert metrics["knn/top1_k10"] > 0.5  # fake classes are colour-coded
    assert "memory=train, queries=test" in report["protocols"]["knn"]
    assert "| linear | top1 |" in result.stdout
    with open(os.path.join(smoke_workdir, "eval", "2.md")) as f:
        assert f.read() == evaluate.markdown_table(report)
    for name in ("2.md", "2_curves.png", "2_spectrum.png", "2_embedding.png", "2_retrieval.png"):
        assert os.path.getsize(os.path.join(smoke_workdir, "eval", name)) > 0, name


def test_eval_rejects_an_unknown_config_key(smoke_workdir):
    result = helpers.run_jaxssl("eval", "--workdir", smoke_workdir, "--config.evals.linear.wd=1")
    assert result.returncode != 0
    assert "weight_decays" in result.stderr.split("Valid fields")[1]


def _halve_teacher(state):
    """A BYOL state whose EMA teacher differs from the online network (at init they agree)."""
    target = jax.tree.map(lambda x: 0.5 * x + 0.25, state.method_state["target"])
    return state.replace(method_state={**state.method_state, "target": target})


@pytest.fixture(scope="module")
def byol_workdir(tmp_path_factory):
    """A BYOL smoke checkpoint (step 3) whose teacher differs from its online network."""
    workdir = str(tmp_path_factory.mktemp("eval_byol"))
    helpers.save_init_checkpoint(
        workdir, byol_cifar10.get_config("smoke"), step=3, edit=_halve_teacher
    )
    return workdir


@pytest.mark.parametrize("encoder", ["online", "target"])
def test_eval_restores_the_network_evals_encoder_names(byol_workdir, encoder):
    config = saved_config.load(byol_workdir)
    config.evals.encoder = encoder
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 1}))
    _, variables, _ = evaluate.restore_state(config, byol_workdir, mesh, None)
    saved = helpers.restore_checkpoint(byol_workdir, config)
    teacher = saved.method_state["target"]
    assert set(teacher["params"]) == {"backbone", "projector"}
    for collection, online in (("params", saved.params), ("batch_stats", saved.batch_stats)):
        for name, tree in online.items():
            # The teacher's modules from the teacher (with "target"), the rest (predictor,
            # probe) always online.
            want = (
                teacher[collection][name]
                if encoder == "target" and name in teacher[collection]
                else tree
            )
            for got, expected in zip(
                *map(jax.tree.leaves, (variables[collection][name], want)), strict=True
            ):
                np.testing.assert_array_equal(got, expected, err_msg=f"{collection}/{name}")
    # The two networks differ, so the test above could tell them apart.
    online_leaf = jax.tree.leaves(saved.params["backbone"])[0]
    teacher_leaf = jax.tree.leaves(teacher["params"]["backbone"])[0]
    assert not np.allclose(online_leaf, teacher_leaf)


def test_evaluated_variables_rejects_target_without_a_teacher_and_unknown_names():
    params, stats = {"backbone": {"w": jnp.ones(2)}}, {}
    assert features.evaluated_variables("online", params, stats, {}) == {
        "params": params,
        "batch_stats": stats,
    }
    with pytest.raises(errors.ConfigError, match="keeps none"):
        features.evaluated_variables("target", params, stats, {"queue": jnp.zeros(3)})
    with pytest.raises(errors.ConfigError, match="evals.encoder must be one of"):
        features.evaluated_variables("teacher", params, stats, {})


def test_train_with_a_target_encoder_for_a_method_without_teacher_fails_before_writing(tmp_path):
    config = simclr_cifar10.get_config("smoke")
    config.evals.encoder = "target"
    with pytest.raises(errors.ConfigError, match="keeps none"):
        trainer.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))
