"""Policies the training loop consults after every step: preemption, non-finite loss, time budget.

Each is a small object the loop asks one question: has a preemption notice reached this step
(`Preemption`), do the steps so far break the non-finite policy (`FiniteGuard`), and how long
is the run (`TimeBudget`).
"""

import json
import os
import signal
import threading
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from jaxssl import errors

TIME_BUDGET_FILE = "time_budget.json"


class NonFiniteLossError(errors.UserError, FloatingPointError):
    """The loss became NaN or Inf; training stopped and the last good checkpoint was kept."""


class Preemption:
    """Notices a preemption (SIGTERM, what TPU maintenance and SLURM send before a kill).

    One process: a SIGTERM handler sets a flag that the loop reads after every step. Several
    processes: JAX's preemption service (started by ``jax.distributed.initialize``) catches the
    signal on any process and agrees with all of them on one step at which every process
    checkpoints, so the collective save cannot deadlock.
    """

    def __init__(self):
        self._multi = jax.process_count() > 1
        self._requested = False
        self._previous = None
        # Signal handlers can only be installed from the main thread (a notebook's may be another).
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        del signum, frame
        self._requested = True

    def reached(self, step: int) -> bool:
        """Call after every step, on every process: True when the run must save and exit."""
        if self._multi:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._requested

    def close(self) -> None:
        """Puts back the SIGTERM handler that was there before."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class FiniteGuard:
    """Reads the per-step ``train/nonfinite`` flags and enforces ``config.train.on_nonfinite``.

    The step itself never applies a non-finite update (`jaxssl.step`), so every checkpoint
    holds finite parameters; this decides whether the run stops ("stop") or goes on ("skip",
    up to ``max_consecutive_nonfinite`` skipped steps in a row). Flags are collected without a
    device-to-host copy and read only at `check`, so the loop does not wait on every step.

    Args:
      train_config: ``config.train``.
      checkpointer: the run's `jaxssl.checkpoint.Checkpointer`, named in the error.
    """

    def __init__(self, train_config: ml_collections.ConfigDict, checkpointer):
        self.validate(train_config)
        self._mode = train_config.on_nonfinite
        self._max_consecutive = train_config.max_consecutive_nonfinite
        self._checkpointer = checkpointer
        self._unchecked = []  # (step, device flag)
        self._consecutive = 0

    @staticmethod
    def validate(train_config: ml_collections.ConfigDict) -> None:
        """Raises ``ValueError`` for an unknown ``on_nonfinite`` policy."""
        if train_config.on_nonfinite not in ("stop", "skip"):
            raise ValueError(
                f"config.train.on_nonfinite={train_config.on_nonfinite!r}: use 'stop' or 'skip'."
            )

    def add(self, step: int, flag: jax.Array) -> None:
        """Records the ``train/nonfinite`` flag of the step that made ``step`` steps."""
        self._unchecked.append((step, flag))

    def check(self) -> None:
        """Raises ``NonFiniteLossError`` if the flags seen so far break the policy."""
        flags = jax.device_get([flag for _, flag in self._unchecked])
        steps = [step for step, _ in self._unchecked]
        self._unchecked = []
        for step, flag in zip(steps, flags, strict=True):
            # A sweep's flag is [R]: one replica's non-finite step is its own (its update is
            # dropped, its count kept in state.nonfinite_steps); the policy acts when all fail.
            if not np.all(flag):
                self._consecutive = 0
                continue
            self._consecutive += 1
            if self._mode == "skip" and self._consecutive <= self._max_consecutive:
                logging.warning("Step %d: non-finite loss or gradient; update skipped.", step)
                continue
            self._checkpointer.wait()
            what = (
                f"{self._consecutive} consecutive steps up to {step}"
                if self._mode == "skip"
                else f"step {step}"
            )
            raise NonFiniteLossError(
                f"Non-finite loss or gradient at {what} (its update was not applied). Last good "
                f"checkpoint: step {self._checkpointer.latest_step()} in "
                f"{self._checkpointer.directory} (kept; None means none was written yet). Lower "
                "--config.optim.base_lr, check the input data, or set "
                "--config.train.on_nonfinite=skip to skip such steps."
            )


class TimeBudget:
    """Fits the run's length to ``config.train.time_budget_minutes`` of training loop.

    Off (``<= 0``): the run is ``config.train.num_steps`` steps long. On, in a workdir without
    ``time_budget.json``: the loop runs the first (compiling) step, ``SETTLE_STEPS`` untimed
    ones (the input pipeline's buffer, filled while compiling, drains) and
    ``CALIBRATION_STEPS`` timed ones under a provisional length (the config's, or longer),
    then fixes

        num_steps = step + (budget - loop time so far - one recompile) // seconds per step,

    agreed by every process (process 0's figure), writes it to ``time_budget.json`` and
    rebuilds the step for that length. A run that finds the file (a resume) takes its length
    from there and does not measure again, so restarts keep the schedule. The provisional
    length reaches only the calibration steps, and only through schedules of the run's length:
    not the learning rate during warmup (longer than the calibration in every preset), but
    BYOL's and DINO's teacher momentum, slightly. The budget covers the training loop, not
    the final evaluation, and is as good as the calibration steps predict the rest (the input
    pipeline's first epoch fills its cache, so they are a little slow: the fit errs short).

    Args:
      train_config: ``config.train`` (``time_budget_minutes``).
      workdir: the run's directory, where ``time_budget.json`` is read and written.
      start_step: the step the run starts (or resumes) from.
    """

    SETTLE_STEPS = 10
    CALIBRATION_STEPS = 20

    def __init__(self, train_config: ml_collections.ConfigDict, workdir: str, start_step: int):
        self.seconds = 60.0 * float(train_config.get("time_budget_minutes", 0.0))
        self.path = os.path.join(workdir, TIME_BUDGET_FILE)
        self.fitted = None
        self.calibrate_from = None  # the step count after which the timing starts ...
        self.calibrate_at = None  # ... and the one after which the length is fitted
        self._calibration_start = None
        if self.seconds <= 0:
            return
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.fitted = int(json.load(f)["num_steps"])
        else:
            self.calibrate_from = start_step + 1 + self.SETTLE_STEPS
            self.calibrate_at = self.calibrate_from + self.CALIBRATION_STEPS

    def num_steps(self, config_num_steps: int) -> int:
        """The run's length before calibration."""
        if self.fitted is not None:
            return self.fitted
        if self.calibrate_at is not None:
            return max(config_num_steps, self.calibrate_at + 1)
        return config_num_steps

    def step_done(
        self, step: int, metrics: dict, loop_start: float, compile_seconds: float | None
    ) -> int | None:
        """Call after every step: the fitted length once the calibration ends, else None.

        Args:
          step: the number of steps done.
          metrics: the step's (device) metrics; waited for at the calibration's ends, so the
            timing covers the computation and not only its dispatch.
          loop_start: ``time.perf_counter()`` when the loop started.
          compile_seconds: how long the first (compiling) step took.

        Returns:
          The run's new length after the ``calibrate_at``-th step, otherwise None.
        """
        if step == self.calibrate_from:
            jax.block_until_ready(metrics)
            self._calibration_start = time.perf_counter()
        if step != self.calibrate_at:
            return None
        jax.block_until_ready(metrics)
        now = time.perf_counter()
        return self.fit(
            loop_seconds=now - loop_start,
            step_seconds=(now - self._calibration_start) / self.CALIBRATION_STEPS,
            compile_seconds=compile_seconds,
        )

    def fit(self, loop_seconds: float, step_seconds: float, compile_seconds: float) -> int:
        """The fitted length, once ``calibrate_at`` steps are done; written to the file."""
        left = self.seconds - loop_seconds - compile_seconds
        fitted = self.calibrate_at + max(int(left // step_seconds), 0)
        fitted = int(multihost_utils.broadcast_one_to_all(np.int64(fitted)))
        if jax.process_index() == 0:
            record = dict(
                num_steps=fitted,
                budget_minutes=self.seconds / 60,
                calibrated_at_step=self.calibrate_at,
                seconds_per_step=step_seconds,
                loop_seconds_at_calibration=loop_seconds,
            )
            with open(self.path + ".tmp", "w") as f:
                json.dump(record, f, indent=2)
            os.replace(self.path + ".tmp", self.path)
        self.fitted, self.calibrate_from, self.calibrate_at = fitted, None, None
        logging.warning(
            "Time budget %.1f min: %.3f s per step, so the run is %d steps long.",
            self.seconds / 60,
            step_seconds,
            fitted,
        )
        return fitted
