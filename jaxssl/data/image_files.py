"""Image files: the one decoder of the image-folder source, and the cached index of which
files decode.

Which files decode is kept in a small index per split folder under
``$XDG_CACHE_HOME/jaxssl/folder_index`` (``~/.cache`` by default), keyed by each file's size
and modification time; later runs decode only new or changed files.
"""

import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

# Version of the validation index format (and of what "decodes" means).
_INDEX_VERSION = 1


def decode_image(contents: tf.Tensor, image_size: int | None = None) -> tf.Tensor:
    """Decodes an encoded image to RGB, center-cropped and resized to a square.

    Args:
      contents: scalar string, the file's bytes (JPEG, PNG, ...).
      image_size: output side ``S``; ``None`` keeps the decoded image as it is.

    Returns:
      uint8 ``[S, S, 3]``: the largest centred square, resized with antialiased bilinear
      interpolation unless it already is ``S x S``.
    """
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    if image_size is None:
        return image
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    image = image[top : top + side, left : left + side]

    def resized():
        image_float = tf.image.resize(image, [image_size, image_size], antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image_float), 0, 255), tf.uint8)

    image = tf.cond(tf.equal(side, image_size), lambda: image, resized)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def _decodes(paths: Sequence[str]) -> np.ndarray:
    """Whether each file reads and decodes with `decode_image` (bool ``[N]``)."""
    ok = np.zeros(len(paths), bool)
    if not paths:
        return ok
    dataset = (
        tf.data.Dataset.from_tensor_slices(
            (np.arange(len(paths)), tf.constant(list(paths), tf.string))
        )
        .map(
            lambda position, path: (position, tf.shape(decode_image(tf.io.read_file(path)))),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=False,
        )
        # A file that fails to read or decode drops out of the stream; the survivors are ok.
        .ignore_errors()
    )
    for position, shape in dataset.as_numpy_iterator():
        ok[position] = shape[0] > 0 and shape[1] > 0
    return ok


def _index_path(split_dir: str) -> str:
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    digest = hashlib.sha256(os.path.abspath(split_dir).encode()).hexdigest()[:20]
    return os.path.join(cache_home, "jaxssl", "folder_index", f"{digest}.json")


def _read_index(path: str, split_dir: str) -> dict[str, list]:
    try:
        with open(path) as file:
            index = json.load(file)
    except (OSError, ValueError):
        return {}
    if (
        index.get("version") != _INDEX_VERSION
        or index.get("tensorflow") != tf.__version__
        or index.get("dir") != os.path.abspath(split_dir)
    ):
        return {}
    return index["files"]


def _write_index(path: str, split_dir: str, files: dict[str, list]) -> None:
    index = {
        "version": _INDEX_VERSION,
        "tensorflow": tf.__version__,
        "dir": os.path.abspath(split_dir),
        "files": files,
    }
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Write-then-rename: processes sharing a home directory never see half a file.
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w") as file:
            json.dump(index, file)
        os.replace(temporary, path)
    except OSError as error:
        logging.warning("Could not write the image folder index %s: %s", path, error)


def validate(split_dir: str, paths: list[str]) -> np.ndarray:
    """Whether each image file decodes, from the index where size and mtime match."""
    index_path = _index_path(split_dir)
    cached = _read_index(index_path, split_dir)
    files, todo = {}, []
    for position, path in enumerate(paths):
        stat = os.stat(path)
        key = os.path.relpath(path, split_dir)
        files[key] = [stat.st_size, stat.st_mtime_ns, None]
        entry = cached.get(key)
        if entry is not None and entry[:2] == files[key][:2]:
            files[key][2] = entry[2]
        else:
            todo.append(position)
    if todo:
        for position, ok in zip(todo, _decodes([paths[i] for i in todo]), strict=True):
            files[os.path.relpath(paths[position], split_dir)][2] = bool(ok)
    if todo or len(files) != len(cached):
        _write_index(index_path, split_dir, files)
    return np.array([files[os.path.relpath(path, split_dir)][2] for path in paths], bool)
