"""Weighted k-nearest-neighbour classification on L2-normalized backbone features.

Protocol (Wu et al. 2018, as used by DINO, solo-learn and most SSL papers): the train split is
the memory bank, the test split the queries; cosine similarity; each of the k nearest
neighbours votes for its label with weight ``exp(sim / T)``; top-1 accuracy of the highest
vote. Defaults k=200, T=0.1. Features come from the backbone in inference mode (running
BatchNorm statistics), without augmentation.
"""

from collections.abc import Callable, Iterator, Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import sharding


def _normalize(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


@partial(jax.jit, static_argnames=("ks", "num_classes", "chunk_size"))
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
) -> jax.Array:
    """Temperature-weighted kNN predictions for several k at once.

    Args:
      memory: memory-bank features ``[N, D]`` (normalized here).
      memory_labels: ``[N]`` int labels.
      memory_mask: ``[N]`` bool, False for padding rows that must never be neighbours.
      queries: query features ``[Q, D]``; ``Q`` must be a multiple of ``chunk_size``.
      ks: neighbour counts; the largest is searched once and the others are its prefixes.
      temperature: vote temperature ``T`` (weights ``exp(sim / T)``).
      num_classes: number of classes.
      chunk_size: queries per similarity block; bounds memory to ``chunk_size x N``.

    Returns:
      Predicted labels ``[len(ks), Q]``.

    References:
      Wu et al., Unsupervised Feature Learning via Non-Parametric Instance Discrimination,
      CVPR 2018. https://arxiv.org/abs/1805.01978
    """
    memory = _normalize(memory.astype(jnp.float32))  # [N, D]
    max_k = max(ks)

    def predict_chunk(q):  # [C, D] -> [len(ks), C]
        sim = _normalize(q.astype(jnp.float32)) @ memory.T  # [C, N]
        sim = jnp.where(memory_mask[None, :], sim, -jnp.inf)
        top_sim, top_idx = jax.lax.top_k(sim, max_k)  # [C, K]
        votes = (
            jax.nn.one_hot(memory_labels[top_idx], num_classes)
            * jnp.exp(top_sim / temperature)[..., None]
        )  # [C, K, classes]
        cumulative = jnp.cumsum(votes, axis=1)  # prefix sums give every k in one pass
        return jnp.stack([jnp.argmax(cumulative[:, k - 1], axis=-1) for k in ks])

    chunks = queries.reshape(-1, chunk_size, queries.shape[-1])  # [Q/C, C, D]
    predictions = jax.lax.map(predict_chunk, chunks)  # [Q/C, len(ks), C]
    return predictions.transpose(1, 0, 2).reshape(len(ks), -1)


def extract_features(
    embed_fn: Callable, variables, batches: Iterator[dict[str, np.ndarray]], mesh: jax.sharding.Mesh
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Runs ``embed_fn`` over every batch and concatenates features, labels and masks on device.

    Args:
      embed_fn: jitted ``(variables, images) -> features``.
      variables: model variables.
      batches: per-process batches ``{"image", "label", "mask"}``.
      mesh: the mesh the batches are sharded over.

    Returns:
      ``(features [N, D], labels [N], mask [N])`` as global arrays.
    """
    features, labels, masks = [], [], []
    for batch in batches:
        batch = sharding.to_global(batch, mesh)
        features.append(embed_fn(variables, batch["image"]))
        labels.append(batch["label"])
        masks.append(batch["mask"])
    return jnp.concatenate(features), jnp.concatenate(labels), jnp.concatenate(masks)


def _accuracy(predictions: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Top-1 accuracy per row of ``predictions`` ``[K, >=Q]`` over the masked queries ``[Q]``."""
    correct = (predictions[:, : labels.shape[0]] == labels[None]) & mask[None]  # [K, Q]
    return correct.sum(axis=1) / mask.sum()


class KNNEvaluator:
    """kNN top-1 of a TrainState's backbone: train split as memory, test split as queries.

    Args:
      model: the ``SSLModel`` (``embed`` gives backbone features).
      make_memory_batches: returns an iterator over one pass of the memory split.
      make_query_batches: returns an iterator over one pass of the query split.
      mesh: the mesh.
      ks: neighbour counts to report; the first is logged as ``knn/top1``.
      temperature: vote temperature.
      num_classes: number of classes.
      embed_fn: jitted ``(variables, images) -> features``; default the model's backbone.
    """

    def __init__(
        self,
        model: nn.Module,
        make_memory_batches: Callable,
        make_query_batches: Callable,
        mesh: jax.sharding.Mesh,
        ks: Sequence[int],
        temperature: float,
        num_classes: int,
        embed_fn: Callable | None = None,
    ):
        self.make_memory_batches = make_memory_batches
        self.make_query_batches = make_query_batches
        self._mesh = mesh
        self._ks = tuple(ks)
        self._temperature = temperature
        self._num_classes = num_classes
        self._embed_fn = embed_fn or jax.jit(
            lambda variables, images: model.apply(variables, images, method=model.embed),
            out_shardings=sharding.batch_sharding(mesh),
        )
        # Replicated output: every process can read it, also when the batch spans processes.
        self._accuracy_fn = jax.jit(_accuracy, out_shardings=sharding.replicated(mesh))

    def run(self, state) -> dict[str, float]:
        """Returns ``{"knn/top1": ..., "knn/top1_k<k>": ...}`` for the state's backbone."""
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        memory, memory_labels, memory_mask = extract_features(
            self._embed_fn, variables, self.make_memory_batches(), self._mesh
        )
        queries, query_labels, query_mask = extract_features(
            self._embed_fn, variables, self.make_query_batches(), self._mesh
        )
        chunk = 256
        pad = (-queries.shape[0]) % chunk
        queries = jnp.pad(queries, ((0, pad), (0, 0)))
        predictions = knn_predict(
            memory,
            memory_labels,
            memory_mask,
            queries,
            ks=self._ks,
            temperature=self._temperature,
            num_classes=self._num_classes,
            chunk_size=chunk,
        )
        accuracy = jax.device_get(self._accuracy_fn(predictions, query_labels, query_mask))
        metrics = {f"knn/top1_k{k}": float(a) for k, a in zip(self._ks, accuracy, strict=True)}
        metrics["knn/top1"] = metrics[f"knn/top1_k{self._ks[0]}"]
        return metrics
