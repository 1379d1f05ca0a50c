"""Tests for the host input pipeline: jaxssl.data.{augment,fake,tfds}. No JAX."""

import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from jaxssl.configs import base
from jaxssl.data import augment, fake, tfds

BATCH = 8


def _data_config(**overrides) -> ml_collections.ConfigDict:
    """The real base config's data section on small fake splits."""
    config = base.get_base_config().data
    config.update(dict(name="fake", fake_train_examples=120, fake_test_examples=100) | overrides)
    return config


def _images_uint8(batch: int = BATCH, size: int = 32) -> np.ndarray:
    return fake.make_examples("train", batch)[0][:, :size, :size]


def _images_float(batch: int = BATCH) -> np.ndarray:
    return _images_uint8(batch).astype(np.float32) / 255.0


def _uniforms(num: int, batch: int = BATCH, op: int = 0, epoch: int = 0) -> tf.Tensor:
    keys = augment.example_keys(7, tf.range(batch), epoch, 0)
    return augment.random_uniforms(keys, op, num)


def _in_map(fn, *args):
    """Runs ``fn(*args)`` inside a tf.data map, as the input pipeline does."""
    dataset = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args))
    return next(iter(dataset.map(fn))).numpy()


# --- Randomness ---


def test_random_uniforms_are_stateless_and_uniform():
    index = tf.range(4096)
    draw = augment.random_uniforms(augment.example_keys(3, index, 5, 1), op=2, num=4).numpy()
    again = augment.random_uniforms(augment.example_keys(3, index, 5, 1), op=2, num=4).numpy()
    other_epoch = augment.random_uniforms(augment.example_keys(3, index, 6, 1), 2, 4).numpy()
    other_op = augment.random_uniforms(augment.example_keys(3, index, 5, 1), 3, 4).numpy()
    np.testing.assert_array_equal(draw, again)
    assert draw.dtype == np.float32 and draw.min() >= 0.0 and draw.max() < 1.0
    counts = np.histogram(draw, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts / draw.size - 0.1) < 0.01), counts
    for other in (other_epoch, other_op):
        assert np.mean(draw == other) < 0.001
        assert abs(np.corrcoef(draw.ravel(), other.ravel())[0, 1]) < 0.05


# --- Each augmentation: shape, dtype, range, eager == inside tf.data ---

_AUGMENTATIONS = {
    "crop": (lambda x, u: augment.random_resized_crop(x, u, 24), augment.CROP_UNIFORMS, True),
    "flip": (augment.random_horizontal_flip, 1, False),
    "jitter": (augment.random_color_jitter, augment.JITTER_UNIFORMS, False),
    "grayscale": (lambda x, u: augment.random_grayscale(x, u, 0.5), 1, False),
    "blur": (lambda x, u: augment.random_gaussian_blur(x, u, 0.5), 2, False),
    "solarize": (lambda x, u: augment.random_solarize(x, u, 0.5), 1, False),
    "resize": (lambda x, u: augment.resize(x, 20), 1, True),
}


@pytest.mark.parametrize("name", sorted(_AUGMENTATIONS))
def test_augmentation_eager_matches_tf_data(name):
    fn, num_uniforms, takes_uint8 = _AUGMENTATIONS[name]
    images = _images_uint8() if takes_uint8 else _images_float()
    uniforms = _uniforms(num_uniforms)
    eager = fn(tf.constant(images), uniforms).numpy()
    mapped = _in_map(fn, images, uniforms)
    size = {"crop": 24, "resize": 20}.get(name, 32)
    assert eager.shape == (BATCH, size, size, 3) and eager.dtype == np.float32
    assert eager.min() >= 0.0 and eager.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(eager, mapped, atol=1e-6)


def test_normalize():
    images = _images_float()
    out = augment.normalize(images, (0.5, 0.4, 0.3), (0.2, 0.1, 0.5)).numpy()
    np.testing.assert_allclose(out * (0.2, 0.1, 0.5) + (0.5, 0.4, 0.3), images, atol=1e-6)
    np.testing.assert_allclose(
        _in_map(lambda x: augment.normalize(x, (0.5,) * 3, (0.2,) * 3), images),
        (images - 0.5) / 0.2,
        atol=1e-6,
    )


