"""Random resized crops and flips in TensorFlow: the host half of the augmentation.

Each process's tf.data pipeline cuts the views of every image (random resized crop,
horizontal flip) and ships them as uint8; the photometric half (colour jitter, grayscale,
blur, solarize, normalization) runs in JAX inside the jitted train step
(`jaxssl.data.color`). The resampled crops are rounded to uint8, the precision of the source
images, so the host-to-device copy carries a quarter of the bytes of float32 views.

Every function works on a whole batch ``[B, H, W, 3]`` with per-example random parameters,
eagerly or inside ``tf.data.Dataset.map``. Randomness is stateless: the ``random_*``
functions take ``uniforms``, floats in ``[0, 1)`` of shape ``[B, k]`` drawn by
`random_uniforms` from keys made by `example_keys` out of (seed, example index, epoch, view),
so a view is a pure function of those numbers and resuming a run reproduces it exactly.

`random_crops` runs as one XLA-compiled function: TensorFlow's CPU kernels for small
broadcasts and selects cost about ten times more than the fused XLA loop.

References:
  Chen et al., `A Simple Framework for Contrastive Learning of Visual Representations
  <https://arxiv.org/abs/2002.05709>`_, 2020.
  Caron et al., `Unsupervised Learning of Visual Features by Contrasting Cluster Assignments
  <https://arxiv.org/abs/2006.09882>`_ (SwAV: multi-crop), 2020.
"""

import functools
import math
from collections.abc import Sequence
from typing import Any

import ml_collections
import tensorflow as tf

# Op ids for `random_uniforms`: each random decision draws from its own stream, so changing
# one op's parameters never changes the randomness of another.
_OP_CROP, _OP_FLIP = 0, 1

# `random_resized_crop` draws 10 candidate windows like torchvision's 10 tries.
_CROP_TRIES = 10
CROP_UNIFORMS = 2 * _CROP_TRIES + 2

TensorLike = tf.types.experimental.TensorLike


# --- Stateless randomness ---


