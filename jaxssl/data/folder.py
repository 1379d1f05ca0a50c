"""Folders of image files as a data source, with the element spec of `tfds.load_split`.

Layouts (files ``*.jpg``, ``*.jpeg`` or ``*.png``, any case; hidden files are ignored):

* ``ROOT/<split>/<class>/*``: labeled; class ids are the sorted class folder names over all
  split folders, so every split agrees on them even if one lacks a class;
* ``ROOT/<class>/*`` without split folders: the ``"train"`` split;
* ``ROOT/*`` (or ``ROOT/<split>/*``): unlabeled, label -1.

Files are read in sorted order and ``index`` is the position in the whole split, so a
split is a fixed list and process parts are contiguous, like ``tfds.even_splits``.
Split specs follow TFDS: ``"train[:90%]"``, ``"train+test"``.

Every file is decoded once before anything is read for training (`read_split`), with the
same decoder the pipeline uses, so the stream never meets an undecodable file and the
number of examples is known (`jaxssl.data.image_files`, which caches the results).

Images of any size are center-cropped to a square and resized (antialiased bilinear) to
``image_size``, so batches have static shapes.
"""

import math
import os
import types
from collections.abc import Sequence
from typing import NamedTuple

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from jaxssl import errors
from jaxssl.data import fake, image_files

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ON_CORRUPT = ("error", "skip")
_SHOW_FILES = 5

LAYOUT = (
    "Expected ROOT/<split>/<class>/*.{jpg,jpeg,png} (labeled; class ids = sorted class "
    "folder names), ROOT/<class>/* as the 'train' split when ROOT has no split folders, "
    "or ROOT/*.{jpg,jpeg,png} (unlabeled, label -1). Select it with "
    "--config.data.name=folder --config.data.folder_root=ROOT."
)


class FolderSplit(NamedTuple):
    """The decodable files of a split, in split order."""

    paths: list[str]
    labels: np.ndarray  # int32 [N]; -1 for unlabeled files
    class_names: list[str]  # empty for an unlabeled split
    skipped: list[str]  # files excluded because they are not decodable images


# --- Listing ---


def _visible(names: Sequence[str]) -> list[str]:
    return sorted(name for name in names if not name.startswith("."))


def _subdirs(path: str) -> list[str]:
    return _visible(entry.name for entry in os.scandir(path) if entry.is_dir())


def _files(path: str) -> list[str]:
    return _visible(entry.name for entry in os.scandir(path) if entry.is_file())


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _split_dir(root: str, split: str) -> tuple[str, list[str]]:
    """The folder of a split and the class names (empty: unlabeled)."""
    if not os.path.isdir(root):
        raise errors.MissingFileError(f"Image folder root {root!r} does not exist. {LAYOUT}")
    split_dir = os.path.join(root, split)
    if os.path.isdir(split_dir):
        if not _subdirs(split_dir):
            return split_dir, []
        # Sorted union over all split folders: one class -> id mapping for every split.
        class_names = sorted(
            {name for sibling in _subdirs(root) for name in _subdirs(os.path.join(root, sibling))}
        )
        return split_dir, class_names
    if split == "train":
        return root, _subdirs(root)
    raise errors.MissingFileError(
        f"Image folder {root!r} has no split folder {split!r} (split folders: "
        f"{_subdirs(root) or 'none'}). {LAYOUT} Without split folders, hold out part of "
        f"'train' with TFDS split specs: --config.data.train_split='train[:90%]' "
        f"--config.data.eval_test_split='train[90%:]'."
    )


