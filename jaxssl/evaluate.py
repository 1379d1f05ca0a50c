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
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import features

EVAL_DIR = "eval"


def restore_state(
    config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh, step: int | None
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

    Returns:
      ``(model, variables, step)``: ``variables = {"params": ..., "batch_stats": ...}``.

    Raises:
      FileNotFoundError: the workdir has no checkpoint.
    """
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
    state_sharding = sharding.state_shardings(
        abstract, mesh, config.mesh.get("fsdp_min_size", 2**14)
    )
    abstract = checkpoint.abstract_with_sharding(abstract, state_sharding)
    checkpointer = checkpoint.Checkpointer(directory, config, keep=config.train.keep_checkpoints)
    try:
        step = checkpointer.latest_step() if step is None else step
        if step is None:
            raise errors.MissingFileError(missing)
        variables = checkpointer.restore_variables(abstract, step)
    finally:
        checkpointer.close()
    return model, variables, int(step)


def evaluate(
    config: ml_collections.ConfigDict, workdir: str, step: int | None = None
) -> dict[str, Any]:
    """Runs ``config.evals.run`` on ``workdir``'s checkpoint and writes ``W/eval/<step>.*``.

    Args:
      config: the run's config (`jaxssl.saved_config.load`), with any evaluation overrides.
      workdir: the training run's directory.
      step: the checkpoint step; default the latest.

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
    model, variables, step = restore_state(state_config, workdir, mesh, step)
    seconds["restore"] = time.perf_counter() - start

    # --- Features, extracted once ---
    input_pipeline.prepare(config.data, process_count=jax.process_count())  # data.download
    start = time.perf_counter()
    out_dir = os.path.join(workdir, EVAL_DIR)
    context = features.Extractor(config, model, mesh).extract(
        variables, workdir=workdir, step=step, out_prefix=os.path.join(out_dir, str(step))
    )
    # Dispatch is asynchronous: time the extraction itself here.
    jax.block_until_ready((context.train, context.test))
    seconds["features"] = time.perf_counter() - start
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)

    # --- Evaluators ---
    seconds |= evals.run(evaluators, context)

    # --- Report ---
    report = {
        "step": step,
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
    }
    if jax.process_index() == 0:
        with open(f"{context.out_prefix}.json", "w") as f:
            json.dump(report, f, indent=2)
        with open(f"{context.out_prefix}.md", "w") as f:
            f.write(markdown_table(report))
    # The figures also go to TensorBoard, at the checkpoint's step, beside training's scalars.
    figures = report["details"].get("plots", {}).get("files", {})
    metrics.write_images(workdir, step, {f"eval/{name}": path for name, path in figures.items()})
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """The report as Markdown: a table of metrics per evaluator, protocols and wall times."""
    data = report["data"]
    lines = [
        f"## jaxssl eval: step {report['step']}",
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
