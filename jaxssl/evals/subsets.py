"""Class-balanced labelled subsets of the evaluation's train split, for low-label protocols:
the linear probe on 1% / 10% of the labels (``evals.linear.label_fractions``) and few-shot kNN
(``evals.knn.shots_per_class``).

A subset is a function of the examples' positions in the split and a subset seed only: each
example gets a 32-bit hash of ``(position, seed)``, and every class keeps its examples of the
lowest hashes. So the same seed picks the same images at every checkpoint, for every method
and on any number of devices or processes, and ``evals.label_subset_seeds`` gives independent
draws whose spread is reported beside the mean (SimCLR's and BYOL's semi-supervised tables use
fixed 1% / 10% ImageNet subsets the same way).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl import sharding
from jaxssl.evals import features


def example_hash(positions: np.ndarray, seed: int) -> np.ndarray:
    """A well-mixed uint32 per ``(position, seed)`` (two rounds of the murmur3 finalizer)."""
    x = positions.astype(np.uint64) * np.uint64(0x9E3779B1) + np.uint64(seed) * np.uint64(
        0x85EBCA77
    )
    x = (x ^ (x >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    for _ in range(2):
        x ^= x >> np.uint64(16)
        x = (x * np.uint64(0x85EBCA6B)) & np.uint64(0xFFFFFFFF)
        x ^= x >> np.uint64(13)
        x = (x * np.uint64(0xC2B2AE35)) & np.uint64(0xFFFFFFFF)
        x ^= x >> np.uint64(16)
    return x.astype(np.uint32)


def balanced_subset(labels: np.ndarray, quotas: dict[int, int], seed: int) -> np.ndarray:
    """Positions of a class-balanced subset: the ``quotas[c]`` examples of class ``c`` with the
    lowest `example_hash` (all of them if the class has fewer).

    Args:
      labels: ``[N]`` labels of the split's examples, in split order.
      quotas: examples to keep per class.
      seed: the subset seed.

    Returns:
      Sorted int positions into ``labels``.
    """
    positions = np.arange(len(labels))
    hashes = example_hash(positions, seed)
    kept = []
    for label, quota in quotas.items():
        members = positions[labels == label]
        kept.append(members[np.argsort(hashes[members], kind="stable")[:quota]])
    return np.sort(np.concatenate(kept)) if kept else np.zeros((0,), np.int64)


def fraction_quotas(labels: np.ndarray, fraction: float) -> dict[int, int]:
    """``round(fraction * count)`` examples of each class present (at least one)."""
    classes, counts = np.unique(labels, return_counts=True)
    return {int(c): max(1, int(round(fraction * n))) for c, n in zip(classes, counts, strict=True)}


def shot_quotas(labels: np.ndarray, shots: int) -> dict[int, int]:
    """``shots`` examples of each class present."""
    return {int(c): shots for c in np.unique(labels)}


def host_labels(split: features.Split, mesh: jax.sharding.Mesh) -> tuple[np.ndarray, np.ndarray]:
    """The real rows of ``split`` on the host: ``(labels [N], rows [N])``, ``rows`` the rows'
    places in the (padded, possibly multi-process) global arrays, in split order.

    Every process gets the whole of them (a replicated copy), so all choose the same subset.
    """
    gather = jax.jit(lambda labels, mask: (labels, mask), out_shardings=sharding.replicated(mesh))
    labels, mask = (np.asarray(x) for x in jax.device_get(gather(split.labels, split.mask)))
    rows = np.flatnonzero(mask)
    return labels[rows], rows


@jax.jit
def _take(values: jax.Array, index: jax.Array) -> jax.Array:
    return values[index]


def select(split: features.Split, rows: np.ndarray, name: str = "backbone") -> tuple:
    """``(features [n, D], labels [n], mask [n])`` of ``split`` at global ``rows``."""
    index = jnp.asarray(rows, jnp.int32)
    return (
        _take(split.features[name], index),
        _take(split.labels, index),
        jnp.ones((len(rows),), bool),
    )


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation of the per-seed results."""
    array = np.asarray(values, np.float64)
    return float(array.mean()), float(array.std())
