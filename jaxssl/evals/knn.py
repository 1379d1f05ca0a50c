"""Weighted k-nearest-neighbour classification on L2-normalized backbone features.

Protocol (Wu et al. 2018, as used by DINO, solo-learn and most SSL papers): the train split is
the memory bank, the test split the queries; cosine similarity; each of the k nearest
neighbours votes for its label with weight ``exp(sim / T)``; top-1 accuracy of the highest
vote. Defaults k=200, T=0.1. Features come from the backbone in inference mode (running
BatchNorm statistics), without augmentation. The offline suite (``jaxssl eval``) also reports
k in {10, 20, 100, 200} and a plain majority vote, from a single neighbour search.
"""

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import sharding
from jaxssl.data import color
from jaxssl.evals import spectral


def _normalize(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


@partial(jax.jit, static_argnames=("k", "chunk_size"))
def nearest_neighbours(
    memory: jax.Array,
    memory_mask: jax.Array,
    queries: jax.Array,
    *,
    k: int,
    chunk_size: int = 256,
) -> tuple[jax.Array, jax.Array]:
    """The ``k`` most cosine-similar memory rows of every query, most similar first.

    Args:
      memory: memory-bank features ``[N, D]`` (normalized here).
      memory_mask: ``[N]`` bool, False for padding rows that must never be neighbours.
      queries: query features ``[Q, D]``; ``Q`` must be a multiple of ``chunk_size``.
      k: neighbours per query.
      chunk_size: queries per similarity block; bounds memory to ``chunk_size x N``.

    Returns:
      ``(similarities [Q, k], indices [Q, k])``: cosine similarities and row indices into
      ``memory``.
    """
    memory = _normalize(memory.astype(jnp.float32))  # [N, D]

    def search_chunk(q):  # [C, D] -> ([C, k], [C, k])
        sim = _normalize(q.astype(jnp.float32)) @ memory.T  # [C, N]
        sim = jnp.where(memory_mask[None, :], sim, -jnp.inf)
        return jax.lax.top_k(sim, k)

    chunks = queries.reshape(-1, chunk_size, queries.shape[-1])  # [Q/C, C, D]
    similarities, indices = jax.lax.map(search_chunk, chunks)  # [Q/C, C, k] each
    return similarities.reshape(-1, k), indices.reshape(-1, k)


@partial(jax.jit, static_argnames=("ks", "num_classes", "weighted"))
def vote(
    similarities: jax.Array,
    neighbour_labels: jax.Array,
    *,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    weighted: bool = True,
) -> jax.Array:
    """Class votes of the nearest neighbours, for several k at once.

    Weighted (Wu et al. 2018): neighbour ``i`` votes with ``exp(sim_i / T)``. Majority: every
    neighbour votes 1; ties go to the class whose votes have the larger summed similarity.

    Args:
      similarities: ``[Q, K]`` cosine similarities, most similar first.
      neighbour_labels: ``[Q, K]`` labels of those neighbours.
      ks: neighbour counts (each ``<= K``); each uses the first ``k`` neighbours.
      temperature: vote temperature ``T`` of the weighted vote.
      num_classes: number of classes.
      weighted: temperature-weighted (True) or plain majority (False) vote.

    Returns:
      Predicted labels ``[len(ks), Q]``.
    """
    one_hot = jax.nn.one_hot(neighbour_labels, num_classes)  # [Q, K, classes]
    if weighted:
        votes = one_hot * jnp.exp(similarities / temperature)[..., None]
    else:
        # Counts decide; the similarity term (|sim| <= 1, so it sums to under 1/2 over K
        # neighbours) only breaks ties, deterministically and in favour of closer neighbours.
        votes = one_hot * (1.0 + similarities[..., None] / (2.0 * (similarities.shape[1] + 1)))
    cumulative = jnp.cumsum(votes, axis=1)  # prefix sums give every k in one pass
    return jnp.stack([jnp.argmax(cumulative[:, k - 1], axis=-1) for k in ks])


def knn_predict(
    memory: jax.Array,
    memory_labels: jax.Array,
    memory_mask: jax.Array,
    queries: jax.Array,
    *,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    chunk_size: int = 256,
    weighted: bool = True,
) -> jax.Array:
    """Temperature-weighted (or majority) kNN predictions for several k at once.

    Args:
      memory: memory-bank features ``[N, D]`` (normalized here).
      memory_labels: ``[N]`` int labels.
      memory_mask: ``[N]`` bool, False for padding rows that must never be neighbours.
      queries: query features ``[Q, D]``; ``Q`` must be a multiple of ``chunk_size``.
      ks: neighbour counts; the largest is searched once and the others are its prefixes.
      temperature: vote temperature ``T`` (weights ``exp(sim / T)``).
      num_classes: number of classes.
      chunk_size: queries per similarity block; bounds memory to ``chunk_size x N``.
      weighted: temperature-weighted vote (default) or plain majority vote.

    Returns:
      Predicted labels ``[len(ks), Q]``.

    References:
      Wu et al., Unsupervised Feature Learning via Non-Parametric Instance Discrimination,
      CVPR 2018. https://arxiv.org/abs/1805.01978
    """
    similarities, indices = nearest_neighbours(
        memory, memory_mask, queries, k=max(ks), chunk_size=chunk_size
    )
    return vote(
        similarities,
        memory_labels[indices],
        ks=tuple(ks),
        temperature=temperature,
        num_classes=num_classes,
        weighted=weighted,
    )


def protocol(
    ks: Sequence[int],
    temperature: float,
    memory_split: str,
    query_split: str,
    weighted: bool = True,
) -> str:
    """The kNN protocol in words, stored and printed beside its numbers."""
    vote_name = "weighted" if weighted else "majority"
    temperature_text = f" T={temperature:g}" if weighted else ""
    ks_text = ",".join(str(k) for k in ks)
    return (
        f"kNN cosine{temperature_text} k={ks_text} {vote_name}, memory={memory_split}, "
        f"queries={query_split}"
    )


def extract_features(
    embed_fn: Callable, variables, batches: Iterator[dict[str, np.ndarray]], mesh: jax.sharding.Mesh
) -> tuple[Any, jax.Array, jax.Array]:
    """Runs ``embed_fn`` over every batch and concatenates features, labels and masks on device.

    Args:
      embed_fn: jitted ``(variables, images) -> features``; features may be a pytree of
        ``[B, ...]`` arrays (e.g. backbone features and projections).
      variables: model variables.
      batches: per-process batches ``{"image", "label", "mask"}``, and ``"patches"`` for a
        bag-of-patches evaluation (`jaxssl.data.tfds.make_eval_iterator`), which ``embed_fn``
        then gets instead of ``"image"``.
      mesh: the mesh the batches are sharded over.

    Returns:
      ``(features [N, D] (or that pytree), labels [N], mask [N])`` as global arrays.
    """
    features, labels, masks = [], [], []
    for batch in batches:
        images = batch.get("patches", batch["image"])
        batch = sharding.to_global(
            {"images": images, "label": batch["label"], "mask": batch["mask"]}, mesh
        )
        features.append(embed_fn(variables, batch["images"]))
        labels.append(batch["label"])
        masks.append(batch["mask"])
    features = jax.tree.map(lambda *parts: jnp.concatenate(parts), *features)
    return features, jnp.concatenate(labels), jnp.concatenate(masks)


def _accuracy(predictions: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Top-1 accuracy per row of ``predictions`` ``[K, >=Q]`` over the masked queries ``[Q]``."""
    correct = (predictions[:, : labels.shape[0]] == labels[None]) & mask[None]  # [K, Q]
    return correct.sum(axis=1) / mask.sum()


def evaluate_features(
    memory: tuple[jax.Array, jax.Array, jax.Array],
    queries: tuple[jax.Array, jax.Array, jax.Array],
    mesh: jax.sharding.Mesh,
    *,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    majority: bool = False,
    chunk_size: int = 256,
) -> dict[str, float]:
    """kNN top-1 of already extracted features, for every k (and the majority vote).

    The neighbour search runs once for the largest k; both votes and all k reuse it.

    Args:
      memory: ``(features [N, D], labels [N], mask [N])`` of the memory split.
      queries: ``(features [Q, D], labels [Q], mask [Q])`` of the query split.
      mesh: the mesh the features live on.
      ks: neighbour counts to report.
      temperature: vote temperature of the weighted vote.
      num_classes: number of classes.
      majority: also report the unweighted majority vote.
      chunk_size: queries per similarity block.

    Returns:
      ``{"knn/top1_k<k>": ...}`` (weighted) and, with ``majority``,
      ``{"knn/majority_top1_k<k>": ...}``.
    """
    memory_features, memory_labels, memory_mask = memory
    query_features, query_labels, query_mask = queries
    ks = tuple(ks)
    pad = (-query_features.shape[0]) % chunk_size
    query_features = jnp.pad(query_features, ((0, pad), (0, 0)))
    similarities, indices = nearest_neighbours(
        memory_features, memory_mask, query_features, k=max(ks), chunk_size=chunk_size
    )
    neighbour_labels = memory_labels[indices]
    # Replicated output: every process can read it, also when the batch spans processes.
    accuracy_fn = jax.jit(_accuracy, out_shardings=sharding.replicated(mesh))
    votes = {"": True, "majority_": False} if majority else {"": True}
    metrics = {}
    for prefix, weighted in votes.items():
        predictions = vote(
            similarities,
            neighbour_labels,
            ks=ks,
            temperature=temperature,
            num_classes=num_classes,
            weighted=weighted,
        )
        accuracy = jax.device_get(accuracy_fn(predictions, query_labels, query_mask))
        for k, a in zip(ks, accuracy, strict=True):
            metrics[f"knn/{prefix}top1_k{k}"] = float(a)
    return metrics


class KNNEvaluator:
    """kNN top-1 of a TrainState's backbone: train split as memory, test split as queries.

    Args:
      make_memory_batches: returns an iterator over one pass of the memory split.
      make_query_batches: returns an iterator over one pass of the query split.
      mesh: the mesh.
      ks: neighbour counts to report; the first is logged as ``knn/top1``.
      temperature: vote temperature.
      num_classes: number of classes.
      embed_fn: jitted ``(variables, images) -> features``, e.g. `make_embed_fn`.
      majority: also report the unweighted majority vote (``knn/majority_top1_k<k>``).
    """

    def __init__(
        self,
        make_memory_batches: Callable,
        make_query_batches: Callable,
        mesh: jax.sharding.Mesh,
        ks: Sequence[int],
        temperature: float,
        num_classes: int,
        embed_fn: Callable,
        majority: bool = False,
    ):
        self.make_memory_batches = make_memory_batches
        self.make_query_batches = make_query_batches
        self._mesh = mesh
        self._ks = tuple(ks)
        self._temperature = temperature
        self._num_classes = num_classes
        self._majority = majority
        self._embed_fn = embed_fn
        self.rankme_rows = 25_600  # RankMe's recommended N (25,600 embeddings)

    def run(self, state) -> dict[str, float]:
        """Returns ``{"knn/top1": ..., "knn/top1_k<k>": ...}`` for the state's backbone."""
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        memory = extract_features(self._embed_fn, variables, self.make_memory_batches(), self._mesh)
        queries = extract_features(self._embed_fn, variables, self.make_query_batches(), self._mesh)
        metrics = evaluate_features(
            memory,
            queries,
            self._mesh,
            ks=self._ks,
            temperature=self._temperature,
            num_classes=self._num_classes,
            majority=self._majority,
        )
        metrics["knn/top1"] = metrics[f"knn/top1_k{self._ks[0]}"]
        # RankMe of the memory features, logged with every kNN evaluation (label-free).
        features, _, mask = memory
        real = int(jax.device_get(mask.sum()))
        rows = spectral.first_real_rows(mask, min(self.rankme_rows, real))
        metrics["rankme/backbone"] = float(jax.device_get(spectral.rankme(features[rows])))
        return metrics


def bag_of_patches(embed: Callable) -> Callable:
    """EMP-SSL's evaluation embedding: the mean of the embeddings of an image's patches.

    The patches are random resized crops drawn like the training patches, cut on the host
    (``config.evals.patches``, `jaxssl.data.tfds.make_eval_iterator`); every patch is
    embedded, and the image's embedding is their mean (Tong et al. 2023, "bag of features").
    Patches are embedded one at a time (``lax.scan``): the activations are those of one batch
    of patches, not ``P`` of them.

    Args:
      embed: ``(variables, images [B, s, s, 3]) -> pytree of [B, ...]`` features.

    Returns:
      ``(variables, patches [B, P, s, s, 3]) ->`` the same pytree, averaged over the patches.
    """

    def embed_patches(variables, patches):
        def add_patch(total, patch):  # [B, s, s, 3]
            features = embed(variables, patch)
            return jax.tree.map(jnp.add, total, features), None

        by_patch = jnp.swapaxes(patches, 0, 1)  # [P, B, s, s, 3]
        shapes = jax.eval_shape(embed, variables, by_patch[0])
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
        total, _ = jax.lax.scan(add_patch, zeros, by_patch)
        return jax.tree.map(lambda x: x / patches.shape[1], total)

    return embed_patches


def make_embed_fn(
    model: nn.Module,
    mesh: jax.sharding.Mesh,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool = False,
    patches=None,
) -> Callable:
    """Jitted ``(variables, uint8 images) -> backbone features [B, D]`` in inference mode.

    Args:
      model: the ``SSLModel``.
      mesh: the mesh; features stay sharded over ``"data"`` like the images.
      mean: per-channel mean of the normalization, ``config.data.mean``.
      std: per-channel standard deviation, ``config.data.std``.
      flip: embed the horizontally flipped images instead.
      patches: ``config.evals.patches``; with ``patches.num > 0`` the function takes the
        host's patches ``[B, P, s, s, 3]`` and an image's features are the mean over its
        patches (`bag_of_patches`, EMP-SSL's evaluation).

    Returns:
      The embedding function.
    """

    def embed(variables, images):  # [B, H, W, 3] uint8 -> [B, D]
        if flip:
            images = images[:, :, ::-1]
        return model.apply(variables, color.to_model_input(images, mean, std), method=model.embed)

    if patches is not None and patches.num > 0:
        embed = bag_of_patches(embed)
    return jax.jit(embed, out_shardings=sharding.batch_sharding(mesh))
