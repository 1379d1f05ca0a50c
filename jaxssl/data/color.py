"""SimCLR-style image augmentations as pure JAX functions, for the train step on device.

The on-device twin of `jaxssl.data.augment` (``config.data.augment_on_device``): the host
then ships the un-augmented uint8 images and the jitted train step makes the views. Every
function maps a batch ``[N, H, W, 3]`` to a batch with per-example random parameters; the
per-image kernels are ``jax.vmap``-ed and the random draws use partitionable threefry, so
under ``jax.jit`` with the batch split over the mesh every device augments its own rows,
with no collective, and the views are the same for any number of devices.

Semantics follow the host pipeline (torchvision's): the same config fields, parameter
ranges, op order, crop sampling (the same windows for the same uniforms), PIL-style
antialiased bilinear resampling, ColorJitter in a random order per example, ITU-R 601-2
grayscale, reflect-padded Gaussian blur with a 10% kernel, and solarization; for identical
parameters the pixels agree with the host's to ~1e-6 (float rounding; the HSV round trip is
a closed form here, TF's kernels there). What differs is where the random numbers come
from: here op ``o`` draws ``jax.random.uniform(fold_in(key, o), [N * V, k])`` for all views
of a batch, so a view is a function of (key, row in the batch, view number), where the host
keys each view by (seed, example index, epoch, view number). In the train step
(`jaxssl.step`) the key is ``fold_in(fold_in(base_key, stream), step)``, so a resumed run
draws the same views; a run with ``augment_on_device`` sees views of the same distribution
as the host pipeline's, not the same views.

References:
  Chen et al., `A Simple Framework for Contrastive Learning of Visual Representations
  <https://arxiv.org/abs/2002.05709>`_, 2020 (appendix A).
  Grill et al., `Bootstrap your own latent <https://arxiv.org/abs/2006.07733>`_, 2020.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

# Op ids: each random decision of a view draws from its own stream, so enabling one op
# (e.g. blur) never changes the randomness of another.
_OP_CROP, _OP_FLIP, _OP_JITTER, _OP_GRAYSCALE, _OP_BLUR, _OP_SOLARIZE = range(6)

# torchvision's RandomResizedCrop makes 10 tries before falling back to a centre crop.
_CROP_TRIES = 10
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision, PIL and augment.py
_HUE = 3  # the op id of hue in a jitter order; 0, 1, 2 are brightness, contrast, saturation


def _to_float(images: jax.Array) -> jax.Array:
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def _per_example(values: jax.Array) -> jax.Array:
    return values.reshape(-1, 1, 1, 1)


def _select(condition: jax.Array, on_true: jax.Array, on_false: jax.Array) -> jax.Array:
    """Per-example choice: ``condition`` is ``[N]``, the images ``[N, H, W, C]``."""
    return jnp.where(_per_example(condition), on_true, on_false)


# --- Geometry ---


def _crop_boxes(uniforms: jax.Array, height: int, width: int, scale, ratio) -> jax.Array:
    """torchvision's ``RandomResizedCrop.get_params`` for ``[N, 2 * 10 + 2]`` uniforms.

    Columns ``0..9`` choose the area, ``10..19`` the log aspect ratio of the ten tries, the
    last two the top-left corner: the host's (``augment._crop_windows``) layout.
    """
    tries = _CROP_TRIES
    area = float(height * width)
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    target_area = area * (scale[0] + uniforms[:, :tries] * (scale[1] - scale[0]))  # [N, tries]
    aspect = jnp.exp(log_ratio[0] + uniforms[:, tries : 2 * tries] * (log_ratio[1] - log_ratio[0]))
    # jnp.round rounds half to even, like Python's round() in torchvision.
    crop_w = jnp.round(jnp.sqrt(target_area * aspect))
    crop_h = jnp.round(jnp.sqrt(target_area / aspect))
    valid = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    found = valid.any(axis=1)
    first = jnp.argmax(valid, axis=1)  # the first valid try
    crop_w = jnp.take_along_axis(crop_w, first[:, None], axis=1)[:, 0]
    crop_h = jnp.take_along_axis(crop_h, first[:, None], axis=1)[:, 0]
    # After ten misses: the whole image, or a centred crop clamped to the ratio range.
    if width / height < min(ratio):
        fallback_w, fallback_h = width, round(width / min(ratio))
    elif width / height > max(ratio):
        fallback_w, fallback_h = round(height * max(ratio)), height
    else:
        fallback_w, fallback_h = width, height
    crop_h = jnp.where(found, crop_h, float(fallback_h))
    crop_w = jnp.where(found, crop_w, float(fallback_w))
    top = jnp.where(
        found, jnp.floor(uniforms[:, -2] * (height - crop_h + 1)), float((height - fallback_h) // 2)
    )
    left = jnp.where(
        found, jnp.floor(uniforms[:, -1] * (width - crop_w + 1)), float((width - fallback_w) // 2)
    )
    return jnp.stack([top, left, crop_h, crop_w], axis=1)


def sample_crop_boxes(
    key: jax.Array,
    num: int,
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> jax.Array:
    """Random crop windows with torchvision ``RandomResizedCrop`` statistics.

    Area fraction uniform in ``scale``, log aspect ratio uniform in ``log(ratio)``, the first
    of 10 candidates that fits, else a centre crop; integer windows.

    Args:
      key: a JAX key.
      num: number of windows ``N``.
      height: image height.
      width: image width.
      scale: range of the crop's area as a fraction of the image's.
      ratio: range of the crop's aspect ratio (width / height).

    Returns:
      ``[N, 4]`` float32 ``(top, left, height, width)`` in pixels, integer-valued.
    """
    uniforms = jax.random.uniform(key, (num, 2 * _CROP_TRIES + 2))
    return _crop_boxes(uniforms, height, width, scale, ratio)


def _resize_matrix(start: jax.Array, length: jax.Array, in_size: int, out_size: int) -> jax.Array:
    """``[out_size, in_size]`` weights resampling pixels ``[start, start + length)``.

    PIL's bilinear filter (torchvision's resize, and augment.py's): a triangle kernel at
    half-pixel centres, widened by the scale factor when shrinking (antialiasing), and
    renormalised at the window's edges, so samples never read outside the crop.
    """
    scale = length / out_size
    centres = start + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * scale  # [out]
    pixels = jnp.arange(in_size, dtype=jnp.float32) + 0.5  # [in]
    weights = jax.nn.relu(1.0 - jnp.abs(pixels - centres[:, None]) / jnp.maximum(scale, 1.0))
    weights *= (pixels >= start) & (pixels < start + length)
    return weights / weights.sum(axis=1, keepdims=True)


def _resized_crop_one(image: jax.Array, box: jax.Array, size: int) -> jax.Array:
    top, left, crop_h, crop_w = box
    rows = _resize_matrix(top, crop_h, image.shape[0], size)  # [S, H]
    cols = _resize_matrix(left, crop_w, image.shape[1], size)  # [S, W]
    # Separable resampling: two small matrix products, no gathers.
    return jnp.einsum("sh,hwc,tw->stc", rows, image, cols)


def resized_crop(images: jax.Array, boxes: jax.Array, size: int) -> jax.Array:
    """Crops window ``boxes[n]`` of each image and resizes it to ``size x size`` (bilinear).

    Args:
      images: ``[N, H, W, C]`` uint8 in [0, 255] or float in [0, 1].
      boxes: ``[N, 4]`` ``(top, left, height, width)`` in pixels, as `sample_crop_boxes`.
      size: output side length (static).

    Returns:
      ``[N, size, size, C]`` float32 in [0, 1].
    """
    return jax.vmap(_resized_crop_one, in_axes=(0, 0, None))(_to_float(images), boxes, size)


def random_resized_crop(
    key: jax.Array,
    images: jax.Array,
    size: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> jax.Array:
    """torchvision ``RandomResizedCrop``: a random window per image, resized to ``size``.

    Args:
      key: a JAX key.
      images: ``[N, H, W, C]`` uint8 in [0, 255] or float in [0, 1].
      size: output side length (static).
      scale: range of the crop's area as a fraction of the image's.
      ratio: range of the crop's aspect ratio (width / height).

    Returns:
      ``[N, size, size, C]`` float32 in [0, 1].

    References:
      Szegedy et al., `Going deeper with convolutions
      <https://arxiv.org/abs/1409.4842>`_, 2015.
    """
    num, height, width, _ = images.shape
    return resized_crop(images, sample_crop_boxes(key, num, height, width, scale, ratio), size)


def random_flip(key: jax.Array, images: jax.Array, prob: float = 0.5) -> jax.Array:
    """Mirrors each image left-right with probability ``prob``.

    Args:
      key: a JAX key.
      images: ``[N, H, W, C]``.
      prob: flip probability.

    Returns:
      ``[N, H, W, C]``, same dtype.
    """
    flip = jax.random.uniform(key, (images.shape[0],)) < prob
    return _select(flip, images[:, :, ::-1], images)


# --- Colour (torchvision's definitions) ---


def rgb_to_grayscale(images: jax.Array) -> jax.Array:
    """ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B``: ``[..., 3] -> [..., 1]``."""
    red, green, blue = _GRAY_WEIGHTS
    return images[..., 0:1] * red + images[..., 1:2] * green + images[..., 2:3] * blue


def _blend(image: jax.Array, factor: jax.Array, target: jax.Array) -> jax.Array:
    """torchvision's ``_blend``: ``clip(factor * image + (1 - factor) * target, 0, 1)``."""
    return jnp.clip(factor * image + (1.0 - factor) * target, 0.0, 1.0)


