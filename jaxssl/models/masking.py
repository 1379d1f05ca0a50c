"""Token masks for masked image modeling, as fixed-shape index arrays.

Two kinds: MAE's uniform random masking and I-JEPA's multi-block masks. A mask is index arrays
into the ``N`` patch tokens of an image (row-major over the patch grid): the tokens the encoder
keeps and the ones it must predict. Their shapes depend only on ``N`` and the configuration,
never on the draw (padding slots, flagged invalid, fill what a draw leaves empty), so a step
that masks compiles once. Draws are functions of a key: the train step passes its own key
(``fold_in(run key, step)``), so a resumed run masks exactly as the uninterrupted one.

References:
  He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022.
  https://arxiv.org/abs/2111.06377
  Assran et al., Self-Supervised Learning from Images with a Joint-Embedding Predictive
  Architecture (I-JEPA), CVPR 2023. https://arxiv.org/abs/2301.08243
  (code: facebookresearch/ijepa, ``src/masks/multiblock.py``)
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def num_kept(num_tokens: int, mask_ratio: float) -> int:
    """Tokens the encoder sees under ``mask_ratio``: ``int(N * (1 - ratio))``, as MAE's code."""
    kept = int(num_tokens * (1.0 - mask_ratio))
    if not 0 < kept < num_tokens:
        raise ValueError(
            f"mask_ratio {mask_ratio} keeps {kept} of {num_tokens} tokens; it must keep at least "
            "one and mask at least one."
        )
    return kept


def random_masking(
    key: jax.Array, batch_size: int, num_tokens: int, mask_ratio: float
) -> tuple[jax.Array, jax.Array]:
    """MAE's per-image uniform random masking (He et al. 2022, ``random_masking``).

    Each image's tokens are ranked by i.i.d. uniform noise; the first ``num_kept`` are kept.

    Returns:
      ``(keep [B, K], masked [B, N - K])`` int32 token indices; together a permutation of
      ``0..N-1`` per image.
    """
    kept = num_kept(num_tokens, mask_ratio)
    noise = jax.random.uniform(key, (batch_size, num_tokens))
    order = jnp.argsort(noise, axis=1).astype(jnp.int32)  # [B, N]
    return order[:, :kept], order[:, kept:]


def block_size(
    u: jax.Array, grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float]
) -> tuple[jax.Array, jax.Array]:
    """I-JEPA's ``_sample_block_size``: the ``(h, w)`` of a block from one uniform draw ``u``.

    ``s = scale_lo + u (scale_hi - scale_lo)``, ``a = aspect_lo + u (aspect_hi - aspect_lo)``
    (the same ``u`` for both, as the reference), ``n = floor(H W s)`` tokens,
    ``h = round(sqrt(n a))``, ``w = round(sqrt(n / a))``, each at most the grid side minus 1.
    Works on traced and on Python/numpy values alike.
    """
    rows, cols = grid
    xp = jnp if isinstance(u, jax.Array) else np
    s = scale[0] + u * (scale[1] - scale[0])
    a = aspect[0] + u * (aspect[1] - aspect[0])
    n = xp.floor(rows * cols * s)
    h = xp.minimum(xp.round(xp.sqrt(n * a)), rows - 1)
    w = xp.minimum(xp.round(xp.sqrt(n / a)), cols - 1)
    return h.astype(xp.int32), w.astype(xp.int32)


def max_block_tokens(
    grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float]
) -> int:
    """The most tokens ``block_size`` gives over its range: the static slot count of a block."""
    h, w = block_size(np.linspace(0.0, 1.0, 20001), grid, scale, aspect)
    return int(np.max(h * w))


def place_blocks(
    key: jax.Array, batch_size: int, grid: tuple[int, int], h: jax.Array, w: jax.Array, slots: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One ``h x w`` block per image at a uniform top-left corner, as ``slots`` fixed indices.

    The corner is drawn as the reference's ``randint(0, H - h)`` (so a block never touches the
    last row or column).

    Returns:
      ``(indices [B, slots], valid [B, slots], in_block [B, N])``: the block's token indices
      row-major (padding slots ``>= h * w`` hold index 0 and ``valid`` False) and the block as
      a boolean grid mask.
    """
    rows, cols = grid
    k_top, k_left = jax.random.split(key)
    top = jax.random.randint(k_top, (batch_size, 1), 0, rows - h)
    left = jax.random.randint(k_left, (batch_size, 1), 0, cols - w)
    slot = jnp.arange(slots)[None]  # [1, slots]
    valid = jnp.broadcast_to(slot < h * w, (batch_size, slots))
    width = jnp.maximum(w, 1)
    indices = (top + slot // width) * cols + left + slot % width
    indices = jnp.where(valid, indices, 0).astype(jnp.int32)
    r = jnp.arange(rows)[None, :, None]
    c = jnp.arange(cols)[None, None, :]
    in_block = (r >= top[:, :, None]) & (r < top[:, :, None] + h)
    in_block = in_block & (c >= left[:, :, None]) & (c < left[:, :, None] + w)
    return indices, valid, in_block.reshape(batch_size, rows * cols)


class BlockMasks(NamedTuple):
    """I-JEPA's masks of a batch as fixed-shape index arrays (see ``multiblock_masks``)."""

    context: jax.Array  # [B, K] int32 token indices the context encoder sees
    context_valid: jax.Array  # [B, K] bool, False on padding slots
    targets: jax.Array  # [B, J, T] int32 token indices of the J target blocks
    targets_valid: jax.Array  # [B, J, T] bool, False on padding slots


