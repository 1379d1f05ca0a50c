"""Photometric augmentations, planar rotation and input normalization as pure JAX functions,
on device.

The device half of the augmentation: the host cuts the views (`jaxssl.data.crops`: random
resized crop and flip, shipped as uint8) and the jitted train step applies torchvision's
colour jitter (in a random order per image), ITU-R 601-2 grayscale, SimCLR's reflect-padded
Gaussian blur, BYOL's solarization and normalization to them (`augment_batch`). Every place
that feeds images to a model normalizes them here too (`to_model_input`).

Each op maps a batch ``[N, H, W, 3]`` to a batch with per-example random parameters: op
``o`` draws ``jax.random.uniform(fold_in(key, o), [N, k])``, the per-image kernels are
``jax.vmap``-ed, and threefry is partitionable, so under ``jax.jit`` with the batch split over
the mesh every device augments its own rows, with no collective, and the result is the same
for any number of devices. The train step's key is ``fold_in(fold_in(base_key, stream),
step)``, so a resumed run redraws the same colours.

References:
  Chen et al., `A Simple Framework for Contrastive Learning of Visual Representations
  <https://arxiv.org/abs/2002.05709>`_, 2020 (appendix A).
  Grill et al., `Bootstrap your own latent <https://arxiv.org/abs/2006.07733>`_, 2020.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

# Op ids: each random decision of a view draws from its own stream, so enabling one op
# (e.g. blur) never changes the randomness of another.
_OP_JITTER, _OP_GRAYSCALE, _OP_BLUR, _OP_SOLARIZE, _OP_NOISE, _OP_ROTATE = range(6)

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision and PIL
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
    apply, factors, order = _jitter_parameters(
        key, images.shape[0], prob, brightness, contrast, saturation, hue
    )
    jittered = jitter_in_order(images, factors, order, with_hue=bool(hue))
    return _select(apply, jittered, images)


def _jitter_parameters(key, num, prob, brightness, contrast, saturation, hue):
    """`color_jitter`'s draws: ``(apply [N] bool, factors [N, 4], order [N, 4])``."""
    # Columns: apply, 3 blend factors, hue shift, 4 order keys.
    uniforms = jax.random.uniform(key, (num, 9))

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
    return uniforms[:, 0] < prob, factors, order


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
    return _select(_grayscale_draws(key, images.shape[0], prob), gray, images)


