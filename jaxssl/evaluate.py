"""``jaxssl eval``: the offline evaluation suite of a trained run.

    jaxssl eval --workdir W [--step N] [--config.evals.linear.flip=true] [--config.X=...]

Reads ``W/config.json`` (the config the run was trained with; ``--config.a.b=v`` overrides
apply on top, e.g. evaluator settings, or ``data.name`` / ``data.eval_*`` to transfer to
another TFDS dataset), restores the latest (or ``--step``) checkpoint onto the current devices
(any count: the state is replicated), extracts backbone features and projections of the eval
splits once, and runs the evaluators named in ``config.evals.run``:

* ``knn``: weighted kNN for every k in ``evals.knn.ks`` and the majority vote;
* ``linear``: offline linear probe with weight decay chosen on held-out train rows;
* ``spectral``: RankMe, alignment, uniformity and covariance spectra of backbone features and
  projections;
* ``plots``: PNGs of training curves, spectrum, 2-D projection and nearest-neighbour retrieval.

Writes ``W/eval/<step>.json`` (metrics, protocols, wall times, spectra), ``W/eval/<step>.md``
(the table, also printed) and ``W/eval/<step>_*.png``.
"""

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxssl import checkpoint, saved_config, sharding, trainer
from jaxssl.data import color
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import knn, linear, plots, spectral

EVAL_DIR = "eval"


class Split(NamedTuple):
    """Features of one eval split: ``{"backbone": [N, D], "projector": [N, P]}``, labels, mask."""

    features: dict[str, jax.Array]
    labels: jax.Array
    mask: jax.Array


class Result(NamedTuple):
    """What an evaluator returns: flat scalar metrics, its protocol in words, JSON details."""

    metrics: dict[str, float]
    protocol: str
    details: dict[str, Any]


@dataclasses.dataclass
class Context:
    """Everything the evaluators share: extracted once, read by all."""

    config: ml_collections.ConfigDict
    workdir: str
    step: int
    mesh: jax.sharding.Mesh
    model: nn.Module
    variables: dict
    train: Split
    test: Split
    make_train_batches: Callable
    make_test_batches: Callable
    out_prefix: str  # W/eval/<step>
    results: dict[str, Result] = dataclasses.field(default_factory=dict)

    def num_real(self, split: Split) -> int:
        return int(jax.device_get(split.mask.sum()))


