"""Metric writing: ``WORKDIR/metrics.jsonl`` and TensorBoard event files, from process 0."""

import json
import math
import os

import jax
import tensorflow as tf


class MetricWriter:
    """Appends ``{"step": s, **scalars}`` lines to ``metrics.jsonl`` and TensorBoard summaries.

    Only process 0 writes; on other processes every call is a no-op.

    Args:
      workdir: the run's directory.
    """

    def __init__(self, workdir: str):
        self._active = jax.process_index() == 0
        if not self._active:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115
        self._summary = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self._active:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        # JSON has no NaN: write null so the file stays parseable by strict readers.
        record = {
            "step": step,
            **{k: (v if math.isfinite(v) else None) for k, v in scalars.items()},
        }
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        with self._summary.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        self._summary.flush()

    def close(self) -> None:
        if self._active:
            self._jsonl.close()
            self._summary.close()