def _mod(x: jax.Array, period: float) -> jax.Array:
    """``x mod period`` in [0, period]; via ``floor`` (``jnp.mod``'s remainder and sign fix-up
    is ~7x slower on XLA:CPU, and the HSV round trip is the jitter's costliest part)."""
    return x - period * jnp.floor(x / period)


def _rgb_to_hsv(image: jax.Array) -> jax.Array:
    """``tf.image.rgb_to_hsv``'s conversion: hue in [0, 1), 0 for grays."""
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    # Elementwise max/min of the channels: a reduction over a last axis of 3 is slow on CPU.
    value = jnp.maximum(jnp.maximum(red, green), blue)
    chroma = value - jnp.minimum(jnp.minimum(red, green), blue)
    safe_chroma = jnp.where(chroma > 0, chroma, 1.0)
    hue = jnp.where(
        value == red,
        (green - blue) / safe_chroma,
        jnp.where(
            value == green, 2.0 + (blue - red) / safe_chroma, 4.0 + (red - green) / safe_chroma
        ),
    )
    hue = jnp.where(chroma > 0, _mod(hue / 6.0, 1.0), 0.0)
    saturation = chroma / jnp.where(value > 0, value, 1.0)  # 0 for black: chroma is 0 too
    return jnp.stack([hue, saturation, value], axis=-1)


