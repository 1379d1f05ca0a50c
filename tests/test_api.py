"""`jaxssl.api`, the notebook entry point, and docs/notebook_example.py, which uses it."""

import os
import runpy

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl import api, sharding
from jaxssl.configs import simclr_cifar10
from jaxssl.data import fake
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import knn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_notebook_example_trains_and_evaluates():
    namespace = runpy.run_path(os.path.join(REPO, "docs", "notebook_example.py"))
    losses, state = namespace["losses"], namespace["state"]
    assert len(losses) == 8 and np.all(np.isfinite(losses))
    assert int(jax.device_get(state.step)) == 8
    changed = jax.tree.map(
        lambda after, before: not np.allclose(np.asarray(after), before),
        state.params,
        namespace["params_before"],
    )
    assert all(jax.tree.leaves(changed))  # every parameter trained
    assert namespace["train_features"].shape == (512, 32)  # width-4 ResNet-18: 32-d features
    assert namespace["test_features"].shape == (256, 32)
    assert 0.0 <= namespace["top1"] <= 1.0
    # The fake classes are colour-coded: even a barely trained net separates them far above
    # chance (0.1), so a broken embedding or vote would show here.
    assert namespace["top1"] > 0.5


def test_make_batch_cuts_the_views_the_input_pipeline_cuts():
    config = simclr_cifar10.get_config("smoke")
    stream = input_pipeline.make_train_iterator(
        config.data, global_batch_size=32, seed=0, start_step=0, process_index=0, process_count=1
    )
    expected = next(stream)
    images, labels = fake.make_examples("train", config.data.fake_train_examples)
    index = expected["index"]
    batch = api.make_batch(images[index], labels[index], config.data, index=index, epoch=0)
    assert set(batch) == set(expected)
    for name in batch:
        np.testing.assert_array_equal(batch[name], expected[name], err_msg=name)
    assert batch["global"].dtype == np.uint8 and batch["global"].shape == (32, 2, 32, 32, 3)


def test_knn_top1_is_the_evaluators_knn():
    rng = np.random.default_rng(0)
    train_features = rng.normal(size=(300, 16)).astype(np.float32)
    train_labels = rng.integers(0, 5, 300)
    test_features = train_features[:100] + 0.3 * rng.normal(size=(100, 16)).astype(np.float32)
    test_labels = train_labels[:100]
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 1}), jax.devices()[:1])
    ones = jnp.ones(300, bool)
    expected = knn.evaluate_features(
        (jnp.asarray(train_features), jnp.asarray(train_labels), ones),
        (jnp.asarray(test_features), jnp.asarray(test_labels), ones[:100]),
        mesh,
        ks=(10,),
        temperature=0.1,
        num_classes=5,
    )["knn/top1_k10"]
    top1 = api.knn_top1(train_features, train_labels, test_features, test_labels, k=10)
    assert top1 == expected
    assert top1 > 0.5  # near copies of memory rows mostly find their own label
    # A query equal to a memory row is its own nearest neighbour: k=1 is exact.
    assert api.knn_top1(train_features, train_labels, train_features, train_labels, k=1) == 1.0