# --- Geometry ---


def test_crop_with_full_scale_and_square_ratio_reproduces_image():
    images = _images_uint8()
    out = augment.random_resized_crop(images, _uniforms(augment.CROP_UNIFORMS), 32, (1, 1), (1, 1))
    np.testing.assert_allclose(out.numpy(), images / 255.0, atol=1e-6)


def test_crop_falls_back_to_centre_crop_like_torchvision():
    # No candidate of area 2-3x the image fits, so every example takes the fallback,
    # the whole image for a ratio range that contains the image's ratio.
    images = _images_uint8()
    out = augment.random_resized_crop(images, _uniforms(augment.CROP_UNIFORMS), 32, (2, 3))
    np.testing.assert_allclose(out.numpy(), images / 255.0, atol=1e-6)
    # A 32x64 image is wider than ratio 4/3 allows: a centred 32x43 window.
    window = augment._crop_windows(_uniforms(augment.CROP_UNIFORMS), 32, 64, (2, 3), (3 / 4, 4 / 3))
    np.testing.assert_array_equal(
        np.stack([t.numpy() for t in window], 1), [[0, 10, 32, 43]] * BATCH
    )


def test_crop_windows_follow_torchvision_sampling():
    uniforms = _uniforms(augment.CROP_UNIFORMS, batch=2000)
    top, left, height, width = (
        t.numpy() for t in augment._crop_windows(uniforms, 32, 40, (0.08, 1.0), (3 / 4, 4 / 3))
    )
    assert np.all((height >= 1) & (height <= 32) & (width >= 1) & (width <= 40))
    assert np.all((top >= 0) & (top + height <= 32) & (left >= 0) & (left + width <= 40))
    area = height * width / (32 * 40)
    assert area.min() > 0.05 and area.max() <= 1.0 and 0.45 < area.mean() < 0.6
    assert np.all(np.equal(np.round(height), height)) and top.max() > 0 and left.max() > 0


def test_resize_is_pytorch_bilinear_and_antialiased():
    # Upsampling [0, 1] x2: half-pixel centres, clamped at the edges (align_corners=False).
    row = np.array([0.0, 1.0], np.float32)
    image = np.broadcast_to(row[None, None, :, None], (1, 2, 2, 3))
    out = augment.resize(image, 4).numpy()[0, 0, :, 0]
    np.testing.assert_allclose(out, [0.0, 0.25, 0.75, 1.0], atol=1e-6)
    # Downsampling a 1-pixel checkerboard x2 averages it (PIL's widened triangle filter;
    # at the border PIL renormalises the clipped window, hence the interior only).
    board = (np.indices((32, 32)).sum(0) % 2).astype(np.float32)
    out = augment.resize(np.repeat(board[None, :, :, None], 3, -1), 16).numpy()
    np.testing.assert_allclose(out[:, 1:-1, 1:-1], 0.5, atol=1e-6)


def test_flip_mirrors_selected_examples():
    images = _images_float(2)
    out = augment.random_horizontal_flip(images, tf.constant([[0.1], [0.9]])).numpy()
    np.testing.assert_array_equal(out[0], images[0, :, ::-1])
    np.testing.assert_array_equal(out[1], images[1])


# --- Colour (torchvision semantics) ---


def test_grayscale_weights():
    colours = np.eye(3, dtype=np.float32).reshape(3, 1, 1, 3)
    np.testing.assert_allclose(
        augment.rgb_to_grayscale(colours).numpy().ravel(), [0.299, 0.587, 0.114], atol=1e-7
    )
    gray = augment.random_grayscale(colours, tf.zeros([3, 1]), prob=0.2).numpy()
    np.testing.assert_allclose(gray[..., 0], gray[..., 2])
    np.testing.assert_allclose(gray[:, 0, 0, 1], [0.299, 0.587, 0.114], atol=1e-7)


