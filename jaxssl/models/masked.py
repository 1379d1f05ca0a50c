"""Masked image modeling networks: a token predictor, MAE's autoencoder and I-JEPA's network.

``TokenPredictor`` is the narrow transformer that MAE calls its decoder and I-JEPA its
predictor: the encoder's tokens at known positions go in, one shared learned mask token per
position to predict is appended (with that position's embedding), and the outputs at those
positions come out. Positions are fixed 2-D sin-cos embeddings (both references use them).

References:
  He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022.
  https://arxiv.org/abs/2111.06377 (code: facebookresearch/mae)
  Assran et al., Self-Supervised Learning from Images with a Joint-Embedding Predictive
  Architecture (I-JEPA), CVPR 2023. https://arxiv.org/abs/2301.08243
"""

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.models import masking, vit


class TokenPredictor(nn.Module):
    """Predicts tokens at query positions from context tokens at their positions.

    Attributes:
      embed_dim: the predictor's width (narrower than the encoder's in both references).
      depth: transformer blocks.
      num_heads: attention heads.
      output_dim: width of each prediction (MAE: ``p*p*3`` pixels; I-JEPA: the encoder width).
      grid_size: side of the position grid the sin-cos table is made for; other grids
        interpolate, as the encoder's embeddings do.
      mlp_ratio: MLP hidden width / ``embed_dim``.
      dtype: computation dtype.
    """

    embed_dim: int
    depth: int
    num_heads: int
    output_dim: int
    grid_size: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        context: jax.Array,
        context_positions: jax.Array,
        query_positions: jax.Array,
        grid: tuple[int, int],
        prefix: jax.Array | None = None,
        context_valid: jax.Array | None = None,
        query_valid: jax.Array | None = None,
    ) -> jax.Array:
        """Predictions ``[B, Q, output_dim]`` at ``query_positions``.

        Args:
          context: encoder tokens ``[B, K, D_enc]``.
          context_positions: their grid indices ``[B, K]``.
          query_positions: grid indices to predict ``[B, Q]``.
          grid: ``(rows, columns)`` of the image's patch grid.
          prefix: optional position-free tokens ``[B, P, D_enc]`` (MAE feeds the CLS token to
            its decoder with a zero position embedding).
          context_valid: optional ``[B, K]`` bool: padding slots of the context (never
            attended to).
          query_valid: optional ``[B, Q]`` bool: padding slots of the queries (never attended
            to; their predictions are meaningless and must be masked out of a loss).
        """
        chex.assert_rank([context, context_positions, query_positions], [3, 2, 2])
        b, q = query_positions.shape
        embed = nn.Dense(self.embed_dim, dtype=self.dtype, name="embed")
        table = vit.interpolate_grid(vit.sincos_2d(self.grid_size, self.embed_dim), grid)
        table = jnp.broadcast_to(table.astype(self.dtype)[None], (b, *table.shape))  # [B, N, E]
        tokens = embed(context.astype(self.dtype)) + vit.gather_tokens(table, context_positions)
        mask_token = self.param(
            "mask_token", nn.initializers.normal(0.02), (1, 1, self.embed_dim), jnp.float32
        )
        queries = mask_token.astype(self.dtype) + vit.gather_tokens(table, query_positions)
        parts = [tokens, queries]
        if prefix is not None:
            parts.insert(0, embed(prefix.astype(self.dtype)))
        x = jnp.concatenate(parts, axis=1)  # [B, P + K + Q, E]
        valid = None
        if context_valid is not None or query_valid is not None:
            k = context.shape[1]
            valid = jnp.concatenate(
                [
                    jnp.ones((b, x.shape[1] - k - q), bool),  # the prefix
                    jnp.ones((b, k), bool) if context_valid is None else context_valid,
                    jnp.ones((b, q), bool) if query_valid is None else query_valid,
                ],
                axis=1,
            ).astype(bool)  # [B, P + K + Q]
        for i in range(self.depth):
            x = vit.EncoderBlock(
                self.num_heads, self.mlp_ratio, dtype=self.dtype, name=f"block{i + 1}"
            )(x, valid)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x[:, x.shape[1] - q :])
        out = nn.Dense(self.output_dim, dtype=self.dtype, name="output")(x)
        return out.astype(jnp.float32)  # [B, Q, output_dim]


