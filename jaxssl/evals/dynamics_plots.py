"""PNG figures of the training-dynamics files (`jaxssl.evals.dynamics`) of a run.

Host-side numpy + matplotlib ``Figure`` objects saved straight to PNG, as in
`jaxssl.evals.plots`: no pyplot, no display. `plot` draws one run's files;
``tools/plot_dynamics.py`` calls it for a workdir and each ``dynamics/replica_*`` in it.
"""

import glob
import os

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from jaxssl.evals import dynamics

_DPI = 120
# Eigenvalues below this fraction of the largest are drawn at it: log scale needs > 0.
_FLOOR = 1e-12


def find_runs(path: str) -> dict[str, str]:
    """``{label: directory}`` of every set of dynamics files under a workdir or dynamics dir.

    The label is ``""`` for ``dynamics/`` itself and the subdirectory name (e.g.
    ``replica_3``) for each named `jaxssl.evals.dynamics.Dynamics`.
    """
    root = dynamics.dynamics_dir(path)
    candidates = {"": root}
    for subdir in sorted(glob.glob(os.path.join(root, "*", ""))):
        candidates[os.path.basename(os.path.normpath(subdir))] = subdir
    return {
        label: directory
        for label, directory in candidates.items()
        if any(os.path.exists(os.path.join(directory, f"{f}.npz")) for f in dynamics.FILES)
    }


def layer_group(path: str) -> str:
    """The group a parameter path belongs to: its module and top block, without the leaf.

    ``backbone/stage2_block1/conv1/kernel`` -> ``backbone/stage2``, ``backbone/stem_conv/kernel``
    -> ``backbone/stem``, ``projector/dense1/kernel`` -> ``projector/dense1``.
    """
    parts = path.split("/")
    if len(parts) < 3:
        return parts[0]
    return f"{parts[0]}/{parts[1].split('_')[0]}"


def median_by_group(layers: dict[str, np.ndarray], quantity: str) -> dict[str, np.ndarray]:
    """``{group: [T]}``: the median of ``quantity/<path>`` over the paths of each `layer_group`
    (NaN entries, e.g. ratios of zero weights, ignored)."""
    prefix = f"{quantity}/"
    groups: dict[str, list[np.ndarray]] = {}
    for key, values in layers.items():
        if key.startswith(prefix):
            groups.setdefault(layer_group(key[len(prefix) :]), []).append(values)
    medians = {}
    for group, series in groups.items():
        stacked = np.stack(series).astype(np.float64)  # [L, T]
        finite = np.isfinite(stacked).any(axis=0)
        medians[group] = np.full(stacked.shape[1], np.nan)
        if finite.any():
            medians[group][finite] = np.nanmedian(stacked[:, finite], axis=0)
    return medians


def _draw_spectrum(ax, steps: np.ndarray, eigenvalues: np.ndarray, title: str, top_k: int) -> None:
    """Log10 of the top-k eigenvalues (relative to the largest) against step, one line each."""
    values = np.asarray(eigenvalues, np.float64)[:, :top_k]  # [T, k]
    largest = np.maximum(values[:, :1], 1e-30)
    relative = np.log10(np.maximum(values / largest, _FLOOR))
    colours = np.linspace(0.0, 1.0, values.shape[1])
    cmap = matplotlib.colormaps["viridis"]
    for index in range(values.shape[1]):
        ax.plot(steps, relative[:, index], color=cmap(colours[index]), lw=1)
    ax.set(title=f"{title}: top {values.shape[1]} eigenvalues", xlabel="step")
    ax.set_ylabel("log10(eigenvalue / largest)")
    ax.grid(alpha=0.3)


def _draw_series(ax, steps, series: dict[str, np.ndarray], title: str, log: bool = False):
    drawn = False
    for label, values in series.items():
        values = np.asarray(values, np.float64)
        if np.isfinite(values).any():
            ax.plot(steps, values, "o-" if len(steps) < 20 else "-", ms=3, label=label)
            drawn = True
    if drawn:
        ax.legend(fontsize=7)
        if log:
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "nothing measured", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=title, xlabel="step")
    ax.grid(alpha=0.3)


def _pick(columns: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k: v for k, v in columns.items() if k.startswith(prefix)}


def plot_spectrum(spectrum: dict[str, np.ndarray], out_path: str, top_k: int = 32) -> None:
    """Spectrum over steps: per embedding, the top-k eigenvalues as lines and all of them as
    an image (step x index, colour = log10 eigenvalue / largest).

    Args:
      spectrum: ``spectrum.npz`` columns (``step``, ``backbone``, ``projector``).
      out_path: the PNG to write.
      top_k: how many leading eigenvalues get a line each.
    """
    names = [name for name in dynamics.EMBEDDINGS if name in spectrum]
    steps = spectrum["step"]
    fig = Figure(figsize=(12, 4 * len(names)))
    axes = fig.subplots(len(names), 2, squeeze=False)
    for row, name in enumerate(names):
        _draw_spectrum(axes[row, 0], steps, spectrum[name], name, top_k)
        values = np.asarray(spectrum[name], np.float64)
        relative = np.log10(np.maximum(values / np.maximum(values[:, :1], 1e-30), _FLOOR))
        # Cell edges half-way between measurements: steps need not be evenly spaced.
        steps_f = np.asarray(steps, np.float64)
        middle = (steps_f[1:] + steps_f[:-1]) / 2
        first = steps_f[0] - (middle[0] - steps_f[0] if len(middle) else 0.5)
        last = steps_f[-1] + (steps_f[-1] - middle[-1] if len(middle) else 0.5)
        edges = np.concatenate([[first], middle, [last]])
        image = axes[row, 1].pcolormesh(
            edges, np.arange(values.shape[1] + 1) + 0.5, relative.T, cmap="magma"
        )
        axes[row, 1].set(title=f"{name}: all eigenvalues", xlabel="step", ylabel="index")
        fig.colorbar(image, ax=axes[row, 1], label="log10(eigenvalue / largest)")
    fig.tight_layout()
    fig.savefig(out_path, dpi=_DPI)


