"""Tests for the JPEG decode-and-crop input pipeline (jaxssl.data.jpeg) of the ImageNet recipes."""

import numpy as np
import pytest
import tensorflow as tf

from jaxssl.configs import dino_imagenet, simclr_imagenet
from jaxssl.data import jpeg
from jaxssl.data import tfds as input_pipeline
from tools import make_jpeg_tfds

NAME = "jaxssl_test_jpeg"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("tfds"))
    make_jpeg_tfds.write_dataset(NAME, directory, {"train": 24, "test": 10}, 40, 120)
    return directory


def _data_config(module, data_dir):
    config = module.get_config()
    config.data.name = NAME
    config.data.data_dir = data_dir
    config.data.eval_test_split = "test"
    config.data.image_size = 64
    config.data.local_image_size = 32
    config.data.eval_image_size = 48
    return config.data


def test_missing_imagenet_says_it_needs_a_manual_download(tmp_path):
    data_config = _data_config(simclr_imagenet, str(tmp_path))
    data_config.name = "imagenet2012"
    with pytest.raises(input_pipeline.DatasetNotPreparedError, match="manual download"):
        jpeg.open_part(data_config, "train", 0, 1)


def _encoded(height, width, seed=0):
    image = make_jpeg_tfds.make_image(np.random.default_rng(seed), height, height)
    image = tf.image.resize(image, (height, width)).numpy().astype(np.uint8)
    return tf.io.encode_jpeg(image, quality=95), image


def test_view_is_the_same_eagerly_and_inside_tf_data():
    encoded, _ = _encoded(90, 130)
    key = tf.constant(12345, tf.uint32)
    eager = jpeg.random_view(encoded, key, 48, (0.08, 1.0), (3 / 4, 4 / 3), 0.5).numpy()
    mapped = next(
        iter(
            tf.data.Dataset.from_tensors(encoded).map(
                lambda e: jpeg.random_view(e, key, 48, (0.08, 1.0), (3 / 4, 4 / 3), 0.5)
            )
        )
    ).numpy()
    assert eager.shape == (48, 48, 3) and eager.dtype == np.uint8
    np.testing.assert_array_equal(eager, mapped)
    other = jpeg.random_view(encoded, key + 1, 48, (0.08, 1.0), (3 / 4, 4 / 3), 0.5).numpy()
    assert not np.array_equal(eager, other)


def test_window_decode_equals_decode_then_crop():
    encoded, _ = _encoded(96, 160)
    window = tf.constant([16, 24, 48, 64])
    whole = tf.io.decode_jpeg(encoded, channels=3).numpy()
    difference = np.abs(
        jpeg.decode_window(encoded, window).numpy().astype(int) - whole[16:64, 24:88].astype(int)
    )
    # libjpeg upsamples chroma at a window's edges from fewer neighbours: a few levels there.
    assert difference.max() <= 8 and difference.mean() < 0.5


def test_crop_window_lies_inside_the_image_with_the_area_asked():
    shape = tf.constant([200, 300, 3])
    for i in range(20):
        top, left, height, width = jpeg.crop_window(
            shape, tf.constant([i, 7]), (0.2, 0.5), (3 / 4, 4 / 3)
        ).numpy()
        assert 0 <= top and top + height <= 200 and 0 <= left and left + width <= 300
        assert 0.19 <= height * width / (200 * 300) <= 0.51


def test_centre_view_is_the_central_square():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 50:150] = 255  # the central 100 x 100 square (shorter side) is white
    encoded = tf.io.encode_jpeg(image, quality=100)
    view = jpeg.centre_view(encoded, 32, crop_fraction=1.0).numpy()
    assert view.shape == (32, 32, 3)
    assert view.min() > 240


@pytest.mark.parametrize("module", [simclr_imagenet, dino_imagenet])
def test_train_batches_of_variable_size_jpegs(module, data_dir):
    data_config = _data_config(module, data_dir)
    batches = input_pipeline.make_train_iterator(
        data_config, global_batch_size=8, seed=0, start_step=0, process_index=0, process_count=1
    )
    first, second = next(batches), next(batches)
    views = data_config.num_views
    assert first["global"].shape == (8, views, 64, 64, 3) and first["global"].dtype == np.uint8
    assert first["label"].shape == (8,) and first["index"].dtype == np.int32
    if data_config.local_views:
        assert first["local"].shape == (8, data_config.local_views, 32, 32, 3)
    assert not np.array_equal(first["global"][:, 0], first["global"][:, 1])  # views differ
    resumed = next(
        input_pipeline.make_train_iterator(
            data_config, global_batch_size=8, seed=0, start_step=1, process_index=0, process_count=1
        )
    )
    for key in second:
        np.testing.assert_array_equal(second[key], resumed[key])


def test_processes_read_disjoint_parts(data_dir):
    data_config = _data_config(simclr_imagenet, data_dir)
    indices = [
        next(
            input_pipeline.make_train_iterator(
                data_config,
                global_batch_size=8,
                seed=0,
                start_step=0,
                process_index=p,
                process_count=2,
            )
        )["index"]
        for p in range(2)
    ]
    assert indices[0].shape == (4,) and not set(indices[0]) & set(indices[1])


def test_eval_batches_are_centre_views(data_dir):
    data_config = _data_config(simclr_imagenet, data_dir)
    make_batches, num_examples = input_pipeline.make_eval_iterator(
        data_config, "test", batch_size=4, process_index=0, process_count=1
    )
    batches = list(make_batches())
    assert num_examples == 10 and len(batches) == 3
    assert all(b["image"].shape == (4, 48, 48, 3) for b in batches)
    assert sum(int(b["mask"].sum()) for b in batches) == 10
    assert np.isfinite(np.concatenate([b["image"] for b in batches])).all()
