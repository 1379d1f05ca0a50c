"""What a run tells its user: a header when it starts, a results table when it ends.

Printed by process 0 to stdout and logged at INFO, so they are on the console and in the logs.
"""

import math

import jax
import ml_collections
import numpy as np
from absl import logging


def say(text: str) -> None:
    """Prints ``text`` on process 0 and logs it at INFO."""
    logging.info("%s", text)
    if jax.process_index() == 0:
        print(text, flush=True)


def header(
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    num_params: int,
    eval_sizes: dict[str, int],
    start_step: int,
    num_steps: int,
    sweep=None,
) -> str:
    """The run in a few lines: method, model, devices, data, batch and length.

    Args:
      config: the run config.
      mesh: the device mesh.
      num_params: parameters of the model being trained (backbone and heads).
      eval_sizes: examples in each evaluation split.
      start_step: steps already done (a resumed run).
      num_steps: the run's length.
      sweep: a `jaxssl.sweep.Sweep` trained in one program (listed with its replicas).

    Returns:
      The text.
    """
    data, train = config.data, config.train
    views = f"{data.num_views} x {data.image_size} px"
    if data.local_views:
        views += f" + {data.local_views} x {data.local_image_size} px"
    devices = mesh.devices.size
    kind = mesh.devices.flat[0].device_kind
    budget = train.get("time_budget_minutes")
    epochs = num_steps * train.batch_size / data.num_train_examples
    length = f"steps {start_step} -> {num_steps} ({epochs:.1f} epochs)"
    if budget and start_step == 0:
        length += f"; fitted to {budget:g} minutes after the first steps"
    splits = ", ".join(f"{split} {n}" for split, n in eval_sizes.items())
    lines = []
    if sweep is not None:
        lines += [
            f"  sweep    {sweep.size} replicas in one program ({sweep.data} data): "
            + ", ".join(sweep.fields)
        ]
    return "\n".join(
        [
            f"jaxssl: {config.method.name}, {config.model.backbone} "
            f"({num_params / 1e6:.2f} M parameters, {config.model.get('dtype', 'float32')})",
            f"  devices  {devices} x {kind} over {jax.process_count()} process(es), "
            f"mesh {dict(mesh.shape)}",
            f"  data     {data.name}: train {data.num_train_examples}; evaluation {splits}",
            f"  batch    {train.batch_size} images x {views}",
            f"  length   {length}",
            *lines,
        ]
    )


def estimate(step: int, num_steps: int, img_per_s: float, views_per_step: int) -> str:
    """The remaining training time at the measured throughput."""
    seconds = (num_steps - step) * views_per_step / img_per_s
    left = num_steps - step
    return f"Estimated: {_duration(seconds)} for the {left} steps left ({img_per_s:.0f} img/s)."


def results_table(results: dict, wall_seconds: float, workdir: str) -> str:
    """The final evaluation as a table, the run's wall time and throughput, and its outputs.

    Args:
      results: the final metrics (``knn/top1_kK``, ``rankme/*``, ``probe/top1``, ``perf/*``).
      wall_seconds: the run's wall time in this process.
      workdir: the run's directory.

    Returns:
      The text.
    """
    rows = [("metric", "value"), ("---", "---")]
    ks = sorted(int(key.rsplit("_k", 1)[1]) for key in results if key.startswith("knn/top1_k"))
    rows += [(f"kNN top-1, k={k}", f"{results[f'knn/top1_k{k}']:.4f}") for k in ks]
    if "probe/top1" in results:
        rows.append(("online linear probe top-1 (train views)", f"{results['probe/top1']:.4f}"))
    rows += [
        (f"RankMe ({key.split('/', 1)[1]})", f"{value:.1f}")
        for key, value in sorted(results.items())
        if key.startswith("rankme/")
    ]
    if results.get("perf/img_per_s"):
        rows.append(("train img/s (last interval)", f"{results['perf/img_per_s']:.0f}"))
    rows.append(("wall time", _duration(wall_seconds)))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {name:<{width}} | {value} |" for name, value in rows]
    lines += [
        "",
        f"Outputs in {workdir}: checkpoints/, metrics.jsonl, TensorBoard events, config.json.",
        f"Evaluate again: jaxssl eval --workdir {workdir}",
    ]
    return "\n".join(lines)


def sweep_table(sweep, results: dict, wall_seconds: float, workdir: str) -> str:
    """A sweep's replicas ranked by kNN top-1: swept values, kNN, RankMe, probe, skipped steps.

    Args:
      sweep: the `jaxssl.sweep.Sweep`.
      results: the final metrics, ``[R]`` arrays (or scalars shared by all replicas).
      wall_seconds: the run's wall time in this process.
      workdir: the run's directory.

    Returns:
      The text.
    """

    def column(key):
        value = results.get(key)
        if value is None:
            return [float("nan")] * sweep.size
        return [float(v) for v in np.broadcast_to(np.asarray(value, np.float64), (sweep.size,))]

    knn, probe = column("knn/top1"), column("probe/top1")
    rankme_key = next((k for k in sorted(results) if k.startswith("rankme/")), None)
    rankme = column(rankme_key) if rankme_key else [float("nan")] * sweep.size
    skipped = column("train/nonfinite_steps")
    order = sorted(range(sweep.size), key=lambda r: -knn[r] if math.isfinite(knn[r]) else math.inf)
    head = ["rank", "replica", *sweep.fields, "kNN top-1", "RankMe", "probe top-1", "skipped"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, r in enumerate(order, 1):
        values = [f"{v:g}" for v in sweep.values[r]]
        cells = [str(rank), str(r), *values, f"{knn[r]:.4f}", f"{rankme[r]:.1f}"]
        cells += [f"{probe[r]:.4f}", f"{skipped[r]:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    img_per_s = results.get("perf/img_per_s")
    throughput = f", {float(img_per_s):.0f} img/s over all replicas" if img_per_s else ""
    lines += [
        "",
        f"Wall time {_duration(wall_seconds)}{throughput}; RankMe: {rankme_key or 'not run'}.",
        f"Outputs in {workdir}: checkpoints/ (all replicas), metrics.jsonl (rows carry "
        "`replica`), tensorboard/replica_<r>, sweep.json.",
        f"Evaluate: jaxssl eval --workdir {workdir} [--replica R]",
    ]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
