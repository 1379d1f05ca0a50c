"""Evaluators by name, for the trainer's schedule and ``jaxssl eval`` alike.

An evaluator is a function ``(features.Context) -> features.Result``: it reads the features an
`features.Extractor` embedded once for the whole evaluation and returns flat scalar metrics,
its protocol in words and JSON details. Each jits its own small functions.

* ``knn``: weighted kNN for every k in ``evals.knn.ks`` and the majority vote;
* ``linear``: offline linear probe with weight decay chosen on held-out train rows;
* ``spectral``: RankMe, alignment, uniformity and covariance spectra of backbone features and
  projections;
* ``rankme``: RankMe of the backbone features alone (logged by training beside kNN);
* ``equivariance``: linear probes and transformation regression per part of the features
  (SIE's invariant and equivariant parts);
* ``finetune``: backbone + linear head trained on label fractions (1% / 10% / 100%), lr
  chosen on the subset's held-out part;
* ``rotation``: rotation prediction by a linear probe on frozen features, label-free;
* ``plots``: PNGs of training curves, spectrum, 2-D projection and nearest-neighbour retrieval.
"""

import time
from collections.abc import Callable, Sequence

from absl import logging

from jaxssl import errors
from jaxssl.evals import (
    equivariance,
    features,
    finetune,
    knn,
    linear,
    plots,
    rotation,
    spectral,
)

Evaluator = Callable[[features.Context], features.Result]

EVALUATORS: dict[str, Evaluator] = {
    "knn": knn.run,
    "linear": linear.run,
    "spectral": spectral.run,
    "rankme": spectral.run_rankme,
    "plots": plots.run,
    "equivariance": equivariance.run,
    "finetune": finetune.run,
    "rotation": rotation.run,
}


def get_evaluators(names: Sequence[str]) -> dict[str, Evaluator]:
    """The evaluators called ``names``, in that order; raises with the valid names."""
    unknown = [name for name in names if name not in EVALUATORS]
    if unknown:
        raise errors.ConfigError(f"Unknown evaluators {unknown}; valid: {sorted(EVALUATORS)}.")
    return {name: EVALUATORS[name] for name in names}


def run(evaluators: dict[str, Evaluator], context: features.Context) -> dict[str, float]:
    """Runs ``evaluators`` in order on ``context``, which collects their results.

    Args:
      evaluators: from `get_evaluators`.
      context: the extracted features; ``context.results[name]`` is set as each one ends.

    Returns:
      Wall seconds per evaluator.
    """
    seconds = {}
    for name, evaluator in evaluators.items():
        start = time.perf_counter()
        context.results[name] = evaluator(context)
        seconds[name] = time.perf_counter() - start
        logging.info("%s: %s (%.1f s)", name, context.results[name].metrics, seconds[name])
    return seconds