def _hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """Inverse of `_rgb_to_hsv`, in closed form: channel ``n`` (R=5, G=3, B=1) is
    ``v - v s clip(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6``."""
    hue, saturation, value = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
    k = _mod(jnp.array([5.0, 3.0, 1.0]) + 6.0 * hue, 6.0)
    return value - value * saturation * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def _adjust_hue_one(image: jax.Array, delta: jax.Array) -> jax.Array:
    hsv = _rgb_to_hsv(image)
    hue = _mod(hsv[..., 0:1] + delta, 1.0)
    return _hsv_to_rgb(jnp.concatenate([hue, hsv[..., 1:]], axis=-1))


def _gray_mean(image: jax.Array) -> jax.Array:
    """Mean luma of one ``[H, W, 3]`` image: channel sums first, then the weights (the same
    number as ``rgb_to_grayscale(image).mean()``, ~5x faster on XLA:CPU)."""
    height, width, _ = image.shape
    return image.sum(axis=(0, 1)) @ jnp.asarray(_GRAY_WEIGHTS) / (height * width)


def adjust_brightness(images: jax.Array, factor: jax.Array) -> jax.Array:
    """torchvision ``adjust_brightness``: ``clip(factor * x)``; ``factor`` is ``[N]``."""
    return _blend(images, _per_example(factor), 0.0)


def adjust_contrast(images: jax.Array, factor: jax.Array) -> jax.Array:
    """torchvision ``adjust_contrast``: blend with the mean of each grayscale image."""
    return _blend(images, _per_example(factor), _per_example(jax.vmap(_gray_mean)(images)))


