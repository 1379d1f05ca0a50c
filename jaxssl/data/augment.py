"""Batched SimCLR-style image augmentations in TensorFlow, for the host input pipeline.

Every function works on a whole batch ``[B, H, W, 3]`` with per-example random
parameters, eagerly or inside ``tf.data.Dataset.map``. Randomness is stateless: the
``random_*`` functions take ``uniforms``, floats in ``[0, 1)`` of shape ``[B, k]``
drawn by `random_uniforms` from keys made by `example_keys` out of
(seed, example index, epoch, view), so a view is a pure function of those numbers
and resuming a run reproduces it exactly.

`simclr_views` runs the whole per-view pipeline as one XLA-compiled function:
TensorFlow's CPU kernels for small broadcasts, selects and HSV conversions cost about
ten times more than the fused XLA loop.

References:
  Chen et al., `A Simple Framework for Contrastive Learning of Visual Representations
  <https://arxiv.org/abs/2002.05709>`_, 2020.
  Grill et al., `Bootstrap your own latent <https://arxiv.org/abs/2006.07733>`_, 2020.
"""

import functools
import math
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
import tensorflow as tf

# Op ids for `random_uniforms`: each random decision draws from its own stream, so
# enabling one op (e.g. blur) never changes the randomness of another.
_OP_CROP, _OP_FLIP, _OP_JITTER, _OP_GRAYSCALE, _OP_BLUR, _OP_SOLARIZE = range(6)

# `random_resized_crop` draws 10 candidate windows like torchvision's 10 tries.
_CROP_TRIES = 10
CROP_UNIFORMS = 2 * _CROP_TRIES + 2
JITTER_UNIFORMS = 9

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision and PIL

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


def _select(condition: tf.Tensor, on_true: tf.Tensor, on_false: tf.Tensor) -> tf.Tensor:
    """Per-example choice: ``condition`` is ``[B]``, the images ``[B, H, W, C]``."""
    return tf.where(condition[:, None, None, None], on_true, on_false)


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
    """Separable linear map: ``out[b] = rows[b] @ images[b] @ cols[b]^T`` per channel."""
    images = tf.einsum("bsh,bhwc->bswc", rows, images)
    return tf.einsum("bswc,btw->bstc", images, cols)


def _to_float(images: tf.Tensor) -> tf.Tensor:
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


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
      images: ``[B, H, W, C]`` uint8 in [0, 255] or float in [0, 1].
      uniforms: ``[B, CROP_UNIFORMS]`` floats in [0, 1).
      size: output side length.
      scale: range of the crop's area as a fraction of the image's.
      ratio: range of the crop's aspect ratio (width / height).

    Returns:
      ``[B, size, size, C]`` float32 in [0, 1].

    References:
      Szegedy et al., `Going deeper with convolutions
      <https://arxiv.org/abs/1409.4842>`_, 2015.
    """
    _, height, width, _ = images.shape
    top, left, crop_h, crop_w = _crop_windows(uniforms, height, width, scale, ratio)
    rows = _resize_weights(top, crop_h, height, size)
    cols = _resize_weights(left, crop_w, width, size)
    return _resample(_to_float(images), rows, cols)


def resize(images: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes whole images to ``size x size``, bilinear with antialiasing (PIL's filter).

    Args:
      images: ``[B, H, W, C]`` uint8 in [0, 255] or float in [0, 1].
      size: output side length.

    Returns:
      ``[B, size, size, C]`` float32 in [0, 1].
    """
    _, height, width, _ = images.shape
    zeros = tf.zeros([tf.shape(images)[0]])
    rows = _resize_weights(zeros, zeros + height, height, size)
    cols = _resize_weights(zeros, zeros + width, width, size)
    return _resample(_to_float(images), rows, cols)


def random_horizontal_flip(images: tf.Tensor, uniforms: tf.Tensor, prob: float = 0.5) -> tf.Tensor:
    """Mirrors each image left-right with probability ``prob``.

    Args:
      images: ``[B, H, W, C]``.
      uniforms: ``[B, 1]`` floats in [0, 1).
      prob: flip probability.

    Returns:
      ``[B, H, W, C]``, same dtype.
    """
    return _select(uniforms[:, 0] < prob, tf.reverse(images, axis=[2]), images)


# --- Colour ---


