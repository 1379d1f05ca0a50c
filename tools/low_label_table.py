"""The low-label table (docs/benchmarks.md, README): few-shot kNN, linear probe and
fine-tuning on label fractions, one row per evaluated workdir.

    python tools/low_label_table.py SimCLR=runs/simclr VICReg=runs/vicreg "random init=runs/random"

Each workdir must have been evaluated by `jaxssl eval` with the low-label options, e.g.

    jaxssl eval --workdir runs/simclr --config.evals.run='("knn","linear","finetune")' \\
      --config.evals.knn.shots_per_class='(1,5,10,25)' \\
      --config.evals.linear.label_fractions='(0.01,0.1)'

The latest ``WORKDIR/eval/<step>.json`` is read; a missing metric prints as "-". Values are
means over the subset seeds, with the standard deviation where there were several.
"""

import json
import os
import sys

COLUMNS = (
    ("kNN k=200", "knn/top1_k200"),
    ("kNN 1-shot", "knn/top1_shot1"),
    ("kNN 5-shot", "knn/top1_shot5"),
    ("kNN 25-shot", "knn/top1_shot25"),
    ("linear 1%", "linear/top1_frac0.01"),
    ("linear 10%", "linear/top1_frac0.1"),
    ("linear 100%", "linear/top1"),
    ("fine-tune 1%", "finetune/top1_frac0.01"),
    ("fine-tune 10%", "finetune/top1_frac0.1"),
    ("fine-tune 100%", "finetune/top1_frac1"),
)


def latest_metrics(workdir: str) -> dict:
    """The metrics of the highest-step evaluation of ``workdir``."""
    directory = os.path.join(workdir, "eval")
    steps = [int(f[: -len(".json")]) for f in os.listdir(directory) if f[:-5].isdigit()]
    with open(os.path.join(directory, f"{max(steps)}.json")) as f:
        return json.load(f)["metrics"]


def cell(metrics: dict, key: str) -> str:
    if key not in metrics:
        return "-"
    std = metrics.get(f"{key}_std", 0.0)
    return f"{metrics[key]:.3f}" + (f" ± {std:.3f}" if std > 0 else "")


def table(rows: list[tuple[str, dict]]) -> str:
    """Markdown table of ``(name, metrics)`` rows."""
    lines = [
        "| method | " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, metrics in rows:
        lines.append(f"| {name} | " + " | ".join(cell(metrics, k) for _, k in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    rows = []
    for argument in argv:
        name, _, workdir = argument.partition("=")
        rows.append((name, latest_metrics(workdir)))
    print(table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
