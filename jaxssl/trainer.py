"""``train_and_evaluate``: mesh, data, state, the loop, checkpoints and evaluation.

The loop consults the policies of `jaxssl.guards` (preemption, non-finite loss, time budget)
after every step and evaluates with the evaluators of `jaxssl.evals`, the same ones
``jaxssl eval`` runs.
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections
import optax
import tqdm
from absl import logging

from jaxssl import checkpoint, console, errors, evals, guards, methods, optim, sharding
from jaxssl import state as state_lib
from jaxssl import step as step_lib
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import features
from jaxssl.metrics import MetricWriter, StepTimer, import_wandb

# What training evaluates, periodically and at the end (`jaxssl.evals.EVALUATORS`).
TRAINING_EVALUATORS = ("knn", "rankme")


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


def _out_of_memory(config: ml_collections.ConfigDict, devices: int, error: Exception) -> str:
    """What to change when the train step ran out of device memory."""
    first_line = str(error).strip().splitlines()[0][:300]
    return (
        f"The train step does not fit in device memory ({first_line}). Lower the batch per "
        f"device (now {config.train.batch_size // devices}: --config.train.batch_size), split "
        f"micro-batches (--config.train.grad_accum_steps={2 * config.train.grad_accum_steps}), "
        "shard parameters and optimizer state (--config.mesh.fsdp=N), or compute in bf16 "
        f"(--config.model.dtype=bfloat16; now {config.model.dtype}). For TPUs, `jaxssl compile` "
        "checks a topology's memory ahead of time."
    )


@dataclasses.dataclass(frozen=True)
class Training:
    """What a run is made of: the model, the state initializer and the compiled step."""

    config: ml_collections.ConfigDict  # the config it was built from
    mesh: jax.sharding.Mesh  # the mesh the state and the batches are laid out on
    model: nn.Module
    init_fn: Callable[[jax.Array], state_lib.TrainState]
    init_key: jax.Array
    train_step: Callable  # jitted (state, batch) -> (state, metrics), state donated
    abstract_state: state_lib.TrainState  # shapes, dtypes and shardings of the state

    def init_state(self) -> state_lib.TrainState:
        """A freshly initialized state, laid out on the mesh as ``abstract_state`` says."""
        shardings = jax.tree.map(lambda x: x.sharding, self.abstract_state)
        return jax.jit(self.init_fn, out_shardings=shardings)(self.init_key)


def check_batch_size(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> None:
    """Raises if ``train.batch_size`` (or its ``grad_accum_steps`` micro-batches) does not split
    evenly over the devices and processes of ``mesh``."""
    batch_size, accum = config.train.batch_size, config.train.grad_accum_steps
    sharding.check_batch_size(batch_size, mesh)
    if accum < 1 or batch_size % accum or (batch_size // accum) % mesh.devices.size:
        raise errors.ConfigError(
            f"train.grad_accum_steps={accum} must be >= 1 and split the global batch "
            f"{batch_size} into micro-batches that divide over {mesh.devices.size} devices."
        )


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
    init_fn = state_lib.make_init_fn(model, method, config.method, probe, tx, probe_tx, image_shape)
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
        config=config,
        mesh=mesh,
        model=model,
        init_fn=init_fn,
        init_key=init_key,
        train_step=train_step,
        abstract_state=checkpoint.abstract_with_sharding(abstract, state_sharding),
    )


def evaluate_state(extractor: features.Extractor, state: state_lib.TrainState) -> dict[str, float]:
    """The metrics training logs of ``state``: `TRAINING_EVALUATORS` on freshly extracted features.

    Args:
      extractor: the eval splits and the compiled embedding.
      state: the state to evaluate.

    Returns:
      The evaluators' metrics and the headline ``knn/top1``: kNN top-1 at ``evals.knn.k``.
    """
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    context = extractor.extract(variables, step=int(jax.device_get(state.step)))
    evals.run(evals.get_evaluators(TRAINING_EVALUATORS), context)
    metrics = {k: v for r in context.results.values() for k, v in r.metrics.items()}
    metrics["knn/top1"] = metrics[f"knn/top1_k{extractor.config.evals.knn.k}"]
    return metrics


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains (or resumes) the run in ``workdir`` and evaluates it.

    Args:
      config: the locked run config.
      workdir: where checkpoints, ``metrics.jsonl``, TensorBoard files and ``config.json`` go.
        Rerunning with the same workdir resumes from the latest checkpoint.

    Returns:
      The last logged metrics and the final evaluation.

    Raises:
      guards.NonFiniteLossError: the loss became NaN or Inf under ``on_nonfinite="stop"``.
    """
    run_start = time.perf_counter()
    guards.FiniteGuard.validate(config.train)
    import_wandb(config.train)  # train.wandb without wandb installed: fail before writing
    os.makedirs(workdir, exist_ok=True)
    batch_size = config.train.batch_size

    # --- Mesh ---
    mesh = sharding.make_mesh(config.mesh)
    check_batch_size(config, mesh)
    sharding.check_batch_size(config.evals.knn.batch_size, mesh)
    logging.info(
        "Mesh %s over %d processes; global batch %d.",
        dict(mesh.shape),
        jax.process_count(),
        batch_size,
    )
    # Every array and computation from here on lives on this mesh.
    with jax.set_mesh(mesh):
        # --- Model, optimizer, step ---
        run = build(config, mesh)
        total_bytes, device_bytes = sharding.state_bytes(run.abstract_state)
        logging.info(
            "Train state: %.1f MiB, of which %.1f MiB on each device.",
            total_bytes / 2**20,
            device_bytes / 2**20,
        )

        # --- Data first: a missing dataset must fail before anything is written ---
        input_pipeline.prepare(config.data, process_count=jax.process_count())  # data.download
        extractor = features.Extractor(config, run.model, mesh)

        # --- Checkpoint: resume from the newest readable one ---
        checkpointer = checkpoint.Checkpointer(
            os.path.join(workdir, "checkpoints"), config, keep=config.train.keep_checkpoints
        )
        try:
            state = checkpointer.restore_latest_usable(run.abstract_state)
        except errors.UserError:
            checkpointer.close()  # its background work must not outlive the error
            raise
        if state is not None:
            logging.warning(
                "Resuming from %s at step %d.",
                checkpointer.directory,
                int(jax.device_get(state.step)),
            )
        else:
            state = run.init_state()
        start_step = int(jax.device_get(state.step))

        # --- Length: the config's, or the one the time budget fitted (or will fit) ---
        budget = guards.TimeBudget(config.train, workdir, start_step)
        num_steps = budget.num_steps(int(config.train.num_steps))
        if num_steps != int(config.train.num_steps):
            config = with_num_steps(config, num_steps)
            run = build(config, mesh)  # the same state; the step's schedules change
        num_params = sum(x.size for x in jax.tree.leaves(run.abstract_state.params))
        console.say(
            console.header(config, mesh, num_params, extractor.num_examples, start_step, num_steps)
        )
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
        writer = MetricWriter(workdir, resume_step=start_step, config=config)
        guard = guards.FiniteGuard(config.train, checkpointer)
        preemption = guards.Preemption()
        progress = tqdm.tqdm(
            total=num_steps,
            initial=start_step,
            dynamic_ncols=True,
            disable=not config.train.progress_bar or jax.process_index() != 0,
        )
        views_per_step = batch_size * (config.data.num_views + config.data.local_views)
        timer = StepTimer(views_per_step=views_per_step)
        # The remaining time is said once, at the second throughput reading after the length is
        # fixed: the first one still holds the warm-up steps after compiling.
        readings = 0
        last_metrics = {}
        step = start_step  # steps done
        try:
            while step < num_steps:
                batch = sharding.to_global(next(train_iter), mesh)
                with jax.transfer_guard("disallow"):
                    state, metrics = run.train_step(state, batch)
                step += 1
                guard.add(step, metrics["train/nonfinite"])
                timer.add(metrics)
                fitted = budget.step_done(
                    step, metrics, timer.loop_start, timer.first_compile_seconds
                )
                if fitted is not None:
                    num_steps = fitted
                    config = with_num_steps(config, num_steps)
                    run = build(config, mesh)
                    progress.total = num_steps
                    _write_config(config, workdir)
                is_last = step == num_steps
                preempted = preemption.reached(step)
                if step % config.train.log_every_steps == 0 or is_last or preempted:
                    guard.check()
                    means, perf, steps_logged = timer.flush()
                    nonfinite_steps = int(jax.device_get(state.nonfinite_steps))
                    last_metrics = {**means, "train/nonfinite_steps": nonfinite_steps, **perf}
                    writer.write(step, last_metrics)
                    img_per_s = last_metrics.get("perf/img_per_s")
                    fitting = budget.calibrate_at is not None and budget.fitted is None
                    readings += bool(img_per_s) and not fitting
                    if readings == 2 and img_per_s and not fitting and not is_last:
                        console.say(console.estimate(step, num_steps, img_per_s, views_per_step))
                    progress.set_postfix(
                        loss=f"{last_metrics['train/loss']:.3f}",
                        img_s=f"{last_metrics.get('perf/img_per_s', float('nan')):.0f}",
                    )
                    progress.update(steps_logged)
                if step % config.train.checkpoint_every_steps == 0 or is_last or preempted:
                    guard.check()  # never checkpoint past a step that must stop the run
                    checkpointer.save(step, state)
                if preempted and not is_last:
                    checkpointer.wait()
                    message = (
                        f"Preempted (SIGTERM): stopped after step {step} of {num_steps} and "
                        f"saved a checkpoint in {checkpointer.directory}. Rerun the same command "
                        "to resume."
                    )
                    logging.warning(message)
                    print(message, flush=True)
                    checkpointer.close()
                    writer.close()
                    return {**last_metrics, "preempted_at_step": step}
                evaluate_every = config.evals.knn.every_steps
                if evaluate_every and step % evaluate_every == 0 and not is_last:
                    writer.write(step, evaluate_state(extractor, state))
                    timer.restart()
        except jax.errors.JaxRuntimeError as e:
            if "RESOURCE_EXHAUSTED" in str(e):
                raise errors.UserError(_out_of_memory(config, mesh.devices.size, e)) from e
            if jax.process_count() == 1:
                raise
            raise errors.PeerLostError(
                f"Process {jax.process_index()} of {jax.process_count()}: a collective failed, "
                f"most likely because another process died or lost its connection ({e}). Last "
                f"checkpoint: step {checkpointer.latest_step()} in {checkpointer.directory}. "
                "Relaunch every process with the same command to resume from it."
            ) from e
        finally:
            preemption.close()
            progress.close()

        # --- Final evaluation ---
        eval_start = time.perf_counter()
        results = evaluate_state(extractor, state)
        results["perf/knn_eval_seconds"] = time.perf_counter() - eval_start
        writer.write(step, results)
        logging.info("Step %d: %s", step, json.dumps(results))
        console.say(
            console.results_table(
                {**last_metrics, **results}, time.perf_counter() - run_start, workdir
            )
        )
        checkpointer.wait()
        checkpointer.close()
        writer.close()
        return {**last_metrics, **results}