def _list_files(split_dir: str, class_names: list[str]) -> tuple[list[str], list[int] | None]:
    """All visible files of a split folder (any extension) and their labels, sorted."""
    if not class_names:
        return [os.path.join(split_dir, name) for name in _files(split_dir)], None
    stray = [name for name in _files(split_dir) if _is_image_name(name)]
    if stray:
        raise errors.DataError(
            f"{split_dir} holds class folders and also images outside them ({stray[:3]}); "
            f"put each image in its class folder. {LAYOUT}"
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(split_dir, name)
        if not os.path.isdir(class_dir):
            continue  # a class that only other splits have
        # Nested folders belong to their class, as in torchvision's ImageFolder.
        for directory, subdirs, files in os.walk(class_dir, followlinks=True):
            subdirs[:] = _visible(subdirs)  # os.walk then visits them in sorted order
            for file_name in _visible(files):
                paths.append(os.path.join(directory, file_name))
                labels.append(label)
    return paths, labels


# --- Splits ---


def _read_whole_split(root: str, split: str, on_corrupt: str) -> FolderSplit:
    split_dir, class_names = _split_dir(root, split)
    candidates, labels = _list_files(split_dir, class_names)
    if not candidates:
        raise errors.DataError(
            f"Image folder split {split!r} at {split_dir} has no files. {LAYOUT}"
        )
    images = [position for position, path in enumerate(candidates) if _is_image_name(path)]
    ok = np.zeros(len(candidates), bool)
    ok[images] = image_files.validate(split_dir, [candidates[position] for position in images])
    bad = [candidates[position] for position in np.flatnonzero(~ok)]
    if bad and on_corrupt == "error":
        reasons = [
            f"{path} ({'does not decode' if _is_image_name(path) else 'not .jpg/.jpeg/.png'})"
            for path in bad[:_SHOW_FILES]
        ]
        raise errors.DataError(
            f"{len(bad)} of {len(candidates)} files of image folder split {split!r} are not "
            f"decodable images: {', '.join(reasons)}{' ...' if len(bad) > _SHOW_FILES else ''}. "
            f"Remove or fix them, or set --config.data.on_corrupt=skip to leave them out."
        )
    if bad:
        logging.warning(
            "Skipping %d of %d files of image folder split %r that are not decodable "
            "images (data.on_corrupt='skip'): %s%s",
            len(bad),
            len(candidates),
            split,
            ", ".join(bad[:_SHOW_FILES]),
            " ..." if len(bad) > _SHOW_FILES else "",
        )
    paths = [candidates[position] for position in np.flatnonzero(ok)]
    if not paths:
        raise errors.DataError(
            f"Image folder split {split!r} at {split_dir} has no decodable images "
            f"({len(bad)} skipped). {LAYOUT}"
        )
    if labels is None:
        labels = np.full(len(paths), -1, np.int32)
    else:
        labels = np.array(labels, np.int32)[ok]
    return FolderSplit(paths, labels, class_names, bad)


def read_split(root: str, split: str, on_corrupt: str = "error") -> FolderSplit:
    """Lists and validates the files of a split; decodes each new or changed file once.

    Args:
      root: the folder (see the module docstring for layouts).
      split: split name or TFDS split spec: ``"train"``, ``"train[:90%]"``, ``"a+b"``.
      on_corrupt: what to do with files that are not decodable images (another
        extension, unreadable, or failing to decode): ``"error"`` raises naming them,
        ``"skip"`` leaves them out and logs a warning with their number and names.

    Returns:
      The split's decodable files, labels and class names; ``skipped`` lists the files
      left out.

    Raises:
      FileNotFoundError: ``root`` or the split's folder does not exist.
      ValueError: a split has no images, mixes class folders and loose images, holds
        undecodable files with ``on_corrupt="error"``, or ``on_corrupt`` is unknown.
    """
    if on_corrupt not in ON_CORRUPT:
        raise errors.ConfigError(
            f"data.on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}."
        )
    if not root:
        raise errors.ConfigError(f"data.name='folder' needs data.folder_root. {LAYOUT}")
    names = [part.split("[")[0].strip() for part in split.split("+")]
    whole = {name: _read_whole_split(root, name, on_corrupt) for name in dict.fromkeys(names)}
    sizes = {name: types.SimpleNamespace(num_examples=len(s.paths)) for name, s in whole.items()}
    paths, labels, skipped = [], [], []
    for instruction in tfds.core.ReadInstruction.from_spec(split).to_absolute(sizes):
        part = whole[instruction.splitname]
        window = slice(instruction.from_, instruction.to)
        paths += part.paths[window]
        labels.append(part.labels[window])
    for part in whole.values():
        skipped += part.skipped
    class_names = next(iter(whole.values())).class_names
    return FolderSplit(paths, np.concatenate(labels), class_names, skipped)


def load_part(
    examples: FolderSplit, process_index: int, process_count: int, image_size: int
) -> tuple[tf.data.Dataset, int]:
    """This process's contiguous part of a validated split, decoded, in split order.

    Args:
      examples: the split, from `read_split`.
      process_index: this process's index.
      process_count: number of processes.
      image_size: side ``S`` of the square output images.

    Returns:
      ``(dataset, n)``: elements ``{"image": uint8 [S, S, 3], "label": int32, "index":
      int64}`` with ``index`` the position in the whole split, and the number of examples
      in this part.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} not in [0, {process_count}).")
    start, end = fake.part_bounds(len(examples.paths), process_index, process_count)
    dataset = tf.data.Dataset.from_tensor_slices(
        {
            "path": tf.constant(examples.paths[start:end], tf.string),
            "label": examples.labels[start:end],
            "index": np.arange(start, end, dtype=np.int64),
        }
    ).map(
        lambda example: {
            "image": image_files.decode_image(tf.io.read_file(example["path"]), image_size),
            "label": example["label"],
            "index": example["index"],
        },
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset, end - start


def load_split(
    root: str,
    split: str,
    process_index: int,
    process_count: int,
    *,
    image_size: int,
    on_corrupt: str = "error",
) -> tuple[tf.data.Dataset, int]:
    """This process's part of an image folder split: `read_split` + `load_part`.

    Args:
      root: the folder (see the module docstring for layouts).
      split: split name or TFDS split spec.
      process_index: this process's index.
      process_count: number of processes.
      image_size: side ``S`` of the square output images.
      on_corrupt: ``"error"`` or ``"skip"``, see `read_split`.

    Returns:
      ``(dataset, n)`` as `load_part`.

    Raises:
      FileNotFoundError, ValueError: as `read_split`.
    """
    examples = read_split(root, split, on_corrupt)
    return load_part(examples, process_index, process_count, image_size)


def image_size(data_config: ml_collections.ConfigDict) -> int:
    """``data.folder_image_size``, or if None the larger of the train and eval sizes."""
    if data_config.folder_image_size is not None:
        return int(data_config.folder_image_size)
    return max(int(data_config.image_size), int(data_config.eval_image_size))


def open_config_split(
    data_config: ml_collections.ConfigDict, split: str, process_index: int, process_count: int
) -> tuple[tf.data.Dataset, int, int]:
    """`load_split` for ``config.data`` with ``name="folder"``, checking ``num_classes``.

    Args:
      data_config: the ``config.data`` ConfigDict.
      split: split name or TFDS split spec.
      process_index: this process's index.
      process_count: number of processes.

    Returns:
      ``(dataset, n, max_part_size)``: as `load_part`, plus the largest part's size.

    Raises:
      FileNotFoundError, ValueError: as `read_split`; ValueError also when the folder has
        more classes than ``data.num_classes``.
    """
    examples = read_split(data_config.folder_root, split, data_config.on_corrupt)
    num_classes = len(examples.class_names)
    if num_classes > data_config.num_classes:
        raise errors.ConfigError(
            f"Image folder {data_config.folder_root} has {num_classes} classes but "
            f"data.num_classes={data_config.num_classes}; set "
            f"--config.data.num_classes={num_classes}."
        )
    if num_classes and num_classes < data_config.num_classes:
        logging.warning(
            "Image folder %s has %d classes, data.num_classes=%d.",
            data_config.folder_root,
            num_classes,
            data_config.num_classes,
        )
    if split == data_config.train_split and len(examples.paths) != data_config.num_train_examples:
        # Epoch-based schedules count steps from num_train_examples.
        logging.warning(
            "Image folder split %r has %d images but data.num_train_examples=%d; set "
            "--config.data.num_train_examples=%d for epoch-based schedules.",
            split,
            len(examples.paths),
            data_config.num_train_examples,
            len(examples.paths),
        )
    dataset, num_examples = load_part(
        examples, process_index, process_count, image_size(data_config)
    )
    return dataset, num_examples, math.ceil(len(examples.paths) / process_count)
