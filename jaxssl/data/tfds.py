"""Per-process TFDS input pipelines: training views and evaluation batches as numpy.

Each process yields host-local batches (its rows of the global batch);
`jaxssl.sharding.to_global` assembles them into global arrays. No JAX here: the pipeline
is TensorFlow on the host CPU, and it ships uint8 pixels: training crops
(`jaxssl.data.crops`) whose colour augmentation and normalization the train step applies
(`jaxssl.data.color`), and resized evaluation images that the embedding functions normalize.

The training stream is a pure function of (seed, step). With ``data.cache`` (datasets that
fit in host memory, e.g. CIFAR) every process holds the whole split: epoch ``e`` visits it
in a permutation keyed by ``(seed, e)``, epochs are concatenated and cut into global
batches across epoch boundaries, and process ``p`` keeps rows ``[p*b, (p+1)*b)``, so the
global batch of a step does not depend on the number of processes. Without ``cache`` each
process streams only its contiguous part of the split (``tfds.even_splits``). Every view is
keyed by (seed, example index, epoch, view). Resuming at step ``k`` therefore yields
exactly the batches an uninterrupted run yields from step ``k`` on.

Evaluation passes read per-process parts. ``data.train_classes`` / ``data.eval_classes`` keep
only the examples of some labels (e.g. pre-train on CIFAR-10 classes 0-4, evaluate on 5-9).

`prepare` runs first (``data.download``): it downloads and prepares a missing TFDS dataset in
single-process runs, or stops with an error that says how to prepare it.
"""

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from jaxssl import errors
from jaxssl.data import crops, fake, folder, jpeg

# Shuffle buffer of the streaming path (``cache=False``); a full permutation needs the
# whole part in memory, which is what ``cache=True`` is for.
_SHUFFLE_BUFFER = 50_000


class _Part(NamedTuple):
    dataset: tf.data.Dataset
    num_examples: int  # in this process's part
    max_part_size: int  # over all processes' parts


# ``data.download``: what a run does about a TFDS dataset missing from ``data_dir``.
DOWNLOAD_MODES = ("auto", "never", "always")
# Sources that are not TFDS datasets: nothing to download.
_NOT_TFDS = ("fake", "folder")


class DatasetNotPreparedError(errors.UserError, FileNotFoundError):
    """A TFDS dataset is not in ``data_dir`` and this run does not (or could not) prepare it."""


def _data_dir_text(data_dir: str | None) -> str:
    """``data_dir`` as TFDS resolves it, for messages."""
    if data_dir is not None:
        return data_dir
    env = os.environ.get("TFDS_DATA_DIR")
    return f"TFDS_DATA_DIR={env}" if env else "~/tensorflow_datasets (TFDS_DATA_DIR unset)"


def _missing_dataset_error(name: str, data_dir: str | None, detail: str) -> DatasetNotPreparedError:
    return DatasetNotPreparedError(
        f"TFDS dataset {name!r} is not prepared in data_dir {_data_dir_text(data_dir)} "
        f"({detail}). To fix it: run with --config.data.download=auto (the default) on a "
        f"machine that is online, and jaxssl downloads and prepares it; or point TFDS_DATA_DIR "
        f"or --config.data.data_dir at the directory that holds {name}/; or prepare it once "
        f"with `tfds build {name} --data_dir=DIR`. For a folder of image files use "
        f"--config.data.name=folder --config.data.folder_root=ROOT, or convert it with "
        f"tools/folder_to_tfds.py."
    )


def _multi_process_error(
    name: str, data_dir: str | None, process_count: int
) -> DatasetNotPreparedError:
    return DatasetNotPreparedError(
        f"TFDS dataset {name!r} is not prepared in data_dir {_data_dir_text(data_dir)}, and "
        f"multi-process runs ({process_count} processes here) never download, whatever "
        f"data.download says: every process would download and write the same files at once. "
        f"Prepare it once, in a single process, into a directory every host reads (a shared "
        f"file system or a GCS bucket): `tfds build {name} --data_dir=DIR`, or a "
        f"single-process jaxssl run with --config.data.download=always "
        f"--config.data.data_dir=DIR. Then start this run with --config.data.data_dir=DIR."
    )


