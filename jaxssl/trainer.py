"""``train_and_evaluate``: mesh, data, state, the loop, checkpoints and evaluation.

The loop consults the policies of `jaxssl.guards` (preemption, non-finite loss, time budget)
after every step and evaluates with the evaluators of `jaxssl.evals`, the same ones
``jaxssl eval`` runs.
"""

import copy
import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging

from jaxssl import checkpoint, console, errors, evals, guards, methods, optim, sharding
from jaxssl import state as state_lib
from jaxssl import step as step_lib
from jaxssl import sweep as sweep_lib
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import dynamics, dynamics_plots, features
from jaxssl.metrics import MetricWriter, StepTimer, import_wandb

# A swept value used as a Python number while tracing (`jaxssl.sweep.describe_trace_error`).
_TRACE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)
# What training evaluates, periodically and at the end (`jaxssl.evals.EVALUATORS`).
TRAINING_EVALUATORS = ("knn", "rankme")


def with_num_steps(config: ml_collections.ConfigDict, num_steps: int) -> ml_collections.ConfigDict:
    """A copy of ``config`` that is ``num_steps`` long (``epochs`` to match, for the record).

    Other references stay linked, so a sweep's replica values still move derived fields.
    """
    config = copy.deepcopy(config)
    with config.unlocked():
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
    init_key: jax.Array  # from config.seed ([R] keys for a sweep)
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


