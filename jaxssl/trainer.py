"""``train_and_evaluate``: mesh, data, state, the loop, checkpoints and evaluation."""

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from jax.experimental import multihost_utils

from jaxssl import checkpoint, methods, optim, sharding
from jaxssl import state as state_lib
from jaxssl import step as step_lib
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import knn
from jaxssl.metrics import MetricWriter


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; training stopped and the last good checkpoint was kept."""


class _Preemption:
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
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _FiniteGuard:
    """Reads the per-step ``train/nonfinite`` flags and enforces ``config.train.on_nonfinite``.

    The step itself never applies a non-finite update (`jaxssl.step`), so every checkpoint
    holds finite parameters; this decides whether the run stops ("stop") or goes on ("skip",
    up to ``max_consecutive_nonfinite`` skipped steps in a row).
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
        if train_config.on_nonfinite not in ("stop", "skip"):
            raise ValueError(
                f"config.train.on_nonfinite={train_config.on_nonfinite!r}: use 'stop' or 'skip'."
            )

    def add(self, step: int, flag: jax.Array) -> None:
        self._unchecked.append((step, flag))

    def check(self) -> None:
        """Raises ``NonFiniteLossError`` if the flags seen so far break the policy."""
        flags = jax.device_get([flag for _, flag in self._unchecked])
        steps = [step for step, _ in self._unchecked]
        self._unchecked = []
        for step, flag in zip(steps, flags, strict=True):
            if not flag:
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


TIME_BUDGET_FILE = "time_budget.json"


class _TimeBudget:
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
    """

    SETTLE_STEPS = 10
    CALIBRATION_STEPS = 20

    def __init__(self, train_config: ml_collections.ConfigDict, workdir: str, start_step: int):
        self.seconds = 60.0 * float(train_config.get("time_budget_minutes", 0.0))
        self.path = os.path.join(workdir, TIME_BUDGET_FILE)
        self.fitted = None
        self.calibrate_from = None  # the step count after which the timing starts ...
        self.calibrate_at = None  # ... and the one after which the length is fitted
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


def with_num_steps(config: ml_collections.ConfigDict, num_steps: int) -> ml_collections.ConfigDict:
    """A copy of ``config`` that is ``num_steps`` long (``epochs`` to match, for the record)."""
    config = config.copy_and_resolve_references()
    config.train.num_steps = num_steps
    config.train.epochs = num_steps * config.train.batch_size / config.data.num_train_examples
    return config


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """``WORKDIR/config.json``: the config the run trains with (process 0 writes it)."""
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))


def make_knn_evaluator(
    config: ml_collections.ConfigDict, model: nn.Module, mesh: jax.sharding.Mesh
) -> knn.KNNEvaluator:
    """kNN evaluator of ``config.evals.knn`` over the config's eval splits."""
    per_process = config.evals.knn.batch_size // jax.process_count()
    make_batches = {
        split: input_pipeline.make_eval_iterator(
            config.data,
            split,
            batch_size=per_process,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            patches=config.evals.patches,
        )[0]
        for split in (config.data.eval_train_split, config.data.eval_test_split)
    }
    return knn.KNNEvaluator(
        make_batches[config.data.eval_train_split],
        make_batches[config.data.eval_test_split],
        mesh,
        # The first k is the headline `knn/top1`; every k is logged as `knn/top1_k<k>`.
        ks=(config.evals.knn.k, *(k for k in config.evals.knn.ks if k != config.evals.knn.k)),
        majority=config.evals.knn.majority,
        temperature=config.evals.knn.temperature,
        num_classes=config.data.num_classes,
        embed_fn=knn.make_embed_fn(
            model, mesh, config.data.mean, config.data.std, patches=config.evals.patches
        ),
    )


