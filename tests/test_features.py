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


def test_embedding_is_the_inference_backbone_and_projector():
    config = simclr_cifar10.get_config("smoke")
    model = methods.get_method("simclr").build_model(config)
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), np.uint8)
    inputs = color.to_model_input(images, config.data.mean, config.data.std)
    variables = model.init(jax.random.key(0), inputs, train=True)
    # Batch statistics away from their initial values: inference mode must read them.
    variables = jax.tree.map(lambda x: x + 0.5, variables)
    mean, std = config.data.mean, config.data.std
    embedded = features.make_embed_fn(model, _mesh(), mean, std)(variables, images)
    np.testing.assert_allclose(
        embedded["backbone"],
        model.apply(variables, inputs, method=model.embed),
        rtol=1e-5,
        atol=1e-6,
    )
    assert embedded["projector"].shape == (8, config.model.projector_dim)
    flipped = features.make_embed_fn(model, _mesh(), mean, std, flip=True)(variables, images)
    of_flipped = features.make_embed_fn(model, _mesh(), mean, std)(variables, images[:, :, ::-1])
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
    patches = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8, 3), np.uint8)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32)

    def embed(variables, x):  # a nonlinear embedding: averaging must happen after it
        x = x.astype(jnp.float32) / 255.0
        return {"a": jnp.tanh(x @ variables).max((1, 2)), "b": x.mean((1, 2))}

    bagged = jax.jit(features.bag_of_patches(embed))(weights, patches)
    for name in ("a", "b"):
        expected = np.mean([embed(weights, patches[:, p])[name] for p in range(3)], axis=0)
        np.testing.assert_allclose(bagged[name], expected, rtol=1e-5, atol=1e-6)
    # The patches differ from one another, so the bag is not just one patch's embedding.
    assert not np.allclose(bagged["a"], embed(weights, patches[:, 0])["a"])
    # A bag of copies of one image embeds as that image.
    copies = np.repeat(patches[:, :1], 3, axis=1)
    full = jax.jit(features.bag_of_patches(embed))(weights, copies)
    np.testing.assert_allclose(full["a"], embed(weights, patches[:, 0])["a"], rtol=1e-5, atol=1e-6)
