"""Weighted k-nearest-neighbour classification on L2-normalized backbone features.

Protocol (Wu et al. 2018, as used by DINO, solo-learn and most SSL papers): the train split is
the memory bank, the test split the queries; cosine similarity; each of the k nearest
neighbours votes for its label with weight ``exp(sim / T)``; top-1 accuracy of the highest
vote. Defaults k=200, T=0.1. Features come from the backbone in inference mode (running
BatchNorm statistics), without augmentation. The evaluator (`run`) reports every k of
``evals.knn.ks`` (default {10, 20, 100, 200}) and ``evals.knn.k``, and a plain majority vote,
from a single neighbour search.
"""

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import sharding
from jaxssl.evals import features, subsets
from jaxssl.losses import normalize


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
    memory = normalize.l2_normalize(memory)  # [N, D]

    def search_chunk(q):  # [C, D] -> ([C, k], [C, k])
        sim = normalize.l2_normalize(q) @ memory.T  # [C, N]
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


def run(context: features.Context) -> features.Result:
    """kNN top-1 of backbone features for every k of ``evals.knn.ks`` and ``evals.knn.k``.

    Weighted, and with ``evals.knn.majority`` also by majority vote; the train split is the
    memory bank and the test split the queries. A k above the memory bank's size is dropped.

    Args:
      context: the extracted features.

    Returns:
      ``knn/top1_k<k>`` (and ``knn/majority_top1_k<k>``) metrics; details ``{"ks"}``.
    """
    config, data = context.config.evals.knn, context.config.data
    num_memory = context.num_real(context.train)
    wanted = (*config.ks, *(() if config.k in config.ks else (config.k,)))
    ks = tuple(k for k in wanted if k <= num_memory) or (num_memory,)
    metrics = evaluate_features(
        (context.train.features["backbone"], context.train.labels, context.train.mask),
        (context.test.features["backbone"], context.test.labels, context.test.mask),
        context.mesh,
        ks=ks,
        temperature=config.temperature,
        num_classes=data.num_classes,
        majority=config.majority,
    )
    description = protocol(ks, config.temperature, data.eval_train_split, data.eval_test_split)
    if config.majority:
        description += "; and majority vote (unweighted; ties to the closer neighbours)"
    patches = context.config.evals.patches
    if patches.num > 0:
        description += (
            f"; features: mean over {patches.num} crops of {patches.size} px per image "
            f"(area {tuple(patches.scale)}, aspect {tuple(patches.ratio)}; bag of features)"
        )
    details = {"ks": list(ks)}
    if config.get("shots_per_class", ()):
        few_shot, few_shot_details = run_few_shot(context)
        metrics |= few_shot
        details["few_shot"] = few_shot_details
        description += "; " + few_shot_details["protocol"]
    return features.Result(metrics, description, details)


def run_few_shot(context: features.Context) -> tuple[dict[str, float], dict]:
    """Few-shot kNN: the memory bank is ``n`` labelled images per class of the train split
    (``evals.knn.shots_per_class``), drawn for each of ``evals.label_subset_seeds``
    (`jaxssl.evals.subsets`); the queries are the whole test split; ``k = min(evals.knn.k,
    n * classes)``, weighted vote at ``evals.knn.temperature``.

    Returns:
      ``({"knn/top1_shot<n>": mean, "knn/top1_shot<n>_std": std over seeds}, details)`` with
      the per-seed accuracies and the protocol in the details.
    """
    config, data = context.config.evals.knn, context.config.data
    seeds = tuple(context.config.evals.label_subset_seeds)
    labels, rows = subsets.host_labels(context.train, context.mesh)
    test = (context.test.features["backbone"], context.test.labels, context.test.mask)
    metrics, per_seed = {}, {}
    for shots in config.shots_per_class:
        k = min(config.k, shots * len(np.unique(labels)))
        accuracies = []
        for seed in seeds:
            chosen = rows[subsets.balanced_subset(labels, subsets.shot_quotas(labels, shots), seed)]
            result = evaluate_features(
                subsets.select(context.train, chosen),
                test,
                context.mesh,
                ks=(k,),
                temperature=config.temperature,
                num_classes=data.num_classes,
            )
            accuracies.append(result[f"knn/top1_k{k}"])
        mean, std = subsets.mean_and_std(accuracies)
        metrics[f"knn/top1_shot{shots}"] = mean
        metrics[f"knn/top1_shot{shots}_std"] = std
        per_seed[str(shots)] = {"k": k, "top1": accuracies}
    protocol_text = (
        f"few-shot kNN: {','.join(str(n) for n in config.shots_per_class)} labelled images per "
        f"class of {data.eval_train_split} as memory (class-balanced, seeds "
        f"{','.join(str(s) for s in seeds)}; mean and std over seeds), k=min({config.k}, "
        f"shots x classes), T={config.temperature:g}, queries={data.eval_test_split}"
    )
    return metrics, {"protocol": protocol_text, "seeds": list(seeds), "per_seed": per_seed}