class MaskedAutoencoder(nn.Module):
    """MAE: a ViT encoder on the kept patch tokens, a ``TokenPredictor`` decoder for the rest.

    In training, ``__call__`` returns ``(features, predictions)``: the encoder's pooled features
    of the kept tokens ``[B, D]`` (the online probe reads them) and the decoder's pixel
    predictions at the masked positions ``[B, M, p*p*3]``. In inference mode (``train=False``,
    the evaluators' call) it encodes whole images and returns ``(features, features)``: MAE
    has no projection head, so the evaluators' "projector" output is the encoder's too.
    ``embed`` is the encoder on whole images.

    Attributes:
      backbone: the ViT encoder (named as every method's backbone, so exports and evaluators
        find it).
      decoder: the ``TokenPredictor`` (``output_dim = p*p*3``).
      mask_ratio: fraction of patch tokens masked (0.75 in MAE).
    """

    backbone: vit.ViT
    decoder: TokenPredictor
    mask_ratio: float = 0.75

    def __call__(
        self, images: jax.Array, train: bool = True, order: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Encodes and reconstructs ``images`` ``[B, H, W, 3]``.

        Args:
          images: the (normalized) images.
          train: False: no masking, ``(features, features)`` of whole images (see above).
          order: ``[B, N]`` a permutation of the patch indices per image (see
            ``masking.random_masking``): the first ``num_kept(N, mask_ratio)`` are kept, the
            rest masked. None: the first tokens in grid order (for initialization).
        """
        if not train:
            features = self.embed(images)
            return features, features
        p = self.backbone.patch_size
        grid = (images.shape[1] // p, images.shape[2] // p)
        n = grid[0] * grid[1]
        kept = masking.num_kept(n, self.mask_ratio)
        if order is None:
            order = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (images.shape[0], n))
        chex.assert_shape(order, (images.shape[0], n))
        keep, masked = order[:, :kept], order[:, kept:]
        cls, tokens = self.backbone(images, keep=keep, output="tokens")  # [B, D], [B, K, D]
        predictions = self.decoder(tokens, keep, masked, grid, prefix=cls[:, None])
        pooled = cls if self.backbone.pooling == "cls" else jnp.mean(tokens, axis=1)
        return pooled, predictions

    def embed(self, images: jax.Array) -> jax.Array:
        """The encoder's pooled features of whole images (no masking), ``[B, D]``."""
        return self.backbone(images, train=False)


class JointEmbeddingPredictor(nn.Module):
    """I-JEPA's online network: a ViT context encoder and a ``TokenPredictor`` of target tokens.

    In training, ``__call__(images, masks=...)`` encodes the context tokens of each image and
    predicts, per target block, the target encoder's tokens at its positions; it returns
    ``(features, predictions)``: the mean of the valid context tokens ``[B, D]`` (the online
    probe reads it) and ``[B, J, T, D]``. The context is repeated once per target block, as the
    reference's predictor does. In inference mode it encodes whole images and returns
    ``(features, features)`` (no projection head). ``embed``: whole images; ``tokens``: every
    patch token of whole images (the EMA target encoder's call).

    Attributes:
      backbone: the ViT context encoder (its EMA copy is the target encoder).
      predictor: the ``TokenPredictor`` (``output_dim`` = the encoder width).
    """

    backbone: vit.ViT
    predictor: TokenPredictor

    def __call__(
        self, images: jax.Array, train: bool = True, masks: masking.BlockMasks | None = None
    ) -> tuple[jax.Array, jax.Array]:
        if not train:
            features = self.embed(images)
            return features, features
        b = images.shape[0]
        p = self.backbone.patch_size
        grid = (images.shape[1] // p, images.shape[2] // p)
        if masks is None:  # initialization: every token as context, one 1-token target
            n = grid[0] * grid[1]
            masks = masking.BlockMasks(
                context=jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n)),
                context_valid=jnp.ones((b, n), bool),
                targets=jnp.zeros((b, 1, 1), jnp.int32),
                targets_valid=jnp.ones((b, 1, 1), bool),
            )
        _, tokens = self.backbone(
            images, keep=masks.context, keep_valid=masks.context_valid, output="tokens"
        )  # [B, K, D]
        _, j, t = masks.targets.shape
        repeat = lambda x: jnp.repeat(x, j, axis=0)  # noqa: E731  [B, ...] -> [B*J, ...]
        predictions = self.predictor(
            repeat(tokens),
            repeat(masks.context),
            masks.targets.reshape(b * j, t),
            grid,
            context_valid=repeat(masks.context_valid),
            query_valid=masks.targets_valid.reshape(b * j, t),
        )  # [B*J, T, D]
        features = vit.mean_tokens(tokens, masks.context_valid)
        return features, predictions.reshape(b, j, t, -1)

    def embed(self, images: jax.Array) -> jax.Array:
        """The encoder's pooled features of whole images (no masking), ``[B, D]``."""
        return self.backbone(images, train=False)

    def tokens(self, images: jax.Array) -> jax.Array:
        """The encoder's final patch tokens of whole images, ``[B, N, D]``."""
        return self.backbone(images, output="tokens")[1]
