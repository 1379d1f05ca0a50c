"""Metric writing (``WORKDIR/metrics.jsonl``, TensorBoard event files and, with
``train.wandb``, Weights & Biases; from process 0) and the step timing of the training loop."""

import json
import math
import os
import time
import types
import uuid
from collections.abc import Mapping

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from jaxssl import errors

TENSORBOARD_DIR = "tensorboard"
# The wandb run id of a workdir, so that a resumed run logs on into the same wandb run.
WANDB_ID_FILE = "wandb_run_id"


def import_wandb(train_config: ml_collections.ConfigDict) -> types.ModuleType | None:
    """The ``wandb`` module if ``train.wandb`` is on, else None.

    Raises:
      errors.UserError: ``train.wandb`` is on and ``wandb`` is not installed (it is an optional
        extra, never a dependency of jaxssl).
    """
    if not train_config.get("wandb", False):
        return None
    try:
        import wandb  # noqa: PLC0415  (optional)
    except ImportError as e:
        raise errors.UserError(
            "--config.train.wandb=true logs to Weights & Biases, which is not installed: "
            "pip install wandb (or leave train.wandb off)."
        ) from e
    return wandb


def _start_wandb_run(wandb: types.ModuleType, config: ml_collections.ConfigDict, workdir: str):
    """``wandb.init`` of the run in ``workdir``: the same wandb run again when it resumes."""
    id_path = os.path.join(workdir, WANDB_ID_FILE)
    if os.path.exists(id_path):
        with open(id_path) as f:
            run_id = f.read().strip()
    else:
        run_id = uuid.uuid4().hex[:12]
        with open(id_path, "w") as f:
            f.write(run_id + "\n")
    return wandb.init(
        project=config.train.wandb_project,
        name=os.path.basename(os.path.abspath(workdir)),
        id=run_id,
        resume="allow",
        dir=workdir,
        config=json.loads(config.to_json_best_effort()),
    )


class MetricWriter:
    """Appends ``{"step": s, **scalars}`` lines to ``metrics.jsonl`` and TensorBoard summaries,
    and with ``config.train.wandb`` logs the same scalars to Weights & Biases.

    Only process 0 writes; on other processes every call is a no-op.

    Args:
      workdir: the run's directory.
      resume_step: the step the run (re)starts from. Records of later steps, written by an
        earlier attempt that died before its next checkpoint, are dropped, so that
        ``metrics.jsonl`` reads as one uninterrupted run.
      config: the run config; ``train.wandb`` (project ``train.wandb_project``) turns on
        wandb logging, and the config is logged as the wandb run's config.

    Raises:
      errors.UserError: ``train.wandb`` is on but ``wandb`` is not installed (on every process).
    """

    def __init__(
        self,
        workdir: str,
        resume_step: int = 0,
        config: ml_collections.ConfigDict | None = None,
        sweep=None,
    ):
        wandb = import_wandb(config.train) if config is not None else None
        self._active = jax.process_index() == 0
        self._sweep = sweep
        if not self._active:
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(path):
            _drop_records_after(path, resume_step)
        self._jsonl = open(path, "a")  # noqa: SIM115
        tensorboard = os.path.join(workdir, TENSORBOARD_DIR)
        if sweep is None:
            self._summaries = [tf.summary.create_file_writer(tensorboard)]
        else:  # one TensorBoard run per replica: tensorboard/replica_<r>
            self._summaries = [
                tf.summary.create_file_writer(os.path.join(tensorboard, f"replica_{r}"))
                for r in range(sweep.size)
            ]
        self._wandb_run = _start_wandb_run(wandb, config, workdir) if wandb else None

    def write(self, step: int, scalars: Mapping[str, float | np.ndarray]) -> None:
        """Writes one record (a sweep: one per replica, from ``[R]`` values; scalars repeat).

        A sweep's records carry ``"replica"`` and the replica's swept values (``"sweep/<field>"``).
        """
        if not self._active:
            return
        if self._sweep is None:
            self._write(step, {k: float(v) for k, v in scalars.items()}, self._summaries[0], {})
            return
        for replica in range(self._sweep.size):
            values = {
                k: float(np.asarray(v)[replica] if np.ndim(v) else v) for k, v in scalars.items()
            }
            tags = {"replica": replica}
            tags |= {f"sweep/{k}": v for k, v in self._sweep.assignment(replica).items()}
            self._write(step, values, self._summaries[replica], tags)

    def _write(self, step: int, scalars: dict[str, float], summary, tags: dict) -> None:
        # JSON has no NaN: write null so the file stays parseable by strict readers.
        record = {
            "step": step,
            **tags,
            **{k: (v if math.isfinite(v) else None) for k, v in scalars.items()},
        }
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        with summary.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        summary.flush()
        if self._wandb_run is not None:
            prefix = f"replica_{tags['replica']}/" if tags else ""
            self._wandb_run.log({prefix + k: v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self._active:
            self._jsonl.close()
            for summary in self._summaries:
                summary.close()
            if self._wandb_run is not None:
                self._wandb_run.finish()


def write_images(workdir: str, step: int, images: Mapping[str, str]) -> None:
    """PNG files as TensorBoard image summaries of ``step``, in ``WORKDIR/tensorboard``.

    The evaluation's figures (`jaxssl.evals.plots`) appear in TensorBoard's Images tab beside
    the training scalars. Only process 0 writes.

    Args:
      workdir: the run's directory.
      step: the step the images belong to (the evaluated checkpoint's).
      images: ``{tag: PNG path}``, e.g. ``{"eval/curves": ".../eval/4_curves.png"}``.
    """
    if jax.process_index() != 0 or not images:
        return
    writer = tf.summary.create_file_writer(os.path.join(workdir, TENSORBOARD_DIR))
    with writer.as_default(step=step):
        for tag, path in images.items():
            image = tf.io.decode_png(tf.io.read_file(path))  # [H, W, C], RGB or RGBA uint8
            tf.summary.image(tag, image[None])
    writer.close()


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


def _finite_mean(values: list) -> float | np.ndarray:
    """Mean over the finite values (of each replica, for a sweep's ``[R]`` values); NaN where
    there are none."""
    values = np.asarray(values, np.float64)  # [T] or [T, R]
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore"):
        means = np.where(finite, values, 0.0).sum(axis=0) / count
    return float(means) if means.ndim == 0 else means
