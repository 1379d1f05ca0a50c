"""Vision Transformer backbones (Flax Linen): pooled features ``[B, D]`` or tokens.

Pre-norm encoder blocks (Dosovitskiy et al. 2021), position embeddings on a grid of
``image_size / patch_size`` patches (learned, or MAE's fixed 2-D sin-cos), a CLS token and
optional register tokens (Darcet et al. 2024). The position embeddings are interpolated
(bicubic, as DINO does) when an input's grid differs from the one they were made for, so one
model embeds 224 px global views, 96 px local multi-crop views and 32 px evaluation images.

Token level (MAE, I-JEPA): ``keep`` (``[B, K]`` patch indices, row-major over the grid) runs
the encoder on those patch tokens only, gathered after the position embeddings were added, so
the kept tokens know where they are and every shape stays static (the step compiles once);
``output="tokens"`` returns the final CLS and patch tokens instead of the pooled features.
iBOT and DINOv2: ``mask`` (``[B, N]`` bool) puts a learned mask token in place of the masked
patches' embeddings (before the position embeddings, as their code), with ``mask_token=True``.

Sizes (embedding dim, depth, heads; MLP ratio 4): Tiny 192/12/3, Small 384/12/6,
Base 768/12/12 (Touvron et al. 2021; Dosovitskiy et al. 2021).

References:
  Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021.
  https://arxiv.org/abs/2010.11929
  Caron et al., Emerging Properties in Self-Supervised Vision Transformers (DINO), ICCV 2021.
  https://arxiv.org/abs/2104.14294
  He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022 (sin-cos embeddings).
  https://arxiv.org/abs/2111.06377
  Darcet et al., Vision Transformers Need Registers, ICLR 2024.
  https://arxiv.org/abs/2309.16588
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


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """Non-overlapping ``p x p`` patches of ``[B, H, W, C]`` images: ``[B, N, p*p*C]``.

    Patches row-major over the grid, each flattened (row, column, channel): the order of the
    patch embedding's kernel and of MAE's reconstruction targets.
    """
    b, h, w, c = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"Image {h}x{w} is not a multiple of the patch size {p}.")
    patches = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return patches.reshape(b, (h // p) * (w // p), p * p * c)


def sincos_2d(grid: int, dim: int) -> jax.Array:
    """MAE's fixed 2-D sin-cos position embeddings of a ``grid x grid`` grid: ``[grid**2, dim]``.

    Half the channels encode the row, half the column; each half is ``[sin, cos]`` of the
    position times ``1 / 10000**(i / (dim / 4))``, as MAE's ``get_2d_sincos_pos_embed``.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}.")
    omega = 1.0 / 10000 ** (jnp.arange(dim // 4, dtype=jnp.float32) / (dim / 4))  # [D/4]
    rows, cols = jnp.meshgrid(jnp.arange(grid), jnp.arange(grid), indexing="ij")

    def encode(pos):  # [N] -> [N, D/2]
        angles = pos.reshape(-1, 1).astype(jnp.float32) * omega[None]
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=1)

    # MAE encodes the column (its grid's first meshgrid output) first, then the row.
    return jnp.concatenate([encode(cols), encode(rows)], axis=1)


def gather_tokens(tokens: jax.Array, indices: jax.Array) -> jax.Array:
    """``tokens[b, indices[b]]``: ``[B, N, D]`` gathered by ``[B, K]`` indices to ``[B, K, D]``."""
    return jnp.take_along_axis(tokens, indices[..., None], axis=1)


def mean_tokens(tokens: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """Mean of ``[B, K, D]`` tokens over ``K``, over the ``valid`` ``[B, K]`` ones if given."""
    if valid is None:
        return jnp.mean(tokens, axis=1)
    weights = valid.astype(tokens.dtype)[..., None]  # [B, K, 1]
    return jnp.sum(tokens * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


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
    def __call__(self, x: jax.Array, valid: jax.Array | None = None) -> jax.Array:
        """``x``: tokens ``[B, L, D]``; ``valid``: optional ``[B, L]`` bool, the tokens that may
        be attended to (padding slots are not; their own outputs are computed but meaningless)."""
        d = x.shape[-1]
        norm = functools.partial(nn.LayerNorm, epsilon=1e-6, dtype=self.dtype)
        mask = None if valid is None else valid[:, None, None, :]  # [B, 1, 1, L]: keys
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            kernel_init=_dense_init,
            force_fp32_for_softmax=True,
            name="attention",
        )(norm(name="norm1")(x), mask=mask)
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
      position: ``"learned"`` (truncated-normal initialized parameters) or ``"sincos"`` (MAE's
        and I-JEPA's fixed 2-D sin-cos table, not a parameter).
      num_registers: extra learned tokens after the CLS token that attend and are attended
        to but are never read out (Darcet et al. 2024); 0 for none.
      mask_token: learn a mask token that ``mask`` puts in place of patch embeddings (iBOT's
        masked image modeling).
      dtype: computation dtype (parameters stay float32).
    """

    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    patch_size: int = 16
    image_size: int = 224
    pooling: str = "cls"
    mlp_ratio: float = 4.0
    position: str = "learned"
    num_registers: int = 0
    mask_token: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        train: bool = True,
        keep: jax.Array | None = None,
        output: str = "pooled",
        keep_valid: jax.Array | None = None,
        mask: jax.Array | None = None,
    ):
        """Embeds images ``[B, H, W, 3]``.

        Args:
          x: images.
          train: unused (no BatchNorm or dropout); part of the backbone protocol.
          keep: optional ``[B, K]`` int32 indices of the patch tokens the encoder sees (row-major
            over the ``H/p x W/p`` grid); None: all of them.
          output: ``"pooled"``: ``[B, D]`` features by ``pooling``; ``"tokens"``: ``(cls
            [B, D], patches [B, K, D])``, the final (layer-normed) CLS and patch tokens.
          keep_valid: optional ``[B, K]`` bool with ``keep``: which kept slots hold a token (a
            fixed-shape index array padded where an image has fewer, as I-JEPA's contexts);
            padding is never attended to and mean pooling skips it.
          mask: optional ``[B, N]`` bool over all patches (not with ``keep``): True puts the
            learned mask token in place of that patch's embedding (needs ``mask_token``).
        """
        del train  # no BatchNorm or dropout: train and eval modes are the same function
        chex.assert_rank(x, 4)  # [B, H, W, 3]
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"Unknown pooling {self.pooling!r}; valid: 'cls', 'mean'.")
        if self.position not in ("learned", "sincos"):
            raise ValueError(f"Unknown position {self.position!r}; valid: 'learned', 'sincos'.")
        if output not in ("pooled", "tokens"):
            raise ValueError(f"Unknown output {output!r}; valid: 'pooled', 'tokens'.")
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
        tokens = nn.Dense(self.embed_dim, dtype=self.dtype, name="patch_embedding")(
            patchify(x.astype(self.dtype), p)
        )  # [B, N, D]
        if self.mask_token:
            token = self.param("mask_token", nn.initializers.zeros, (1, 1, self.embed_dim))
        if mask is not None:
            if not self.mask_token or keep is not None:
                raise ValueError(
                    "mask needs a ViT built with mask_token=True (model.mask_token) and no keep."
                )
            chex.assert_shape(mask, tokens.shape[:2])
            tokens = jnp.where(mask[..., None], token.astype(self.dtype), tokens)
        grid = self.image_size // p
        if self.position == "learned":
            position = self.param(
                "position_embedding", _embedding_init, (grid * grid, self.embed_dim), jnp.float32
            )
        else:
            position = sincos_2d(grid, self.embed_dim)
        tokens = tokens + interpolate_grid(position, (gh, gw)).astype(self.dtype)[None]
        if keep is not None:
            chex.assert_rank(keep, 2)
            tokens = gather_tokens(tokens, keep)  # [B, K, D]
        n = tokens.shape[1]
        cls = self.param("cls_token", _embedding_init, (1, 1, self.embed_dim), jnp.float32)
        prefix = [jnp.broadcast_to(cls.astype(self.dtype), (b, 1, self.embed_dim))]
        if self.num_registers:
            registers = self.param(
                "registers", _embedding_init, (1, self.num_registers, self.embed_dim), jnp.float32
            )
            prefix.append(jnp.broadcast_to(registers.astype(self.dtype), (b, *registers.shape[1:])))
        tokens = jnp.concatenate([*prefix, tokens], axis=1)  # [B, 1 + R + K, D]
        valid = None
        if keep_valid is not None:
            chex.assert_shape(keep_valid, (b, n))
            prefix_valid = jnp.ones((b, tokens.shape[1] - n), bool)
            valid = jnp.concatenate([prefix_valid, keep_valid.astype(bool)], axis=1)
        for i in range(self.depth):
            tokens = EncoderBlock(
                self.num_heads, self.mlp_ratio, dtype=self.dtype, name=f"block{i + 1}"
            )(tokens, valid)
        tokens = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(tokens)
        cls_out, patches = tokens[:, 0], tokens[:, tokens.shape[1] - n :]  # [B, D], [B, K, D]
        if output == "tokens":
            return cls_out.astype(jnp.float32), patches.astype(jnp.float32)
        pooled = cls_out if self.pooling == "cls" else mean_tokens(patches, keep_valid)
        return pooled.astype(jnp.float32)  # [B, D]


def make_vit(name: str, depth: int = 0, **kwargs) -> ViT:
    """ViT by size name from ``SIZES``; ``depth`` > 0 replaces the size's number of blocks
    (e.g. a 6-block ViT-Tiny for a CPU budget); ``kwargs`` set the other attributes."""
    if name not in SIZES:
        raise ValueError(f"Unknown ViT {name!r}; valid: {sorted(SIZES)}.")
    if depth < 0:
        raise ValueError(f"ViT depth must be >= 0 (0: the size's {SIZES[name][1]}), not {depth}.")
    embed_dim, size_depth, num_heads = SIZES[name]
    return ViT(embed_dim=embed_dim, depth=depth or size_depth, num_heads=num_heads, **kwargs)