def test_colour_adjustments_match_torchvision_definitions():
    images = _images_float()
    ones, zeros = tf.ones([BATCH]), tf.zeros([BATCH])
    gray = augment.rgb_to_grayscale(images).numpy()
    for identity in (augment.adjust_brightness, augment.adjust_contrast, augment.adjust_saturation):
        np.testing.assert_array_equal(identity(images, ones).numpy(), images)
    np.testing.assert_allclose(augment.adjust_hue(images, zeros).numpy(), images, atol=2e-6)
    np.testing.assert_allclose(
        augment.adjust_saturation(images, zeros).numpy(), np.repeat(gray, 3, -1), atol=1e-6
    )
    mean = gray.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(
        augment.adjust_contrast(images, zeros).numpy(),
        np.broadcast_to(mean, images.shape),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        augment.adjust_brightness(images, 2 * ones).numpy(), np.clip(2 * images, 0, 1), atol=1e-6
    )
    # A hue rotation by 1/3 turns red into green and by 1/2 into cyan.
    red = np.array([1.0, 0.0, 0.0], np.float32).reshape(1, 1, 1, 3)
    np.testing.assert_allclose(
        augment.adjust_hue(red, [1 / 3]).numpy().ravel(), [0, 1, 0], atol=1e-5
    )
    np.testing.assert_allclose(
        augment.adjust_hue(red, [-0.5]).numpy().ravel(), [0, 1, 1], atol=1e-5
    )


def test_color_jitter_applies_ops_in_each_examples_random_order():
    images, uniforms = _images_float(), _uniforms(augment.JITTER_UNIFORMS, op=3)
    strengths = (0.4, 0.4, 0.4, 0.1)
    out = augment.random_color_jitter(images, uniforms, 1.0, *strengths).numpy()
    u = uniforms.numpy()
    ops = [
        lambda x, i: augment.adjust_brightness(x, [0.6 + 0.8 * u[i, 1]]),
        lambda x, i: augment.adjust_contrast(x, [0.6 + 0.8 * u[i, 2]]),
        lambda x, i: augment.adjust_saturation(x, [0.6 + 0.8 * u[i, 3]]),
        lambda x, i: augment.adjust_hue(x, [(2 * u[i, 4] - 1) * 0.1]),
    ]
    orders = set()
    for i in range(BATCH):
        order = np.argsort(u[i, 5:9], kind="stable")
        orders.add(tuple(order))
        expected = images[i : i + 1]
        for op in order:
            expected = ops[op](expected, i)
        np.testing.assert_allclose(out[i : i + 1], expected, atol=1e-5)
    assert len(orders) > 1
    np.testing.assert_array_equal(
        augment.random_color_jitter(images, uniforms, prob=0.0).numpy(), images
    )
    np.testing.assert_array_equal(
        augment.random_color_jitter(images, uniforms, 1.0, 0, 0, 0, 0).numpy(), images
    )


def test_blur_and_solarize():
    images = _images_float()
    constant = np.full_like(images, 0.3)
    np.testing.assert_allclose(
        augment.gaussian_blur(constant, tf.fill([BATCH], 2.0), 9).numpy(), 0.3, atol=1e-6
    )
    np.testing.assert_allclose(
        augment.gaussian_blur(images, tf.fill([BATCH], 0.1), 9).numpy(), images, atol=1e-6
    )
    blurred = augment.gaussian_blur(images, tf.fill([BATCH], 2.0), 9).numpy()
    assert np.abs(np.diff(blurred, axis=2)).mean() < 0.5 * np.abs(np.diff(images, axis=2)).mean()
    solarized = augment.random_solarize(images, tf.zeros([BATCH, 1]), prob=0.5).numpy()
    np.testing.assert_allclose(solarized, np.where(images < 0.5, images, 1 - images))


# --- Views ---


