"""The stepwise-learning figure (Simon et al., ICML 2023) from a run's training dynamics.

    python tools/plot_stepwise.py WORKDIR --out docs/stepwise_spectrum.png [--top 16]

Plots the absolute top eigenvalues of the projector-output covariance (log scale) against
the step, from ``WORKDIR/dynamics/spectrum.npz`` (``evals.dynamics``), and the number of
eigenvalues above 1% of the largest: from a small initialization they rise one after another.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxssl.evals import dynamics  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--out", required=True)
    parser.add_argument("--top", type=int, default=16)
    parser.add_argument("--embedding", default="projector", choices=dynamics.EMBEDDINGS)
    args = parser.parse_args(argv)
    spectrum = dynamics.load(args.workdir)["spectrum"]
    steps, values = spectrum["step"], np.maximum(spectrum[args.embedding], 1e-12)
    figure, (top, count) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.cm.viridis(np.linspace(0, 1, args.top))
    for i in range(args.top):
        top.plot(steps, values[:, i], color=colors[i], lw=1.2)
    top.set_yscale("log")
    top.set(xlabel="step", ylabel="eigenvalue", title=f"{args.embedding}: top {args.top}")
    above = (values > 0.01 * values[:, :1]).sum(axis=1)
    count.plot(steps, above, drawstyle="steps-post")
    count.set(xlabel="step", ylabel="eigenvalues > 1% of the largest", title="learned directions")
    for axis in (top, count):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