def _make_functions(
    config: ml_collections.ConfigDict,
) -> tuple[nn.Module, Callable, jax.Array, Callable]:
    """``(model, init_fn, init_key, step_fn)`` of one run: ``init_fn(init_key)`` and
    ``step_fn(state, batch)``.

    ``config`` may hold traced values (a sweep's replica, `jaxssl.sweep.traced_config`): every
    hyper-parameter and the seed are read here, inside what the caller traces.
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
    return model, init_fn, init_key, step_fn


def _make_sweep_functions(
    config: ml_collections.ConfigDict, sweep: sweep_lib.Sweep
) -> tuple[nn.Module, Callable, jax.Array, Callable]:
    """`_make_functions` of a sweep: each replica's functions, vmapped; ``init_key`` is ``[R]``.

    The replicas' differing fields are ``[R]`` arrays; each replica's functions are built from
    the base config with its values (traced) set, so one program trains them all.
    """
    configs = [sweep.replica_config(config, r) for r in range(sweep.size)]
    base, values = sweep_lib.hyperparameters(configs)
    model = methods.get_method(config.method.name).build_model(config)
    init_key = jax.vmap(lambda seed: jax.random.split(jax.random.key(seed))[0])(
        np.asarray([c.seed for c in configs], np.int32)
    )
    batch_axis = 0 if sweep.data == "independent" else None

    def replica_init(replica_values, key):
        return _make_functions(sweep_lib.traced_config(base, replica_values))[1](key)

    def replica_step(replica_values, state, batch):
        step_fn = _make_functions(sweep_lib.traced_config(base, replica_values))[3]
        return step_fn(state, batch)

    if sweep.resolved_mode() == "vmap":

        def init_fn(keys):
            return jax.vmap(replica_init)(values, keys)

        def step_fn(state, batch):
            return jax.vmap(replica_step, in_axes=(0, 0, batch_axis))(values, state, batch)

    else:  # "unroll": each replica's step traced into the one program

        def unrolled(fn, *trees, axes):
            # jnp.asarray stages the values into the program: replica r reads traced numbers,
            # as under vmap, so both modes accept and refuse the same fields.
            def part(tree, r):
                return jax.tree.map(lambda x: jnp.asarray(x)[r], tree)

            outs = [
                fn(*(part(t, r) if a == 0 else t for t, a in zip(trees, axes, strict=True)))
                for r in range(sweep.size)
            ]
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

        def init_fn(keys):
            return unrolled(replica_init, values, keys, axes=(0, 0))

        def step_fn(state, batch):
            return unrolled(replica_step, values, state, batch, axes=(0, 0, batch_axis))

    return model, init_fn, init_key, step_fn


def build(
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    sweep: sweep_lib.Sweep | None = None,
) -> Training:
    """Builds model, optimizers, state initializer and the jitted train step for ``mesh``.

    Args:
      config: the run config.
      mesh: the device mesh (with a ``"replica"`` axis for a sweep).
      sweep: train the replicas of this sweep in one program (state ``[R, ...]``).

    Returns:
      A ``Training``; ``train_step`` is the only ``jax.jit`` of the step in the library.

    Raises:
      errors.ConfigError: a swept field that the step cannot take as a traced number.
    """
    if sweep is None:
        model, init_fn, init_key, step_fn = _make_functions(config)
    else:
        if config.method.get("loss_impl", "dense") != "dense":
            # Its shard_map splits the batch over the mesh's batch axes, not over replicas.
            raise errors.ConfigError(
                "Sweeps need method.loss_impl='dense' (the blockwise NT-Xent is per-device code)."
            )
        model, init_fn, init_key, step_fn = _make_sweep_functions(config, sweep)
    # Replicated state, or with config.mesh.fsdp > 1 its large arrays split over "fsdp".
    try:
        abstract = jax.eval_shape(init_fn, init_key)
    except _TRACE_ERRORS as e:
        if sweep is None:
            raise
        raise errors.ConfigError(sweep_lib.describe_trace_error(sweep, e)) from e
    state_sharding = sharding.state_shardings(
        abstract, mesh, config.mesh.get("fsdp_min_size", 2**14)
    )
    stacked = sweep is not None and sweep.data == "independent"
    train_step = jax.jit(
        step_fn,
        in_shardings=(state_sharding, sharding.batch_sharding(mesh, stacked)),
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


def current_step(state: state_lib.TrainState) -> int:
    """The steps ``state`` has trained (a sweep's replicas all have the same)."""
    return int(np.max(jax.device_get(state.step)))


@functools.partial(jax.jit, static_argnames="mesh")
def _replica_part(tree, replica, mesh):
    part = jax.tree.map(lambda x: x[replica], tree)
    return jax.lax.with_sharding_constraint(part, sharding.replicated(mesh))


def replica_part(tree, replica: int, mesh: jax.sharding.Mesh):
    """Replica ``replica`` of a sweep's stacked pytree (``[R, ...]`` leaves), whole on every
    device (one compilation for every replica: the index is an argument)."""
    return _replica_part(tree, np.int32(replica), mesh)


def _make_dynamics(config, run, mesh, workdir, start_step, sweep) -> list[dynamics.Dynamics]:
    """The training-dynamics instruments: one, or one per replica of a sweep (each with its
    replica's config, so update ratios use its optimizer), all on one probe set."""
    method = methods.get_method(config.method.name)
    first = dynamics.Dynamics(
        config, run.model, method, mesh, workdir, start_step, name="replica_0" if sweep else None
    )
    if sweep is None:
        return [first]
    return [first] + [
        dynamics.Dynamics(
            sweep.replica_config(config, r),
            run.model,
            method,
            mesh,
            workdir,
            start_step,
            name=f"replica_{r}",
            probe=first.probe,
        )
        for r in range(1, sweep.size)
    ]


def measure_dynamics(instruments, state, step, mesh, sweep) -> None:
    """`dynamics.Dynamics.measure` of the state (of each replica, for a sweep)."""
    if sweep is None:
        instruments[0].measure(state, step)
        return
    for replica, instrument in enumerate(instruments):
        instrument.measure(replica_part(state, replica, mesh), step)


def evaluate_state(
    extractor: features.Extractor, state: state_lib.TrainState, replicas: int = 0
) -> dict[str, float | np.ndarray]:
    """The metrics training logs of ``state``: `TRAINING_EVALUATORS` on freshly extracted features.

    Args:
      extractor: the eval splits and the compiled embedding.
      state: the state to evaluate: its network or its EMA teacher, as ``evals.encoder`` says
        (`features.evaluated_variables`).
      replicas: a sweep's number of replicas (0: a single run); each is evaluated in turn.

    Returns:
      The evaluators' metrics and the headline ``knn/top1``: kNN top-1 at ``evals.knn.k``;
      for a sweep, each metric as an ``[R]`` array.
    """
    step = current_step(state)
    whole = features.evaluated_variables(
        extractor.config.evals.encoder,
        state.params,
        state.batch_stats,
        state.method_state,
    )
    per_replica = []
    for replica in range(max(replicas, 1)):
        variables = replica_part(whole, replica, extractor.mesh) if replicas else whole
        context = extractor.extract(variables, step=step)
        evals.run(evals.get_evaluators(TRAINING_EVALUATORS), context)
        metrics = {k: v for r in context.results.values() for k, v in r.metrics.items()}
        metrics["knn/top1"] = metrics[f"knn/top1_k{extractor.config.evals.knn.k}"]
        per_replica.append(metrics)
    if not replicas:
        return per_replica[0]
    return {k: np.asarray([m[k] for m in per_replica]) for k in per_replica[0]}


def _train_iterator(config, sweep, start_step):
    """The input pipeline: one, or with ``sweep.data == "independent"`` one per replica, each
    seeded by its replica's seed, stacked into ``[R, B, ...]`` batches."""

    def make(seed):
        return input_pipeline.make_train_iterator(
            config.data,
            global_batch_size=config.train.batch_size,
            seed=seed,
            start_step=start_step,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    if sweep is None or sweep.data == "shared":
        yield from make(config.seed)
        return
    iterators = [make(sweep.replica_config(config, r).seed) for r in range(sweep.size)]
    while True:
        batches = [next(it) for it in iterators]
        yield {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, sweep: sweep_lib.Sweep | None = None
) -> dict[str, float]:
    """Trains (or resumes) the run in ``workdir`` and evaluates it.

    Args:
      config: the locked run config.
      workdir: where checkpoints, ``metrics.jsonl``, TensorBoard files and ``config.json`` go.
        Rerunning with the same workdir resumes from the latest checkpoint.
      sweep: train these replicas in one program (`jaxssl.sweep`); default: the sweep the
        workdir records, if any. Metrics then carry ``replica`` and the swept values, and the
        returned metrics are ``[R]`` arrays.

    Returns:
      The last logged metrics and the final evaluation.

    Raises:
      guards.NonFiniteLossError: the loss became NaN or Inf under ``on_nonfinite="stop"``.
    """
    run_start = time.perf_counter()
    guards.FiniteGuard.validate(config.train)
    import_wandb(config.train)  # train.wandb without wandb installed: fail before writing
    sweep = sweep_lib.resolve(workdir, sweep)
    replicas = sweep.size if sweep else 0
    os.makedirs(workdir, exist_ok=True)
    batch_size = config.train.batch_size

    # --- Mesh ---
    if sweep:
        axis = sweep_lib.replica_axis_size(sweep.size, jax.device_count(), batch_size)
        mesh = sharding.make_mesh(config.mesh, replicas=axis)
    else:
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
        run = build(config, mesh, sweep)
        # evals.encoder="target" for a method without a teacher: fail before training.
        features.evaluated_variables(
            config.evals.encoder,
            run.abstract_state.params,
            run.abstract_state.batch_stats,
            run.abstract_state.method_state,
        )
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
                current_step(state),
            )
        else:
            state = run.init_state()
        start_step = current_step(state)

        # --- Length: the config's, or the one the time budget fitted (or will fit) ---
        budget = guards.TimeBudget(config.train, workdir, start_step)
        num_steps = budget.num_steps(int(config.train.num_steps))
        if num_steps != int(config.train.num_steps):
            config = with_num_steps(config, num_steps)
            run = build(config, mesh, sweep)  # the same state; the step's schedules change
        num_params = sum(x.size for x in jax.tree.leaves(run.abstract_state.params))
        console.say(
            console.header(
                config,
                mesh,
                num_params // max(replicas, 1),
                extractor.num_examples,
                start_step,
                num_steps,
                sweep,
            )
        )
        _write_config(config, workdir)
        sweep_lib.write(workdir, sweep)

        train_iter = _train_iterator(config, sweep, start_step)
        stacked = sweep is not None and sweep.data == "independent"
        # Training dynamics on a fixed probe set (evals.dynamics), outside the hot step.
        dynamics_every = int(config.evals.dynamics.every_steps)
        instruments = []
        if dynamics_every:
            instruments = _make_dynamics(config, run, mesh, workdir, start_step, sweep)
            if start_step == 0:
                measure_dynamics(instruments, state, 0, mesh, sweep)

        # --- Loop ---
        writer = MetricWriter(workdir, resume_step=start_step, config=config, sweep=sweep)
        guard = guards.FiniteGuard(config.train, checkpointer)
        preemption = guards.Preemption()
        progress = tqdm.tqdm(
            total=num_steps,
            initial=start_step,
            dynamic_ncols=True,
            disable=not config.train.progress_bar or jax.process_index() != 0,
        )
        views_per_step = batch_size * (config.data.num_views + config.data.local_views)
        views_per_step *= max(replicas, 1)  # a sweep: img/s over all its replicas
        timer = StepTimer(views_per_step=views_per_step)
        # The remaining time is said once, at the second throughput reading after the length is
        # fixed: the first one still holds the warm-up steps after compiling.
        readings = 0
        last_metrics = {}
        step = start_step  # steps done
        try:
            while step < num_steps:
                batch = sharding.to_global(next(train_iter), mesh, stacked)
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
                    run = build(config, mesh, sweep)
                    progress.total = num_steps
                    _write_config(config, workdir)
                is_last = step == num_steps
                preempted = preemption.reached(step)
                if step % config.train.log_every_steps == 0 or is_last or preempted:
                    guard.check()
                    means, perf, steps_logged = timer.flush()
                    nonfinite_steps = jax.device_get(state.nonfinite_steps)
                    last_metrics = {**means, "train/nonfinite_steps": nonfinite_steps, **perf}
                    writer.write(step, last_metrics)
                    img_per_s = last_metrics.get("perf/img_per_s")
                    fitting = budget.calibrate_at is not None and budget.fitted is None
                    readings += bool(img_per_s) and not fitting
                    if readings == 2 and img_per_s and not fitting and not is_last:
                        console.say(console.estimate(step, num_steps, img_per_s, views_per_step))
                    progress.set_postfix(
                        loss=f"{np.mean(last_metrics['train/loss']):.3f}",
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
                if dynamics_every and (step % dynamics_every == 0 or is_last):
                    measure_dynamics(instruments, state, step, mesh, sweep)
                    timer.restart()
                evaluate_every = config.evals.knn.every_steps
                if evaluate_every and step % evaluate_every == 0 and not is_last:
                    writer.write(step, evaluate_state(extractor, state, replicas))
                    timer.restart()
        except _TRACE_ERRORS as e:
            if sweep is None:
                raise
            raise errors.ConfigError(sweep_lib.describe_trace_error(sweep, e)) from e
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
        results = evaluate_state(extractor, state, replicas)
        results["perf/knn_eval_seconds"] = time.perf_counter() - eval_start
        writer.write(step, results)
        if instruments and jax.process_index() == 0:
            dynamics_plots.plot_all(workdir)  # dynamics/plots[/replica_<r>]/*.png
        wall_seconds = time.perf_counter() - run_start
        if sweep:
            console.say(
                console.sweep_table(sweep, {**last_metrics, **results}, wall_seconds, workdir)
            )
        else:
            logging.info("Step %d: %s", step, json.dumps(results))
            console.say(console.results_table({**last_metrics, **results}, wall_seconds, workdir))
        checkpointer.wait()
        checkpointer.close()
        writer.close()
        return {**last_metrics, **results}
