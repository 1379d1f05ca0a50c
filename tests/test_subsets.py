"""Low-label evaluation: class-balanced subsets (jaxssl/evals/subsets.py), few-shot kNN and the
linear probe on a fraction of the labels."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl import sharding
from jaxssl.configs import base
from jaxssl.evals import features, knn, linear, rotation, subsets
from tests import helpers


def test_balanced_subsets_are_balanced_deterministic_and_seeded():
    labels = np.random.default_rng(0).integers(0, 4, 1000)
    quotas = subsets.shot_quotas(labels, 5)
    chosen = subsets.balanced_subset(labels, quotas, seed=0)
    assert np.bincount(labels[chosen], minlength=4).tolist() == [5, 5, 5, 5]
    np.testing.assert_array_equal(chosen, subsets.balanced_subset(labels, quotas, seed=0))
    assert not np.array_equal(chosen, subsets.balanced_subset(labels, quotas, seed=1))
    # A fraction keeps round(f * count) per class; nested: 1% is inside 10% for one seed.
    counts = np.bincount(labels)
    small = subsets.balanced_subset(labels, subsets.fraction_quotas(labels, 0.01), 3)
    large = subsets.balanced_subset(labels, subsets.fraction_quotas(labels, 0.1), 3)
    assert np.bincount(labels[large], minlength=4).tolist() == [round(0.1 * n) for n in counts]
    assert set(small) <= set(large)
    # A subset depends on positions and the seed alone, not on the other examples' labels.
    relabelled = labels.copy()
    relabelled[chosen[labels[chosen] != 0]] = 1
    again = subsets.balanced_subset(relabelled, {0: 5}, seed=0)
    np.testing.assert_array_equal(again, chosen[labels[chosen] == 0])


def test_example_hash_is_uniform_enough():
    hashes = subsets.example_hash(np.arange(100_000), 7)
    assert len(np.unique(hashes)) > 99_990
    histogram = np.bincount(hashes >> np.uint32(28), minlength=16)
    assert histogram.min() > 0.9 * 100_000 / 16 and histogram.max() < 1.1 * 100_000 / 16


def _context(train, test, **evals):
    config = base.get_base_config()
    config.data.num_classes = 4
    for path, value in evals.items():
        section, field = path.split("__")
        config.evals[section][field] = value
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1}))
    put = lambda x: jax.device_put(x, sharding.batch_sharding(mesh))  # noqa: E731

    def split(arrays):
        feats, labels, mask = arrays
        return features.Split({"backbone": put(feats)}, put(labels), put(mask))

    return features.Context(config, mesh, None, None, split(train), split(test), None, None)


def test_few_shot_knn_and_label_fractions_on_clusters():
    rng = np.random.default_rng(5)
    centres = 3.0 * rng.normal(size=(4, 16))
    train_features, train_labels, mask = helpers.gaussian_clusters(rng, centres, 1024)
    # Padding rows in the middle (a process's part ends there) must never be chosen.
    mask = mask.at[500:512].set(False)
    train_labels = train_labels.at[500:512].set(0)
    test = helpers.gaussian_clusters(rng, centres, 512)
    context = _context(
        (train_features, train_labels, mask),
        test,
        knn__shots_per_class=(1, 10),
        linear__label_fractions=(0.05,),
    )
    labels, rows = subsets.host_labels(context.train, context.mesh)
    assert len(rows) == 1012 and not set(rows) & set(range(500, 512))
    result = knn.run(context)
    assert result.details["few_shot"]["per_seed"]["1"]["k"] == 4  # min(200, 1 x 4 classes)
    assert len(result.details["few_shot"]["per_seed"]["10"]["top1"]) == 3  # seeds 0, 1, 2
    assert result.metrics["knn/top1_shot10"] > 0.9
    assert result.metrics["knn/top1_shot1_std"] >= 0.0
    assert "few-shot kNN: 1,10 labelled images per class" in result.protocol
    result = linear.run(context)
    assert result.metrics["linear/top1_frac0.05"] > 0.9
    per = result.details["label_fractions"]["per_fraction"]["0.05"]
    assert per["size"] == [sum(round(0.05 * n) for n in np.bincount(labels))] * 3
    assert "low-label linear probe: 0.05 of the labels" in result.protocol


def test_few_shot_knn_of_random_labels_is_at_chance():
    rng = np.random.default_rng(6)
    feats = jnp.asarray(rng.normal(size=(512, 8)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, 512), jnp.int32)
    context = _context(
        (feats, labels, jnp.ones(512, bool)),
        (feats, jnp.asarray(rng.integers(0, 4, 512), jnp.int32), jnp.ones(512, bool)),
        knn__shots_per_class=(25,),
    )
    assert abs(knn.run(context).metrics["knn/top1_shot25"] - 0.25) < 0.08


def test_low_label_table_tool_reads_the_latest_evaluation(tmp_path):
    import importlib.util
    import json
    import os

    spec = importlib.util.spec_from_file_location(
        "low_label_table",
        os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools", "low_label_table.py"),
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    (tmp_path / "eval").mkdir()
    for step, top1 in ((10, 0.1), (200, 0.5)):
        metrics = {"knn/top1_k200": top1, "knn/top1_shot5": 0.25, "knn/top1_shot5_std": 0.01}
        (tmp_path / "eval" / f"{step}.json").write_text(json.dumps({"metrics": metrics}))
    text = tool.table([("X", tool.latest_metrics(str(tmp_path)))])
    assert "| X | 0.500 | - | 0.250 ± 0.010 |" in text


def test_rotated_batches_label_turns_and_hold_out_whole_images():
    images = np.arange(8 * 4 * 4 * 3, dtype=np.uint8).reshape(8, 4, 4, 3)
    batches = [
        {"image": images[:4], "mask": np.array([1, 1, 1, 0], bool)},
        {"image": images[4:], "mask": np.ones(4, bool)},
    ]
    out = list(rotation.rotated_batches(iter(batches), num_images=5, num_fit=3))
    assert len(out) == 8  # 2 batches x 4 turns
    for turn, rows in enumerate(out[:4]):
        np.testing.assert_array_equal(rows["image"], np.rot90(images[:4], turn, axes=(1, 2)))
        np.testing.assert_array_equal(rows["label"] % 4, turn)
        np.testing.assert_array_equal(rows["mask"], [1, 1, 1, 0])
        np.testing.assert_array_equal(rows["label"][:3] // 4, [0, 0, 0])  # images 0-2: fit
    for rows in out[4:]:
        np.testing.assert_array_equal(rows["mask"], [1, 1, 0, 0])  # images 3, 4 of 5 used
        np.testing.assert_array_equal(rows["label"][:2] // 4, [1, 1])  # held out
