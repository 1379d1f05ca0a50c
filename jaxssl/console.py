"""What a run tells its user: a header when it starts, a results table when it ends.

Printed by process 0 to stdout and logged at INFO, so they are on the console and in the logs.
"""

import math

import jax
import ml_collections
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
) -> str:
    """The run in a few lines: method, model, devices, data, batch and length.

    Args:
      config: the run config.
      mesh: the device mesh.
      num_params: parameters of the model being trained (backbone and heads).
      eval_sizes: examples in each evaluation split.
      start_step: steps already done (a resumed run).
      num_steps: the run's length.

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
    return "\n".join(
        [
            f"jaxssl: {config.method.name}, {config.model.backbone} "
            f"({num_params / 1e6:.2f} M parameters, {config.model.get('dtype', 'float32')})",
            f"  devices  {devices} x {kind} over {jax.process_count()} process(es), "
            f"mesh {dict(mesh.shape)}",
            f"  data     {data.name}: train {data.num_train_examples}; evaluation {splits}",
            f"  batch    {train.batch_size} images x {views}",
            f"  length   {length}",
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


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