def rgb_to_grayscale(images: tf.Tensor) -> tf.Tensor:
    """ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B``: ``[B, H, W, 3] -> [B, H, W, 1]``."""
    images = tf.convert_to_tensor(images)
    red, green, blue = _GRAY_WEIGHTS
    return images[..., 0:1] * red + images[..., 1:2] * green + images[..., 2:3] * blue


def _per_example(factor: tf.Tensor) -> tf.Tensor:
    return tf.reshape(tf.cast(factor, tf.float32), [-1, 1, 1, 1])


def _blend(images: tf.Tensor, factor: tf.Tensor, target) -> tf.Tensor:
    """torchvision's ``_blend``: ``clip(factor * images + (1 - factor) * target)``."""
    factor = _per_example(factor)
    return tf.clip_by_value(factor * images + (1.0 - factor) * target, 0.0, 1.0)


def _gray_mean(images: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(rgb_to_grayscale(images), axis=[1, 2, 3], keepdims=True)


def adjust_brightness(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """torchvision ``adjust_brightness``: ``clip(factor * x)``; ``factor`` is ``[B]``."""
    return _blend(images, factor, 0.0)


def adjust_contrast(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """torchvision ``adjust_contrast``: blend with the mean of each grayscale image."""
    return _blend(images, factor, _gray_mean(images))


def adjust_saturation(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """torchvision ``adjust_saturation``: blend with the grayscale image."""
    return _blend(images, factor, rgb_to_grayscale(images))


def adjust_hue(images: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """torchvision ``adjust_hue``: rotates the HSV hue by ``delta`` ``[B]`` (mod 1)."""
    hsv = tf.image.rgb_to_hsv(images)
    hue = tf.math.floormod(hsv[..., 0:1] + _per_example(delta), 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1))


def random_color_jitter(
    images: tf.Tensor,
    uniforms: tf.Tensor,
    prob: float = 0.8,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
) -> tf.Tensor:
    """torchvision ``RandomApply([ColorJitter(...)], p=prob)`` with per-example parameters.

    Factors are uniform in ``[max(0, 1 - s), 1 + s]`` (hue: ``[-hue, hue]``) and the
    four ops run in a random order per example (``argsort`` of 4 uniforms).

    Args:
      images: ``[B, H, W, 3]`` float in [0, 1].
      uniforms: ``[B, JITTER_UNIFORMS]`` floats in [0, 1).
      prob: probability of jittering an example at all.
      brightness: brightness strength; 0 disables the op.
      contrast: contrast strength; 0 disables the op.
      saturation: saturation strength; 0 disables the op.
      hue: hue strength in [0, 0.5]; 0 disables the op.

    Returns:
      ``[B, H, W, 3]`` float32 in [0, 1].
    """

    def factor(column, strength):
        low = max(0.0, 1.0 - strength)
        return low + uniforms[:, column] * (1.0 + strength - low)

    # Columns 0-2: brightness, contrast, saturation factors, all blends (`_blend`).
    factors = tf.stack([factor(1, brightness), factor(2, contrast), factor(3, saturation)], 1)
    order = tf.argsort(uniforms[:, 5:9], axis=1, stable=True)  # [B, 4], op 3 is hue
    position = tf.argsort(order, axis=1, stable=True)  # [B, 4] where each op runs
    hue_position = position[:, 3:]
    # The hue (an HSV round trip) is the expensive op, so it runs once: the blends
    # before it in each example's order run as steps 0..2 gated by `step < hue
    # position`, then the hue, then the blends after it. A gated-off step uses factor
    # 1, an exact identity, so no select is needed.
    blend_position = position[:, :3] - tf.cast(position[:, :3] > hue_position, tf.int32)
    jittered = images
    for after_hue in (False, True):
        if after_hue and hue:
            jittered = adjust_hue(jittered, (2.0 * uniforms[:, 4] - 1.0) * hue)
        for step in range(3):
            is_step = tf.cast(blend_position == step, tf.float32)  # [B, 3] one-hot op
            runs = (step >= hue_position[:, 0]) if after_hue else (step < hue_position[:, 0])
            step_factor = tf.where(runs, tf.reduce_sum(factors * is_step, axis=1), 1.0)
            contrast_target = _per_example(is_step[:, 1]) * _gray_mean(jittered)
            saturation_target = _per_example(is_step[:, 2]) * rgb_to_grayscale(jittered)
            jittered = _blend(jittered, step_factor, contrast_target + saturation_target)
    return _select(uniforms[:, 0] < prob, jittered, images)


def random_grayscale(images: tf.Tensor, uniforms: tf.Tensor, prob: float = 0.2) -> tf.Tensor:
    """Replaces each image by its luma on 3 channels with probability ``prob``.

    Args:
      images: ``[B, H, W, 3]`` float.
      uniforms: ``[B, 1]`` floats in [0, 1).
      prob: probability.

    Returns:
      ``[B, H, W, 3]`` float32.
    """
    gray = tf.broadcast_to(rgb_to_grayscale(images), tf.shape(images))
    return _select(uniforms[:, 0] < prob, gray, images)


def _reflect_conv_matrices(size: int, radius: int) -> np.ndarray:
    """``[2r+1, size, size]`` one-hot matrices: tap ``t`` of output ``o`` reads pixel
    ``reflect(o + t - r)``, i.e. a 1-D convolution with reflect padding."""
    taps = np.arange(-radius, radius + 1)
    source = np.arange(size)[None, :] + taps[:, None]  # [taps, size]
    source = np.abs(source)
    source = np.where(source > size - 1, 2 * (size - 1) - source, source)
    return np.eye(size, dtype=np.float32)[np.clip(source, 0, size - 1)]


def gaussian_blur(images: tf.Tensor, sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
    """Separable Gaussian blur with a per-example ``sigma`` ``[B]`` and reflect padding.

    Args:
      images: ``[B, H, W, C]`` float.
      sigma: ``[B]`` standard deviations in pixels.
      kernel_size: taps per dimension; even sizes are rounded up to odd as in SimCLR.

    Returns:
      ``[B, H, W, C]`` float32.
    """
    _, height, width, _ = images.shape
    radius = min(kernel_size // 2, height - 1, width - 1)
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    taps = tf.exp(-(offsets**2) / (2.0 * tf.cast(sigma, tf.float32)[:, None] ** 2))
    taps /= tf.reduce_sum(taps, axis=1, keepdims=True)  # [B, taps]
    rows = tf.einsum("bk,kos->bos", taps, _reflect_conv_matrices(height, radius))
    cols = tf.einsum("bk,kos->bos", taps, _reflect_conv_matrices(width, radius))
    return _resample(images, rows, cols)


def random_gaussian_blur(
    images: tf.Tensor,
    uniforms: tf.Tensor,
    prob: float,
    sigma: Sequence[float] = (0.1, 2.0),
) -> tf.Tensor:
    """SimCLR's ImageNet blur: with probability ``prob``, sigma uniform in ``sigma`` and a
    kernel of 10% of the image side.

    Args:
      images: ``[B, H, W, C]`` float.
      uniforms: ``[B, 2]`` floats in [0, 1).
      prob: probability.
      sigma: range of the standard deviation in pixels.

    Returns:
      ``[B, H, W, C]`` float32.
    """
    sigmas = sigma[0] + uniforms[:, 1] * (sigma[1] - sigma[0])
    blurred = gaussian_blur(images, sigmas, kernel_size=images.shape[1] // 10)
    return _select(uniforms[:, 0] < prob, blurred, images)


def random_solarize(
    images: tf.Tensor, uniforms: tf.Tensor, prob: float, threshold: float = 0.5
) -> tf.Tensor:
    """BYOL's solarization: with probability ``prob``, ``x < threshold ? x : 1 - x``.

    Args:
      images: ``[B, H, W, C]`` float in [0, 1].
      uniforms: ``[B, 1]`` floats in [0, 1).
      prob: probability.
      threshold: pixels at or above it are inverted.

    Returns:
      ``[B, H, W, C]`` float32 in [0, 1].
    """
    solarized = tf.where(images < threshold, images, 1.0 - images)
    return _select(uniforms[:, 0] < prob, solarized, images)


def normalize(images: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """``(images - mean) / std`` per channel."""
    return (images - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


# --- Views ---


# Uniforms each op draws per view.
_DRAWS = {
    _OP_CROP: CROP_UNIFORMS,
    _OP_FLIP: 1,
    _OP_JITTER: JITTER_UNIFORMS,
    _OP_GRAYSCALE: 1,
    _OP_BLUR: 2,
    _OP_SOLARIZE: 1,
}


@functools.cache
def _make_views_fn(num_views: int, size: int, params: tuple[tuple[str, Any], ...]):
    config = dict(params)

    @tf.function(jit_compile=True)
    def views_fn(images, uniforms):
        # Row b * V + v is view v of example b, so the output reshapes to [B, V, ...].
        images = tf.repeat(images, num_views, axis=0)
        views = random_resized_crop(
            images, uniforms[_OP_CROP], size, config["crop_scale"], config["crop_ratio"]
        )
        views = random_horizontal_flip(views, uniforms[_OP_FLIP], config["flip_prob"])
        views = random_color_jitter(
            views,
            uniforms[_OP_JITTER],
            config["color_jitter_prob"],
            config["brightness"],
            config["contrast"],
            config["saturation"],
            config["hue"],
        )
        views = random_grayscale(views, uniforms[_OP_GRAYSCALE], config["grayscale_prob"])
        # Python-level skips: a zero probability should cost nothing.
        if config["blur_prob"] > 0:
            views = random_gaussian_blur(views, uniforms[_OP_BLUR], config["blur_prob"])
        if config["solarize_prob"] > 0:
            views = random_solarize(views, uniforms[_OP_SOLARIZE], config["solarize_prob"])
        views = normalize(views, config["mean"], config["std"])
        return tf.reshape(views, [-1, num_views, size, size, views.shape[-1]])

    return views_fn


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


def simclr_views(
    images: TensorLike,
    index: TensorLike,
    epoch: TensorLike,
    seed: TensorLike,
    data_config: ml_collections.ConfigDict,
    group: str = "global",
) -> tf.Tensor:
    """``V`` independently augmented views of each image: the SimCLR/BYOL pipeline.

    Per view: random resized crop, horizontal flip, colour jitter, grayscale, optional
    blur and solarization, normalization. A view depends only on
    (seed, index, epoch, view number), never on the batch it travels in.

    Multi-crop: ``group="local"`` makes the small views (``local_views`` of
    ``local_image_size`` px from crops of ``local_crop_scale``), with the same colour
    augmentations. Their view numbers follow the global ones, so both groups draw
    independent randomness and adding local views never changes the global views.

    Args:
      images: ``[B, H, W, 3]`` uint8.
      index: ``[B]`` integers, the examples' global indices in the split.
      epoch: ``[B]`` or scalar integers.
      seed: scalar integer.
      data_config: the ``config.data`` ConfigDict (``num_views``, ``image_size`` and the
        augmentation fields; ``local_*`` for the local group).
      group: ``"global"`` or ``"local"``.

    Returns:
      ``[B, V, S, S, 3]`` float32, normalized (``V``, ``S`` of the group).

    References:
      Chen et al., `A Simple Framework for Contrastive Learning of Visual
      Representations <https://arxiv.org/abs/2002.05709>`_, 2020 (appendix A).
      Caron et al., `Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments <https://arxiv.org/abs/2006.09882>`_ (SwAV: multi-crop), 2020.
    """

    def hashable(value):
        return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else value

    num_views, size, crop_scale = group_settings(data_config, group)
    first_view = 0 if group == "global" else int(data_config.num_views)
    # The config's values select (and cache) one compiled function per configuration.
    settings = {**data_config.to_dict(), "crop_scale": crop_scale}
    params = tuple(sorted((key, hashable(value)) for key, value in settings.items()))
    views_fn = _make_views_fn(num_views, size, params)
    # The keys are hashed outside the XLA function: inside it, XLA fuses the hash into
    # every per-pixel loop that reads a per-example parameter and runs ~5x slower.
    index = tf.cast(index, tf.int64)
    keys = example_keys(
        seed,
        tf.repeat(index, num_views),
        tf.repeat(tf.broadcast_to(tf.cast(epoch, tf.int64), tf.shape(index)), num_views),
        tf.tile(tf.range(first_view, first_view + num_views), tf.shape(index)),
    )
    uniforms = {op: random_uniforms(keys, op, num) for op, num in _DRAWS.items()}
    return views_fn(tf.convert_to_tensor(images, tf.uint8), uniforms)
