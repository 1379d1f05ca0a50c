"""Offline evaluation: linear probe, kNN votes, spectral metrics, export, `jaxssl eval`."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import checkpoint, evaluate, export, platform, saved_config, sharding, trainer
from jaxssl.configs import simclr_cifar10, vicreg_cifar10
from jaxssl.evals import knn, linear, spectral

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clusters(rng, centres, n):
    """``n`` points around ``centres`` ``[C, D]`` (unit noise), with their labels."""
    labels = rng.integers(0, len(centres), n)
    features = centres[labels] + rng.normal(size=(n, centres.shape[1]))
    return jnp.asarray(features, jnp.float32), jnp.asarray(labels, jnp.int32)


def _mesh():
    return sharding.make_mesh(ml_collections.ConfigDict({"data": -1}))


def _split(features, labels):
    return features, labels, jnp.ones(labels.shape, bool)


# --- Linear probe ---

# One problem shape for the probe tests below, so `linear.fit` compiles once for all of them.
_PROBE = dict(weight_decays=(1e-4, 1e-2, 1.0), holdout_fraction=0.1, num_classes=4, max_steps=200)


def _probe_problem(seed, spread):
    rng = np.random.default_rng(seed)
    centres = spread * rng.normal(size=(4, 16))
    return _split(*_clusters(rng, centres, 1000)), _split(*_clusters(rng, centres, 1000))


def test_linear_probe_separates_gaussian_clusters():
    train, test = _probe_problem(0, spread=3.0)
    metrics = linear.linear_probe(train, test, **_PROBE)
    assert metrics["linear/top1"] >= 0.99, metrics
    assert metrics["linear/top5"] == 1.0
    assert metrics["linear/weight_decay"] in _PROBE["weight_decays"]


def test_linear_probe_on_random_labels_is_at_chance():
    train, test = _probe_problem(1, spread=0.0)  # every class the same distribution
    metrics = linear.linear_probe(train, test, **_PROBE)
    assert abs(metrics["linear/top1"] - 0.25) < 0.05, metrics


def test_weight_decay_is_chosen_without_the_test_split():
    train, test = _probe_problem(2, spread=0.4)
    clean = linear.linear_probe(train, test, **_PROBE)
    # Test features full of NaN and scrambled labels: any use of them in the choice would show.
    poisoned_test = (jnp.full_like(test[0], jnp.nan), test[1][::-1], test[2])
    poisoned = linear.linear_probe(train, poisoned_test, **_PROBE)
    for key, value in clean.items():
        if key.startswith("linear/holdout") or key == "linear/weight_decay":
            assert poisoned[key] == value, key
    assert np.isnan(poisoned["linear/top1"]) or poisoned["linear/top1"] != clean["linear/top1"]
    # And the choice is exactly the one made from train arrays alone.
    chosen, _ = linear.select_weight_decay(*train, **_PROBE)
    assert chosen == clean["linear/weight_decay"]


def test_holdout_is_the_end_of_the_real_train_rows():
    mask = jnp.asarray([True] * 18 + [False, False] + [True] * 2)  # padding inside: multi-process
    fit_mask, holdout_mask = linear.holdout_split(mask, 0.1)
    np.testing.assert_array_equal(np.flatnonzero(holdout_mask), [20, 21])
    assert not np.any(fit_mask & holdout_mask)
    np.testing.assert_array_equal(fit_mask | holdout_mask, mask)


def test_flipped_copies_of_held_out_rows_stay_out_of_the_fit():
    # Pure noise with more dimensions than rows: a classifier that saw the held-out rows (here
    # as identical "flipped" copies) would memorize them; one that did not is at chance.
    rng = np.random.default_rng(3)
    features = jnp.asarray(rng.normal(size=(160, 400)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 2, 160), jnp.int32)
    _, holdout = linear.select_weight_decay(
        features,
        labels,
        jnp.ones(160, bool),
        weight_decays=(1e-6,),
        holdout_fraction=0.5,
        num_classes=2,
        max_steps=200,
        train_flip_features=features,
    )
    assert holdout[1e-6] < 0.8, holdout


# --- Bag of patches (EMP-SSL's evaluation embedding) ---


def test_bag_of_patches_is_the_mean_over_the_patch_embeddings():
    patches = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8, 3), np.uint8)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32)

    def embed(variables, x):  # a nonlinear embedding: averaging must happen after it
        x = x.astype(jnp.float32) / 255.0
        return {"a": jnp.tanh(x @ variables).max((1, 2)), "b": x.mean((1, 2))}

    bagged = jax.jit(knn.bag_of_patches(embed))(weights, patches)
    for name in ("a", "b"):
        expected = np.mean([embed(weights, patches[:, p])[name] for p in range(3)], axis=0)
        np.testing.assert_allclose(bagged[name], expected, rtol=1e-5, atol=1e-6)
    # The patches differ from one another, so the bag is not just one patch's embedding.
    assert not np.allclose(bagged["a"], embed(weights, patches[:, 0])["a"])
    # A bag of copies of one image embeds as that image.
    copies = np.repeat(patches[:, :1], 3, axis=1)
    full = jax.jit(knn.bag_of_patches(embed))(weights, copies)
    np.testing.assert_allclose(full["a"], embed(weights, patches[:, 0])["a"], rtol=1e-5, atol=1e-6)


def test_majority_and_weighted_votes_differ_as_defined():
    # One very close neighbour of class 1, two far ones of class 0.
    similarities = jnp.asarray([[0.99, 0.1, 0.05]])
    labels = jnp.asarray([[1, 0, 0]])
    kwargs = dict(ks=(1, 3), temperature=0.1, num_classes=2)
    np.testing.assert_array_equal(knn.vote(similarities, labels, **kwargs), [[1], [1]])
    np.testing.assert_array_equal(
        knn.vote(similarities, labels, weighted=False, **kwargs), [[1], [0]]
    )
    # A 1-1 tie in the majority vote goes to the more similar neighbour.
    np.testing.assert_array_equal(
        knn.vote(similarities[:, :2], labels[:, :2], weighted=False, **{**kwargs, "ks": (2,)}),
        [[1]],
    )


def test_knn_reports_every_k_and_the_protocol():
    rng = np.random.default_rng(4)
    centres = 4.0 * rng.normal(size=(4, 8))
    metrics = knn.evaluate_features(
        _split(*_clusters(rng, centres, 512)),
        _split(*_clusters(rng, centres, 512)),
        _mesh(),
        ks=(10, 20, 100),
        temperature=0.1,
        num_classes=4,
        majority=True,
    )
    assert sorted(metrics) == sorted(
        [f"knn/top1_k{k}" for k in (10, 20, 100)]
        + [f"knn/majority_top1_k{k}" for k in (10, 20, 100)]
    )
    assert min(metrics.values()) > 0.95
    assert (
        knn.protocol((20, 200), 0.1, "train", "test")
        == "kNN cosine T=0.1 k=20,200 weighted, memory=train, queries=test"
    )


# --- Spectral ---


def test_rankme_of_equal_singular_values_is_the_rank():
    rng = np.random.default_rng(5)
    for rank in (1, 3, 17):
        u, _ = np.linalg.qr(rng.normal(size=(300, rank)))
        v, _ = np.linalg.qr(rng.normal(size=(64, rank)))
        z = jnp.asarray(5.0 * u @ v.T, jnp.float32)  # [300, 64], rank r, all sigma = 5
        np.testing.assert_allclose(spectral.rankme(z), rank, rtol=1e-3)
        # Zero rows (zeroed padding) leave it unchanged.
        padded = jnp.concatenate([z, jnp.zeros((40, 64))])
        np.testing.assert_allclose(spectral.rankme(padded), rank, rtol=1e-3)


def test_rankme_matches_its_formula():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(200, 32)) * np.logspace(0, -3, 32)
    sigma = np.linalg.svd(z, compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    np.testing.assert_allclose(
        spectral.rankme(jnp.asarray(z, jnp.float32)), np.exp(-np.sum(p * np.log(p))), rtol=1e-4
    )


def test_alignment_and_uniformity_match_numpy():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(50, 6))
    y = x + 0.3 * rng.normal(size=(50, 6))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    expected_alignment = np.mean(np.sum((xn - yn) ** 2, axis=1))
    pairs = [(i, j) for i in range(50) for j in range(i + 1, 50)]
    expected_uniformity = np.log(
        np.mean([np.exp(-2 * np.sum((xn[i] - xn[j]) ** 2)) for i, j in pairs])
    )
    np.testing.assert_allclose(spectral.alignment(x, y), expected_alignment, rtol=1e-5)
    np.testing.assert_allclose(spectral.uniformity(x), expected_uniformity, rtol=1e-5)
    np.testing.assert_allclose(spectral.alignment(x, x), 0.0, atol=1e-6)


def test_covariance_spectrum_matches_numpy():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(100, 5)) @ rng.normal(size=(5, 5))
    expected = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False)))[::-1]
    np.testing.assert_allclose(spectral.covariance_spectrum(z), expected, rtol=1e-4, atol=1e-5)


# --- Saved config ---


def test_saved_config_restores_tuples_typed_nones_and_new_defaults(tmp_path):
    config = simclr_cifar10.get_config("smoke")
    saved = json.loads(config.to_json_best_effort())
    del saved["evals"]["linear"]  # a run trained before the field existed
    saved["data"]["augment_on_device"] = False  # ... and one with a switch since removed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = saved_config.load(str(tmp_path))
    assert "augment_on_device" not in loaded.data
    assert loaded.data.crop_scale == tuple(config.data.crop_scale)
    assert loaded.data.name == "fake" and loaded.model.width == config.model.width
    assert loaded.evals.linear.holdout_fraction == 0.1  # from jaxssl/configs/base.py
    loaded.data.data_dir = "/somewhere"  # typed str, as in base, though saved as null


def test_saved_config_of_a_non_simclr_method_matches_its_checkpoint(tmp_path):
    # The base config's method section is SimCLR's: none of it may leak into another method's.
    config = vicreg_cifar10.get_config("smoke")
    (tmp_path / "config.json").write_text(config.to_json_best_effort())
    loaded = saved_config.load(str(tmp_path))
    assert loaded.method.to_dict() == config.method.to_dict()
    stored = json.loads(config.to_json())
    assert checkpoint._defining(json.loads(loaded.to_json())) == checkpoint._defining(stored)


# --- End to end: a smoke run saved on 8 devices ---


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory):
    """A workdir as `jaxssl train` leaves it: config.json and a checkpoint saved on 8 devices.

    The state is the smoke model at init (training it would only add compile time here; the
    smoke tests train it), saved at step 2.
    """
    workdir = str(tmp_path_factory.mktemp("eval_smoke"))
    config = simclr_cifar10.get_config("smoke")
    mesh = _mesh()
    assert mesh.devices.size == 8
    run = trainer.build(config, mesh)
    state = jax.jit(run.init_fn, out_shardings=sharding.replicated(mesh))(run.init_key)
    state = state.replace(step=jnp.asarray(2, jnp.int32))
    checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config, keep=1)
    checkpointer.save(2, state)
    checkpointer.wait()
    checkpointer.close()
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    return workdir


def test_export_load_round_trip_gives_identical_features(smoke_workdir, tmp_path):
    path = export.export(smoke_workdir, str(tmp_path / "backbone.msgpack"))
    backbone, variables = export.load(path)
    config = saved_config.load(smoke_workdir)
    model, model_variables, step = evaluate.restore_state(config, smoke_workdir, _mesh(), None)
    assert step == 2
    images = jnp.asarray(np.random.default_rng(9).normal(size=(4, 32, 32, 3)), jnp.float32)
    expected = model.apply(model_variables, images, method=model.embed)
    np.testing.assert_array_equal(backbone.apply(variables, images, train=False), expected)


def _cli(*args, devices=1, timeout=300):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    platform_flags = " ".join(platform.CPU_XLA_FLAGS)
    env["XLA_FLAGS"] += f" {platform_flags}"
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "jaxssl"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd="/",
    )


def test_eval_restores_an_8_device_checkpoint_on_1_device(smoke_workdir):
    result = _cli(
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
    for name in ("2.md", "2_curves.png", "2_spectrum.png", "2_embedding.png", "2_retrieval.png"):
        assert os.path.getsize(os.path.join(smoke_workdir, "eval", name)) > 0, name


def test_eval_rejects_an_unknown_config_key(smoke_workdir):
    result = _cli("eval", "--workdir", smoke_workdir, "--config.evals.linear.wd=1")
    assert result.returncode != 0
    assert "weight_decays" in result.stderr.split("Valid fields")[1]


def test_export_cli(smoke_workdir, tmp_path):
    out = str(tmp_path / "b.msgpack")
    result = _cli("export", "--workdir", smoke_workdir, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.getsize(out) > 0
