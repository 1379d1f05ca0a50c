"""Tests for the host's crops and flips, jaxssl.data.crops: eagerly and inside tf.data. No JAX."""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from jaxssl.configs import base
from jaxssl.data import crops, fake

BATCH = 8


def _data_config(**overrides) -> ml_collections.ConfigDict:
    config = base.get_base_config().data
    config.update(overrides)
    return config


def _images(batch: int = BATCH) -> np.ndarray:
    return fake.make_examples("train", batch)[0]


def _uniforms(num: int, batch: int = BATCH, op: int = 0) -> tf.Tensor:
    return crops.random_uniforms(crops.example_keys(7, tf.range(batch), 0, 0), op, num)


def _in_map(fn, *args):
    """Runs ``fn(*args)`` inside a tf.data map, as the input pipeline does."""
    dataset = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args))
    return next(iter(dataset.map(fn))).numpy()


def _coordinates(height: int, width: int, batch: int) -> np.ndarray:
    """uint8 images whose red channel is the row index and green the column index."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    return np.broadcast_to(image, (batch, height, width, 3))


# --- Randomness ---


def test_random_uniforms_are_stateless_and_uniform():
    index = tf.range(4096)
    draw = crops.random_uniforms(crops.example_keys(3, index, 5, 1), op=2, num=4).numpy()
    again = crops.random_uniforms(crops.example_keys(3, index, 5, 1), op=2, num=4).numpy()
    other_epoch = crops.random_uniforms(crops.example_keys(3, index, 6, 1), 2, 4).numpy()
    other_op = crops.random_uniforms(crops.example_keys(3, index, 5, 1), 3, 4).numpy()
    np.testing.assert_array_equal(draw, again)
    assert draw.dtype == np.float32 and draw.min() >= 0.0 and draw.max() < 1.0
    counts = np.histogram(draw, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts / draw.size - 0.1) < 0.01), counts
    for other in (other_epoch, other_op):
        assert np.mean(draw == other) < 0.001
        assert abs(np.corrcoef(draw.ravel(), other.ravel())[0, 1]) < 0.05


# --- Each op: shape, dtype, range, eager == inside tf.data ---

_OPS = {
    "crop": (lambda x, u: crops.random_resized_crop(x, u, 24), crops.CROP_UNIFORMS, 24),
    "flip": (crops.random_horizontal_flip, 1, 32),
    "resize": (lambda x, u: crops.resize(x, 20), 1, 20),
}


@pytest.mark.parametrize("name", sorted(_OPS))
def test_op_eager_matches_tf_data(name):
    fn, num_uniforms, size = _OPS[name]
    images, uniforms = _images(), _uniforms(num_uniforms)
    eager = fn(tf.constant(images), uniforms).numpy()
    assert eager.shape == (BATCH, size, size, 3) and eager.dtype == np.uint8
    np.testing.assert_array_equal(eager, _in_map(fn, images, uniforms))
    # The pixels stay the image's: resampling only mixes neighbouring values.
    assert images.min() <= eager.min() and eager.max() <= images.max()


# --- Geometry ---


def test_crop_with_full_scale_and_square_ratio_reproduces_the_image():
    images = _images()
    out = crops.random_resized_crop(images, _uniforms(crops.CROP_UNIFORMS), 32, (1, 1), (1, 1))
    np.testing.assert_array_equal(out.numpy(), images)


def test_crop_windows_follow_torchvision_sampling():
    # Upsampled into 40 x 40, a window's first and last output pixels are its corner pixels,
    # so the coordinate image reads the window back.
    batch = 2000
    out = crops.random_resized_crop(
        _coordinates(32, 40, batch), _uniforms(crops.CROP_UNIFORMS, batch=batch), 40
    ).numpy()
    top, bottom = out[:, 0, 0, 0].astype(int), out[:, -1, 0, 0].astype(int)
    left, right = out[:, 0, 0, 1].astype(int), out[:, 0, -1, 1].astype(int)
    height, width = bottom - top + 1, right - left + 1
    assert np.all((top >= 0) & (bottom < 32) & (left >= 0) & (right < 40))
    assert np.all((height >= 1) & (width >= 1)) and top.max() > 0 and left.max() > 0
    area = height * width / (32 * 40)
    assert area.min() > 0.05 and area.max() <= 1.0 and 0.45 < area.mean() < 0.6
    ratio = width / height
    assert ratio.min() >= 3 / 4 - 0.1 and ratio.max() <= 4 / 3 + 0.1
    assert abs(np.log(ratio).mean()) < 0.05


def test_crop_falls_back_to_a_centre_crop_like_torchvision():
    # No candidate of 2-3x the image's area fits, so every example takes the fallback: the
    # whole image where its ratio is allowed, else a centred window of the nearest ratio.
    images, uniforms = _images(), _uniforms(crops.CROP_UNIFORMS)
    out = crops.random_resized_crop(images, uniforms, 32, (2, 3))
    np.testing.assert_array_equal(out.numpy(), images)
    wide = np.concatenate([images, images[:, :, ::-1]], axis=2)  # 32 x 64: wider than 4/3
    out = crops.random_resized_crop(wide, uniforms, 32, (2, 3)).numpy()
    np.testing.assert_array_equal(out, crops.resize(wide[:, :, 10:53], 32).numpy())  # 32 x 43


def test_resize_is_pytorch_bilinear_and_antialiased():
    # Upsampling [0, 100] x2: half-pixel centres, clamped at the edges (align_corners=False).
    row = np.array([0, 100], np.uint8)
    image = np.broadcast_to(row[None, None, :, None], (1, 2, 2, 3))
    np.testing.assert_array_equal(crops.resize(image, 4).numpy()[0, 0, :, 0], [0, 25, 75, 100])
    # Downsampling a 1-pixel checkerboard x2 averages it (PIL's widened triangle filter;
    # at the border PIL renormalises the clipped window, hence the interior only).
    board = (np.indices((32, 32)).sum(0) % 2 * 200).astype(np.uint8)
    out = crops.resize(np.repeat(board[None, :, :, None], 3, -1), 16).numpy()
    np.testing.assert_array_equal(out[:, 1:-1, 1:-1], 100)


def test_flip_mirrors_the_selected_examples():
    images = _images(2)
    out = crops.random_horizontal_flip(images, tf.constant([[0.1], [0.9]])).numpy()
    np.testing.assert_array_equal(out[0], images[0, :, ::-1])
    np.testing.assert_array_equal(out[1], images[1])
    always = crops.random_horizontal_flip(images, tf.constant([[0.99], [0.0]]), prob=1.0)
    np.testing.assert_array_equal(always.numpy(), images[:, :, ::-1])


# --- Views ---


def test_views_are_keyed_by_seed_index_epoch_and_view():
    config = _data_config()
    images, index = _images(), np.arange(100, 100 + BATCH)
    views = crops.crop_views(images, index, 3, 0, config).numpy()
    assert views.shape == (BATCH, 2, 32, 32, 3) and views.dtype == np.uint8
    np.testing.assert_array_equal(views, crops.crop_views(images, index, 3, 0, config).numpy())
    # A view does not depend on the batch it travels in.
    reversed_views = crops.crop_views(images[::-1], index[::-1], 3, 0, config).numpy()
    np.testing.assert_array_equal(views, reversed_views[::-1])
    for other in (
        crops.crop_views(images, index, 4, 0, config),  # another epoch
        crops.crop_views(images, index, 3, 1, config),  # another seed
        crops.crop_views(images, index + 1, 3, 0, config),  # other example indices
    ):
        different = np.any(views != other.numpy(), axis=(2, 3, 4))  # [B, V]
        assert different.mean() > 0.9
    assert np.all(np.any(views[:, 0] != views[:, 1], axis=(1, 2, 3)))
    mapped = _in_map(lambda x, i: crops.crop_views(x, i, 3, 0, config), images, index)
    np.testing.assert_array_equal(views, mapped)


def test_local_views_are_numbered_after_the_global_ones():
    config = _data_config(local_views=3, local_image_size=16, local_crop_scale=(0.05, 0.4))
    images, index = _images(), np.arange(BATCH)
    views = crops.crop_views(images, index, 0, 0, config).numpy()
    local = crops.crop_views(images, index, 0, 0, config, "local").numpy()
    assert local.shape == (BATCH, 3, 16, 16, 3) and local.dtype == np.uint8
    # With the global size and scale, local views 0..2 are views 2..4 of 5 global views, whose
    # first 2 are the global views: one numbering, so no two views share their randomness.
    same_size = _data_config(local_views=3, local_image_size=32, local_crop_scale=(0.08, 1.0))
    five = crops.crop_views(images, index, 0, 0, _data_config(num_views=5)).numpy()
    np.testing.assert_array_equal(views, five[:, :2])
    np.testing.assert_array_equal(
        crops.crop_views(images, index, 0, 0, same_size, "local").numpy(), five[:, 2:]
    )
    with pytest.raises(ValueError, match="view group"):
        crops.crop_views(images, index, 0, 0, config, "medium")


def test_random_crops_without_flips_keep_the_orientation():
    # Whole-image crops of an image and of its mirror: with flip_prob 0 they stay apart.
    images, index = _images(), np.arange(BATCH)
    kwargs = dict(num_views=4, size=32, scale=(1, 1), ratio=(1, 1), flip_prob=0.0)
    out = crops.random_crops(images, index, 0, 0, **kwargs).numpy()
    np.testing.assert_array_equal(out, np.repeat(images[:, None], 4, axis=1))
    flipped = crops.random_crops(images, index, 0, 0, **(kwargs | {"flip_prob": 0.5})).numpy()
    mirrored = np.all(flipped == images[:, None, :, ::-1], axis=(2, 3, 4))
    assert mirrored.any() and not mirrored.all()
