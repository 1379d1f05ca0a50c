"""Tests for the photometric augmentations on device, jaxssl.data.color, under jax.jit."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import sharding
from jaxssl.configs import base
from jaxssl.data import color, fake

BATCH = 8


def _data_config(**overrides) -> ml_collections.ConfigDict:
    config = base.get_base_config().data
    config.update(overrides)
    return config


def _images_uint8(batch: int = BATCH) -> np.ndarray:
    return fake.make_examples("train", batch)[0]


def _images(batch: int = BATCH) -> np.ndarray:
    return _images_uint8(batch).astype(np.float32) / 255.0


def _views(batch: int = BATCH, num_views: int = 2) -> np.ndarray:
    """uint8 ``[B, V, 32, 32, 3]``: stand-ins for the host's crops."""
    return np.repeat(_images_uint8(batch)[:, None], num_views, axis=1)


def _jit(fn, *static):
    return jax.jit(fn, static_argnums=static)


def _changed(out, images) -> np.ndarray:
    """Which examples an op changed, ``[N]`` bool."""
    return np.abs(np.asarray(out) - images).max(axis=(1, 2, 3)) > 1e-6


# --- Each op: value ranges and invariants ---


def test_grayscale_has_equal_channels_with_itu_r_601_weights():
    colours = jnp.eye(3).reshape(3, 1, 1, 3)
    np.testing.assert_allclose(color.rgb_to_grayscale(colours).ravel(), [0.299, 0.587, 0.114])
    images = _images()
    grayscale = _jit(color.random_grayscale, 2)
    gray = grayscale(jax.random.key(0), images, 1.0)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_allclose(gray[..., :1], color.rgb_to_grayscale(images), atol=1e-6)
    np.testing.assert_array_equal(grayscale(jax.random.key(0), images, 0.0), images)


def test_colour_adjustments_are_torchvision_definitions():
    images = _images()
    ones = jnp.ones([BATCH])
    for identity in (color.adjust_brightness, color.adjust_contrast, color.adjust_saturation):
        np.testing.assert_allclose(jax.jit(identity)(images, ones), images, atol=1e-7)
    np.testing.assert_allclose(jax.jit(color.adjust_hue)(images, 0 * ones), images, atol=2e-6)
    np.testing.assert_allclose(
        jax.jit(color.adjust_brightness)(images, 2 * ones), np.clip(2 * images, 0, 1), atol=1e-6
    )
    gray = np.asarray(color.rgb_to_grayscale(images))
    np.testing.assert_allclose(
        jax.jit(color.adjust_saturation)(images, 0 * ones), np.repeat(gray, 3, -1), atol=1e-6
    )
    np.testing.assert_allclose(
        jax.jit(color.adjust_contrast)(images, 0 * ones),
        np.broadcast_to(gray.mean(axis=(1, 2, 3), keepdims=True), images.shape),
        atol=1e-6,
    )
    # A hue rotation by 1/3 turns red into green and by -1/2 into cyan.
    red = jnp.array([1.0, 0.0, 0.0]).reshape(1, 1, 1, 3)
    hue = jax.jit(color.adjust_hue)
    np.testing.assert_allclose(hue(red, jnp.array([1 / 3])).ravel(), [0, 1, 0], atol=1e-5)
    np.testing.assert_allclose(hue(red, jnp.array([-0.5])).ravel(), [0, 1, 1], atol=1e-5)
    # A hue rotation keeps value (max) and saturation: a full turn is the identity.
    turned = np.asarray(hue(images, jnp.full([BATCH], 0.37)))
    np.testing.assert_allclose(turned.max(-1), images.max(-1), atol=1e-5)
    np.testing.assert_allclose(hue(images, jnp.full([BATCH], 1.0)), images, atol=2e-6)


def test_jitter_in_order_runs_the_four_ops_in_each_examples_order():
    images = _images()
    rng = np.random.default_rng(0)
    factors = np.concatenate(
        [rng.uniform(0.6, 1.4, (BATCH, 3)), rng.uniform(-0.1, 0.1, (BATCH, 1))], axis=1
    ).astype(np.float32)
    order = np.stack([rng.permutation(4) for _ in range(BATCH)])
    out = _jit(color.jitter_in_order)(images, factors, order)
    ops = [
        jax.jit(op)
        for op in (
            color.adjust_brightness,
            color.adjust_contrast,
            color.adjust_saturation,
            color.adjust_hue,
        )
    ]
    for i in range(BATCH):
        expected = images[i : i + 1]
        for op in order[i]:
            expected = ops[op](expected, factors[i : i + 1, op])
        np.testing.assert_allclose(out[i : i + 1], expected, atol=2e-6)