def _download_error(
    name: str, builder: tfds.core.DatasetBuilder, error: Exception
) -> DatasetNotPreparedError:
    lines = str(error).strip().splitlines()
    cause = f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]
    manual = ""
    if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
        manual = (
            f" {name} needs a manual download: put its files in "
            f"{builder.data_dir_root}/downloads/manual (see "
            f"https://www.tensorflow.org/datasets/catalog/{builder.name}) and run again."
        )
    return DatasetNotPreparedError(
        f"Could not download and prepare TFDS dataset {name!r} into {builder.data_dir} "
        f"({cause}).{manual} If this machine is offline, prepare the dataset on one that is "
        f"online (`tfds build {name} --data_dir=DIR`, or a jaxssl run there with "
        f"--config.data.download=auto), copy DIR here and point --config.data.data_dir (or "
        f"TFDS_DATA_DIR) at it; --config.data.download=never then reads it without trying to "
        f"download. JAXSSL_DEBUG=1 shows TFDS's own traceback."
    )


def _builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """TFDS's builder of ``name`` in ``data_dir``; raises `DatasetNotPreparedError` if unknown."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        # `from None`: TFDS's message lists every registered dataset.
        raise _missing_dataset_error(
            name, data_dir, "TFDS has no builder of that name and there are no files of it"
        ) from None


def prepare(data_config: ml_collections.ConfigDict, *, process_count: int) -> None:
    """Makes sure the run's TFDS dataset is prepared, downloading it where ``data.download`` says.

    Call once per process before building pipelines. ``data.download`` is one of
    `DOWNLOAD_MODES`:

    - ``auto``: a dataset (at its version) missing from ``data_dir`` is downloaded and prepared
      with TFDS's ``download_and_prepare``, which prints its own progress; only in a
      single-process run.
    - ``never``: nothing is downloaded; a missing dataset is an error that says what to do.
    - ``always``: ``download_and_prepare`` is called even if the dataset is there (TFDS then
      skips the work); only in a single-process run.

    Multi-process runs never download (every process would fetch and write the same files into
    the same directory): a missing dataset is an error that says how to prepare it once.
    Folder and fake data (``data.name`` ``folder`` or ``fake``) are not TFDS datasets: nothing
    is done for them.

    Args:
      data_config: the ``config.data`` ConfigDict (``name``, ``data_dir``, ``download``).
      process_count: number of processes, ``jax.process_count()``.

    Raises:
      errors.UserError: ``data.download`` is not one of `DOWNLOAD_MODES`.
      DatasetNotPreparedError: the dataset is missing and may not be downloaded here, or the
        download failed (no network, no disk space, a manual download needed); the failure
        is chained to it.
    """
    mode = data_config.get("download", "auto")
    if mode not in DOWNLOAD_MODES:
        raise errors.UserError(
            f"data.download={mode!r} is not a download mode; valid: {', '.join(DOWNLOAD_MODES)}."
        )
    name, data_dir = data_config.name, data_config.data_dir
    if name in _NOT_TFDS:
        return
    builder = _builder(name, data_dir)
    prepared = builder.is_prepared()
    if prepared and mode != "always":
        return
    if process_count > 1:
        if prepared:  # data.download=always
            raise errors.UserError(
                f"data.download=always: multi-process runs ({process_count} processes here) "
                f"never download, and {name!r} is prepared in {builder.data_dir} already: run "
                f"with --config.data.download=auto (or never)."
            )
        raise _multi_process_error(name, data_dir, process_count)
    if mode == "never":
        raise _missing_dataset_error(name, data_dir, f"nothing at {builder.data_dir}")
    logging.info(
        "%s TFDS dataset %s in %s (data.download=%s).",
        "Checking (already prepared)" if prepared else "Downloading and preparing",
        builder.info.full_name,
        builder.data_dir,
        mode,
    )
    try:
        with _few_retries():
            builder.download_and_prepare()
    except Exception as error:  # any failure (network, disk, manual files): say what to do
        raise _download_error(name, builder, error) from error


# TFDS retries each request 10 times with exponential back-off: an offline host (no DNS)
# waits 3.5 minutes before the error. Four retries still ride out a brief network fault and
# fail in seconds offline.
DOWNLOAD_RETRIES = 4


@contextlib.contextmanager
def _few_retries() -> Iterator[None]:
    """TFDS's downloader with `DOWNLOAD_RETRIES` retries per request, for the block."""
    try:
        from tensorflow_datasets.core.download import downloader  # noqa: PLC0415
    except ImportError:
        downloader = None
    saved = getattr(downloader, "MAX_RETRIES", None)
    if saved is None:  # another TFDS version: keep its own policy
        yield
        return
    downloader.MAX_RETRIES = min(saved, DOWNLOAD_RETRIES)
    try:
        yield
    finally:
        downloader.MAX_RETRIES = saved


