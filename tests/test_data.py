"""Tests for the host input pipeline: jaxssl.data.{fake,tfds}. No JAX."""

import logging
import os

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets

from jaxssl import errors
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


def test_class_filters_keep_only_the_given_labels():
    """data.eval_classes filters both evaluation passes (per process, in lockstep);
    data.train_classes the training stream, whose size must be data.num_train_examples."""
    _, labels = fake.make_examples("test", 100)
    config = _data_config(eval_classes=(1, 3))
    sizes, num_batches, seen = [], set(), []
    for process in range(2):
        make_iterator, size = tfds.make_eval_iterator(
            config, "test", batch_size=8, process_index=process, process_count=2
        )
        batches = list(make_iterator())
        num_batches.add(len(batches))
        mask = np.concatenate([b["mask"] for b in batches])
        assert mask.sum() == size
        seen.append(np.concatenate([b["label"] for b in batches])[mask])
        sizes.append(size)
    start, end = fake.part_bounds(100, 0, 2)
    expected = labels[start:end][np.isin(labels[start:end], (1, 3))]
    np.testing.assert_array_equal(seen[0], expected)
    assert sum(sizes) == np.isin(labels, (1, 3)).sum() > 0
    assert len(num_batches) == 1  # both processes run as many batches
    _, train_labels = fake.make_examples("train", 120)
    kept = int(np.isin(train_labels, (0, 2)).sum())
    kwargs = dict(global_batch_size=8, seed=0, start_step=0, process_index=0, process_count=1)
    for cache in (True, False):
        with pytest.raises(errors.ConfigError, match=f"num_train_examples={kept}"):
            tfds.make_train_iterator(_data_config(train_classes=(0, 2), cache=cache), **kwargs)
        config = _data_config(train_classes=(0, 2), num_train_examples=kept, cache=cache)
        batches = tfds.make_train_iterator(config, **kwargs)
        labels_seen = np.concatenate([next(batches)["label"] for _ in range(4)])
        assert set(labels_seen) <= {0, 2}


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
    assert isinstance(error.value, errors.UserError)
    with pytest.raises(FileNotFoundError, match="tfds build"):
        tfds.load_split("no_such_dataset_xyz", "train", str(tmp_path), 0, 1)


def _real_data_dir() -> str:
    data_dir = os.environ.get("TFDS_DATA_DIR")
    if not data_dir or not os.path.isdir(os.path.join(data_dir, "cifar10")):
        pytest.skip("needs a prepared cifar10 in $TFDS_DATA_DIR")
    return data_dir


# --- data.download: tfds.prepare (TFDS's download_and_prepare is replaced: no network) ---


@pytest.fixture
def downloads(monkeypatch):
    """The builders whose ``download_and_prepare`` was called; nothing is downloaded."""
    calls = []

    def download_and_prepare(builder, **kwargs):
        calls.append(builder)

    monkeypatch.setattr(
        tensorflow_datasets.core.DatasetBuilder, "download_and_prepare", download_and_prepare
    )
    return calls


def test_download_never_with_a_missing_dataset_says_what_to_do(tmp_path, downloads):
    config = _data_config(name="cifar10", data_dir=str(tmp_path), download="never")
    with pytest.raises(errors.UserError) as error:
        tfds.prepare(config, process_count=1)
    message = str(error.value)
    assert "'cifar10' is not prepared" in message and str(tmp_path) in message
    for advice in ("--config.data.download=auto", "--config.data.data_dir", "tfds build cifar10"):
        assert advice in message
    assert isinstance(error.value, FileNotFoundError)  # what callers caught before
    assert downloads == []


def test_download_auto_prepares_a_missing_dataset_in_one_process(tmp_path, downloads, caplog):
    config = _data_config(name="cifar10", data_dir=str(tmp_path))
    assert config.download == "auto"  # the default
    with caplog.at_level(logging.INFO):
        tfds.prepare(config, process_count=1)
    [builder] = downloads
    assert builder.name == "cifar10" and str(builder.data_dir).startswith(str(tmp_path))
    [line] = [r.getMessage() for r in caplog.records if "Downloading" in r.getMessage()]
    assert "cifar10/3.0.2" in line and str(tmp_path) in line