def test_color_jitter_probability_and_strengths():
    images = _images(64)
    jitter = _jit(color.color_jitter, 2, 3, 4, 5, 6)
    key = jax.random.key(0)
    np.testing.assert_array_equal(jitter(key, images, 0.0, 0.4, 0.4, 0.4, 0.1), images)
    np.testing.assert_array_equal(jitter(key, images, 1.0, 0.0, 0.0, 0.0, 0.0), images)
    always = np.asarray(jitter(key, images, 1.0, 0.4, 0.4, 0.4, 0.1))
    assert always.min() >= 0.0 and always.max() <= 1.0
    assert np.all(np.abs(always - images).max(axis=(1, 2, 3)) > 0.01)
    sometimes = _changed(jitter(key, images, 0.5, 0.4, 0.4, 0.4, 0.1), images)
    assert 0.2 < sometimes.mean() < 0.8


def test_blur_preserves_constants_and_smooths():
    images = _images()
    blur = _jit(color.gaussian_blur, 2)
    np.testing.assert_allclose(
        blur(np.full_like(images, 0.3), jnp.full([BATCH], 2.0), 9), 0.3, atol=1e-6
    )
    np.testing.assert_allclose(blur(images, jnp.full([BATCH], 0.1), 9), images, atol=1e-6)
    blurred = blur(images, jnp.full([BATCH], 2.0), 9)
    assert np.abs(np.diff(blurred, axis=2)).mean() < 0.5 * np.abs(np.diff(images, axis=2)).mean()
    # Reflect padding: an edge pixel's missing neighbours are its inner ones, not zeros.
    edge = np.zeros((1, 5, 5, 1), np.float32)
    edge[0, :, 1] = 1.0
    taps = np.exp(-(np.arange(-1, 2) ** 2) / 2.0)
    taps /= taps.sum()
    np.testing.assert_allclose(blur(edge, jnp.ones([1]), 3)[0, 2, 0, 0], 2 * taps[0], atol=1e-6)
    random_blur = _jit(color.random_gaussian_blur, 2, 3)
    np.testing.assert_array_equal(random_blur(jax.random.key(0), images, 0.0), images)
    assert _changed(random_blur(jax.random.key(0), images, 1.0, (1.0, 2.0)), images).all()


def test_solarize_inverts_pixels_at_or_above_the_threshold():
    pixels = jnp.array([0.0, 0.49, 0.5, 0.51, 1.0]).reshape(1, 1, 5, 1)
    solarize = _jit(color.random_solarize, 2, 3)
    np.testing.assert_allclose(
        solarize(jax.random.key(0), pixels, 1.0, 0.5).ravel(), [0.0, 0.49, 0.5, 0.49, 0.0]
    )
    images = _images()
    np.testing.assert_array_equal(
        solarize(jax.random.key(0), images, 1.0, 0.5), np.where(images < 0.5, images, 1 - images)
    )
    np.testing.assert_array_equal(solarize(jax.random.key(0), images, 0.0, 0.5), images)


def test_normalize_and_model_input():
    images = _images()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.1, 0.5)
    out = jax.jit(color.normalize, static_argnums=(1, 2))(images, mean, std)
    np.testing.assert_allclose(out * np.array(std) + np.array(mean), images, atol=1e-6)
    model_input = jax.jit(color.to_model_input, static_argnums=(1, 2))(_images_uint8(), mean, std)
    assert model_input.dtype == jnp.float32
    np.testing.assert_allclose(model_input, out, atol=1e-6)


