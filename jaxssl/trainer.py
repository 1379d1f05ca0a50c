"""``train_and_evaluate``: mesh, data, state, the loop, checkpoints and evaluation."""

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging

from jaxssl import checkpoint, methods, optim, sharding
from jaxssl import state as state_lib
from jaxssl import step as step_lib
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import knn
from jaxssl.metrics import MetricWriter


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; training stopped and the last good checkpoint was kept."""


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
        )[0]
        for split in (config.data.eval_train_split, config.data.eval_test_split)
    }
    return knn.KNNEvaluator(
        model,
        make_batches[config.data.eval_train_split],
        make_batches[config.data.eval_test_split],
        mesh,
        ks=(config.evals.knn.k,),
        temperature=config.evals.knn.temperature,
        num_classes=config.data.num_classes,
    )


@dataclasses.dataclass(frozen=True)
class Training:
    """What a run is made of: the model, the state initializer and the compiled step."""

    model: nn.Module
    init_fn: Callable[[jax.Array], state_lib.TrainState]
    init_key: jax.Array
    train_step: Callable  # jitted (state, batch) -> (state, metrics), state donated


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
    init_fn = state_lib.make_init_fn(model, probe, tx, probe_tx, image_shape)
    init_key, base_key = jax.random.split(jax.random.key(config.seed))
    step_fn = step_lib.make_train_step(
        model, method, probe, tx, probe_tx, lr_schedule, config, base_key
    )
    replicated = sharding.replicated(mesh)
    train_step = jax.jit(
        step_fn,
        in_shardings=(replicated, sharding.batch_sharding(mesh)),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    return Training(model=model, init_fn=init_fn, init_key=init_key, train_step=train_step)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains (or resumes) the run in ``workdir`` and evaluates it.

    Args:
      config: the locked run config.
      workdir: where checkpoints, ``metrics.jsonl``, TensorBoard files and ``config.json`` go.
        Rerunning with the same workdir resumes from the latest checkpoint.

    Returns:
      The last logged metrics and the final evaluation.
    """
    os.makedirs(workdir, exist_ok=True)
    num_steps = int(config.train.num_steps)
    batch_size = config.train.batch_size

    # --- Mesh ---
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_batch_size(batch_size, mesh)
    sharding.check_batch_size(config.evals.knn.batch_size, mesh)
    replicated = sharding.replicated(mesh)
    logging.info(
        "Mesh %s over %d processes; %d steps of global batch %d.",
        dict(mesh.shape),
        jax.process_count(),
        num_steps,
        batch_size,
    )

    # --- Model, optimizer, step ---
    run = build(config, mesh)
    model = run.model

    # --- Checkpoint: resume if the workdir has one ---
    checkpointer = checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"), config, keep=config.train.keep_checkpoints
    )
    latest = checkpointer.latest_step()
    if latest is not None:
        abstract = checkpoint.abstract_with_sharding(
            jax.eval_shape(run.init_fn, run.init_key), replicated
        )
        state = checkpointer.restore(abstract)
        logging.warning("Resuming from %s at step %d.", checkpointer.directory, latest)
    else:
        state = jax.jit(run.init_fn, out_shardings=replicated)(run.init_key)
    start_step = int(jax.device_get(state.step))
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    # --- Data ---
    train_iter = input_pipeline.make_train_iterator(
        config.data,
        global_batch_size=batch_size,
        seed=config.seed,
        start_step=start_step,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    knn_evaluator = make_knn_evaluator(config, model, mesh)

    # --- Loop ---
    writer = MetricWriter(workdir)
    progress = tqdm.tqdm(
        total=num_steps,
        initial=start_step,
        dynamic_ncols=True,
        disable=not config.train.progress_bar or jax.process_index() != 0,
    )
    views_per_step = batch_size * config.data.num_views
    pending, last_metrics = [], {}
    interval_start, interval_steps, timed_steps = time.perf_counter(), 0, 0
    compile_seconds = None
    for step in range(start_step, num_steps):
        batch = sharding.to_global(next(train_iter), mesh)
        with jax.transfer_guard("disallow"):
            state, metrics = run.train_step(state, batch)
        pending.append(metrics)
        interval_steps += 1
        if step == start_step:
            # The first call compiles: throughput is timed from the second step on.
            jax.block_until_ready(metrics)
            compile_seconds = time.perf_counter() - interval_start
            interval_start, timed_steps = time.perf_counter(), 0
        else:
            timed_steps += 1
        is_last = step + 1 == num_steps
        if (step + 1) % config.train.log_every_steps == 0 or is_last:
            host = jax.device_get(pending)
            elapsed = time.perf_counter() - interval_start
            last_metrics = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
            if not math.isfinite(last_metrics["train/loss"]):
                checkpointer.wait()
                raise NonFiniteLossError(
                    f"Non-finite loss {last_metrics['train/loss']} at or before step {step + 1}. "
                    f"Last good checkpoint: step {checkpointer.latest_step()} in "
                    f"{checkpointer.directory} (kept; None means none was written yet). Lower "
                    "--config.optim.base_lr or check the input data."
                )
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
        if (step + 1) % config.train.checkpoint_every_steps == 0 or is_last:
            checkpointer.save(step + 1, state)
        knn_every = config.evals.knn.every_steps
        if knn_every and (step + 1) % knn_every == 0 and not is_last:
            writer.write(step + 1, knn_evaluator.run(state))
            interval_start, timed_steps = time.perf_counter(), 0
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