def test_download_retries_few_times_so_an_offline_host_fails_in_seconds(tmp_path, monkeypatch):
    from tensorflow_datasets.core.download import downloader

    seen = []
    monkeypatch.setattr(
        tensorflow_datasets.core.DatasetBuilder,
        "download_and_prepare",
        lambda builder, **kwargs: seen.append(downloader.MAX_RETRIES),
    )
    before = downloader.MAX_RETRIES
    tfds.prepare(_data_config(name="cifar10", data_dir=str(tmp_path)), process_count=1)
    assert seen == [tfds.DOWNLOAD_RETRIES] and downloader.MAX_RETRIES == before


def test_download_of_a_prepared_dataset_only_with_always(downloads):
    data_dir = _real_data_dir()
    for mode in ("auto", "never"):
        tfds.prepare(
            _data_config(name="cifar10", data_dir=data_dir, download=mode), process_count=1
        )
    assert downloads == []
    config = _data_config(name="cifar10", data_dir=data_dir, download="always")
    tfds.prepare(config, process_count=1)
    [builder] = downloads  # TFDS's own call finds it prepared and returns
    assert str(builder.data_dir).startswith(data_dir)
    with pytest.raises(errors.UserError, match="multi-process.*download=auto"):
        tfds.prepare(config, process_count=2)
    assert len(downloads) == 1


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_multi_process_runs_never_download(tmp_path, downloads, mode):
    config = _data_config(name="cifar10", data_dir=str(tmp_path), download=mode)
    with pytest.raises(tfds.DatasetNotPreparedError) as error:
        tfds.prepare(config, process_count=2)
    message = str(error.value)
    assert "multi-process runs (2 processes here) never download" in message
    assert str(tmp_path) in message and "GCS bucket" in message
    assert "single-process jaxssl run with --config.data.download=always" in message
    assert "tfds build cifar10" in message
    assert isinstance(error.value, errors.UserError)
    assert downloads == []


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionError("Failed to resolve 'www.cs.toronto.edu'\n  File tfds/downloader.py ..."),
        OSError("[Errno 101] Network is unreachable"),
    ],
)
def test_failed_download_is_the_offline_message(tmp_path, monkeypatch, failure):
    def download_and_prepare(builder, **kwargs):
        raise failure

    monkeypatch.setattr(
        tensorflow_datasets.core.DatasetBuilder, "download_and_prepare", download_and_prepare
    )
    config = _data_config(name="cifar10", data_dir=str(tmp_path))
    with pytest.raises(errors.UserError) as error:
        tfds.prepare(config, process_count=1)
    message = str(error.value)
    assert message.startswith(
        f"Could not download and prepare TFDS dataset 'cifar10' into {tmp_path}"
    )
    first_line = str(failure).splitlines()[0]
    assert f"({type(failure).__name__}: {first_line})" in message
    assert "tfds/downloader.py" not in message  # one line of the cause, not its text
    assert "offline" in message and "--config.data.download=never" in message
    assert error.value.__cause__ is failure


def test_invalid_download_mode_names_the_valid_ones(downloads):
    config = _data_config(name="cifar10", download="sometimes")
    with pytest.raises(errors.UserError, match="'sometimes'.*valid: auto, never, always"):
        tfds.prepare(config, process_count=1)
    assert downloads == []


def test_fake_and_folder_data_are_not_tfds_datasets(monkeypatch, downloads):
    def no_builder(*args, **kwargs):
        raise AssertionError("tfds.builder called")

    monkeypatch.setattr(tensorflow_datasets, "builder", no_builder)
    for name in ("fake", "folder"):
        for mode in ("auto", "always"):
            tfds.prepare(_data_config(name=name, download=mode), process_count=1)
            tfds.prepare(_data_config(name=name, download=mode), process_count=2)
    assert downloads == []


def test_unknown_dataset_name_is_a_user_error(tmp_path, downloads):
    config = _data_config(name="no_such_dataset_xyz", data_dir=str(tmp_path))
    with pytest.raises(errors.UserError, match="no builder of that name"):
        tfds.prepare(config, process_count=1)
    assert downloads == []


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