def _finite_mean(values: list) -> float:
    """Mean over the finite values (a skipped step's NaN does not poison its interval)."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


@dataclasses.dataclass(frozen=True)
class Training:
    """What a run is made of: the model, the state initializer and the compiled step."""

    model: nn.Module
    init_fn: Callable[[jax.Array], state_lib.TrainState]
    init_key: jax.Array
    train_step: Callable  # jitted (state, batch) -> (state, metrics), state donated
    abstract_state: state_lib.TrainState  # shapes, dtypes and shardings of the state

    def init_state(self) -> state_lib.TrainState:
        """A freshly initialized state, laid out on the mesh as ``abstract_state`` says."""
        shardings = jax.tree.map(lambda x: x.sharding, self.abstract_state)
        return jax.jit(self.init_fn, out_shardings=shardings)(self.init_key)


def build(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Training:
    """Builds model, optimizers, state initializer and the jitted train step for ``mesh``.

    Args:
      config: the run config.
      mesh: the device mesh.

    Returns:
      A ``Training``; ``train_step`` is the only ``jax.jit`` of the step in the library.
    """
    num_steps = int(config.train.num_steps)
    method = methods.get_method(config.method.name)
    model = method.build_model(config)
    probe = nn.Dense(config.data.num_classes, name="probe")
    tx, lr_schedule = optim.make_optimizer(config.optim, num_steps)
    probe_tx = optax.adamw(config.evals.probe.lr, weight_decay=config.evals.probe.weight_decay)
    image_shape = (config.data.image_size, config.data.image_size, 3)
    method_init = getattr(method, "init_method_state", None)
    init_fn = state_lib.make_init_fn(
        model,
        probe,
        tx,
        probe_tx,
        image_shape,
        method_init and (lambda variables: method_init(model, variables, config.method)),
    )
    init_key, base_key = jax.random.split(jax.random.key(config.seed))
    step_fn = step_lib.make_train_step(
        model, method, probe, tx, probe_tx, lr_schedule, config, base_key
    )
    # Replicated state, or with config.mesh.fsdp > 1 its large arrays split over "fsdp".
    abstract = jax.eval_shape(init_fn, init_key)
    state_sharding = sharding.state_shardings(
        abstract, mesh, config.mesh.get("fsdp_min_size", 2**14)
    )
    train_step = jax.jit(
        step_fn,
        in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
        out_shardings=(state_sharding, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
    return Training(
        model=model,
        init_fn=init_fn,
        init_key=init_key,
        train_step=train_step,
        abstract_state=checkpoint.abstract_with_sharding(abstract, state_sharding),
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains (or resumes) the run in ``workdir`` and evaluates it.

    Args:
      config: the locked run config.
      workdir: where checkpoints, ``metrics.jsonl``, TensorBoard files and ``config.json`` go.
        Rerunning with the same workdir resumes from the latest checkpoint.

    Returns:
      The last logged metrics and the final evaluation.
    """
    _FiniteGuard.validate(config.train)
    os.makedirs(workdir, exist_ok=True)
    batch_size = config.train.batch_size

    # --- Mesh ---
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_batch_size(batch_size, mesh)
    sharding.check_batch_size(config.evals.knn.batch_size, mesh)
    accum = config.train.grad_accum_steps
    if accum < 1 or batch_size % accum or (batch_size // accum) % mesh.devices.size:
        raise ValueError(
            f"train.grad_accum_steps={accum} must be >= 1 and split the global batch "
            f"{batch_size} into micro-batches that divide over {mesh.devices.size} devices."
        )
    logging.info(
        "Mesh %s over %d processes; global batch %d.",
        dict(mesh.shape),
        jax.process_count(),
        batch_size,
    )

    # --- Model, optimizer, step ---
    run = build(config, mesh)
    model = run.model
    total_bytes, device_bytes = sharding.state_bytes(run.abstract_state)
    logging.info(
        "Train state: %.1f MiB, of which %.1f MiB on each device.",
        total_bytes / 2**20,
        device_bytes / 2**20,
    )

    # --- Data first: a missing dataset must fail before anything is written ---
    knn_evaluator = make_knn_evaluator(config, model, mesh)

    # --- Checkpoint: resume from the newest readable one ---
    checkpointer = checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"), config, keep=config.train.keep_checkpoints
    )
    state = checkpointer.restore_latest_usable(run.abstract_state)
    if state is not None:
        logging.warning(
            "Resuming from %s at step %d.", checkpointer.directory, int(jax.device_get(state.step))
        )
    else:
        state = run.init_state()
    start_step = int(jax.device_get(state.step))
    # The run's length: the config's, or the one the time budget fitted (or will fit).
    budget = _TimeBudget(config.train, workdir, start_step)
    num_steps = budget.num_steps(int(config.train.num_steps))
    if num_steps != int(config.train.num_steps):
        config = with_num_steps(config, num_steps)
        run = build(config, mesh)  # the same state; the step's schedules change
    logging.info("Steps %d to %d.", start_step, num_steps)
    _write_config(config, workdir)

    train_iter = input_pipeline.make_train_iterator(
        config.data,
        global_batch_size=batch_size,
        seed=config.seed,
        start_step=start_step,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    # --- Loop ---
    writer = MetricWriter(workdir, resume_step=start_step)
    guard = _FiniteGuard(config.train, checkpointer)
    preemption = _Preemption()
    progress = tqdm.tqdm(
        total=num_steps,
        initial=start_step,
        dynamic_ncols=True,
        disable=not config.train.progress_bar or jax.process_index() != 0,
    )
    views_per_step = batch_size * (config.data.num_views + config.data.local_views)
    pending, last_metrics = [], {}
    interval_start, interval_steps, timed_steps = time.perf_counter(), 0, 0
    loop_start = calibration_start = interval_start
    compile_seconds = first_compile_seconds = None
    step = start_step
    try:
        while step < num_steps:
            batch = sharding.to_global(next(train_iter), mesh)
            with jax.transfer_guard("disallow"):
                state, metrics = run.train_step(state, batch)
            pending.append(metrics)
            guard.add(step + 1, metrics["train/nonfinite"])
            interval_steps += 1
            if step == start_step:
                # The first call compiles: throughput is timed from the second step on.
                jax.block_until_ready(metrics)
                compile_seconds = first_compile_seconds = time.perf_counter() - interval_start
                interval_start, timed_steps = time.perf_counter(), 0
            else:
                timed_steps += 1
            if step + 1 == budget.calibrate_from:
                jax.block_until_ready(metrics)
                calibration_start = time.perf_counter()
            if step + 1 == budget.calibrate_at:
                jax.block_until_ready(metrics)
                now = time.perf_counter()
                num_steps = budget.fit(
                    loop_seconds=now - loop_start,
                    step_seconds=(now - calibration_start) / budget.CALIBRATION_STEPS,
                    compile_seconds=first_compile_seconds,
                )
                config = with_num_steps(config, num_steps)
                run = build(config, mesh)
                progress.total = num_steps
                _write_config(config, workdir)
            is_last = step + 1 == num_steps
            preempted = preemption.reached(step + 1)
            if (step + 1) % config.train.log_every_steps == 0 or is_last or preempted:
                guard.check()
                host = jax.device_get(pending)
                elapsed = time.perf_counter() - interval_start
                last_metrics = {k: _finite_mean([m[k] for m in host]) for k in host[0]}
                last_metrics["train/nonfinite_steps"] = int(jax.device_get(state.nonfinite_steps))
                if timed_steps:
                    last_metrics["perf/img_per_s"] = timed_steps * views_per_step / elapsed
                if compile_seconds is not None:
                    last_metrics["perf/compile_seconds"], compile_seconds = compile_seconds, None
                writer.write(step + 1, last_metrics)
                progress.set_postfix(
                    loss=f"{last_metrics['train/loss']:.3f}",
                    img_s=f"{last_metrics.get('perf/img_per_s', float('nan')):.0f}",
                )
                progress.update(interval_steps)
                pending, interval_steps, timed_steps = [], 0, 0
                interval_start = time.perf_counter()
            if (step + 1) % config.train.checkpoint_every_steps == 0 or is_last or preempted:
                guard.check()  # never checkpoint past a step that must stop the run
                checkpointer.save(step + 1, state)
            if preempted and not is_last:
                checkpointer.wait()
                message = (
                    f"Preempted (SIGTERM): stopped after step {step + 1} of {num_steps} and "
                    f"saved a checkpoint in {checkpointer.directory}. Rerun the same command "
                    "to resume."
                )
                logging.warning(message)
                print(message, flush=True)
                checkpointer.close()
                writer.close()
                return {**last_metrics, "preempted_at_step": step + 1}
            knn_every = config.evals.knn.every_steps
            if knn_every and (step + 1) % knn_every == 0 and not is_last:
                writer.write(step + 1, knn_evaluator.run(state))
                interval_start, timed_steps = time.perf_counter(), 0
            step += 1
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        raise RuntimeError(
            f"Process {jax.process_index()} of {jax.process_count()}: a collective failed, most "
            f"likely because another process died or lost its connection ({e}). Last "
            f"checkpoint: step {checkpointer.latest_step()} in {checkpointer.directory}. "
            "Relaunch every process with the same command to resume from it."
        ) from e
    finally:
        preemption.close()
        progress.close()

    # --- Final evaluation ---
    final_step = int(jax.device_get(state.step))
    eval_start = time.perf_counter()
    results = knn_evaluator.run(state)
    results["perf/knn_eval_seconds"] = time.perf_counter() - eval_start
    writer.write(final_step, results)
    logging.warning("Step %d: %s", final_step, json.dumps(results))
    checkpointer.wait()
    checkpointer.close()
    writer.close()
    return {**last_metrics, **results}
