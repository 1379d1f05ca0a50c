"""Tests for image folders as a data source (jaxssl.data.folder) and tools/folder_to_tfds.py."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from jaxssl.configs import base
from jaxssl.data import fake, folder, tfds
from tools import folder_to_tfds

SIZE = 16
# (height, width) of the images of each class, cycled: wide, tall, square, larger (resized).
_SHAPES = [(16, 24), (24, 16), (16, 16), (40, 32)]


@pytest.fixture(autouse=True)
def _index_cache(tmp_path_factory, monkeypatch):
    # The validation index goes to $XDG_CACHE_HOME; keep it out of the real home.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def _write(path, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    encode = tf.io.encode_jpeg if path.endswith(".jpg") else tf.io.encode_png
    with open(path, "wb") as file:
        file.write(encode(image).numpy())


def _center_crop(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def _make_folder(root, splits=None) -> dict[str, list[tuple[str, int, np.ndarray]]]:
    """Writes ``root/<split>/<class>/<i>.png`` (``.jpg`` for i == 2) and returns, per split,
    ``(path, label, expected image at SIZE or None if resized)`` in split order."""
    splits = splits or {"train": {"cat": 4, "dog": 4, "emu": 4}, "test": {"cat": 2, "emu": 2}}
    class_ids = {name: i for i, name in enumerate(sorted({c for s in splits.values() for c in s}))}
    rng = np.random.default_rng(0)
    written = {}
    for split, classes in splits.items():
        written[split] = []
        for name, count in sorted(classes.items()):
            for i in range(count):
                shape = _SHAPES[i % len(_SHAPES)]
                image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
                path = os.path.join(root, split, name, f"{i}.{'jpg' if i == 2 else 'png'}")
                _write(path, image)
                if i == 2:  # JPEG is lossy: expect what TF decodes
                    with open(path, "rb") as file:
                        image = tf.io.decode_jpeg(file.read()).numpy()
                expected = _center_crop(image) if min(shape) == SIZE else None
                written[split].append((path, class_ids[name], expected))
    return written


def _elements(dataset) -> list[dict[str, np.ndarray]]:
    return list(dataset.as_numpy_iterator())


def _data_config(root, **overrides):
    config = base.get_base_config().data
    config.update(
        dict(name="folder", folder_root=str(root), num_classes=3, num_train_examples=12) | overrides
    )
    return config


# --- Layouts, element spec, order ---


def test_labeled_split_elements_labels_and_order(tmp_path):
    written = _make_folder(str(tmp_path))
    for split in ("train", "test"):
        dataset, size = folder.load_split(str(tmp_path), split, 0, 1, image_size=SIZE)
        assert dataset.element_spec["image"].shape == (SIZE, SIZE, 3)
        assert dataset.element_spec["image"].dtype == tf.uint8
        assert dataset.element_spec["label"].dtype == tf.int32
        assert dataset.element_spec["index"].dtype == tf.int64
        elements = _elements(dataset)
        assert size == len(elements) == len(written[split])
        np.testing.assert_array_equal([e["index"] for e in elements], np.arange(size))
        # Sorted class folders, then sorted files; "test" has no "dog" and keeps emu = 2.
        np.testing.assert_array_equal(
            [e["label"] for e in elements], [w[1] for w in written[split]]
        )
        for element, (path, _, expected) in zip(elements, written[split], strict=True):
            if expected is not None:  # min side == SIZE: a pure centre crop, exact pixels
                np.testing.assert_array_equal(element["image"], expected, err_msg=path)
    assert folder.read_split(str(tmp_path), "test").class_names == ["cat", "dog", "emu"]


def test_resize_keeps_a_constant_image_constant(tmp_path):
    _write(str(tmp_path / "a.png"), np.full((40, 30, 3), 77, np.uint8))
    (element,) = _elements(folder.load_split(str(tmp_path), "train", 0, 1, image_size=SIZE)[0])
    assert element["image"].shape == (SIZE, SIZE, 3) and np.all(element["image"] == 77)


def test_class_folders_without_split_and_unlabeled_layouts(tmp_path):
    _make_folder(str(tmp_path / "labeled"), {"": {"b": 1, "a": 2}})  # root/<class>/*
    examples = folder.read_split(str(tmp_path / "labeled"), "train")
    assert examples.class_names == ["a", "b"]
    np.testing.assert_array_equal(examples.labels, [0, 0, 1])
    with pytest.raises(FileNotFoundError, match="no split folder 'test'.*ROOT/<class>"):
        folder.read_split(str(tmp_path / "labeled"), "test")
    for i in (1, 0):
        _write(str(tmp_path / "flat" / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    examples = folder.read_split(str(tmp_path / "flat"), "train")
    assert examples.class_names == [] and examples.paths[0].endswith("0.png")
    np.testing.assert_array_equal(examples.labels, [-1, -1])
    # An unlabeled split folder next to a labeled one.
    _make_folder(str(tmp_path / "mixed"), {"train": {"a": 2}})
    _write(str(tmp_path / "mixed" / "extra" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    examples = folder.read_split(str(tmp_path / "mixed"), "extra+train")
    np.testing.assert_array_equal(examples.labels, [-1, 0, 0])


def test_process_parts_and_split_specs(tmp_path):
    _make_folder(str(tmp_path))
    seen = []
    for process in range(2):
        dataset, size = folder.load_split(str(tmp_path), "train+test", process, 2, image_size=8)
        start, end = fake.part_bounds(16, process, 2)
        indices = [e["index"] for e in _elements(dataset)]
        assert size == end - start and indices == list(range(start, end))
        seen += indices
    assert sorted(seen) == list(range(16))
    held_out = folder.read_split(str(tmp_path), "train[75%:]")
    assert held_out.paths == folder.read_split(str(tmp_path), "train").paths[9:]


# --- The training and evaluation iterators ---


def test_iterators_give_cifar_shapes(tmp_path):
    _make_folder(str(tmp_path))
    config = _data_config(tmp_path, eval_test_split="test")
    fake_config = base.get_base_config().data
    fake_config.update(dict(name="fake", fake_train_examples=12, fake_test_examples=4))
    kwargs = dict(global_batch_size=4, seed=0, start_step=0, process_index=1, process_count=2)
    batch = next(tfds.make_train_iterator(config, **kwargs))
    expected = next(tfds.make_train_iterator(fake_config, **kwargs))
    for key in expected:
        assert batch[key].shape == expected[key].shape and batch[key].dtype == expected[key].dtype
    assert set(batch["label"]) <= {0, 1, 2}
    for split in ("train", "test"):
        make_iterator, size = tfds.make_eval_iterator(
            config, split, batch_size=4, process_index=1, process_count=2
        )
        batches = list(make_iterator())
        make_expected, _ = tfds.make_eval_iterator(
            fake_config, split, batch_size=4, process_index=1, process_count=2
        )
        expected = next(make_expected())
        for key in expected:
            assert batches[0][key].shape == expected[key].shape
        assert size == {"train": 6, "test": 2}[split]
        assert sum(b["mask"].sum() for b in batches) == size
    with pytest.raises(ValueError, match="num_classes=3"):
        tfds.make_eval_iterator(
            _data_config(tmp_path, num_classes=2),
            "test",
            batch_size=4,
            process_index=0,
            process_count=1,
        )
    with pytest.raises(ValueError, match="folder_root"):
        tfds.load_split("folder", "train", None, 0, 1)


# --- Corrupt files, empty and missing folders ---


def _add_corrupt_files(root) -> list[str]:
    paths = [
        os.path.join(root, "train", "cat", "9_garbage.png"),
        os.path.join(root, "train", "dog", "9_truncated.jpg"),
        os.path.join(root, "train", "emu", "notes.txt"),
    ]
    jpeg = tf.io.encode_jpeg(np.zeros((16, 16, 3), np.uint8)).numpy()
    for path, contents in zip(paths, [b"not an image", jpeg[: len(jpeg) // 2], b"hi"], strict=True):
        with open(path, "wb") as file:
            file.write(contents)
    return paths


def test_corrupt_files_error_or_skip_and_count(tmp_path, caplog):
    _make_folder(str(tmp_path))
    corrupt = _add_corrupt_files(str(tmp_path))
    with pytest.raises(ValueError, match="3 of 15 files.*9_garbage.png.*on_corrupt=skip"):
        folder.read_split(str(tmp_path), "train")
    with caplog.at_level(logging.WARNING):
        examples = folder.read_split(str(tmp_path), "train", on_corrupt="skip")
    assert sorted(examples.skipped) == sorted(corrupt) and len(examples.paths) == 12
    assert "Skipping 3 of 15 files" in caplog.text and "9_garbage.png" in caplog.text
    config = _data_config(tmp_path, on_corrupt="skip", folder_image_size=8)
    batch = next(
        tfds.make_train_iterator(
            config, global_batch_size=12, seed=0, start_step=0, process_index=0, process_count=1
        )
    )
    assert sorted(batch["index"]) == list(range(12))  # every step reads only good files
    with pytest.raises(ValueError, match="on_corrupt must be one of"):
        folder.read_split(str(tmp_path), "train", on_corrupt="ignore")


def test_validation_index_is_reused_until_a_file_changes(tmp_path, monkeypatch):
    _make_folder(str(tmp_path))
    garbage = _add_corrupt_files(str(tmp_path))[0]
    first = folder.read_split(str(tmp_path), "train", on_corrupt="skip")

    def no_decoding(paths):
        raise AssertionError(f"decoded {paths}")

    with monkeypatch.context() as patch:
        patch.setattr(folder.image_files, "_decodes", no_decoding)
        again = folder.read_split(str(tmp_path), "train", on_corrupt="skip")
    assert again.paths == first.paths and again.skipped == first.skipped
    _write(garbage, np.zeros((20, 20, 3), np.uint8))  # fixed: now a valid PNG
    fixed = folder.read_split(str(tmp_path), "train", on_corrupt="skip")
    assert garbage in fixed.paths and len(fixed.skipped) == 2


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*folder_root=ROOT"):
        folder.read_split(str(tmp_path / "missing"), "train")
    with pytest.raises(ValueError, match="has no files.*Expected ROOT/<split>/<class>"):
        folder.read_split(str(tmp_path), "train")
    os.makedirs(tmp_path / "train" / "cat")
    with pytest.raises(ValueError, match="has no files"):
        folder.read_split(str(tmp_path), "train")
    _write(str(tmp_path / "train" / "stray.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="also images outside them"):
        folder.read_split(str(tmp_path), "train")
    with pytest.raises(ValueError, match="needs data.folder_root"):
        folder.read_split(None, "train")


# --- tools/folder_to_tfds.py ---


def test_converted_dataset_loads_through_tfds_with_the_same_images(tmp_path):
    root, data_dir = str(tmp_path / "images"), str(tmp_path / "tfds")
    _make_folder(root)
    _add_corrupt_files(root)
    folder_to_tfds.main(
        [
            root,
            "--name",
            "jaxssl_test_images",
            "--data_dir",
            data_dir,
            "--image_size",
            str(SIZE),
            "--on_corrupt",
            "skip",
        ]
    )
    for split in ("train", "test"):
        converted, size = tfds.load_split("jaxssl_test_images", split, data_dir, 0, 1)
        original, original_size = folder.load_split(
            root, split, 0, 1, image_size=SIZE, on_corrupt="skip"
        )
        assert size == original_size

        def contents(dataset):
            return sorted((int(e["label"]), e["image"].tobytes()) for e in _elements(dataset))

        assert contents(converted) == contents(original)
    with pytest.raises(ValueError, match="exists"):
        folder_to_tfds.convert(root, "jaxssl_test_images", data_dir, image_size=SIZE)
    with pytest.raises(ValueError, match="--image_size"):
        folder_to_tfds.convert(root, "jaxssl_test_sizes", data_dir, on_corrupt="skip")