def _open_part(
    name: str,
    split: str,
    data_dir: str | None,
    process_index: int,
    process_count: int,
    num_fake_examples: int | None = None,
) -> _Part:
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} not in [0, {process_count}).")
    if name == "fake":
        split_size = num_fake_examples or fake.NUM_EXAMPLES.get(split, 0)
        dataset, num_examples = fake.load_split(split, process_index, process_count, split_size)
        return _Part(dataset, num_examples, math.ceil(split_size / process_count))
    if name == "folder":
        raise ValueError(
            "name='folder' reads data.folder_root: pass the data config to "
            "make_train_iterator / make_eval_iterator, or call jaxssl.data.folder.load_split."
        )
    builder = _builder(name, data_dir)
    if not builder.is_prepared():
        raise _missing_dataset_error(name, data_dir, f"nothing at {builder.data_dir}")
    parts = tfds.even_splits(split, n=process_count)
    sizes = [builder.info.splits[part].num_examples for part in parts]
    read_config = tfds.ReadConfig(
        # One file at a time keeps the split's canonical order; no TFDS-side cache,
        # the pipelines below decide what to cache.
        interleave_cycle_length=1,
        try_autocache=False,
    )
    dataset = builder.as_dataset(
        split=parts[process_index], shuffle_files=False, read_config=read_config
    )
    # Parts are contiguous, so a global index is the part's offset plus the position.
    dataset = dataset.enumerate(start=sum(sizes[:process_index])).map(
        lambda index, example: {
            "image": example["image"],
            "label": tf.cast(example["label"], tf.int32),
            "index": index,
        },
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return _Part(dataset, sizes[process_index], max(sizes))


def load_split(
    name: str,
    split: str,
    data_dir: str | None,
    process_index: int,
    process_count: int,
    *,
    num_fake_examples: int | None = None,
) -> tuple[tf.data.Dataset, int]:
    """This process's part of a TFDS split, decoded, in the split's order.

    Args:
      name: TFDS name (e.g. ``"cifar10"``), or ``"fake"`` for `jaxssl.data.fake`.
      split: split name or TFDS sub-split spec (``"train"``, ``"train[:90%]"``).
      data_dir: TFDS data directory; ``None`` for TFDS's default resolution
        (``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``).
      process_index: this process's index, ``jax.process_index()``.
      process_count: number of processes, ``jax.process_count()``.
      num_fake_examples: size of the whole split, for ``name="fake"`` only.

    Returns:
      ``(dataset, n)``: elements ``{"image": uint8 [H, W, 3], "label": int32,
      "index": int64}`` where ``index`` is the example's position in the whole split
      (for a ``"a+b"`` spec: a unique id in ``[0, total)``), and ``n`` the number of
      examples in this part.

    Raises:
      DatasetNotPreparedError: the dataset is not prepared in ``data_dir``; nothing is
        downloaded here (`prepare` does that).
    """
    part = _open_part(name, split, data_dir, process_index, process_count, num_fake_examples)
    return part.dataset, part.num_examples


def _open_config_split(
    data_config: ml_collections.ConfigDict,
    split: str,
    process_index: int,
    process_count: int,
    classes: Sequence[int] = (),
) -> _Part:
    """This process's part of ``split``; with ``classes``, only the examples of those labels
    (``data.train_classes`` / ``data.eval_classes``). Counting a filtered part reads it once
    (and every process's part when there are several, for the evaluation's lockstep)."""
    part = _open_unfiltered_split(data_config, split, process_index, process_count)
    if not classes:
        return part
    keep = tf.constant(sorted({int(c) for c in classes}), tf.int32)

    def kept(dataset):
        return dataset.filter(lambda example: tf.reduce_any(tf.equal(example["label"], keep)))

    def count(dataset):
        labels = kept(dataset).map(lambda example: example["label"])
        return int(labels.reduce(np.int64(0), lambda n, _: n + 1))

    num_examples = count(part.dataset)
    sizes = [num_examples] + [
        count(_open_unfiltered_split(data_config, split, p, process_count).dataset)
        for p in range(process_count)
        if p != process_index
    ]
    return _Part(kept(part.dataset), num_examples, max(sizes))


def _open_unfiltered_split(
    data_config: ml_collections.ConfigDict, split: str, process_index: int, process_count: int
) -> _Part:
    if data_config.name == "folder":
        return _Part(*folder.open_config_split(data_config, split, process_index, process_count))
    if data_config.get("decode_crop", False):  # JPEGs of any size: centre views
        return _Part(*jpeg.open_eval_part(data_config, split, process_index, process_count))
    num_fake = {"train": data_config.fake_train_examples, "test": data_config.fake_test_examples}
    return _open_part(
        data_config.name,
        split,
        data_config.data_dir,
        process_index,
        process_count,
        num_fake.get(split),
    )


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def crop_train_batch(
    batch: dict[str, crops.TensorLike],
    seed: crops.TensorLike,
    data_config: ml_collections.ConfigDict,
) -> dict[str, tf.Tensor]:
    """The train step's input from a batch of images: their views' crops, labels, indices.

    Eager or inside ``tf.data``; the training stream (`make_train_iterator`) and notebook
    code (`jaxssl.api.make_batch`) cut views with it alike.

    Args:
      batch: ``{"image": uint8 [b, H, W, 3], "label": [b], "index": [b], "epoch": [b] or
        scalar}``; ``index`` and ``epoch`` (with ``seed``) key the crops' randomness.
      seed: the data seed.
      data_config: the ``config.data`` ConfigDict.

    Returns:
      ``{"global": uint8 [b, V, S, S, 3], "label", "index": int32 [b]}``, and with
      ``data.local_views > 0`` (multi-crop) ``"local": uint8 [b, L, s, s, 3]``; with
      ``data.crop_boxes`` each group's crop boxes too, ``"global_box"`` (``"local_box"``)
      float32 ``[b, V, 5]`` (`crops.view_boxes`).
    """
    out = {"label": batch["label"], "index": tf.cast(batch["index"], tf.int32)}
    groups = ("global", "local") if data_config.local_views > 0 else ("global",)
    for group in groups:  # multi-crop's small views travel as their own array
        out[group] = crops.crop_views(
            batch["image"], batch["index"], batch["epoch"], seed, data_config, group
        )
        if data_config.get("crop_boxes", False):
            out[f"{group}_box"] = crops.crop_view_boxes(
                batch["image"], batch["index"], batch["epoch"], seed, data_config, group
            )
    return out


def _check_class_count(data_config: ml_collections.ConfigDict, num_examples: int) -> None:
    """A class-filtered train split must have the size the step count was computed from."""
    if data_config.get("train_classes", ()) and num_examples != data_config.num_train_examples:
        raise errors.ConfigError(
            f"data.train_classes={tuple(data_config.train_classes)} keeps {num_examples} "
            f"examples of {data_config.train_split}, but data.num_train_examples is "
            f"{data_config.num_train_examples} (epochs and schedules are counted from it). "
            f"Set --config.data.num_train_examples={num_examples}."
        )


def make_train_iterator(
    data_config: ml_collections.ConfigDict,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int,
    process_index: int,
    process_count: int,
) -> Iterator[dict[str, np.ndarray]]:
    """Infinite stream of this process's training crops, from ``start_step``.

    Args:
      data_config: the ``config.data`` ConfigDict.
      global_batch_size: batch size summed over processes.
      seed: data seed; the stream is a pure function of (seed, step).
      start_step: first step to yield, e.g. the restored checkpoint's step.
      process_index: this process's index.
      process_count: number of processes.

    Returns:
      An iterator of ``{"global": uint8 [b, V, S, S, 3], "label": int32 [b], "index":
      int32 [b]}`` with ``b = global_batch_size // process_count``, and with
      ``data.local_views > 0`` (multi-crop) ``"local": uint8 [b, L, s, s, 3]``: the views'
      crops (`jaxssl.data.crops.crop_views`), for the train step's colour augmentation.
    """
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by "
            f"process_count={process_count}: every process must feed the same number of "
            f"examples per step. Pick a multiple of {process_count}."
        )
    if data_config.get("decode_crop", False):  # JPEGs of any size: views from crop windows
        if data_config.get("crop_boxes", False):
            raise errors.ConfigError(
                "data.crop_boxes (VICRegL's crop locations) needs images of one size in the "
                "cached pipeline; it is not available with data.decode_crop."
            )
        return jpeg.make_train_iterator(
            data_config,
            global_batch_size=global_batch_size,
            seed=seed,
            start_step=start_step,
            process_index=process_index,
            process_count=process_count,
        )
    batch_size = global_batch_size // process_count

    def crop_batch(batch):
        return crop_train_batch(batch, seed, data_config)

    if data_config.cache:
        # Every process holds the whole decoded split as three tensors and draws the same
        # global batch, a gather of positions from a permutation keyed by (seed, epoch); it
        # keeps its own rows of that batch. The global batch of a step is therefore the same
        # for any number of processes, and skipping to a step is cheap.
        part = _open_config_split(
            data_config, data_config.train_split, 0, 1, data_config.get("train_classes", ())
        )
        num_examples = part.num_examples
        _check_class_count(data_config, num_examples)
        if num_examples < global_batch_size:
            raise ValueError(
                f"{data_config.train_split} has {num_examples} examples, fewer than one global "
                f"batch of {global_batch_size}."
            )
        arrays = part.dataset.batch(num_examples).get_single_element()
        start_epoch, skip = divmod(start_step * global_batch_size, num_examples)

        def epoch_order(epoch):
            seed_pair = tf.stack([tf.constant(seed, tf.int64), epoch])
            positions = tf.random.experimental.stateless_shuffle(
                tf.range(num_examples, dtype=tf.int64), seed=seed_pair, alg="philox"
            )
            return {"position": positions, "epoch": tf.fill([num_examples], epoch)}

        def gather_batch(order):
            rows = slice(process_index * batch_size, (process_index + 1) * batch_size)
            order = {key: value[rows] for key, value in order.items()}
            batch = {key: tf.gather(value, order["position"]) for key, value in arrays.items()}
            return crop_batch(batch | {"epoch": order["epoch"]})

        dataset = (
            tf.data.Dataset.counter(start_epoch)
            .map(epoch_order)
            .unbatch()
            .skip(skip)
            .batch(global_batch_size, drop_remainder=True)
            .map(gather_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        )
    else:
        # Streaming (datasets larger than memory): each process reads only its own part,
        # per epoch in a seeded shuffle as read from disk; resuming reads and drops the
        # examples before `start_step` in its epoch. The global batch of a step depends on
        # the number of processes here. (The shuffle seed is combined with TF's global seed,
        # which jaxssl leaves unset.)
        part = _open_config_split(
            data_config,
            data_config.train_split,
            process_index,
            process_count,
            data_config.get("train_classes", ()),
        )
        num_examples = part.num_examples
        if process_count == 1:
            _check_class_count(data_config, num_examples)
        if num_examples == 0:
            raise ValueError(
                f"Process {process_index} has no examples of {data_config.train_split}."
            )
        start_epoch, skip = divmod(start_step * batch_size, num_examples)

        def epoch_stream(epoch):
            return part.dataset.shuffle(
                min(num_examples, _SHUFFLE_BUFFER),
                seed=seed * 1_000_003 + epoch,
                reshuffle_each_iteration=False,
            ).map(lambda example: example | {"epoch": epoch})

        dataset = (
            tf.data.Dataset.counter(start_epoch)
            .flat_map(epoch_stream)
            .skip(skip)
            .batch(batch_size, drop_remainder=True)
            .map(crop_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        )
    dataset = dataset.prefetch(tf.data.AUTOTUNE).with_options(_options())
    return dataset.as_numpy_iterator()


def make_eval_iterator(
    data_config: ml_collections.ConfigDict,
    split: str,
    *,
    batch_size: int,
    process_index: int,
    process_count: int,
    patches: ml_collections.ConfigDict | None = None,
) -> tuple[Callable[[], Iterator[dict[str, np.ndarray]]], int]:
    """One ordered, unaugmented pass over this process's part of ``split`` per call.

    Every process yields the same number of batches (enough for the largest part), so
    multi-process evaluation steps stay in lockstep; padding rows are zeros with
    ``mask`` False.

    Args:
      data_config: the ``config.data`` ConfigDict.
      split: split name, e.g. ``data_config.eval_test_split``.
      batch_size: per-process batch size ``b``.
      process_index: this process's index.
      process_count: number of processes.
      patches: ``config.evals.patches``; with ``patches.num > 0`` (EMP-SSL's bag-of-features
        evaluation) the batches also hold ``"patches"``: uint8 ``[b, P, s, s, 3]``, ``P =
        patches.num`` random resized crops of ``s = patches.size`` px of each image, keyed by
        (``patches.seed``, example index, patch number) only, so every pass over every
        checkpoint sees the same patches.

    Returns:
      ``(make_iterator, n)``: ``make_iterator()`` returns an iterator of ``{"image": uint8
      [b, S, S, 3] (S = eval_image_size; `jaxssl.data.color.to_model_input` normalizes it),
      "label": int32 [b], "mask": bool [b]}``; ``n`` is the number of real examples in this
      part.
    """
    part = _open_config_split(
        data_config, split, process_index, process_count, data_config.get("eval_classes", ())
    )
    num_batches = math.ceil(part.max_part_size / batch_size)
    size = int(data_config.eval_image_size)
    with_patches = patches is not None and patches.num > 0
    resize = tf.function(lambda images: crops.resize(images, size), jit_compile=True)

    def pad_batch(batch):
        num_real = tf.shape(batch["label"])[0]
        padding = batch_size - num_real
        images = tf.pad(batch["image"], [[0, padding], [0, 0], [0, 0], [0, 0]])
        images = tf.ensure_shape(images, [batch_size, *batch["image"].shape[1:]])
        out = {
            "image": images if images.shape[1:3] == (size, size) else resize(images),
            "label": tf.pad(batch["label"], [[0, padding]]),
            "mask": tf.range(batch_size) < num_real,
        }
        if with_patches:
            out["patches"] = crops.random_crops(
                images,
                tf.pad(batch["index"], [[0, padding]]),
                0,
                patches.seed,
                num_views=int(patches.num),
                size=int(patches.size),
                scale=patches.scale,
                ratio=patches.ratio,
                flip_prob=0.0,
            )
        return out

    keys = ("image", "label", "index") if with_patches else ("image", "label")
    dataset = part.dataset.map(lambda example: {k: example[k] for k in keys})
    if data_config.cache:
        dataset = dataset.cache()
    # Empty batches after the data, so that every process yields num_batches. The data
    # itself is read to its end, which is what completes (keeps) its cache.
    empty = tf.data.Dataset.from_tensors(
        {key: tf.zeros([0, *spec.shape], spec.dtype) for key, spec in dataset.element_spec.items()}
    ).repeat(num_batches - math.ceil(part.num_examples / batch_size))
    dataset = (
        dataset.batch(batch_size)
        .concatenate(empty)
        .map(pad_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(_options())
    )
    return dataset.as_numpy_iterator, part.num_examples