def adjust_saturation(images: jax.Array, factor: jax.Array) -> jax.Array:
    """torchvision ``adjust_saturation``: blend with the grayscale image."""
    return _blend(images, _per_example(factor), rgb_to_grayscale(images))


def adjust_hue(images: jax.Array, delta: jax.Array) -> jax.Array:
    """torchvision ``adjust_hue``: rotates the HSV hue by ``delta`` ``[N]`` (mod 1)."""
    return jax.vmap(_adjust_hue_one)(images, delta)


def _jitter_one(image: jax.Array, factors: jax.Array, order: jax.Array, with_hue: bool):
    """The four jitter ops on one image in ``order``; see `jitter_in_order`."""
    hue_position = jnp.argmax(order == _HUE)
    # The hue (an HSV round trip) is the costly op, so it runs once: the three blends in
    # order, those before the hue in slots 0..2 of a first pass, then the hue, then the rest
    # in a second pass. A blend outside its pass gets factor 1, an exact identity.
    blends = jnp.where(jnp.arange(3) < hue_position, order[:3], order[1:])  # [3] ops 0..2

    def blend_slot(index, image):  # index 0..5: slot index % 3 of pass index // 3
        slot = index % 3
        op = blends[slot]
        runs = jnp.where(index < 3, slot < hue_position, slot >= hue_position)
        gray = rgb_to_grayscale(image)  # [H, W, 1]
        # Brightness blends with black, contrast with the mean gray, saturation with gray.
        target = jnp.where(op == 1, _gray_mean(image), jnp.where(op == 2, gray, 0.0))
        return _blend(image, jnp.where(runs, factors[op], 1.0), target)

    # A loop, not unrolled: on XLA:CPU the unrolled six slots compile to fusions that
    # recompute each other's values, ~2x slower and slower to compile.
    image = jax.lax.fori_loop(0, 3, blend_slot, image)
    if with_hue:
        image = _adjust_hue_one(image, factors[_HUE])
    return jax.lax.fori_loop(3, 6, blend_slot, image)


def jitter_in_order(
    images: jax.Array, factors: jax.Array, order: jax.Array, with_hue: bool = True
) -> jax.Array:
    """Brightness, contrast, saturation and hue with given parameters in a given order.

    Args:
      images: ``[N, H, W, 3]`` float in [0, 1].
      factors: ``[N, 4]``: brightness, contrast, saturation factors and the hue shift.
      order: ``[N, 4]`` int, a permutation of ``0..3`` per example (0 brightness, 1 contrast,
        2 saturation, 3 hue): the order the ops run in.
      with_hue: False skips the hue op (a static switch: its HSV round trip costs the most).

    Returns:
      ``[N, H, W, 3]`` float32 in [0, 1].
    """
    return jax.vmap(_jitter_one, in_axes=(0, 0, 0, None))(images, factors, order, with_hue)


def color_jitter(
    key: jax.Array,
    images: jax.Array,
    prob: float = 0.8,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
) -> jax.Array:
    """torchvision ``RandomApply([ColorJitter(...)], p=prob)`` with per-example parameters.

    Factors are uniform in ``[max(0, 1 - s), 1 + s]`` (hue shift: ``[-hue, hue]``), and the
    four ops run in a random order per example (``argsort`` of 4 uniforms, i.e. a uniform
    random permutation, like ``torch.randperm``).

    Args:
      key: a JAX key.
      images: ``[N, H, W, 3]`` float in [0, 1].
      prob: probability of jittering an example at all.
      brightness: brightness strength; 0 disables the op.
      contrast: contrast strength; 0 disables the op.
      saturation: saturation strength; 0 disables the op.
      hue: hue strength in [0, 0.5]; 0 disables the op.

    Returns:
      ``[N, H, W, 3]`` float32 in [0, 1].
    """
    # The host's layout: apply, 3 blend factors, hue shift, 4 order keys.
    uniforms = jax.random.uniform(key, (images.shape[0], 9))

    def factor(column, strength):
        low = max(0.0, 1.0 - strength)
        return low + uniforms[:, column] * (1.0 + strength - low)

    factors = jnp.stack(
        [
            factor(1, brightness),
            factor(2, contrast),
            factor(3, saturation),
            (2.0 * uniforms[:, 4] - 1.0) * hue,
        ],
        axis=1,
    )  # [N, 4]
    order = jnp.argsort(uniforms[:, 5:9], axis=1, stable=True)  # [N, 4]
    jittered = jitter_in_order(images, factors, order, with_hue=bool(hue))
    return _select(uniforms[:, 0] < prob, jittered, images)