def multiblock_masks(
    key: jax.Array,
    batch_size: int,
    grid: tuple[int, int],
    num_targets: int = 4,
    target_scale: tuple[float, float] = (0.15, 0.2),
    target_aspect: tuple[float, float] = (0.75, 1.5),
    context_scale: tuple[float, float] = (0.85, 1.0),
    context_tokens: int = 0,
) -> BlockMasks:
    """I-JEPA's multi-block masks: ``num_targets`` target blocks and one context block without
    them, per image, in fixed shapes.

    As the reference (``MaskCollator``, ``allow_overlap=False``): one target block size and one
    context block size per batch (drawn once from ``key``, so every image's blocks have the same
    shape), placed independently per image; targets may overlap each other; the context is its
    block minus every target block; the targets' scale and aspect ranges and the context's
    scale (aspect 1) are the reference's defaults. Fixed shapes, where the reference's vary:

    * a target block's tokens fill ``T = max_block_tokens(grid, target_scale, target_aspect)``
      slots; the slots past this batch's ``h * w`` are padding (``targets_valid`` False);
    * the context keeps its first ``context_tokens`` tokens in raster order (the reference
      truncates every context to the batch's smallest, also in raster order); an image with
      fewer pads the rest (``context_valid`` False). The reference re-places a context block
      that keeps too few tokens; here such an image just has more padding.

    Args:
      key: the draw's key (the step's).
      batch_size: ``B``.
      grid: the patch grid ``(rows, columns)``.
      num_targets: ``J`` target blocks per image (4).
      target_scale: fraction of the grid per target block (0.15-0.2).
      target_aspect: height / width range of the target blocks (0.75-1.5).
      context_scale: fraction of the grid of the context block before the targets are cut out
        (0.85-1.0).
      context_tokens: ``K``; 0 gives a quarter of the grid (the reference's typical batch
        minimum at 8 x 8 and 14 x 14 grids is a quarter to a third of the tokens).

    Returns:
      ``BlockMasks``.
    """
    rows, cols = grid
    n = rows * cols
    k = context_tokens or max(1, n // 4)
    slots = max_block_tokens(grid, target_scale, target_aspect)
    k_size, k_ctx_size, k_ctx, *k_targets = jax.random.split(key, 3 + num_targets)
    h, w = block_size(jax.random.uniform(k_size), grid, target_scale, target_aspect)
    targets, targets_valid, covered = [], [], jnp.zeros((batch_size, n), bool)
    for k_target in k_targets:
        indices, valid, in_block = place_blocks(k_target, batch_size, grid, h, w, slots)
        targets.append(indices)
        targets_valid.append(valid)
        covered = covered | in_block
    ch, cw = block_size(jax.random.uniform(k_ctx_size), grid, context_scale, (1.0, 1.0))
    _, _, in_context = place_blocks(k_ctx, batch_size, grid, ch, cw, 1)
    allowed = in_context & ~covered  # [B, N]
    token = jnp.arange(n)[None]
    order = jnp.argsort(jnp.where(allowed, token, n + token), axis=1)[:, :k]  # allowed first
    context_valid = jnp.take_along_axis(allowed, order, axis=1)
    return BlockMasks(
        context=order.astype(jnp.int32),
        context_valid=context_valid,
        targets=jnp.stack(targets, axis=1),
        targets_valid=jnp.stack(targets_valid, axis=1),
    )


def patch_masks(
    key: jax.Array,
    batch_size: int,
    num_tokens: int,
    probability: float = 0.5,
    ratio: tuple[float, float] = (0.1, 0.5),
) -> jax.Array:
    """iBOT's and DINOv2's student masks: with ``probability`` an image is masked, at a ratio
    drawn uniformly from ``ratio``; its masked tokens are chosen uniformly at random.

    A boolean ``[B, N]`` grid (True: the student sees the mask token there), a fixed shape
    whatever the draw. The references place the masked tokens in blocks (BEiT's
    ``MaskingGenerator``) and DINOv2 spreads the ratios evenly over the masked images
    (``linspace``); here tokens are drawn uniformly (MAE's ranking of noise) and each image's
    ratio independently: on a CIFAR-size grid of 8x8 tokens a block generator has little room.

    Returns:
      ``[B, N]`` bool; an image has ``floor(r N)`` masked tokens, or none.
    """
    if not 0.0 <= ratio[0] <= ratio[1] <= 1.0:
        raise ValueError(f"Mask ratio range {ratio} must satisfy 0 <= lo <= hi <= 1.")
    k_masked, k_ratio, k_order = jax.random.split(key, 3)
    masked = jax.random.uniform(k_masked, (batch_size,)) < probability
    r = jax.random.uniform(k_ratio, (batch_size,), minval=ratio[0], maxval=ratio[1])
    count = jnp.where(masked, jnp.floor(r * num_tokens), 0.0).astype(jnp.int32)  # [B]
    noise = jax.random.uniform(k_order, (batch_size, num_tokens))
    rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)  # each token's place in the order
    return rank < count[:, None]