def plot_rank(scalars: dict[str, np.ndarray], out_path: str) -> None:
    """RankMe and the collapse indicator (1: healthy, 0: collapsed) over steps.

    Args:
      scalars: ``scalars.npz`` columns.
      out_path: the PNG to write.
    """
    steps = scalars["step"]
    fig = Figure(figsize=(12, 4))
    axes = fig.subplots(1, 2)
    _draw_series(axes[0], steps, _pick(scalars, "rankme/"), "RankMe (effective rank)")
    _draw_series(axes[1], steps, _pick(scalars, "collapse/"), "collapse: std(z/|z|) sqrt(d)")
    axes[1].axhline(1.0, color="gray", ls="--", lw=1)
    axes[1].set_ylim(bottom=0.0)
    fig.tight_layout()
    fig.savefig(out_path, dpi=_DPI)


def plot_summary(measurements: dict[str, dict[str, np.ndarray]], out_path: str, title: str):
    """One page: spectrum, RankMe, alignment/uniformity, collapse, loss terms, update ratios.

    Args:
      measurements: `jaxssl.evals.dynamics.load`'s result.
      out_path: the PNG to write.
      title: the page title (the run).
    """
    scalars = measurements.get("scalars", {})
    spectrum = measurements.get("spectrum", {})
    layers = measurements.get("layers", {})
    fig = Figure(figsize=(18, 10))
    axes = fig.subplots(2, 3)
    if "projector" in spectrum:
        _draw_spectrum(axes[0, 0], spectrum["step"], spectrum["projector"], "projector", 32)
    else:
        _draw_series(axes[0, 0], [], {}, "spectrum")
    steps = scalars.get("step", np.zeros([0]))
    _draw_series(axes[0, 1], steps, _pick(scalars, "rankme/"), "RankMe")
    _draw_series(
        axes[0, 2],
        steps,
        {**_pick(scalars, "alignment/"), **_pick(scalars, "uniformity/")},
        "alignment (pairs) and uniformity (images), L2-normalized",
    )
    _draw_series(axes[1, 0], steps, _pick(scalars, "collapse/"), "collapse: std(z/|z|) sqrt(d)")
    axes[1, 0].axhline(1.0, color="gray", ls="--", lw=1)
    total = scalars.get("loss/total")
    _draw_series(axes[1, 1], steps, _pick(scalars, "aux/"), "loss terms (probe pairs)")
    if total is not None:
        twin = axes[1, 1].twinx()
        twin.plot(steps, total, "k--", lw=1, label="loss/total")
        twin.set_ylabel("loss/total (dashed)")
    medians = median_by_group(layers, "update_ratio")
    _draw_series(
        axes[1, 2], layers.get("step", np.zeros([0])), medians, "median |dw|/|w| per group", True
    )
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=_DPI)


def plot(path: str, out_dir: str, name: str | None = None) -> dict[str, str]:
    """Draws one run's dynamics files: spectrum, rank and collapse, and a one-page summary.

    Args:
      path: the run's workdir or dynamics directory.
      out_dir: where the PNGs go (created).
      name: the subdirectory of a named `jaxssl.evals.dynamics.Dynamics` (``replica_3``).

    Returns:
      ``{figure: path}`` of the files written: ``dynamics_spectrum.png``,
      ``dynamics_rank.png``, ``dynamics_summary.png`` (those with data).
    """
    measurements = dynamics.load(path, name)
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    if "spectrum" in measurements:
        files["spectrum"] = os.path.join(out_dir, "dynamics_spectrum.png")
        plot_spectrum(measurements["spectrum"], files["spectrum"])
    if "scalars" in measurements:
        files["rank"] = os.path.join(out_dir, "dynamics_rank.png")
        plot_rank(measurements["scalars"], files["rank"])
    if measurements:
        files["summary"] = os.path.join(out_dir, "dynamics_summary.png")
        title = os.path.abspath(dynamics.dynamics_dir(path, name))
        plot_summary(measurements, files["summary"], title)
    return files


def plot_all(path: str, out_dir: str | None = None) -> dict[str, dict[str, str]]:
    """`plot` of every run under a workdir (one, or a sweep's ``replica_<r>``).

    Args:
      path: a workdir or its dynamics directory.
      out_dir: where the PNGs go, a subdirectory per named run; default ``dynamics/plots``.

    Returns:
      ``{label: {figure: path}}``; empty when there are no dynamics files.
    """
    out_dir = out_dir or os.path.join(dynamics.dynamics_dir(path), "plots")
    return {
        label: plot(directory, os.path.join(out_dir, label) if label else out_dir)
        for label, directory in find_runs(path).items()
    }
