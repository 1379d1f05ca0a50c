"""kNN against output dimension and batch size, one panel per method (the duality grid).

    python tools/plot_grid.py RUN [RUN ...] --out docs/duality_grid.png [--metric knn/top1_k200]

Each RUN is a workdir trained and then evaluated by ``jaxssl eval``: its ``config.json`` gives
the method, ``train.batch_size`` and ``model.projector_dim``, its newest ``eval/<step>.json``
the metric. One line per batch size, the output dimension on a log axis (Garrido et al. 2023:
dimension-contrastive methods are said to need wide embeddings, sample-contrastive ones large
batches).
"""

import argparse
import collections
import glob
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_run(workdir: str, metric: str) -> tuple[str, int, int, float]:
    """``(method, batch size, output dimension, metric)`` of one evaluated run."""
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    evals = glob.glob(os.path.join(workdir, "eval", "*.json"))
    if not evals:
        raise SystemExit(f"{workdir}: no eval/<step>.json; run `jaxssl eval --workdir {workdir}`.")
    newest = max(evals, key=lambda p: int(os.path.basename(p).split(".")[0]))
    with open(newest) as f:
        metrics = json.load(f)["metrics"]
    if metric not in metrics:
        raise SystemExit(f"{newest} has no {metric}; it has {sorted(metrics)}.")
    return (
        config["method"]["name"],
        int(config["train"]["batch_size"]),
        int(config["model"]["projector_dim"]),
        float(metrics[metric]),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--metric", default="knn/top1_k200")
    args = parser.parse_args(argv)
    cells = collections.defaultdict(lambda: collections.defaultdict(dict))
    for workdir in args.runs:
        method, batch, dim, value = read_run(workdir, args.metric)
        cells[method][batch][dim] = value
    methods = sorted(cells)
    figure, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), squeeze=False)
    for axis, method in zip(axes[0], methods, strict=True):
        for batch in sorted(cells[method]):
            dims = sorted(cells[method][batch])
            values = [cells[method][batch][d] for d in dims]
            axis.plot(dims, values, marker="o", label=f"batch {batch}")
        axis.set_xscale("log", base=2)
        axis.set(xlabel="output dimension", ylabel=args.metric, title=method)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