def _mix(x: tf.Tensor) -> tf.Tensor:
    """lowbias32 integer finaliser (C. Wellons): a bijection on uint32 with good avalanche."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def _combine(key: tf.Tensor, word: tf.Tensor) -> tf.Tensor:
    # Mixing the word first spreads small counters (0, 1, 2, ...) over all bits.
    return _mix(tf.bitwise.bitwise_xor(key, _mix(word + tf.constant(0x9E3779B9, tf.uint32))))


def _words(value: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    value = tf.cast(value, tf.int64)
    low = tf.cast(tf.bitwise.bitwise_and(value, 0xFFFFFFFF), tf.uint32)
    high = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(value, 32), 0xFFFFFFFF), tf.uint32)
    return low, high


def example_keys(
    seed: TensorLike, index: TensorLike, epoch: TensorLike, view: TensorLike
) -> tf.Tensor:
    """Hashes (seed, example index, epoch, view) into one uint32 key per example.

    Args:
      seed: scalar integer, the run's data seed.
      index: ``[N]`` integers, each example's global index in its split.
      epoch: ``[N]`` or scalar integers.
      view: ``[N]`` or scalar integers, the view number.

    Returns:
      ``[N]`` uint32 keys for `random_uniforms`.
    """
    index = tf.convert_to_tensor(index)
    shape = tf.shape(index)
    key = tf.fill(shape, tf.constant(0x243F6A88, tf.uint32))
    for value in (seed, index, epoch, view):
        for word in _words(tf.broadcast_to(tf.cast(value, tf.int64), shape)):
            key = _combine(key, word)
    return key


def random_uniforms(keys: tf.Tensor, op: int, num: int) -> tf.Tensor:
    """Counter-based uniform floats in ``[0, 1)``: ``num`` per key for operation ``op``.

    Args:
      keys: ``[N]`` uint32 keys from `example_keys`.
      op: operation id; different ids give independent streams.
      num: number of uniforms per key.

    Returns:
      ``[N, num]`` float32 in ``[0, 1)`` with 24 random bits each.
    """
    key = _combine(keys, tf.constant(op, tf.uint32))
    counters = tf.cast(tf.range(num), tf.uint32)
    bits = _combine(key[:, None], counters[None, :])
    return tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32) * 2.0**-24


# --- Geometry ---


def _crop_windows(uniforms, height: int, width: int, scale, ratio):
    """torchvision's RandomResizedCrop.get_params, vectorised over examples and tries."""
    area = float(height * width)
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    tries = slice(0, _CROP_TRIES), slice(_CROP_TRIES, 2 * _CROP_TRIES)
    target_area = area * (scale[0] + uniforms[:, tries[0]] * (scale[1] - scale[0]))
    aspect = tf.exp(log_ratio[0] + uniforms[:, tries[1]] * (log_ratio[1] - log_ratio[0]))
    # tf.round rounds half to even, like Python's round() in torchvision.
    crop_w = tf.round(tf.sqrt(target_area * aspect))  # [B, tries]
    crop_h = tf.round(tf.sqrt(target_area / aspect))
    valid = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = tf.reduce_min(tf.where(valid, tf.range(_CROP_TRIES)[None, :], _CROP_TRIES), axis=1)
    found = first < _CROP_TRIES
    pick = tf.one_hot(tf.minimum(first, _CROP_TRIES - 1), _CROP_TRIES)
    # torchvision's fallback after 10 failed tries: a centre crop clamped to the ratio range.
    if width / height < min(ratio):
        fallback_w, fallback_h = width, round(width / min(ratio))
    elif width / height > max(ratio):
        fallback_w, fallback_h = round(height * max(ratio)), height
    else:
        fallback_w, fallback_h = width, height
    crop_w = tf.where(found, tf.reduce_sum(crop_w * pick, axis=1), float(fallback_w))
    crop_h = tf.where(found, tf.reduce_sum(crop_h * pick, axis=1), float(fallback_h))
    top = tf.where(
        found, tf.floor(uniforms[:, -2] * (height - crop_h + 1)), float((height - fallback_h) // 2)
    )
    left = tf.where(
        found, tf.floor(uniforms[:, -1] * (width - crop_w + 1)), float((width - fallback_w) // 2)
    )
    return top, left, crop_h, crop_w


def _resize_weights(start: tf.Tensor, length: tf.Tensor, in_size: int, out_size: int):
    """``[B, out_size, in_size]`` matrices resampling pixels ``[start, start + length)``.

    PIL's bilinear filter (torchvision's resize): a triangle kernel at half-pixel
    centres, widened by the scale factor when shrinking (antialiasing) and renormalised
    at the window's edges, which clamps samples to the crop rather than the image.
    """
    scale = length / out_size  # [B]
    support = tf.maximum(scale, 1.0)[:, None, None]
    centres = start[:, None] + (tf.range(out_size, dtype=tf.float32) + 0.5) * scale[:, None]
    pixels = tf.range(in_size, dtype=tf.float32) + 0.5  # [in]
    weights = tf.nn.relu(1.0 - tf.abs(pixels - centres[:, :, None]) / support)
    inside = (pixels >= start[:, None]) & (pixels < (start + length)[:, None])  # [B, in]
    weights *= tf.cast(inside, tf.float32)[:, None, :]
    return weights / tf.reduce_sum(weights, axis=2, keepdims=True)


def _resample(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """``out[b] = rows[b] @ images[b] @ cols[b]^T`` per channel, rounded back to uint8.

    The weights are non-negative and sum to 1, so the result stays in [0, 255].
    """
    images = tf.einsum("bsh,bhwc->bswc", rows, tf.cast(images, tf.float32))
    images = tf.einsum("bswc,btw->bstc", images, cols)
    return tf.saturate_cast(tf.round(images), tf.uint8)


def random_resized_crop(
    images: tf.Tensor,
    uniforms: tf.Tensor,
    size: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> tf.Tensor:
    """Crops a random window of each image and resizes it to ``size x size``.

    torchvision ``RandomResizedCrop`` semantics: area fraction uniform in ``scale``,
    log aspect ratio uniform in ``log(ratio)``, the first of 10 candidates that fits,
    else a centre crop; integer windows, bilinear resampling with half-pixel centres.
    It is written as two matrix products rather than ``tf.image.crop_and_resize``
    because that op has no XLA kernel and its align-corners box convention samples
    outside the window.

    Args:
      images: ``[B, H, W, C]`` uint8.
      uniforms: ``[B, CROP_UNIFORMS]`` floats in [0, 1).
      size: output side length.
      scale: range of the crop's area as a fraction of the image's.
      ratio: range of the crop's aspect ratio (width / height).

    Returns:
      ``[B, size, size, C]`` uint8, the resampled pixels rounded to the nearest integer.

    References:
      Szegedy et al., `Going deeper with convolutions
      <https://arxiv.org/abs/1409.4842>`_, 2015.
    """
    _, height, width, _ = images.shape
    top, left, crop_h, crop_w = _crop_windows(uniforms, height, width, scale, ratio)
    rows = _resize_weights(top, crop_h, height, size)
    cols = _resize_weights(left, crop_w, width, size)
    return _resample(images, rows, cols)


def resize(images: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes whole images to ``size x size``, bilinear with antialiasing (PIL's filter).

    Args:
      images: ``[B, H, W, C]`` uint8.
      size: output side length.

    Returns:
      ``[B, size, size, C]`` uint8, rounded to the nearest integer.
    """
    _, height, width, _ = images.shape
    zeros = tf.zeros([tf.shape(images)[0]])
    rows = _resize_weights(zeros, zeros + height, height, size)
    cols = _resize_weights(zeros, zeros + width, width, size)
    return _resample(images, rows, cols)


def random_horizontal_flip(images: tf.Tensor, uniforms: tf.Tensor, prob: float = 0.5) -> tf.Tensor:
    """Mirrors each image left-right with probability ``prob``.

    Args:
      images: ``[B, H, W, C]``.
      uniforms: ``[B, 1]`` floats in [0, 1).
      prob: flip probability.

    Returns:
      ``[B, H, W, C]``, same dtype.
    """
    flip = uniforms[:, 0] < prob
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


# --- Views ---


@functools.cache
def _make_crops_fn(num_views: int, size: int, scale, ratio, flip_prob: float):
    @tf.function(jit_compile=True)
    def crops_fn(images, crop_uniforms, flip_uniforms):
        # Row b * V + v is view v of example b, so the output reshapes to [B, V, ...].
        images = tf.repeat(images, num_views, axis=0)
        views = random_resized_crop(images, crop_uniforms, size, scale, ratio)
        if flip_prob > 0:  # a Python-level skip: evaluation patches are not flipped
            views = random_horizontal_flip(views, flip_uniforms, flip_prob)
        return tf.reshape(views, [-1, num_views, size, size, views.shape[-1]])

    return crops_fn


def random_crops(
    images: TensorLike,
    index: TensorLike,
    epoch: TensorLike,
    seed: TensorLike,
    *,
    num_views: int,
    size: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    flip_prob: float,
    first_view: int = 0,
) -> tf.Tensor:
    """``V`` random resized crops of each image, each flipped with probability ``flip_prob``.

    View ``v`` of an example is keyed by (seed, index, epoch, ``first_view + v``): it
    depends on those numbers only, never on the batch it travels in.

    Args:
      images: ``[B, H, W, 3]`` uint8.
      index: ``[B]`` integers, the examples' global indices in the split.
      epoch: ``[B]`` or scalar integers.
      seed: scalar integer.
      num_views: ``V``.
      size: output side length ``S``.
      scale: range of the crops' area as a fraction of the image's.
      ratio: range of the crops' aspect ratio (width / height).
      flip_prob: probability of a horizontal flip per view.
      first_view: the number of the first view.

    Returns:
      ``[B, V, S, S, 3]`` uint8.
    """
    crops_fn = _make_crops_fn(num_views, size, tuple(scale), tuple(ratio), float(flip_prob))
    # The keys are hashed outside the XLA function: inside it, XLA fuses the hash into
    # every per-pixel loop that reads a per-example parameter and runs ~5x slower.
    index = tf.cast(index, tf.int64)
    keys = example_keys(
        seed,
        tf.repeat(index, num_views),
        tf.repeat(tf.broadcast_to(tf.cast(epoch, tf.int64), tf.shape(index)), num_views),
        tf.tile(tf.range(first_view, first_view + num_views), tf.shape(index)),
    )
    return crops_fn(
        tf.convert_to_tensor(images, tf.uint8),
        random_uniforms(keys, _OP_CROP, CROP_UNIFORMS),
        random_uniforms(keys, _OP_FLIP, 1),
    )


def view_boxes(
    index: TensorLike,
    epoch: TensorLike,
    seed: TensorLike,
    *,
    height: int,
    width: int,
    num_views: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    flip_prob: float,
    first_view: int = 0,
) -> tf.Tensor:
    """Where `random_crops` cut each view: ``[B, V, 5]`` float32 ``(top, left, height, width,
    flipped)`` in the source image's pixels (``flipped`` 1.0 or 0.0), from the same keys and
    uniforms, so it describes exactly the crops made with the same arguments (VICRegL's
    location matching reads it)."""
    index = tf.cast(index, tf.int64)
    keys = example_keys(
        seed,
        tf.repeat(index, num_views),
        tf.repeat(tf.broadcast_to(tf.cast(epoch, tf.int64), tf.shape(index)), num_views),
        tf.tile(tf.range(first_view, first_view + num_views), tf.shape(index)),
    )
    top, left, crop_h, crop_w = _crop_windows(
        random_uniforms(keys, _OP_CROP, CROP_UNIFORMS), height, width, tuple(scale), tuple(ratio)
    )
    flipped = random_uniforms(keys, _OP_FLIP, 1)[:, 0] < flip_prob
    boxes = tf.stack([top, left, crop_h, crop_w, tf.cast(flipped, tf.float32)], axis=1)
    return tf.reshape(boxes, [-1, num_views, 5])


def group_settings(data_config: ml_collections.ConfigDict, group: str) -> tuple[int, int, Any]:
    """``(num_views, image_size, crop_scale)`` of view group ``"global"`` or ``"local"``.

    ``"global"`` reads ``num_views``, ``image_size``, ``crop_scale``; ``"local"`` (multi-crop's
    small views) reads ``local_views``, ``local_image_size``, ``local_crop_scale``.
    """
    if group == "global":
        return int(data_config.num_views), int(data_config.image_size), data_config.crop_scale
    if group == "local":
        return (
            int(data_config.local_views),
            int(data_config.local_image_size),
            data_config.local_crop_scale,
        )
    raise ValueError(f"Unknown view group {group!r}; valid: 'global', 'local'.")


def crop_views(
    images: TensorLike,
    index: TensorLike,
    epoch: TensorLike,
    seed: TensorLike,
    data_config: ml_collections.ConfigDict,
    group: str = "global",
) -> tf.Tensor:
    """The crops of view group ``group`` of each image, as ``config.data`` describes them.

    Multi-crop: ``group="local"`` makes the small views (``local_views`` of
    ``local_image_size`` px from crops of ``local_crop_scale``). Their view numbers follow
    the global ones, so both groups draw independent randomness and adding local views
    never changes the global views.

    Args:
      images: ``[B, H, W, 3]`` uint8.
      index: ``[B]`` integers, the examples' global indices in the split.
      epoch: ``[B]`` or scalar integers.
      seed: scalar integer.
      data_config: the ``config.data`` ConfigDict (``num_views``, ``image_size``,
        ``crop_scale``, ``crop_ratio``, ``flip_prob``; ``local_*`` for the local group).
      group: ``"global"`` or ``"local"``.

    Returns:
      ``[B, V, S, S, 3]`` uint8 (``V``, ``S`` of the group), for `jaxssl.data.color`.
    """
    num_views, size, crop_scale = group_settings(data_config, group)
    return random_crops(
        images,
        index,
        epoch,
        seed,
        num_views=num_views,
        size=size,
        scale=crop_scale,
        ratio=data_config.crop_ratio,
        flip_prob=data_config.flip_prob,
        first_view=0 if group == "global" else int(data_config.num_views),
    )


def crop_view_boxes(
    images: TensorLike,
    index: TensorLike,
    epoch: TensorLike,
    seed: TensorLike,
    data_config: ml_collections.ConfigDict,
    group: str = "global",
) -> tf.Tensor:
    """`view_boxes` of the crops `crop_views` makes with the same arguments: ``[B, V, 5]``."""
    num_views, _, crop_scale = group_settings(data_config, group)
    _, height, width, _ = tf.convert_to_tensor(images).shape
    return view_boxes(
        index,
        epoch,
        seed,
        height=int(height),
        width=int(width),
        num_views=num_views,
        scale=crop_scale,
        ratio=data_config.crop_ratio,
        flip_prob=data_config.flip_prob,
        first_view=0 if group == "global" else int(data_config.num_views),
    )