def random_grayscale(key: jax.Array, images: jax.Array, prob: float = 0.2) -> jax.Array:
    """Replaces each image by its luma on 3 channels with probability ``prob``.

    Args:
      key: a JAX key.
      images: ``[N, H, W, 3]`` float.
      prob: probability.

    Returns:
      ``[N, H, W, 3]`` float32.
    """
    gray = jnp.broadcast_to(rgb_to_grayscale(images), images.shape)
    return _select(jax.random.uniform(key, (images.shape[0],)) < prob, gray, images)


def _blur_one(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
    offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    taps = jnp.exp(-(offsets**2) / (2.0 * sigma**2))
    taps /= taps.sum()
    for axis in (0, 1):  # separable: rows, then columns
        padding = [(0, 0)] * image.ndim
        padding[axis] = (radius, radius)
        padded = jnp.pad(image, padding, mode="reflect")
        size = image.shape[axis]
        image = sum(
            taps[t] * jax.lax.slice_in_dim(padded, t, t + size, axis=axis)
            for t in range(2 * radius + 1)
        )
    return image


def gaussian_blur(images: jax.Array, sigma: jax.Array, kernel_size: int) -> jax.Array:
    """Separable Gaussian blur with a per-example ``sigma`` and reflect padding.

    Args:
      images: ``[N, H, W, C]`` float.
      sigma: ``[N]`` standard deviations in pixels.
      kernel_size: taps per dimension (static); even sizes are rounded up to odd as in
        SimCLR, and the radius is capped at ``side - 1`` (reflect padding needs it).

    Returns:
      ``[N, H, W, C]`` float32.
    """
    radius = min(kernel_size // 2, images.shape[1] - 1, images.shape[2] - 1)
    return jax.vmap(_blur_one, in_axes=(0, 0, None))(images, sigma, radius)


def random_gaussian_blur(
    key: jax.Array,
    images: jax.Array,
    prob: float,
    sigma: Sequence[float] = (0.1, 2.0),
    kernel_size: int | None = None,
) -> jax.Array:
    """SimCLR's blur: with probability ``prob``, sigma uniform in ``sigma``.

    Args:
      key: a JAX key.
      images: ``[N, H, W, C]`` float.
      prob: probability.
      sigma: range of the standard deviation in pixels.
      kernel_size: taps per dimension; default 10% of the image side, as SimCLR and the
        host pipeline (3 taps at 32 px).

    Returns:
      ``[N, H, W, C]`` float32.
    """
    uniforms = jax.random.uniform(key, (images.shape[0], 2))
    sigmas = sigma[0] + uniforms[:, 1] * (sigma[1] - sigma[0])
    kernel_size = images.shape[1] // 10 if kernel_size is None else kernel_size
    blurred = gaussian_blur(images, sigmas, kernel_size)
    return _select(uniforms[:, 0] < prob, blurred, images)


def solarize(images: jax.Array, threshold: float = 0.5) -> jax.Array:
    """BYOL's solarization: ``x < threshold ? x : 1 - x``."""
    return jnp.where(images < threshold, images, 1.0 - images)


def random_solarize(
    key: jax.Array, images: jax.Array, prob: float, threshold: float = 0.5
) -> jax.Array:
    """Solarizes each image with probability ``prob``.

    Args:
      key: a JAX key.
      images: ``[N, H, W, C]`` float in [0, 1].
      prob: probability.
      threshold: pixels at or above it are inverted.

    Returns:
      ``[N, H, W, C]`` float32 in [0, 1].
    """
    solarized = solarize(images, threshold)
    return _select(jax.random.uniform(key, (images.shape[0],)) < prob, solarized, images)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """``(images - mean) / std`` per channel."""
    return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


# --- Views ---


def augment_views(
    key: jax.Array, images: jax.Array, num_views: int, size: int, params: Mapping[str, Any]
) -> jax.Array:
    """``V`` independently augmented views of each image: the SimCLR/BYOL pipeline.

    Per view, as `jaxssl.data.augment.simclr_views`: random resized crop, horizontal flip,
    colour jitter, grayscale, optional blur and solarization, normalization.

    Args:
      key: a JAX key; op ``o`` draws its parameters for all ``N * V`` views from
        ``fold_in(key, o)``.
      images: ``[N, H, W, 3]`` uint8 in [0, 255] or float in [0, 1].
      num_views: ``V`` (static).
      size: output side length ``S`` (static).
      params: the augmentation fields of ``config.data`` (``crop_scale``, ``crop_ratio``,
        ``flip_prob``, ``color_jitter_prob``, ``brightness``, ``contrast``, ``saturation``,
        ``hue``, ``grayscale_prob``, ``blur_prob``, ``solarize_prob``, ``mean``, ``std``);
        the ``config.data`` ConfigDict itself will do.

    Returns:
      ``[N, V, S, S, 3]`` float32, normalized.

    References:
      Chen et al., `A Simple Framework for Contrastive Learning of Visual
      Representations <https://arxiv.org/abs/2002.05709>`_, 2020 (appendix A).
    """
    num = images.shape[0]

    def op_key(op):
        return jax.random.fold_in(key, op)

    # Row n * V + v is view v of example n: every device repeats its own rows, and the
    # result reshapes to [N, V, ...] without moving data between devices.
    views = jnp.repeat(_to_float(images), num_views, axis=0)  # [N*V, H, W, 3]
    views = random_resized_crop(
        op_key(_OP_CROP), views, size, params["crop_scale"], params["crop_ratio"]
    )
    views = random_flip(op_key(_OP_FLIP), views, params["flip_prob"])
    views = color_jitter(
        op_key(_OP_JITTER),
        views,
        params["color_jitter_prob"],
        params["brightness"],
        params["contrast"],
        params["saturation"],
        params["hue"],
    )
    views = random_grayscale(op_key(_OP_GRAYSCALE), views, params["grayscale_prob"])
    # Python-level skips: a zero probability should cost nothing.
    if params["blur_prob"] > 0:
        views = random_gaussian_blur(op_key(_OP_BLUR), views, params["blur_prob"])
    if params["solarize_prob"] > 0:
        views = random_solarize(op_key(_OP_SOLARIZE), views, params["solarize_prob"])
    views = normalize(views, params["mean"], params["std"])
    return views.reshape(num, num_views, size, size, views.shape[-1])


def augment_batch(
    key: jax.Array, batch: Mapping[str, jax.Array], data_config: Mapping[str, Any]
) -> dict[str, jax.Array]:
    """Replaces ``batch["image"]`` by view groups made as the host pipeline makes them.

    Args:
      key: this step's key, e.g. ``fold_in(base_key, step)``; the global group uses
        ``fold_in(key, 0)``, the local group ``fold_in(key, 1)``.
      batch: ``{"image": uint8 [B, H, W, 3], ...}``, e.g. from `jaxssl.data.tfds` with
        ``data.augment_on_device``.
      data_config: the ``config.data`` ConfigDict.

    Returns:
      The batch without ``"image"`` and with ``"global"`` ``[B, V, S, S, 3]``, plus
      ``"local"`` ``[B, L, s, s, 3]`` when ``data_config.local_views > 0`` (multi-crop, the
      local group's crops from ``local_crop_scale``).
    """
    out = {name: value for name, value in batch.items() if name != "image"}
    out["global"] = augment_views(
        jax.random.fold_in(key, 0),
        batch["image"],
        int(data_config["num_views"]),
        int(data_config["image_size"]),
        data_config,
    )
    if data_config["local_views"] > 0:
        local_params = {**data_config, "crop_scale": data_config["local_crop_scale"]}
        out["local"] = augment_views(
            jax.random.fold_in(key, 1),
            batch["image"],
            int(data_config["local_views"]),
            int(data_config["local_image_size"]),
            local_params,
        )
    return out
