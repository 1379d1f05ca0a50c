"""Metric writing (``WORKDIR/metrics.jsonl`` and TensorBoard event files, from process 0) and
the step timing of the training loop."""

import json
import math
import os
import time

import jax
import numpy as np
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


class StepTimer:
    """Collects the metrics of the steps since the last log and times them.

    The first step compiles the train step: its time is reported once, as
    ``perf/compile_seconds``, and throughput is timed from the second step on.

    Args:
      views_per_step: images the step processes (global batch x views), for ``perf/img_per_s``.
    """

    def __init__(self, views_per_step: int):
        self._views_per_step = views_per_step
        self.loop_start = time.perf_counter()
        self.first_compile_seconds = None  # the first step's time, kept for the time budget
        self._compile_seconds = None  # ... and until it is logged
        self._start = self.loop_start
        self._pending = []
        self._steps = 0  # steps since the last log
        self._timed = 0  # of which timed (all but a compiling first step)

    def add(self, metrics: dict) -> None:
        """Records one step's (device) metrics; waits for the first step to time its compile."""
        self._pending.append(metrics)
        self._steps += 1
        if self.first_compile_seconds is None:
            jax.block_until_ready(metrics)
            self.first_compile_seconds = time.perf_counter() - self._start
            self._compile_seconds = self.first_compile_seconds
            self.restart()
        else:
            self._timed += 1

    def restart(self) -> None:
        """Starts the throughput timing anew (after an evaluation, whose time is not the steps')."""
        self._start, self._timed = time.perf_counter(), 0

    def flush(self) -> tuple[dict[str, float], dict[str, float], int]:
        """Host means of the recorded metrics, and the interval's timing; starts a new one.

        Returns:
          ``(means, perf, steps)``: the mean of every metric over the interval's steps (finite
          values only, so a skipped step's NaN does not poison its interval), the
          ``perf/img_per_s`` and (once) ``perf/compile_seconds`` entries, and the number of
          steps recorded.
        """
        host = jax.device_get(self._pending)
        elapsed = time.perf_counter() - self._start
        means = {k: _finite_mean([m[k] for m in host]) for k in host[0]}
        perf = {}
        if self._timed:
            perf["perf/img_per_s"] = self._timed * self._views_per_step / elapsed
        if self._compile_seconds is not None:
            perf["perf/compile_seconds"], self._compile_seconds = self._compile_seconds, None
        steps = self._steps
        self._pending, self._steps = [], 0
        self.restart()
        return means, perf, steps


def _finite_mean(values: list) -> float:
    """Mean over the finite values; NaN if there are none."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