def _grayscale_draws(key: jax.Array, num: int, prob: float) -> jax.Array:
    return jax.random.uniform(key, (num,)) < prob


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
      kernel_size: taps per dimension; default 10% of the image side, as SimCLR (3 taps at
        32 px).

    Returns:
      ``[N, H, W, C]`` float32.
    """
    uniforms = jax.random.uniform(key, (images.shape[0], 2))
    sigmas = sigma[0] + uniforms[:, 1] * (sigma[1] - sigma[0])
    kernel_size = images.shape[1] // 10 if kernel_size is None else kernel_size
    blurred = gaussian_blur(images, sigmas, kernel_size)
    return _select(uniforms[:, 0] < prob, blurred, images)


def random_solarize(
    key: jax.Array, images: jax.Array, prob: float, threshold: float = 0.5
) -> jax.Array:
    """BYOL's solarization, ``x < threshold ? x : 1 - x``, with probability ``prob``.

    Args:
      key: a JAX key.
      images: ``[N, H, W, C]`` float in [0, 1].
      prob: probability.
      threshold: pixels at or above it are inverted.

    Returns:
      ``[N, H, W, C]`` float32 in [0, 1].
    """
    solarized = jnp.where(images < threshold, images, 1.0 - images)
    return _select(jax.random.uniform(key, (images.shape[0],)) < prob, solarized, images)


def gaussian_noise(key: jax.Array, images: jax.Array, std: float) -> jax.Array:
    """Adds independent :math:`N(0, std^2)` noise to every pixel and channel, not clipped.

    The view policy of Bordes et al. 2023 ("Towards Democratizing Joint-Embedding
    Self-Supervised Learning"), where noise alone makes the two views of an image.

    Args:
      key: a JAX key.
      images: ``[N, H, W, C]`` float in [0, 1].
      std: standard deviation, in the [0, 1] pixel scale.

    Returns:
      ``[N, H, W, C]`` float32 (may leave [0, 1]).
    """
    return images + std * jax.random.normal(key, images.shape, jnp.float32)


# --- Planar rotation (the one geometric op on device; crops and flips are the host's) ---


def _rotate_one(image: jax.Array, angle: jax.Array) -> jax.Array:
    h, w = image.shape[:2]
    rows, cols = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    dx, dy = cols - cx, cy - rows  # y up
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # Output pixel p shows the input at R(-angle) p (counter-clockwise content rotation).
    src_x = cos * dx + sin * dy
    src_y = -sin * dx + cos * dy
    coords = [cy - src_y, cx + src_x]
    return jnp.stack(
        [
            jax.scipy.ndimage.map_coordinates(image[..., c], coords, order=1, mode="constant")
            for c in range(image.shape[-1])
        ],
        axis=-1,
    )


def rotate(images: jax.Array, angles: jax.Array) -> jax.Array:
    """Rotates each image counter-clockwise (as displayed) by ``angles`` radians about its
    centre: bilinear, zeros outside the source (torchvision ``rotate``'s convention and fill).

    Args:
      images: ``[N, H, W, C]`` float.
      angles: ``[N]`` radians.

    Returns:
      ``[N, H, W, C]`` float32.
    """
    return jax.vmap(_rotate_one)(images.astype(jnp.float32), angles.astype(jnp.float32))


def _rotation_draws(key: jax.Array, num: int, degrees: float) -> jax.Array:
    """Angles uniform in ``[-degrees, degrees]``, in radians, ``[N]``."""
    return jnp.deg2rad(degrees) * (2.0 * jax.random.uniform(key, (num,)) - 1.0)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """``(images - mean) / std`` per channel."""
    return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def to_model_input(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """uint8 images as a model reads them: scaled to [0, 1], then `normalize`-d.

    Args:
      images: ``[..., 3]`` uint8 in [0, 255] (or float in [0, 1]).
      mean: per-channel mean, ``config.data.mean``.
      std: per-channel standard deviation, ``config.data.std``.

    Returns:
      ``[..., 3]`` float32.
    """
    return normalize(_to_float(images), mean, std)


# --- Views ---


def augment_views(key: jax.Array, views: jax.Array, data_config: Mapping[str, Any]) -> jax.Array:
    """The photometric pipeline on a view group: the SimCLR/BYOL colour augmentations.

    Per view: optional planar rotation (``rotation_degrees``), colour jitter, grayscale,
    optional blur, solarization and Gaussian noise, normalization.

    Args:
      key: a JAX key; op ``o`` draws its parameters for all ``B * V`` views from
        ``fold_in(key, o)``.
      views: ``[B, V, S, S, 3]`` uint8, the host's crops (`jaxssl.data.crops.crop_views`).
      data_config: the ``config.data`` ConfigDict (``color_jitter_prob``, ``brightness``,
        ``contrast``, ``saturation``, ``hue``, ``grayscale_prob``, ``blur_prob``,
        ``solarize_prob``, ``gaussian_noise_std``, ``rotation_degrees``, ``mean``, ``std``).

    Returns:
      ``[B, V, S, S, 3]`` float32, normalized.
    """

    def op_key(op):
        return jax.random.fold_in(key, op)

    # Row b * V + v is view v of example b: with the batch split over devices every device
    # holds whole examples, and the result reshapes back without moving data.
    images = _to_float(views.reshape(-1, *views.shape[2:]))  # [B*V, S, S, 3]
    if data_config.get("rotation_degrees", 0.0) > 0:
        degrees = data_config["rotation_degrees"]
        images = rotate(images, _rotation_draws(op_key(_OP_ROTATE), images.shape[0], degrees))
    images = color_jitter(
        op_key(_OP_JITTER),
        images,
        data_config["color_jitter_prob"],
        data_config["brightness"],
        data_config["contrast"],
        data_config["saturation"],
        data_config["hue"],
    )
    images = random_grayscale(op_key(_OP_GRAYSCALE), images, data_config["grayscale_prob"])
    # Python-level skips: a zero probability should cost nothing.
    if data_config["blur_prob"] > 0:
        images = random_gaussian_blur(op_key(_OP_BLUR), images, data_config["blur_prob"])
    if data_config["solarize_prob"] > 0:
        images = random_solarize(op_key(_OP_SOLARIZE), images, data_config["solarize_prob"])
    if data_config.get("gaussian_noise_std", 0.0) > 0:
        images = gaussian_noise(op_key(_OP_NOISE), images, data_config["gaussian_noise_std"])
    images = normalize(images, data_config["mean"], data_config["std"])
    return images.reshape(views.shape)


def augment_batch(
    key: jax.Array, batch: Mapping[str, jax.Array], data_config: Mapping[str, Any]
) -> dict[str, jax.Array]:
    """`augment_views` on the batch's view groups, each with its own key.

    Args:
      key: this step's key, e.g. ``fold_in(base_key, step)``; the global group uses
        ``fold_in(key, 0)``, the local group ``fold_in(key, 1)``.
      batch: the host's batch (`jaxssl.data.tfds.make_train_iterator`): ``"global"``
        uint8 ``[B, V, S, S, 3]``, optionally ``"local"`` uint8 ``[B, L, s, s, 3]``
        (multi-crop), and ``"label"``, ``"index"``.
      data_config: the ``config.data`` ConfigDict.

    Returns:
      The batch with each view group replaced by its normalized float32 views.
    """
    out = dict(batch)
    for number, group in enumerate(("global", "local")):
        if group in batch:
            out[group] = augment_views(jax.random.fold_in(key, number), batch[group], data_config)
    if data_config.get("view_transforms", False):
        if "global_box" not in batch:
            raise ValueError(
                "data.view_transforms needs the host's crop boxes: set data.crop_boxes=True."
            )
        out["transform"] = view_transforms(
            jax.random.fold_in(key, 0), batch["global_box"], data_config
        )
    return out


# --- The known transformation of each view (SIE's conditioning, equivariance evaluation) ---

# The columns of `view_transforms`: the rotation, the crop box (source pixels) and flip, the
# colour jitter's effective factors (1, or hue 0, where the jitter was not applied) and the
# grayscale flag.
VIEW_FIELDS = (
    "angle", "top", "left", "height", "width", "flipped",
    "brightness", "contrast", "saturation", "hue", "grayscale",
)  # fmt: skip

# The columns of `relative_transform`, by group.
RELATIVE_GROUPS = {
    "rotation": ("cos_angle", "sin_angle"),
    "crop": ("shift_y", "shift_x", "log_scale_y", "log_scale_x", "flip"),
    "color": ("brightness", "contrast", "saturation", "hue", "grayscale"),
}


def relative_group_slices() -> dict[str, slice]:
    """Where each group of `RELATIVE_GROUPS` lies among `relative_transform`'s columns."""
    slices, start = {}, 0
    for group, names in RELATIVE_GROUPS.items():
        slices[group] = slice(start, start + len(names))
        start += len(names)
    return slices


def view_transforms(key: jax.Array, boxes: jax.Array, data_config: Mapping[str, Any]) -> jax.Array:
    """The parameters `augment_views` drew for each view, from the same key: ``[B, V, 11]``.

    Columns `VIEW_FIELDS`: ``angle`` (radians, 0 without rotation), the host's crop box
    ``top, left, height, width, flipped`` (`jaxssl.data.crops.view_boxes`), the colour
    jitter's brightness, contrast and saturation factors and hue shift as applied (1, 1, 1, 0
    where the jitter was skipped; the random order of the four ops is not recorded), and 1.0
    for a grayscale view. Blur, solarization and noise are not recorded.

    Args:
      key: the group's key, as `augment_views` got it.
      boxes: ``[B, V, 5]`` the group's crop boxes (``batch["global_box"]``).
      data_config: the ``config.data`` ConfigDict.

    Returns:
      float32 ``[B, V, 11]``.
    """
    b, v = boxes.shape[:2]
    n = b * v

    def op_key(op):
        return jax.random.fold_in(key, op)

    degrees = data_config.get("rotation_degrees", 0.0)
    angles = _rotation_draws(op_key(_OP_ROTATE), n, degrees) if degrees > 0 else jnp.zeros(n)
    apply, factors, _ = _jitter_parameters(
        op_key(_OP_JITTER),
        n,
        data_config["color_jitter_prob"],
        data_config["brightness"],
        data_config["contrast"],
        data_config["saturation"],
        data_config["hue"],
    )
    identity = jnp.asarray([1.0, 1.0, 1.0, 0.0], jnp.float32)
    factors = jnp.where(apply[:, None], factors, identity)
    gray = _grayscale_draws(op_key(_OP_GRAYSCALE), n, data_config["grayscale_prob"])
    columns = [
        angles[:, None],
        boxes.reshape(n, 5).astype(jnp.float32),
        factors,
        gray.astype(jnp.float32)[:, None],
    ]
    return jnp.concatenate(columns, axis=1).reshape(b, v, len(VIEW_FIELDS))


def relative_transform(first: jax.Array, second: jax.Array) -> jax.Array:
    """The transformation from one view to another of the same image, ``[..., 12]``.

    Columns (`RELATIVE_GROUPS`, in order): rotation ``cos, sin`` of the angle difference;
    crop: the shift of the second box's centre in units of the first box's height and width,
    the log ratios of their heights and widths, and 1.0 where exactly one view is flipped;
    colour: the differences of the effective jitter factors and of the grayscale flags.

    Args:
      first: ``[..., 11]`` `view_transforms` rows of the first views.
      second: ``[..., 11]`` of the second views.

    Returns:
      float32 ``[..., 12]``.
    """
    a, b = first.astype(jnp.float32), second.astype(jnp.float32)
    angle = b[..., 0] - a[..., 0]
    top, left, height, width, flipped = (a[..., i] for i in range(1, 6))
    top2, left2, height2, width2, flipped2 = (b[..., i] for i in range(1, 6))
    shift_y = (top2 + height2 / 2 - top - height / 2) / height
    shift_x = (left2 + width2 / 2 - left - width / 2) / width
    columns = [
        jnp.cos(angle),
        jnp.sin(angle),
        shift_y,
        shift_x,
        jnp.log(height2 / height),
        jnp.log(width2 / width),
        jnp.abs(flipped2 - flipped),
    ]
    columns += [b[..., i] - a[..., i] for i in range(6, 11)]
    return jnp.stack(columns, axis=-1)