def test_simclr_views_are_keyed_by_seed_index_epoch_and_view():
    config = _data_config()
    images, index = _images_uint8(), np.arange(100, 100 + BATCH)
    views = augment.simclr_views(images, index, 3, 0, config).numpy()
    assert views.shape == (BATCH, 2, 32, 32, 3) and views.dtype == np.float32
    assert np.isfinite(views).all() and views.min() < -1.0 and views.max() > 1.0
    np.testing.assert_array_equal(views, augment.simclr_views(images, index, 3, 0, config).numpy())
    # A view does not depend on the batch it travels in.
    reversed_views = augment.simclr_views(images[::-1], index[::-1], 3, 0, config).numpy()
    np.testing.assert_array_equal(views, reversed_views[::-1])
    for other in (
        augment.simclr_views(images, index, 4, 0, config),
        augment.simclr_views(images, index, 3, 1, config),
    ):
        assert np.abs(views - other.numpy()).mean(axis=(1, 2, 3, 4)).min() > 0.01
    assert np.abs(views[:, 0] - views[:, 1]).mean(axis=(1, 2, 3)).min() > 0.01
    mapped = _in_map(lambda x, i: augment.simclr_views(x, i, 3, 0, config), images, index)
    np.testing.assert_array_equal(views, mapped)


def test_multi_crop_local_views_are_their_own_group():
    config = _data_config(local_views=3, local_image_size=16, local_crop_scale=(0.05, 0.4))
    images, index = _images_uint8(), np.arange(BATCH)
    views = augment.simclr_views(images, index, 0, 0, config).numpy()
    local = augment.simclr_views(images, index, 0, 0, config, "local").numpy()
    assert local.shape == (BATCH, 3, 16, 16, 3) and np.isfinite(local).all()
    # Local view numbers follow the global ones: 2 global + 3 local = views 0..4 of a
    # 5-view global group, whose first 2 are exactly the global views.
    five = augment.simclr_views(images, index, 0, 0, _data_config(num_views=5)).numpy()
    # (Equal up to float rounding: XLA compiles the 5-view batch's arithmetic differently.)
    np.testing.assert_allclose(views, five[:, :2], atol=1e-4)
    # Same randomness as global views 2..4 but smaller crops at 16 px: different pixels.
    assert np.abs(local - five[:, 2:, :16, :16]).mean() > 0.01
    with pytest.raises(ValueError, match="view group"):
        augment.simclr_views(images, index, 0, 0, config, "medium")
    batch = next(
        tfds.make_train_iterator(
            config, global_batch_size=8, seed=0, start_step=0, process_index=0, process_count=1
        )
    )
    assert batch["global"].shape == (8, 2, 32, 32, 3) and batch["local"].shape == (8, 3, 16, 16, 3)


# --- Splits and iterators ---


def test_process_parts_are_disjoint_and_cover_the_split():
    for count in (1, 2, 3):
        seen, sizes = [], []
        for process in range(count):
            dataset, size = tfds.load_split(
                "fake", "test", None, process, count, num_fake_examples=100
            )
            elements = list(dataset.as_numpy_iterator())
            assert len(elements) == size
            assert elements[0]["image"].dtype == np.uint8 and elements[0]["image"].shape == (
                32,
                32,
                3,
            )
            assert elements[0]["label"].dtype == np.int32 and elements[0]["index"].dtype == np.int64
            seen += [e["index"] for e in elements]
            sizes.append(size)
        assert sorted(seen) == list(range(100)) and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("cache", [True, False])
def test_train_iterator_resumes_exactly_across_epochs(cache):
    config = _data_config(cache=cache)
    kwargs = dict(global_batch_size=48, seed=1, process_index=1, process_count=2)
    stream = tfds.make_train_iterator(config, start_step=0, **kwargs)
    batches = [next(stream) for _ in range(6)]  # b=24 rows per process and step
    assert (
        batches[0]["global"].shape == (24, 2, 32, 32, 3)
        and batches[0]["global"].dtype == np.float32
    )
    assert batches[0]["label"].dtype == np.int32 and batches[0]["index"].dtype == np.int32
    order = np.concatenate([b["index"] for b in batches])
    if not cache:  # this process streams its own part of 60 examples: 2.4 epochs
        assert sorted(order[:60]) == list(range(60, 120)) == sorted(order[60:120])
        assert not np.array_equal(order[:60], order[60:120])
    resumed = tfds.make_train_iterator(config, start_step=2, **kwargs)  # epoch boundary inside
    for batch in batches[2:]:
        other = next(resumed)
        for key in batch:
            np.testing.assert_array_equal(batch[key], other[key])
    with pytest.raises(ValueError, match="divisible"):
        tfds.make_train_iterator(config, start_step=0, **(kwargs | {"global_batch_size": 47}))


