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
      resume_step: the step the run (re)starts from. Records of later steps, written by an
        earlier attempt that died before its next checkpoint, are dropped, so that
        ``metrics.jsonl`` reads as one uninterrupted run.
    """

    def __init__(self, workdir: str, resume_step: int = 0):
        self._active = jax.process_index() == 0
        if not self._active:
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(path):
            _drop_records_after(path, resume_step)
        self._jsonl = open(path, "a")  # noqa: SIM115
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


def _drop_records_after(path: str, step: int) -> None:
    """Rewrites ``path`` without records of steps after ``step`` (atomically, via a rename)."""
    with open(path) as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if record.get("step", 0) <= step:
            kept.append(json.dumps(record) + "\n")
    if len(kept) == len(lines):
        return
    with open(path + ".tmp", "w") as f:
        f.writelines(kept)
    os.replace(path + ".tmp", path)
