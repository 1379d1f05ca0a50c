"""DeepCluster: on-device k-means and the method's epoch-wise re-clustering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import methods
from jaxssl.configs import deepcluster_cifar10
from jaxssl.losses import clustering
from tests import helpers


def test_kmeans_recovers_separated_blobs_and_fills_every_cluster():
    rng = np.random.default_rng(0)
    centres = 10.0 * rng.normal(size=(4, 3))
    labels = rng.integers(0, 4, 512)
    points = jnp.asarray(centres[labels] + 0.1 * rng.normal(size=(512, 3)), jnp.float32)
    fn = jax.jit(clustering.kmeans, static_argnums=(2, 3, 4))
    centroids, assignments = fn(jax.random.key(0), points, 4, 20, 128)
    assignments = np.asarray(assignments)
    # One cluster per blob (a permutation of the labels).
    pairs = {(a, b) for a, b in zip(labels.tolist(), assignments.tolist(), strict=True)}
    assert len(pairs) == 4 and len({b for _, b in pairs}) == 4
    np.testing.assert_allclose(
        np.sort(np.asarray(centroids), axis=0), np.sort(centres, axis=0), atol=0.05
    )
    # More clusters than blobs: the empty ones are re-seeded next to the largest, none empty.
    _, assignments = fn(jax.random.key(1), points, 8, 20, 128)
    assert len(np.unique(np.asarray(assignments))) == 8


@pytest.mark.slow  # compiles the smoke model's loss (~35 s on 2 shared cores)
def test_first_epoch_fills_the_bank_then_each_epoch_reclusters():
    config = deepcluster_cifar10.get_config("smoke")
    method = methods.get_method("deepcluster")
    model = method.build_model(config)
    batch = helpers.random_views_batch(config)
    batch["global"] = batch["global"][:, :1]  # one view, as the preset
    variables = jax.jit(model.init, static_argnames="train")(
        jax.random.key(0), jnp.asarray(batch["global"][:2, 0]), train=True
    )
    state = method.init_state(model, variables, config.method, jax.random.key(1))
    loss_fn = jax.jit(
        lambda state, key, step: method.loss_fn(
            model, variables, batch, state, config.method, key, step
        )
    )
    loss, aux = loss_fn(state, jax.random.key(2), 0)
    assert float(loss) == 0.0  # epoch 0 has no labels yet
    bank = np.asarray(aux.method_state["bank"])
    index = batch["index"]
    np.testing.assert_allclose(np.linalg.norm(bank[index], axis=1), 1.0, rtol=1e-5)
    assert not bank[np.setdiff1d(np.arange(len(bank)), index)].any()
    epoch = int(config.method.steps_per_epoch)
    loss, aux = loss_fn(aux.method_state, jax.random.key(3), epoch)
    new = aux.method_state
    assert float(loss) > 0.0
    assert len(np.unique(np.asarray(new["assignments"])[index])) > 1  # clustered
    assert not np.allclose(new["head"]["kernel"], state["head"]["kernel"])  # re-drawn