def test_random_ops_are_per_example_and_deterministic_per_key():
    # Identical images: any difference between rows comes from their own random draws.
    images = np.repeat(_images(1), 64, axis=0)
    key, other_key = jax.random.key(1), jax.random.key(2)
    for name, op in {
        "jitter": _jit(lambda k, x: color.color_jitter(k, x, prob=1.0)),
        "grayscale": _jit(lambda k, x: color.random_grayscale(k, x, 0.5)),
        "blur": _jit(lambda k, x: color.random_gaussian_blur(k, x, 0.5)),
        "solarize": _jit(lambda k, x: color.random_solarize(k, x, 0.5)),
    }.items():
        out = np.asarray(op(key, images))
        np.testing.assert_array_equal(out, op(key, images), err_msg=name)
        distinct = len({row.tobytes() for row in out})
        assert distinct > (30 if name == "jitter" else 1), name
        assert not np.array_equal(out, op(other_key, images)), name


# --- Views ---


def test_augment_views_shapes_ranges_and_keys():
    config = _data_config(blur_prob=0.5, solarize_prob=0.2)
    views = _views()
    augment = jax.jit(lambda key, views: color.augment_views(key, views, config))
    out = np.asarray(augment(jax.random.key(3), views))
    assert out.shape == (BATCH, 2, 32, 32, 3) and out.dtype == np.float32
    pixels = out * np.array(config.std) + np.array(config.mean)
    assert np.isfinite(out).all() and pixels.min() > -1e-5 and pixels.max() < 1 + 1e-5
    np.testing.assert_array_equal(out, augment(jax.random.key(3), views))
    # Another key, other colours; two views of the same crop get their own colours (a view
    # the jitter skips under both keys may stay the same).
    other = augment(jax.random.key(4), views)
    assert (np.abs(out - other).mean(axis=(2, 3, 4)) > 0.01).mean() > 0.7
    assert (np.abs(out[:, 0] - out[:, 1]).mean(axis=(1, 2, 3)) > 0.01).mean() > 0.7
    # With every probability 0, the pipeline is the normalization alone.
    plain = _data_config(color_jitter_prob=0.0, grayscale_prob=0.0)
    np.testing.assert_allclose(
        jax.jit(lambda key, views: color.augment_views(key, views, plain))(
            jax.random.key(3), views
        ),
        color.to_model_input(views, plain.mean, plain.std),
        atol=1e-6,
    )


def test_augment_batch_keys_each_group_and_keeps_the_rest():
    config = _data_config(blur_prob=0.5)
    batch = {"global": _views(), "label": np.arange(BATCH, dtype=np.int32)}
    augment = jax.jit(lambda key, batch: color.augment_batch(key, batch, config))
    key = jax.random.key(0)
    out = augment(key, batch)
    assert sorted(out) == ["global", "label"]
    np.testing.assert_array_equal(out["label"], batch["label"])
    # Multi-crop: adding a local group never changes the global views.
    both = augment(key, batch | {"local": _views(num_views=3)[:, :, :16, :16]})
    np.testing.assert_array_equal(both["global"], out["global"])
    assert both["local"].shape == (BATCH, 3, 16, 16, 3) and both["local"].dtype == jnp.float32


@pytest.mark.parametrize("group_sizes", [((2, 32),), ((2, 32), (3, 16))])
def test_augmentation_keeps_the_batch_sharding_without_collectives(group_sizes):
    config = _data_config(blur_prob=0.5, solarize_prob=0.2)
    images = _images_uint8(64)
    host_batch = {
        group: np.repeat(images[:, None, :size, :size], num_views, axis=1)
        for group, (num_views, size) in zip(("global", "local"), group_sizes, strict=False)
    }
    key = jax.random.key(5)
    mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=-1, fsdp=1)))
    batch_sharding = sharding.batch_sharding(mesh)
    augment = jax.jit(
        lambda key, batch: color.augment_batch(key, batch, config),
        in_shardings=(sharding.replicated(mesh), batch_sharding),
    )
    batch = sharding.to_global(host_batch, mesh)
    compiled = augment.lower(key, batch).compile()
    assert not re.search(r"all-gather|all-reduce|all-to-all|collective-permute", compiled.as_text())
    out = compiled(key, batch)
    # Same randomness for any device count (partitionable threefry): the 1-device result.
    single = jax.jit(lambda key, batch: color.augment_batch(key, batch, config))(key, host_batch)
    for group in host_batch:
        assert out[group].sharding.is_equivalent_to(batch_sharding, out[group].ndim)
        np.testing.assert_allclose(out[group], single[group], atol=1e-6)
