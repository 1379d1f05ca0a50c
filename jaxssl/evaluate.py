"""``jaxssl eval``: the offline evaluation suite of a trained run.

    jaxssl eval --workdir W [--step N] [--config.evals.linear.flip=true] [--config.X=...]

Reads ``W/config.json`` (the config the run was trained with; ``--config.a.b=v`` overrides
apply on top, e.g. evaluator settings, or ``data.name`` / ``data.eval_*`` to transfer to
another TFDS dataset), restores the latest (or ``--step``) checkpoint onto the current devices
(any count: the state is replicated), extracts backbone features and projections of the eval
splits once, and runs the evaluators named in ``config.evals.run`` (`jaxssl.evals.EVALUATORS`:
``knn``, ``linear``, ``spectral``, ``rankme``, ``plots``).

Writes ``W/eval/<step>.json`` (metrics, protocols, wall times, spectra), ``W/eval/<step>.md``
(the table, also printed) and ``W/eval/<step>_*.png``, the PNGs also as TensorBoard image
summaries ``eval/<figure>`` of that step in ``W/tensorboard``.
"""

import json
import os
import time
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import optax

from jaxssl import checkpoint, errors, evals, methods, metrics, saved_config, sharding
from jaxssl import state as state_lib
from jaxssl import sweep as sweep_lib
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import dynamics, dynamics_plots, features

EVAL_DIR = "eval"


def restore_state(
    config: ml_collections.ConfigDict,
    workdir: str,
    mesh: jax.sharding.Mesh,
    step: int | None,
    replica: int | None = None,
) -> tuple[nn.Module, dict, int]:
    """Restores a run's parameters and BatchNorm statistics onto ``mesh`` (laid out as training
    on ``mesh`` would), whatever mesh it was saved from.

    The target shapes come from ``jax.eval_shape`` of the state's init function: nothing is
    computed or compiled but the restore.

    Args:
      config: the run config (state shapes come from its model and method).
      workdir: the run's directory.
      mesh: the mesh to restore onto, e.g. over ``jax.devices()[:1]``.
      step: the step to restore; default the latest.
      replica: the replica to restore, for a workdir that holds a sweep (`jaxssl.sweep`).

    Returns:
      ``(model, variables, step)``: ``variables = {"params": ..., "batch_stats": ...}``, the
      trained network's or its EMA teacher's, as ``config.evals.encoder`` says.

    Raises:
      FileNotFoundError: the workdir has no checkpoint.
      errors.ConfigError: ``replica`` is missing for a sweep, out of range, or given for a
        single run.
    """
    sweep = sweep_lib.read(workdir)
    if sweep is None and replica is not None:
        raise errors.ConfigError(f"--replica: {workdir} holds a single run, not a sweep.")
    if sweep is not None and (replica is None or not 0 <= replica < sweep.size):
        raise errors.ConfigError(
            f"{workdir} holds a sweep of {sweep.size} replicas: pass --replica R with "
            f"0 <= R < {sweep.size} (got {replica})."
        )
    directory = os.path.join(workdir, "checkpoints")
    missing = f"No checkpoint in {directory}: train first (`jaxssl train --workdir {workdir}`)."
    if not os.path.isdir(directory):
        raise errors.MissingFileError(missing)
    method = methods.get_method(config.method.name)
    model = method.build_model(config)
    # Only params and batch_stats are read back, so the probe's and the optimizers' shapes do
    # not matter here: identity optimizers hold no state.
    init_fn = state_lib.make_init_fn(
        model,
        method,
        config.method,
        nn.Dense(config.data.num_classes, name="probe"),
        optax.identity(),
        optax.identity(),
        (config.data.image_size, config.data.image_size, 3),
    )
    abstract = jax.eval_shape(init_fn, jax.random.key(config.seed))
    if sweep is not None:  # the stacked state of every replica, [R, ...]
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct((sweep.size, *x.shape), x.dtype), abstract
        )
    state_sharding = sharding.state_shardings(
        abstract, mesh, config.mesh.get("fsdp_min_size", 2**14)
    )
    abstract = checkpoint.abstract_with_sharding(abstract, state_sharding)
    checkpointer = checkpoint.Checkpointer(directory, config, keep=config.train.keep_checkpoints)
    try:
        step = checkpointer.latest_step() if step is None else step
        if step is None:
            raise errors.MissingFileError(missing)
        encoder = config.evals.encoder
        # evals.encoder="target" for a method without a teacher: fail before reading anything.
        features.evaluated_variables(
            encoder, abstract.params, abstract.batch_stats, abstract.method_state
        )
        restored = checkpointer.restore_variables(abstract, step, teacher=encoder == "target")
    finally:
        checkpointer.close()
    if sweep is not None:
        restored = jax.tree.map(lambda x: x[replica], restored)
    variables = features.evaluated_variables(
        encoder, restored["params"], restored["batch_stats"], restored.get("method_state")
    )
    return model, variables, int(step)


def evaluate_replicas(
    config: ml_collections.ConfigDict,
    workdir: str,
    step: int | None = None,
    replica: int | None = None,
):
    """`evaluate` of a single run, or of a sweep's ``replica`` (default every replica in turn).

    Yields:
      Each evaluated run's report.
    """
    sweep = sweep_lib.read(workdir)
    if sweep is None or replica is not None:
        yield evaluate(config, workdir, step, replica)
        return
    for r in range(sweep.size):
        yield evaluate(sweep.replica_config(config, r), workdir, step, r)


def evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    step: int | None = None,
    replica: int | None = None,
) -> dict[str, Any]:
    """Runs ``config.evals.run`` on ``workdir``'s checkpoint and writes ``W/eval/<step>.*``
    (``W/eval/<step>_replica<r>.*`` for a sweep's replica).

    Args:
      config: the run's config (`jaxssl.saved_config.load`), with any evaluation overrides.
      workdir: the training run's directory.
      step: the checkpoint step; default the latest.
      replica: the replica of a sweep to evaluate (required for a sweep).

    Returns:
      The report: ``{"step", "metrics", "protocols", "seconds", "details", "files"}`` (also
      written to ``W/eval/<step>.json``).
    """
    evaluators = evals.get_evaluators(config.evals.run)
    seconds = {}

    # --- Mesh ---
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_batch_size(config.evals.knn.batch_size, mesh)

    # --- Checkpoint ---
    start = time.perf_counter()
    # The probe head's shape is the training dataset's class count, whatever is evaluated now.
    state_config = config.copy_and_resolve_references()
    state_config.data.num_classes = saved_config.load(workdir).data.num_classes
    model, variables, step = restore_state(state_config, workdir, mesh, step, replica)
    seconds["restore"] = time.perf_counter() - start

    # --- Features, extracted once ---
    input_pipeline.prepare(config.data, process_count=jax.process_count())  # data.download
    start = time.perf_counter()
    out_dir = os.path.join(workdir, EVAL_DIR)
    name = str(step) if replica is None else f"{step}_replica{replica}"
    context = features.Extractor(config, model, mesh).extract(
        variables, workdir=workdir, step=step, out_prefix=os.path.join(out_dir, name)
    )
    # Dispatch is asynchronous: time the extraction itself here.
    jax.block_until_ready((context.train, context.test))
    seconds["features"] = time.perf_counter() - start
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)

    # --- Evaluators ---
    seconds |= evals.run(evaluators, context)

    # --- Training dynamics, if the run measured them (evals.dynamics) ---
    dynamics_name = None if replica is None else f"replica_{replica}"
    dynamics_files = {}
    if jax.process_index() == 0 and dynamics.load(workdir, dynamics_name):
        dynamics_files = dynamics_plots.plot(
            workdir, f"{context.out_prefix}_dynamics", dynamics_name
        )

    # --- Report ---
    report = {
        "step": step,
        "out_prefix": name,
        "workdir": os.path.abspath(workdir),
        "data": {
            "name": config.data.name,
            "train_split": config.data.eval_train_split,
            "test_split": config.data.eval_test_split,
            "image_size": config.data.eval_image_size,
            "num_train": context.num_real(context.train),
            "num_test": context.num_real(context.test),
        },
        "metrics": {k: v for r in context.results.values() for k, v in r.metrics.items()},
        "protocols": {name: r.protocol for name, r in context.results.items()},
        "seconds": seconds,
        "details": {name: r.details for name, r in context.results.items()},
        "devices": jax.device_count(),
        "dynamics_plots": dynamics_files,
    }
    if replica is not None:
        report["replica"] = replica
        report["sweep"] = sweep_lib.read(workdir).assignment(replica)
    if jax.process_index() == 0:
        with open(f"{context.out_prefix}.json", "w") as f:
            json.dump(report, f, indent=2)
        with open(f"{context.out_prefix}.md", "w") as f:
            f.write(markdown_table(report))
    # The figures also go to TensorBoard, at the checkpoint's step, beside training's scalars.
    figures = report["details"].get("plots", {}).get("files", {})
    tag = "eval" if replica is None else f"eval/replica_{replica}"
    metrics.write_images(workdir, step, {f"{tag}/{name}": path for name, path in figures.items()})
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """The report as Markdown: a table of metrics per evaluator, protocols and wall times."""
    data = report["data"]
    lines = [
        f"## jaxssl eval: step {report['step']}"
        + (f", replica {report['replica']} ({report['sweep']})" if "replica" in report else ""),
        "",
        f"`{report['workdir']}`; {data['name']} {data['train_split']} ({data['num_train']}) -> "
        f"{data['test_split']} ({data['num_test']}) at {data['image_size']} px; "
        f"{report['devices']} device(s).",
        "",
        "| evaluator | metric | value |",
        "|---|---|---|",
    ]
    for key, value in report["metrics"].items():
        if "holdout_top1" in key:
            continue  # in the JSON; the table keeps the chosen wd and the test numbers
        group, _, name = key.partition("/")
        lines.append(f"| {group} | {name} | {value:.4g} |")
    lines += ["", "Protocols:", ""]
    lines += [f"- **{name}**: {protocol}" for name, protocol in report["protocols"].items()]
    times = ", ".join(f"{name} {s:.1f} s" for name, s in report["seconds"].items())
    lines += ["", f"Wall time: {times}.", ""]
    files = report["details"].get("plots", {}).get("files", {})
    if files:
        lines += ["Figures: " + ", ".join(os.path.basename(p) for p in files.values()), ""]
    return "\n".join(lines)
