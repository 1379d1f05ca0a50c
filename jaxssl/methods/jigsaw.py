"""Jigsaw: the network recovers which permutation shuffled an image's 3x3 tiles.

Each view of ``batch["global"]`` is cut into a ``method.grid`` x ``method.grid`` grid of
``method.tile_size`` px tiles, each at a random offset inside its cell
(`jaxssl.data.pretext.tile_grid`), each standardized on its own
(``method.standardize_tiles``), and shuffled by a permutation drawn uniformly from a fixed set
of ``method.num_permutations`` orders of maximal mean Hamming distance
(`jaxssl.data.pretext.hamming_permutations`). The shared backbone embeds every tile alone (the
paper's "context-free network": siamese towers with tied weights); the tiles' features,
concatenated in their shuffled order, go through an MLP head that classifies the permutation
with softmax cross-entropy. As the reference: the head's input is the concatenation of the
tower outputs, the loss the plain cross-entropy over the set's indices.

The features kNN and the probes see are the backbone's on whole images (as the paper's
transfer experiments, which use the trained tower on full images); ``LossAux.features`` are
the mean over an image's tiles, for the online probe.

References:
  Noroozi & Favaro, Unsupervised Learning of Visual Representations by Solving Jigsaw
  Puzzles, ECCV 2016. https://arxiv.org/abs/1603.09246
  (code: MehdiNoroozi/JigsawPuzzleSolver; bbrattoli/JigsawPuzzlePytorch)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.data import pretext
from jaxssl.losses import classification
from jaxssl.methods import base
from jaxssl.models import ssl_model


class JigsawModel(nn.Module):
    """A backbone that embeds tiles one by one and a head over their concatenated features.

    Attributes:
      backbone: images ``[N, t, t, 3]`` -> features ``[N, D]``.
      head: ``[N, T * D]`` -> permutation logits ``[N, P]``.
      grid: tiles per side, ``T = grid ** 2``.
      tile_size: ``t``.
    """

    backbone: nn.Module
    head: nn.Module
    grid: int
    tile_size: int

    def __call__(self, inputs: jax.Array, train: bool = True) -> tuple[jax.Array, jax.Array]:
        """Tiles ``[N, T, t, t, 3]`` in shuffled order -> ``(features [N, T, D], logits [N,
        P])``.

        Whole images ``[N, S, S, 3]``: in inference mode (the evaluators' call) their backbone
        features, as ``(features, features)`` (there is no projection of a whole image); in
        train mode (initialization) they are cut into the grid's tiles at each cell's top-left
        corner, in order."""
        if inputs.ndim == 4 and not train:
            features = self.backbone(inputs, train=False)
            return features, features
        if inputs.ndim == 4:
            offsets = jnp.zeros((inputs.shape[0], self.grid**2, 2), jnp.int32)
            inputs = pretext.tile_grid(None, inputs, self.grid, self.tile_size, offsets)
        n, t = inputs.shape[:2]
        features = self.backbone(inputs.reshape((n * t,) + inputs.shape[2:]), train=train)
        features = features.reshape(n, t, -1)  # [N, T, D]
        return features, self.head(features.reshape(n, -1), train=train)

    def embed(self, images: jax.Array) -> jax.Array:
        """Backbone features of whole images in inference mode, ``[B, D]``."""
        return self.backbone(images, train=False)


def build_model(config: ml_collections.ConfigDict) -> JigsawModel:
    """The backbone of ``config.model`` and the permutation classifier of ``config.method``."""
    method = config.method
    pretext.hamming_permutations(method.num_permutations, method.grid**2, method.permutation_seed)
    head = ssl_model.make_head(
        config.model, method.head_hidden_dim, method.num_permutations, method.head_layers
    )
    return JigsawModel(
        backbone=ssl_model.make_backbone(config.model),
        head=head,
        grid=method.grid,
        tile_size=method.tile_size,
    )


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """Permutation-classification cross-entropy of a batch of views.

    Args:
      model: the ``JigsawModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, V, S, S, 3]``; every view is a puzzle of its own.
      method_state: Jigsaw has none (``{}``); returned as is.
      config: ``config.method``: ``grid``, ``tile_size``, ``num_permutations``,
        ``permutation_seed``, ``standardize_tiles``.
      rng: the step's key: tile offsets and permutations are drawn from it.
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; features ``[B, V, D]`` are the mean of each puzzle's tile
      features; ``train/pretext_top1`` is the permutation accuracy.
    """
    del step
    views = batch["global"]
    b, v = views.shape[:2]
    images = views.reshape((b * v,) + views.shape[2:])  # [B*V, S, S, 3]
    offset_key, permutation_key = jax.random.split(rng)
    tiles = pretext.tile_grid(offset_key, images, config.grid, config.tile_size)  # [N, T, t, t, 3]
    if config.standardize_tiles:
        tiles = pretext.standardize_tiles(tiles)
    permutations = jnp.asarray(
        pretext.hamming_permutations(
            config.num_permutations, config.grid**2, config.permutation_seed
        )
    )  # [P, T]
    labels = jax.random.randint(permutation_key, (b * v,), 0, config.num_permutations)  # [N]
    shuffled = pretext.shuffle_tiles(tiles, permutations, labels)
    (features, logits), updates = model.apply(
        variables, shuffled, train=True, mutable=["batch_stats"]
    )  # [N, T, D], [N, P]
    loss = classification.softmax_cross_entropy(logits, labels)
    metrics = {"train/pretext_top1": classification.top1(logits, labels)}
    puzzle_features = features.mean(axis=1).reshape(b, v, -1)  # [B, V, D]
    return loss, base.LossAux(
        puzzle_features, updates.get("batch_stats", {}), method_state, metrics
    )


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn)
