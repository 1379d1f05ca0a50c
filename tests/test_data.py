"""Tests for the host input pipeline: jaxssl.data.{fake,tfds}. No JAX."""

import os

import ml_collections
import numpy as np
import pytest

from jaxssl.configs import base
from jaxssl.data import crops, fake, tfds


def _data_config(**overrides) -> ml_collections.ConfigDict:
    """The real base config's data section on small fake splits."""
    config = base.get_base_config().data
    config.update(dict(name="fake", fake_train_examples=120, fake_test_examples=100) | overrides)
    return config


# --- Training batches ---


def test_train_batch_is_uint8_crops_of_each_view_group():
    config = _data_config(local_views=3, local_image_size=16, local_crop_scale=(0.05, 0.4))
    kwargs = dict(global_batch_size=8, seed=0, start_step=0, process_index=0, process_count=1)
    batch = next(tfds.make_train_iterator(config, **kwargs))
    assert sorted(batch) == ["global", "index", "label", "local"]
    assert batch["global"].shape == (8, 2, 32, 32, 3) and batch["global"].dtype == np.uint8
    assert batch["local"].shape == (8, 3, 16, 16, 3) and batch["local"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and batch["index"].dtype == np.int32
    # The crops of the batch's examples, as `crops.crop_views` cuts them in epoch 0.
    images = fake.make_examples("train", 120)[0][batch["index"]]
    for group in ("global", "local"):
        expected = crops.crop_views(images, batch["index"], 0, 0, config, group).numpy()
        np.testing.assert_array_equal(batch[group], expected)
    no_local = next(tfds.make_train_iterator(_data_config(), **kwargs))
    assert sorted(no_local) == ["global", "index", "label"]
    np.testing.assert_array_equal(no_local["global"], batch["global"])


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
        batches[0]["global"].shape == (24, 2, 32, 32, 3) and batches[0]["global"].dtype == np.uint8
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
        assert image.shape[1:] == (24, 24, 3) and image.dtype == np.uint8
        assert np.all(image[~mask] == 0)
        # XLA-compiled here: a sum may round half a level the other way than eagerly.
        expected = crops.resize(images[start:end], 24).numpy()
        np.testing.assert_allclose(image[:size].astype(int), expected, atol=1)
    assert num_batches == {3}  # 34 examples on the largest part, padded to 3 batches of 16


def test_eval_iterator_cuts_the_same_patches_every_pass():
    config = _data_config()
    images, _ = fake.make_examples("test", 100)
    patches = ml_collections.ConfigDict(
        dict(num=4, size=16, scale=(0.25, 0.5), ratio=(3 / 4, 4 / 3), seed=5)
    )
    kwargs = dict(batch_size=16, process_index=1, process_count=3)
    make_iterator, size = tfds.make_eval_iterator(config, "test", patches=patches, **kwargs)
    first, second = list(make_iterator()), list(make_iterator())
    plain = list(tfds.make_eval_iterator(config, "test", **kwargs)[0]())
    assert sorted(first[0]) == ["image", "label", "mask", "patches"]
    assert sorted(plain[0]) == ["image", "label", "mask"]
    bags = np.concatenate([b["patches"] for b in first])
    assert bags.shape[1:] == (4, 16, 16, 3) and bags.dtype == np.uint8
    np.testing.assert_array_equal(bags, np.concatenate([b["patches"] for b in second]))
    for batch, plain_batch in zip(first, plain, strict=True):
        np.testing.assert_array_equal(batch["image"], plain_batch["image"])
    # Patch p of example i is its crop keyed by (patches.seed, i, epoch 0, view p), unflipped.
    start, end = fake.part_bounds(100, 1, 3)
    expected = crops.random_crops(
        images[start:end],
        np.arange(start, end),
        0,
        5,
        num_views=4,
        size=16,
        scale=(0.25, 0.5),
        ratio=(3 / 4, 4 / 3),
        flip_prob=0.0,
    ).numpy()
    np.testing.assert_array_equal(bags[:size], expected)
    assert len({bag.tobytes() for bag in bags[0]}) == 4


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
    assert batch["global"].shape == (16, 2, 32, 32, 3) and batch["global"].dtype == np.uint8
    # Process 1 of 2 keeps rows 16:32 of the global batch one process would draw.
    np.testing.assert_array_equal(batch["index"], whole["index"][16:])
    np.testing.assert_array_equal(batch["global"], whole["global"][16:])
    assert np.all((batch["index"] >= 0) & (batch["index"] < 1000))
    assert np.all((batch["label"] >= 0) & (batch["label"] < 10))
    dataset, size = tfds.load_split("cifar10", "test", data_dir, 1, 2)
    first = next(dataset.as_numpy_iterator())
    assert size == 5000 and first["index"] == 5000 and first["image"].shape == (32, 32, 3)
