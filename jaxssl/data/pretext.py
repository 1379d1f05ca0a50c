"""The inputs of the classic pretext tasks, made on device from a batch of views: quarter-turn
rotations (RotNet) and shuffled 3x3 tiles with a permutation set of maximal Hamming distance
(Jigsaw).

Like `jaxssl.data.color`, pure JAX functions of ``[N, H, W, C]`` batches, run inside the
jitted train step after the colour augmentation; their random draws come from the step's key,
so a resumed run redraws them and the result is the same on any number of devices.

References:
  Gidaris, Singh & Komodakis, Unsupervised Representation Learning by Predicting Image
  Rotations, ICLR 2018. https://arxiv.org/abs/1803.07728
  Noroozi & Favaro, Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles,
  ECCV 2016. https://arxiv.org/abs/1603.09246
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

NUM_ROTATIONS = 4  # 0, 90, 180 and 270 degrees


def quarter_turns(images: jax.Array) -> jax.Array:
    """Every image turned by 0, 90, 180 and 270 degrees counter-clockwise, as ``np.rot90``.

    Args:
      images: ``[N, S, S, C]`` square images.

    Returns:
      ``[N, 4, S, S, C]``: rotation ``r`` of image ``n`` at ``[n, r]``, so the rotation labels
      are ``arange(4)`` for every image (Gidaris et al. feed all four rotations of an image in
      the same batch).
    """
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"Quarter turns need square images, got {images.shape[1:3]}.")
    return jnp.stack([jnp.rot90(images, r, axes=(1, 2)) for r in range(NUM_ROTATIONS)], axis=1)


@functools.lru_cache(maxsize=8)
def hamming_permutations(num_permutations: int, num_tiles: int = 9, seed: int = 0) -> np.ndarray:
    """The Jigsaw permutation set: ``num_permutations`` orders of ``num_tiles`` tiles chosen
    greedily for a large mean Hamming distance between them.

    Noroozi & Favaro's ``maxHammingSet`` (and its PyTorch ports): start from a random
    permutation; then repeatedly add the permutation whose mean Hamming distance to those
    already chosen is largest (ties: the first in lexicographic order). The result is a
    deterministic function of the arguments (cached).

    Args:
      num_permutations: the size of the set, the number of classes (100 in the paper's Table 3
        gives its best transfer; 1000 the paper's default).
      num_tiles: tiles per image (9 for a 3x3 grid).
      seed: the first permutation's draw.

    Returns:
      ``[num_permutations, num_tiles]`` int32; row ``p`` lists, for each output position, the
      tile (row-major grid index) placed there.
    """
    candidates = np.array(list(itertools.permutations(range(num_tiles))), np.int8)  # [n!, T]
    if not 1 <= num_permutations <= len(candidates):
        raise ValueError(
            f"method.num_permutations={num_permutations} must be in [1, {len(candidates)}] "
            f"for {num_tiles} tiles."
        )
    first = np.random.default_rng(seed).integers(len(candidates))
    chosen = [first]
    available = np.ones(len(candidates), bool)
    available[first] = False
    total_distance = np.zeros(len(candidates), np.int32)  # summed over the chosen ones
    for _ in range(num_permutations - 1):
        total_distance += (candidates != candidates[chosen[-1]]).sum(axis=1, dtype=np.int32)
        best = int(np.argmax(np.where(available, total_distance, -1)))
        chosen.append(best)
        available[best] = False
    return candidates[chosen].astype(np.int32)


def tile_grid(
    key: jax.Array | None,
    images: jax.Array,
    grid: int,
    tile_size: int,
    offsets: jax.Array | None = None,
) -> jax.Array:
    """The ``grid x grid`` tiles of every image, each cut at a random offset inside its cell.

    The image's top-left ``grid * cell`` square is split into cells of ``cell = S // grid``
    pixels; from each cell a ``tile_size`` square is cut at an offset uniform in ``[0, cell -
    tile_size]`` along each axis (Noroozi & Favaro: 64 px tiles in 75 px cells, so that edges
    and lines do not continue from one tile to the next and give the order away).

    Args:
      key: the draw of the offsets.
      images: ``[N, S, S, C]``.
      grid: tiles per side.
      tile_size: the side of a tile, ``<= S // grid``.
      offsets: ``[N, grid * grid, 2]`` int offsets inside the cells instead of drawing them
        from ``key`` (e.g. zeros: each cell's top-left corner).

    Returns:
      ``[N, grid * grid, tile_size, tile_size, C]``, tiles in row-major grid order.
    """
    n, height, width, channels = images.shape
    cell = min(height, width) // grid
    if not 1 <= tile_size <= cell:
        raise ValueError(
            f"Tiles of {tile_size} px do not fit the {cell} px cells of a {grid}x{grid} grid "
            f"on {height}x{width} images; use tile_size <= {cell}."
        )
    num_tiles = grid * grid
    if offsets is None:
        offsets = jax.random.randint(key, (n, num_tiles, 2), 0, cell - tile_size + 1)  # [N, T, 2]
    corners = jnp.stack(
        [jnp.arange(num_tiles) // grid * cell, jnp.arange(num_tiles) % grid * cell], axis=-1
    )  # [T, 2]
    starts = corners[None] + offsets  # [N, T, 2]

    def cut(image, start):  # [S, S, C], [2] -> [t, t, C]
        return jax.lax.dynamic_slice(
            image, (start[0], start[1], 0), (tile_size, tile_size, channels)
        )

    return jax.vmap(jax.vmap(cut, in_axes=(None, 0)))(images, starts)


def standardize_tiles(tiles: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Each tile's channels to zero mean and unit standard deviation over its own pixels.

    Noroozi & Favaro normalize every tile independently so that the order cannot be read from
    low-level statistics shared by neighbouring tiles (mean colour, contrast).

    Args:
      tiles: ``[..., t, t, C]``.
    """
    mean = jnp.mean(tiles, axis=(-3, -2), keepdims=True)
    std = jnp.std(tiles, axis=(-3, -2), keepdims=True)
    return (tiles - mean) / (std + eps)


def shuffle_tiles(tiles: jax.Array, permutations: jax.Array, labels: jax.Array) -> jax.Array:
    """Tiles reordered by permutation ``labels[n]`` of the set: output position ``j`` of image
    ``n`` holds tile ``permutations[labels[n], j]``.

    Args:
      tiles: ``[N, T, ...]``.
      permutations: ``[P, T]`` int, from `hamming_permutations`.
      labels: ``[N]`` int in ``[0, P)``.

    Returns:
      ``[N, T, ...]``.
    """
    order = permutations[labels]  # [N, T]
    return jnp.take_along_axis(tiles, order.reshape(order.shape + (1,) * (tiles.ndim - 2)), axis=1)


def drop_pixels(key: jax.Array, images: jax.Array, rate: float) -> tuple[jax.Array, jax.Array]:
    """Vincent et al.'s masking noise: each pixel (all its channels) set to 0 with probability
    ``rate``, independently.

    Args:
      key: the draw.
      images: ``[N, H, W, C]`` normalized images (0 is the dataset's mean colour).
      rate: the fraction of pixels dropped.

    Returns:
      ``(corrupted [N, H, W, C], dropped [N, H, W] float 0/1)``.
    """
    dropped = jax.random.bernoulli(key, rate, images.shape[:3])
    return jnp.where(dropped[..., None], 0.0, images), dropped.astype(jnp.float32)


def drop_block(
    key: jax.Array | None, images: jax.Array, fraction: float
) -> tuple[jax.Array, jax.Array]:
    """The context encoder's corruption: a square of side ``round(fraction * S)`` set to 0 (the
    dataset's mean colour, as Pathak et al. fill it), in the centre (``key`` None) or at a
    position uniform per image.

    Args:
      key: the draw of the positions; None: the central square.
      images: ``[N, S, S, C]`` normalized images.
      fraction: the square's side over the image's (Pathak et al.: 1/2, a quarter of the area).

    Returns:
      ``(corrupted [N, S, S, C], region [N, S, S] float 0/1)``.
    """
    n, height, width = images.shape[:3]
    side = max(1, round(fraction * min(height, width)))
    if key is None:
        top = jnp.full((n,), (height - side) // 2)
        left = jnp.full((n,), (width - side) // 2)
    else:
        top_key, left_key = jax.random.split(key)
        top = jax.random.randint(top_key, (n,), 0, height - side + 1)
        left = jax.random.randint(left_key, (n,), 0, width - side + 1)
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    region = (
        (rows >= top[:, None, None])
        & (rows < top[:, None, None] + side)
        & (cols >= left[:, None, None])
        & (cols < left[:, None, None] + side)
    )  # [N, S, S]
    return jnp.where(region[..., None], 0.0, images), region.astype(jnp.float32)


def patch_grid(images: jax.Array, patch_size: int, stride: int) -> jax.Array:
    """The overlapping patches of CPC: a grid of ``patch_size`` squares every ``stride``
    pixels (CPC v2: 64 px patches every 32 px of a 224 px crop, a 7 x 7 grid).

    Args:
      images: ``[N, S, S, C]``.
      patch_size: side of a patch.
      stride: step between patches.

    Returns:
      ``[N, G, G, patch_size, patch_size, C]``, ``G = (S - patch_size) // stride + 1``.
    """
    size = images.shape[1]
    if patch_size > size:
        raise ValueError(f"Patches of {patch_size} px do not fit {size} px images.")
    starts = range(0, size - patch_size + 1, stride)
    rows = [
        jnp.stack([images[:, r : r + patch_size, c : c + patch_size] for c in starts], axis=1)
        for r in starts
    ]
    return jnp.stack(rows, axis=1)
