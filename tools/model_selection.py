"""Label-free model selection: rank runs by RankMe and check the ranking against labels.

RankMe (Garrido et al., ICML 2023) needs no labels: among runs of one method, a higher
effective rank of the backbone's embeddings predicts better downstream accuracy. This tool
reads the ``jaxssl eval`` results of each run (``WORKDIR/eval/<step>.json``; run
``jaxssl eval --workdir W`` first), ranks the runs by RankMe, and measures how well that
ranking agrees with kNN and linear-probe top-1 (Spearman's rho and Kendall's tau-b, computed
here without SciPy).

  python tools/model_selection.py RUN_DIR [RUN_DIR ...] [--metric rankme/backbone] [--out F]

A sweep's workdir (``jaxssl train --sweep ...``) counts as one run per replica.

Prints a Markdown table (runs sorted by RankMe) and the correlations; ``--out`` also writes
them as JSON.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np

ACCURACIES = ("knn/top1_k200", "knn/top1_k20", "linear/top1")


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (what Spearman's rho needs)."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator else float("nan")


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b: (concordant - discordant) pairs over sqrt((n0 - n1)(n0 - n2)).

    ``n1`` and ``n2`` count pairs tied in ``x`` and in ``y``; with no ties this is tau-a.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = len(i)
    ties_x, ties_y = np.sum(dx == 0), np.sum(dy == 0)
    denominator = np.sqrt((n0 - ties_x) * (n0 - ties_y))
    return float(np.sum(dx * dy) / denominator) if denominator else float("nan")


def latest_eval(workdir: str, suffix: str = "") -> dict:
    """The ``jaxssl eval`` results of the newest evaluated step of ``workdir`` (of a sweep's
    replica ``r`` with ``suffix="_replica<r>"``)."""
    paths = glob.glob(os.path.join(workdir, "eval", f"*{suffix}.json"))
    names = [os.path.basename(p)[: -len(f"{suffix}.json")] for p in paths]
    steps = [int(name) for name in names if name.isdigit()]
    if not steps:
        raise FileNotFoundError(
            f"No eval results in {workdir}/eval: run `jaxssl eval --workdir {workdir}` first."
        )
    with open(os.path.join(workdir, "eval", f"{max(steps)}{suffix}.json")) as f:
        return json.load(f)


def evaluated_runs(workdir: str) -> list[tuple[str, dict]]:
    """``(name, eval results)`` of a run, or of every replica of a sweep (``jaxssl train
    --sweep``; ``jaxssl eval`` evaluates each replica), named ``WORKDIR#r field=value ...``."""
    path = os.path.join(workdir, "sweep.json")
    if not os.path.exists(path):
        return [(workdir, latest_eval(workdir))]
    with open(path) as f:
        sweep = json.load(f)
    runs = []
    for replica, values in enumerate(sweep["values"]):
        label = " ".join(f"{k}={v}" for k, v in zip(sweep["fields"], values, strict=True))
        try:
            results = latest_eval(workdir, f"_replica{replica}")
        except FileNotFoundError:
            results = final_training_evaluation(workdir, replica)
        runs.append((f"{workdir}#{replica} {label}", results))
    return runs


def final_training_evaluation(workdir: str, replica: int) -> dict:
    """The last kNN/RankMe record of a sweep's replica in ``metrics.jsonl`` (what training
    evaluated at its end), shaped like ``jaxssl eval`` results."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.endswith("\n")]
    evaluated = [r for r in records if r.get("replica") == replica and "knn/top1" in r]
    if not evaluated:
        raise FileNotFoundError(
            f"No evaluation of replica {replica} in {workdir}: run `jaxssl eval --workdir "
            f"{workdir}` first."
        )
    return {"step": evaluated[-1]["step"], "metrics": evaluated[-1]}


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def select(workdirs: list[str], metric: str = "rankme/backbone") -> dict:
    """Ranks ``workdirs`` by ``metric`` and correlates it with the label-based accuracies.

    Args:
      workdirs: run directories, each evaluated by ``jaxssl eval``.
      metric: the label-free score to rank by (higher is better).

    Returns:
      ``{"metric", "runs": [{"workdir", "step", metric, accuracies...}] sorted by the metric
      (best first), "correlations": {accuracy: {"spearman", "kendall_tau_b"}},
      "selected", "best_by": {accuracy: workdir}}``.
    """
    runs = []
    for workdir, results in (run for w in workdirs for run in evaluated_runs(w)):
        metrics = results["metrics"]
        if metric not in metrics:
            raise KeyError(f"{workdir}: no {metric!r} in its eval results ({sorted(metrics)}).")
        runs.append(
            {
                "workdir": workdir,
                "step": results["step"],
                # A diverged run's NaN is null in the JSON: NaN here, ranked last.
                metric: _number(metrics[metric]),
                **{a: _number(metrics[a]) for a in ACCURACIES if a in metrics},
            }
        )
    runs.sort(key=lambda r: -np.inf if np.isnan(r[metric]) else r[metric], reverse=True)
    correlations, best_by = {}, {}
    for accuracy in ACCURACIES:
        if all(accuracy in r for r in runs):
            # Correlations over the runs where both are numbers.
            finite = [r for r in runs if np.isfinite(r[metric]) and np.isfinite(r[accuracy])]
            x = np.array([r[metric] for r in finite])
            y = np.array([r[accuracy] for r in finite])
            correlations[accuracy] = {
                "spearman": spearman(x, y),
                "kendall_tau_b": kendall_tau_b(x, y),
            }
            best_by[accuracy] = max(runs, key=lambda r, a=accuracy: r[a])["workdir"]
    return {
        "metric": metric,
        "runs": runs,
        "correlations": correlations,
        "selected": runs[0]["workdir"],
        "best_by": best_by,
    }


def to_markdown(report: dict) -> str:
    metric = report["metric"]
    columns = [metric, *report["correlations"]]
    lines = [
        "| run | step | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for run in report["runs"]:
        values = " | ".join(f"{run[c]:.4g}" for c in columns)
        lines.append(
            f"| {os.path.basename(run['workdir'].rstrip('/'))} | {run['step']} | {values} |"
        )
    lines.append("")
    lines.append(
        f"Ranking by {metric} (label-free) against label-based accuracy, n={len(report['runs'])}:"
    )
    lines.append("")
    for accuracy, c in report["correlations"].items():
        best = os.path.basename(report["best_by"][accuracy].rstrip("/"))
        lines.append(
            f"- {accuracy}: Spearman {c['spearman']:+.3f}, Kendall tau-b {c['kendall_tau_b']:+.3f}"
            f" (best run by it: {best})"
        )
    selected = os.path.basename(report["selected"].rstrip("/"))
    lines.append(f"- selected without labels: {selected}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", help="run directories evaluated by `jaxssl eval`")
    parser.add_argument("--metric", default="rankme/backbone", help="label-free score")
    parser.add_argument("--out", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    try:
        report = select(args.workdirs, args.metric)
    except (FileNotFoundError, KeyError) as e:
        sys.exit(f"error: {e}")
    print(to_markdown(report))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