def test_cached_train_stream_is_the_same_global_batch_for_any_process_count():
    config = _data_config(cache=True)
    kwargs = dict(global_batch_size=48, seed=3, start_step=1)
    single = tfds.make_train_iterator(config, process_index=0, process_count=1, **kwargs)
    parts = [
        tfds.make_train_iterator(config, process_index=p, process_count=3, **kwargs)
        for p in range(3)
    ]
    seen = []
    for _ in range(5):  # 120 examples, 2.5 global batches an epoch: crosses two epochs
        whole = next(single)
        rows = [next(part) for part in parts]
        for key in whole:
            np.testing.assert_array_equal(whole[key], np.concatenate([r[key] for r in rows]))
        seen.append(whole["index"])
    # Steps 1-5 are stream positions 48-288; epoch 1 (positions 120-240) visits every example.
    assert sorted(np.concatenate(seen)[72:192]) == list(range(120))


def test_eval_iterator_covers_each_example_once():
    config = _data_config(eval_image_size=24)
    images, labels = fake.make_examples("test", 100)
    num_batches = set()
    for process in range(3):
        make_iterator, size = tfds.make_eval_iterator(
            config, "test", batch_size=16, process_index=process, process_count=3
        )
        for _ in range(2):  # cached: the second pass is identical
            batches = list(make_iterator())
        num_batches.add(len(batches))
        mask = np.concatenate([b["mask"] for b in batches])
        assert mask.sum() == size and mask[:size].all()
        start, end = fake.part_bounds(100, process, 3)
        np.testing.assert_array_equal(
            np.concatenate([b["label"] for b in batches])[:size], labels[start:end]
        )
        image = np.concatenate([b["image"] for b in batches])
        assert image.shape[1:] == (24, 24, 3) and image.dtype == np.float32
        assert np.all(image[~mask] == 0)
        expected = augment.normalize(
            augment.resize(images[start : start + 1], 24), config.mean, config.std
        )
        np.testing.assert_allclose(image[0], expected.numpy()[0], atol=1e-5)
    assert num_batches == {3}  # 34 examples on the largest part, padded to 3 batches of 16


def test_missing_dataset_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="TFDS_DATA_DIR") as error:
        tfds.load_split("cifar10", "train", str(tmp_path), 0, 1)
    assert "cifar10" in str(error.value) and str(tmp_path) in str(error.value)
    with pytest.raises(FileNotFoundError, match="tfds build"):
        tfds.load_split("no_such_dataset_xyz", "train", str(tmp_path), 0, 1)


def _real_data_dir() -> str:
    data_dir = os.environ.get("TFDS_DATA_DIR")
    if not data_dir or not os.path.isdir(os.path.join(data_dir, "cifar10")):
        pytest.skip("needs a prepared cifar10 in $TFDS_DATA_DIR")
    return data_dir


def test_real_cifar10_train_batch():
    data_dir = _real_data_dir()
    config = _data_config(name="cifar10", data_dir=data_dir, train_split="train[:1000]")
    batch = next(
        tfds.make_train_iterator(
            config, global_batch_size=32, seed=0, start_step=0, process_index=1, process_count=2
        )
    )
    whole = next(
        tfds.make_train_iterator(
            config, global_batch_size=32, seed=0, start_step=0, process_index=0, process_count=1
        )
    )
    assert batch["global"].shape == (16, 2, 32, 32, 3) and np.isfinite(batch["global"]).all()
    # Process 1 of 2 keeps rows 16:32 of the global batch one process would draw.
    np.testing.assert_array_equal(batch["index"], whole["index"][16:])
    np.testing.assert_array_equal(batch["global"], whole["global"][16:])
    assert np.all((batch["index"] >= 0) & (batch["index"] < 1000))
    assert np.all((batch["label"] >= 0) & (batch["label"] < 10))
    dataset, size = tfds.load_split("cifar10", "test", data_dir, 1, 2)
    first = next(dataset.as_numpy_iterator())
    assert size == 5000 and first["index"] == 5000 and first["image"].shape == (32, 32, 3)
