"""Vision Transformer backbones (Flax Linen) returning pooled features ``[B, D]``.

Pre-norm encoder blocks (Dosovitskiy et al. 2021), learned position embeddings on a grid of
``image_size / patch_size`` patches, a CLS token. The position embeddings are interpolated
(bicubic, as DINO does) when an input's grid differs from the one they were made for, so one
model embeds 224 px global views, 96 px local multi-crop views and 32 px evaluation images.

Sizes (embedding dim, depth, heads; MLP ratio 4): Tiny 192/12/3, Small 384/12/6,
Base 768/12/12 (Touvron et al. 2021; Dosovitskiy et al. 2021).

References:
  Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021.
  https://arxiv.org/abs/2010.11929
  Caron et al., Emerging Properties in Self-Supervised Vision Transformers (DINO), ICCV 2021.
  https://arxiv.org/abs/2104.14294
"""

import functools
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

# name -> (embedding dim, depth, heads)
SIZES = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
}

_dense_init = nn.initializers.xavier_uniform()
_embedding_init = nn.initializers.truncated_normal(0.02)


def interpolate_grid(embeddings: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """Position embeddings ``[N, D]`` of a square grid resized (bicubic) to ``grid``: ``[h*w, D]``.

    The identity when ``grid`` is the stored one.
    """
    n, d = embeddings.shape
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(f"{n} position embeddings do not form a square grid.")
    if (side, side) == tuple(grid):
        return embeddings
    resized = jax.image.resize(
        embeddings.reshape(side, side, d).astype(jnp.float32), (*grid, d), "bicubic"
    )
    return resized.reshape(grid[0] * grid[1], d).astype(embeddings.dtype)


class EncoderBlock(nn.Module):
    """``x + MHSA(LN(x))`` then ``x + MLP(LN(x))``; LayerNorm statistics in float32."""

    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        norm = functools.partial(nn.LayerNorm, epsilon=1e-6, dtype=self.dtype)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            kernel_init=_dense_init,
            force_fp32_for_softmax=True,
            name="attention",
        )(norm(name="norm1")(x))
        x = x + y
        y = norm(name="norm2")(x)
        y = nn.Dense(
            int(d * self.mlp_ratio), dtype=self.dtype, kernel_init=_dense_init, name="mlp1"
        )(y)
        y = nn.gelu(y, approximate=False)
        y = nn.Dense(d, dtype=self.dtype, kernel_init=_dense_init, name="mlp2")(y)
        return x + y


class ViT(nn.Module):
    """Vision Transformer.

    Attributes:
      embed_dim: token width ``D``.
      depth: number of encoder blocks.
      num_heads: attention heads.
      patch_size: side of the square patches.
      image_size: the side the position embeddings are made for (other sizes interpolate).
      pooling: ``"cls"`` (the CLS token's final state) or ``"mean"`` (mean of patch tokens).
      mlp_ratio: MLP hidden width / ``D``.
      dtype: computation dtype (parameters stay float32).
    """

    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    patch_size: int = 16
    image_size: int = 224
    pooling: str = "cls"
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        del train  # no BatchNorm or dropout: train and eval modes are the same function
        chex.assert_rank(x, 4)  # [B, H, W, 3]
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"Unknown pooling {self.pooling!r}; valid: 'cls', 'mean'.")
        b, h, w, c = x.shape
        p = self.patch_size
        if h % p or w % p or self.image_size % p:
            raise ValueError(
                f"Image {h}x{w} (and model.image_size {self.image_size}) must be multiples of "
                f"the patch size {p}."
            )
        gh, gw = h // p, w // p
        # Non-overlapping patches as one matmul (a stride-p convolution, without XLA:CPU's slow
        # convolution path); the kernel [p*p*3, D] flattens (row, column, channel).
        patches = x.astype(self.dtype).reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5)
        tokens = nn.Dense(self.embed_dim, dtype=self.dtype, name="patch_embedding")(
            patches.reshape(b, gh * gw, p * p * c)
        )  # [B, N, D]
        grid = self.image_size // p
        position = self.param(
            "position_embedding", _embedding_init, (grid * grid, self.embed_dim), jnp.float32
        )
        tokens = tokens + interpolate_grid(position, (gh, gw)).astype(self.dtype)[None]
        cls = self.param("cls_token", _embedding_init, (1, 1, self.embed_dim), jnp.float32)
        tokens = jnp.concatenate(
            [jnp.broadcast_to(cls.astype(self.dtype), (b, 1, self.embed_dim)), tokens], axis=1
        )  # [B, 1 + N, D]
        for i in range(self.depth):
            tokens = EncoderBlock(
                self.num_heads, self.mlp_ratio, dtype=self.dtype, name=f"block{i + 1}"
            )(tokens)
        tokens = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(tokens)
        pooled = tokens[:, 0] if self.pooling == "cls" else jnp.mean(tokens[:, 1:], axis=1)
        return pooled.astype(jnp.float32)  # [B, D]


def make_vit(name: str, **kwargs) -> ViT:
    """ViT by size name from ``SIZES``; ``kwargs`` set the other attributes."""
    if name not in SIZES:
        raise ValueError(f"Unknown ViT {name!r}; valid: {sorted(SIZES)}.")
    embed_dim, depth, num_heads = SIZES[name]
    return ViT(embed_dim=embed_dim, depth=depth, num_heads=num_heads, **kwargs)
