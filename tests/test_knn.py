"""Weighted and majority kNN on extracted features."""

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl import sharding
from jaxssl.evals import knn
from tests import helpers


def _mesh():
    return sharding.make_mesh(ml_collections.ConfigDict({"data": -1}))


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


def test_nearest_neighbours_never_returns_padding_rows():
    memory = jnp.asarray([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    mask = jnp.asarray([False, True, True])  # the closest row to the query is padding
    similarities, indices = knn.nearest_neighbours(
        memory, mask, jnp.asarray([[1.0, 0.0]]), k=2, chunk_size=1
    )
    np.testing.assert_array_equal(indices, [[1, 2]])
    assert similarities[0, 0] > similarities[0, 1]


def test_knn_reports_every_k_and_the_protocol():
    rng = np.random.default_rng(4)
    centres = 4.0 * rng.normal(size=(4, 8))
    metrics = knn.evaluate_features(
        helpers.gaussian_clusters(rng, centres, 512),
        helpers.gaussian_clusters(rng, centres, 512),
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
