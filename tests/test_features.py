"""Embedding and feature extraction of the eval splits, and EMP-SSL's bag of patches."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl import methods, sharding
from jaxssl.configs import simclr_cifar10
from jaxssl.data import color
from jaxssl.evals import features


def _mesh():
    return sharding.make_mesh(ml_collections.ConfigDict({"data": -1}))


def _patches(num, size, scale=(0.25, 0.25)):
    return ml_collections.ConfigDict(
        dict(num=num, size=size, scale=scale, ratio=(1.0, 1.0), seed=0)
    )


def test_embedding_is_the_inference_backbone_and_projector():
    config = simclr_cifar10.get_config("smoke")
    model = methods.get_method("simclr").build_model(config)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16, 16, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), images, train=True)
    # Batch statistics away from their initial values: inference mode must read them.
    variables = jax.tree.map(lambda x: x + 0.5, variables)
    embedded = features.make_embed_fn(model, _mesh())(variables, images)
    np.testing.assert_allclose(
        embedded["backbone"],
        model.apply(variables, images, method=model.embed),
        rtol=1e-5,
        atol=1e-6,
    )
    assert embedded["projector"].shape == (8, config.model.projector_dim)
    flipped = features.make_embed_fn(model, _mesh(), flip=True)(variables, images)
    of_flipped = features.make_embed_fn(model, _mesh())(variables, images[:, :, ::-1])
    np.testing.assert_allclose(flipped["backbone"], of_flipped["backbone"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(flipped["backbone"], embedded["backbone"])


def test_extract_concatenates_the_batches_in_order_with_labels_and_masks():
    rng = np.random.default_rng(1)
    batches = [
        {
            "image": rng.normal(size=(8, 4, 4, 3)).astype(np.float32),
            "label": rng.integers(0, 10, size=8).astype(np.int32),
            "mask": np.asarray([True] * 8 if i == 0 else [True] * 5 + [False] * 3),
        }
        for i in range(2)
    ]
    embed_fn = jax.jit(lambda scale, images: {"backbone": scale * images.mean((1, 2))})
    split = features.extract(embed_fn, 2.0, iter(batches), _mesh())
    images = np.concatenate([b["image"] for b in batches])
    np.testing.assert_allclose(split.features["backbone"], 2.0 * images.mean((1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(split.labels, np.concatenate([b["label"] for b in batches]))
    np.testing.assert_array_equal(split.mask, np.concatenate([b["mask"] for b in batches]))


def test_bag_of_patches_is_the_mean_over_the_patch_embeddings():
    images = jnp.asarray(np.random.default_rng(0).normal(size=(4, 16, 16, 3)), jnp.float32)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32)

    def embed(variables, x):  # a nonlinear embedding: averaging must happen after it
        return {"a": jnp.tanh(x @ variables).max((1, 2)), "b": x.mean((1, 2))}

    config = _patches(3, 8)
    bagged = jax.jit(features.bag_of_patches(embed, config))(weights, images)
    key = jax.random.key(config.seed)
    crops = [
        color.random_resized_crop(jax.random.fold_in(key, i), images, 8, (0.25, 0.25), (1, 1))
        for i in range(3)
    ]
    for name in ("a", "b"):
        expected = np.mean([embed(weights, c)[name] for c in crops], axis=0)
        np.testing.assert_allclose(bagged[name], expected, rtol=1e-5, atol=1e-6)
    # The patches differ from one another, so the bag is not just one patch's embedding.
    assert not np.allclose(embed(weights, crops[0])["a"], embed(weights, crops[1])["a"])
    # Full-image "patches" give back the full image's embedding; the same key, the same bag.
    full = jax.jit(features.bag_of_patches(embed, _patches(2, 16, (1.0, 1.0))))(weights, images)
    np.testing.assert_allclose(full["a"], embed(weights, images)["a"], rtol=1e-5, atol=1e-5)
    again = jax.jit(features.bag_of_patches(embed, config))(weights, images)
    np.testing.assert_array_equal(again["a"], bagged["a"])