def restore_state(
    config: ml_collections.ConfigDict, workdir: str, mesh: jax.sharding.Mesh, step: int | None
):
    """Restores a run's parameters and BatchNorm statistics onto ``mesh`` (laid out as training
    on ``mesh`` would), whatever mesh it was saved from.

    Args:
      config: the run config (state shapes come from its model, method and
        ``data.num_classes``).
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
        raise FileNotFoundError(missing)
    checkpointer = checkpoint.Checkpointer(directory, config, keep=config.train.keep_checkpoints)
    try:
        step = checkpointer.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(missing)
        run = trainer.build(config, mesh)
        state = checkpointer.restore_variables(run.abstract_state, step)
    finally:
        checkpointer.close()
    return run.model, state, int(step)


def _host(x: jax.Array) -> np.ndarray:
    return np.asarray(jax.device_get(x))


# --- Evaluators: (Context) -> Result ---


def run_knn(context: Context) -> Result:
    """kNN top-1 of backbone features for every k of ``evals.knn.ks``, weighted and majority."""
    config, data = context.config.evals.knn, context.config.data
    num_memory = context.num_real(context.train)
    ks = tuple(k for k in config.ks if k <= num_memory) or (num_memory,)
    metrics = knn.evaluate_features(
        (context.train.features["backbone"], context.train.labels, context.train.mask),
        (context.test.features["backbone"], context.test.labels, context.test.mask),
        context.mesh,
        ks=ks,
        temperature=config.temperature,
        num_classes=data.num_classes,
        majority=config.majority,
    )
    protocol = knn.protocol(ks, config.temperature, data.eval_train_split, data.eval_test_split)
    if config.majority:
        protocol += "; and majority vote (unweighted; ties to the closer neighbours)"
    patches = context.config.evals.patches
    if patches.num > 0:
        protocol += (
            f"; features: mean over {patches.num} crops of {patches.size} px per image "
            f"(area {tuple(patches.scale)}, aspect {tuple(patches.ratio)}; bag of features)"
        )
    return Result(metrics, protocol, {"ks": list(ks)})


def run_linear(context: Context) -> Result:
    """Offline linear probe on backbone features (see `jaxssl.evals.linear`)."""
    config, data = context.config.evals.linear, context.config.data
    flip_features = None
    if config.flip:
        flip_features, _, _ = knn.extract_features(
            knn.make_embed_fn(
                context.model,
                context.mesh,
                context.config.data.mean,
                context.config.data.std,
                flip=True,
                patches=context.config.evals.patches,
            ),
            context.variables,
            context.make_train_batches(),
            context.mesh,
        )
    weight_decays = tuple(float(wd) for wd in config.weight_decays)
    metrics = linear.linear_probe(
        (context.train.features["backbone"], context.train.labels, context.train.mask),
        (context.test.features["backbone"], context.test.labels, context.test.mask),
        weight_decays=weight_decays,
        holdout_fraction=config.holdout_fraction,
        num_classes=data.num_classes,
        max_steps=config.max_steps,
        tolerance=config.tolerance,
        train_flip_features=flip_features,
    )
    if metrics["linear/weight_decay"] in (min(weight_decays), max(weight_decays)):
        logging.warning(
            "Linear probe: the chosen weight decay %g is at the edge of the grid %s; consider "
            "extending --config.evals.linear.weight_decays.",
            metrics["linear/weight_decay"],
            weight_decays,
        )
    protocol = linear.protocol(
        weight_decays,
        config.holdout_fraction,
        config.max_steps,
        data.eval_train_split,
        data.eval_test_split,
        config.flip,
    )
    return Result(metrics, protocol, {})


def _view_pairs(context: Context, num_pairs: int) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Embeddings of ``num_pairs`` pairs of augmented train views (the run's augmentations)."""
    config = context.config
    batch_size = config.evals.knn.batch_size
    batches = input_pipeline.make_train_iterator(
        config.data,
        global_batch_size=batch_size,
        seed=config.seed,
        start_step=0,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    def pair_embeddings(variables, crops, key):
        # The host's crops get the training colour augmentation, as in the train step.
        views = color.augment_views(key, crops, config.data)  # [B, V, S, S, 3]
        return tuple(_embed(context.model, variables, views[:, v]) for v in (0, 1))

    views_fn = jax.jit(pair_embeddings)
    key = jax.random.key(config.seed)
    firsts, seconds = [], []
    for index in range(math.ceil(num_pairs / batch_size)):
        crops = sharding.to_global({"global": next(batches)["global"]}, context.mesh)["global"]
        first, second = views_fn(context.variables, crops, jax.random.fold_in(key, index))
        firsts.append(first)
        seconds.append(second)
    return {
        name: (
            jnp.concatenate([f[name] for f in firsts])[:num_pairs],
            jnp.concatenate([s[name] for s in seconds])[:num_pairs],
        )
        for name in firsts[0]
    }


def run_spectral(context: Context) -> Result:
    """RankMe, covariance spectrum, alignment and uniformity of backbone and projector outputs."""
    config = context.config.evals.spectral
    num_embeddings = min(config.num_embeddings, context.num_real(context.train))
    train_rows = spectral.first_real_rows(context.train.mask, num_embeddings)
    num_uniformity = min(config.num_uniformity, context.num_real(context.test))
    test_rows = spectral.first_real_rows(context.test.mask, num_uniformity)
    pairs = _view_pairs(context, config.num_pairs) if config.num_pairs else {}
    metrics, eigenvalues = {}, {}
    for name, features in context.train.features.items():
        embeddings = features[train_rows]  # [N, D]
        metrics[f"rankme/{name}"] = float(_host(spectral.rankme(embeddings)))
        eigenvalues[name] = _host(spectral.covariance_spectrum(embeddings)).tolist()
        metrics[f"uniformity/{name}"] = float(
            _host(spectral.uniformity(context.test.features[name][test_rows]))
        )
        if name in pairs:
            metrics[f"alignment/{name}"] = float(_host(spectral.alignment(*pairs[name])))
    data = context.config.data
    protocol = (
        f"RankMe (eps=1e-7) and covariance spectrum on the first {num_embeddings} "
        f"{data.eval_train_split} embeddings; alignment (alpha=2) on {config.num_pairs} pairs "
        f"of augmented {data.train_split} views; uniformity (t=2) on the first "
        f"{num_uniformity} {data.eval_test_split} embeddings; L2-normalized for alignment and "
        "uniformity; inference-mode BatchNorm"
    )
    return Result(metrics, protocol, {"covariance_eigenvalues": eigenvalues})


def _class_names(data_config: ml_collections.ConfigDict) -> list[str] | None:
    """Label names from the TFDS builder's info; None for fake data or unnamed labels."""
    if data_config.name == "fake":
        return None
    import tensorflow_datasets as tfds  # noqa: PLC0415  (host-only, only for names)

    label = tfds.builder(data_config.name, data_dir=data_config.data_dir).info.features["label"]
    return list(label.names) if getattr(label, "names", None) else None


def _gather_images(make_batches: Callable, rows: np.ndarray) -> np.ndarray:
    """Images ``[len(rows), H, W, 3]`` in ``[0, 1]`` at global row indices (single process)."""
    wanted = {int(r) for r in np.ravel(rows)}
    found, offset = {}, 0
    for batch in make_batches():  # one full pass: stopping early would drop a tf.data cache
        size = len(batch["label"])
        for row in wanted:
            if offset <= row < offset + size:
                found[row] = batch["image"][row - offset]
        offset += size
    images = np.stack([found[int(r)] for r in np.ravel(rows)]) / 255.0  # uint8 -> [0, 1]
    return images.reshape(*np.shape(rows), *images.shape[1:])


def run_plots(context: Context) -> Result:
    """Training curves, spectrum, 2-D projection and retrieval grid as PNGs."""
    config, data = context.config.evals.plots, context.config.data
    prefix = context.out_prefix
    files = {}
    eval_dir = os.path.dirname(prefix)
    earlier = [r for r in plots.read_eval_results(eval_dir) if r["step"] != context.step]
    current = {
        "step": context.step,
        "metrics": {k: v for r in context.results.values() for k, v in r.metrics.items()},
    }
    files["curves"] = f"{prefix}_curves.png"
    plots.plot_training_curves(
        plots.read_jsonl(os.path.join(context.workdir, "metrics.jsonl")),
        sorted([*earlier, current], key=lambda r: r["step"]),
        files["curves"],
    )
    if jax.process_count() > 1:
        logging.warning("Multi-process run: only the training-curve plot is drawn.")
        return Result({}, "PNG figures", {"files": files})

    if "spectral" in context.results:
        eigenvalues = context.results["spectral"].details["covariance_eigenvalues"]
    else:
        rows = spectral.first_real_rows(context.train.mask, context.num_real(context.train))
        eigenvalues = {
            name: _host(spectral.covariance_spectrum(features[rows]))
            for name, features in context.train.features.items()
        }
    files["spectrum"] = f"{prefix}_spectrum.png"
    plots.plot_spectrum(eigenvalues, files["spectrum"])

    class_names = _class_names(data)
    test_mask = _host(context.test.mask)
    test_labels = _host(context.test.labels)
    points = np.flatnonzero(test_mask)[: config.num_points]
    files["embedding"] = f"{prefix}_embedding.png"
    plots.plot_embedding_2d(
        _host(context.test.features["backbone"])[points],
        test_labels[points],
        files["embedding"],
        class_names,
        title=f"{data.name} {data.eval_test_split} backbone features, step {context.step}",
    )

    # Queries: the first test image of each class (then the next images), for variety.
    real = np.flatnonzero(test_mask)
    queries = [real[test_labels[real] == c][:1] for c in range(data.num_classes)]
    queries = list(np.concatenate(queries))[: config.num_queries]
    queries += [r for r in real if r not in queries][: config.num_queries - len(queries)]
    queries = np.asarray(queries)
    _, neighbours = knn.nearest_neighbours(
        context.train.features["backbone"],
        context.train.mask,
        context.test.features["backbone"][queries],
        k=config.num_neighbours,
        chunk_size=len(queries),
    )
    neighbours = _host(neighbours)  # [Q, K]
    files["retrieval"] = f"{prefix}_retrieval.png"
    plots.plot_retrieval(
        _gather_images(context.make_test_batches, queries),
        test_labels[queries],
        _gather_images(context.make_train_batches, neighbours),
        _host(context.train.labels)[neighbours],
        files["retrieval"],
        class_names,
    )
    return Result({}, "PNG figures", {"files": files})


EVALUATORS: dict[str, Callable[[Context], Result]] = {
    "knn": run_knn,
    "linear": run_linear,
    "spectral": run_spectral,
    "plots": run_plots,
}


def _embed(model: nn.Module, variables, images: jax.Array) -> dict[str, jax.Array]:
    """Backbone features and projections of normalized images, in inference mode."""
    outputs = model.apply(variables, images, train=False)
    return {"backbone": outputs[0], "projector": outputs[1]}


def _make_embed_fn(
    model: nn.Module,
    mesh: jax.sharding.Mesh,
    data_config: ml_collections.ConfigDict,
    patches: ml_collections.ConfigDict | None = None,
) -> Callable:
    """Jitted ``(variables, uint8 images) -> {"backbone": [B, D], "projector": [B, P]}``.

    With ``patches.num > 0`` (``config.evals.patches``), both are means over the image's
    patches (`knn.bag_of_patches`, EMP-SSL's evaluation).
    """

    def embed(variables, images):
        return _embed(
            model, variables, color.to_model_input(images, data_config.mean, data_config.std)
        )

    if patches is not None and patches.num > 0:
        embed = knn.bag_of_patches(embed)
    return jax.jit(embed, out_shardings=sharding.batch_sharding(mesh))


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
    unknown = [name for name in config.evals.run if name not in EVALUATORS]
    if unknown:
        raise ValueError(f"Unknown evaluators {unknown}; valid: {sorted(EVALUATORS)}.")
    seconds = {}

    # --- Mesh ---
    mesh = sharding.make_mesh(config.mesh)
    batch_size = config.evals.knn.batch_size
    sharding.check_batch_size(batch_size, mesh)

    # --- Checkpoint ---
    start = time.perf_counter()
    # The probe head's shape is the training dataset's class count, whatever is evaluated now.
    state_config = config.copy_and_resolve_references()
    state_config.data.num_classes = saved_config.load(workdir).data.num_classes
    model, variables, step = restore_state(state_config, workdir, mesh, step)
    seconds["restore"] = time.perf_counter() - start

    # --- Features, extracted once ---
    start = time.perf_counter()
    make_batches = {
        split: input_pipeline.make_eval_iterator(
            config.data,
            split,
            batch_size=batch_size // jax.process_count(),
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            patches=config.evals.patches,
        )[0]
        for split in (config.data.eval_train_split, config.data.eval_test_split)
    }
    embed_fn = _make_embed_fn(model, mesh, config.data, config.evals.patches)
    splits = {
        split: Split(*knn.extract_features(embed_fn, variables, make(), mesh))
        for split, make in make_batches.items()
    }
    jax.block_until_ready(splits)  # dispatch is asynchronous: time the extraction itself here
    seconds["features"] = time.perf_counter() - start
    out_dir = os.path.join(workdir, EVAL_DIR)
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)
    context = Context(
        config=config,
        workdir=workdir,
        step=step,
        mesh=mesh,
        model=model,
        variables=variables,
        train=splits[config.data.eval_train_split],
        test=splits[config.data.eval_test_split],
        make_train_batches=make_batches[config.data.eval_train_split],
        make_test_batches=make_batches[config.data.eval_test_split],
        out_prefix=os.path.join(out_dir, str(step)),
    )

    # --- Evaluators ---
    for name in config.evals.run:
        start = time.perf_counter()
        context.results[name] = EVALUATORS[name](context)
        seconds[name] = time.perf_counter() - start
        logging.info("%s: %s (%.1f s)", name, context.results[name].metrics, seconds[name])

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
