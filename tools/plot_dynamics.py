"""Draws a run's training-dynamics files (``WORKDIR/dynamics/*.npz``) as PNGs.

The training loop writes them every ``config.evals.dynamics.every_steps`` steps
(`jaxssl.evals.dynamics`). Each set of files, ``dynamics/`` itself and each named subdirectory
(``dynamics/replica_3/`` in a sweep), gets ``dynamics_spectrum.png``, ``dynamics_rank.png`` and
``dynamics_summary.png``, in ``OUT`` (default ``WORKDIR/dynamics/plots``), a subdirectory per
named set.

  python tools/plot_dynamics.py WORKDIR [--out DIR]
"""

import argparse
import sys

from jaxssl.evals import dynamics_plots


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", help="a run directory, or its dynamics/ directory")
    parser.add_argument("--out", help="where the PNGs go (default WORKDIR/dynamics/plots)")
    args = parser.parse_args(argv)
    runs = dynamics_plots.plot_all(args.workdir, args.out)
    if not runs:
        sys.exit(f"error: no dynamics files (spectrum/scalars/layers.npz) under {args.workdir}")
    for files in runs.values():
        for path in files.values():
            print(path)


if __name__ == "__main__":
    main()
