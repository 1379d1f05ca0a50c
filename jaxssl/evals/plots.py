"""PNG figures of a run: training curves, embedding spectrum, 2-D projection, retrieval grid.

Host-side numpy + matplotlib (Agg backend, no display needed). Every function takes plain
arrays or files and writes one PNG.
"""

import glob
import json
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_DPI = 120


def read_jsonl(path: str) -> list[dict]:
    """The records of a ``metrics.jsonl`` (``[]`` if the file does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_eval_results(eval_dir: str) -> list[dict]:
    """Every ``EVAL_DIR/<step>.json`` written by ``jaxssl eval``, sorted by step."""
    results = []
    for path in glob.glob(os.path.join(eval_dir, "*.json")):
        if os.path.basename(path).split(".")[0].isdigit():
            with open(path) as f:
                results.append(json.load(f))
    return sorted(results, key=lambda r: r["step"])


def _series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [s for s, _ in pairs], [v for _, v in pairs]


def plot_training_curves(
    metrics_records: Sequence[dict], eval_results: Sequence[dict], out_path: str
) -> None:
    """Loss, accuracies and RankMe over training steps.

    Args:
      metrics_records: ``metrics.jsonl`` records (``train/loss``, ``probe/top1``, ``knn/top1``).
      eval_results: ``jaxssl eval`` results (``{"step", "metrics": {...}}``), drawn as markers.
      out_path: the PNG to write.
    """
    evals = [{"step": r["step"], **r["metrics"]} for r in eval_results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))

    ax = axes[0]
    steps, values = _series(metrics_records, "train/loss")
    ax.plot(steps, values, color="tab:blue")
    ax.set(title="training loss", xlabel="step", ylabel="train/loss")

    ax = axes[1]
    for key, style, label in (
        ("probe/top1", "-", "online probe top-1 (train views)"),
        ("knn/top1", "o--", "kNN top-1 (training run)"),
    ):
        steps, values = _series(metrics_records, key)
        if steps:
            ax.plot(steps, values, style, label=label)
    for key, marker, label in (
        ("knn/top1_k200", "s", "kNN k=200 (jaxssl eval)"),
        ("knn/top1_k20", "^", "kNN k=20 (jaxssl eval)"),
        ("linear/top1", "D", "linear probe (jaxssl eval)"),
    ):
        steps, values = _series(evals, key)
        if steps:
            # Hollow markers: a training-run kNN point at the same step stays visible.
            ax.plot(steps, values, marker, markersize=9, markerfacecolor="none", mew=2, label=label)
    ax.set(title="accuracy", xlabel="step", ylabel="top-1")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[2]
    plotted = False
    for key, marker in (("rankme/backbone", "o-"), ("rankme/projector", "s-")):
        steps, values = _series(evals, key)
        if steps:
            ax.plot(steps, values, marker, label=key)
            plotted = True
    if plotted:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no RankMe yet\n(run jaxssl eval)", ha="center", va="center")
    ax.set(title="RankMe (effective rank)", xlabel="step", ylabel="RankMe")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=_DPI)
    plt.close(fig)


def plot_spectrum(eigenvalues: dict[str, np.ndarray], out_path: str) -> None:
    """Sorted singular values of the centred embeddings (sqrt of covariance eigenvalues), log.

    Args:
      eigenvalues: ``{name: [D] covariance eigenvalues, descending}``, e.g. backbone, projector.
      out_path: the PNG to write.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in eigenvalues.items():
        singular = np.sqrt(np.maximum(np.asarray(values, np.float64), 0.0))
        singular = singular / max(singular[0], 1e-30)
        ax.plot(np.arange(1, len(singular) + 1), np.maximum(singular, 1e-12), label=name)
    ax.set_yscale("log")
    ax.set(
        title="embedding spectrum",
        xlabel="index (sorted)",
        ylabel="singular value / largest (log)",
    )
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out_path, dpi=_DPI)
    plt.close(fig)


def project_2d(embeddings: np.ndarray) -> tuple[np.ndarray, str]:
    """2-D coordinates of ``[N, D]`` embeddings: UMAP if ``umap`` is importable, else PCA.

    Returns:
      ``([N, 2] coordinates, method name)``.
    """
    x = np.asarray(embeddings, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    try:
        import umap  # noqa: PLC0415  (optional dependency)
    except ImportError:
        centred = x - x.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        explained = singular[:2] ** 2 / max(np.sum(singular**2), 1e-30)
        return centred @ vt[:2].T, f"PCA ({explained[0]:.0%} + {explained[1]:.0%} of variance)"
    return umap.UMAP(n_components=2, random_state=0).fit_transform(x), "UMAP"


def plot_embedding_2d(
    embeddings: np.ndarray,
    labels: np.ndarray,
    out_path: str,
    class_names: Sequence[str] | None = None,
    title: str = "test embeddings",
) -> None:
    """Scatter of a 2-D projection of L2-normalized embeddings, coloured by class.

    Args:
      embeddings: ``[N, D]``.
      labels: ``[N]`` int class labels.
      out_path: the PNG to write.
      class_names: names of the classes (default their indices).
      title: the figure title.
    """
    coords, method = project_2d(embeddings)
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1 if labels.size else 0
    colours = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7, 6))
    for c in range(num_classes):
        rows = labels == c
        name = class_names[c] if class_names is not None else str(c)
        ax.scatter(
            coords[rows, 0], coords[rows, 1], s=4, alpha=0.6, color=colours(c % 20), label=name
        )
    ax.set(title=f"{title}: {method}", xticks=[], yticks=[])
    ax.legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(out_path, dpi=_DPI)
    plt.close(fig)


def plot_retrieval(
    query_images: np.ndarray,
    query_labels: np.ndarray,
    neighbour_images: np.ndarray,
    neighbour_labels: np.ndarray,
    out_path: str,
    class_names: Sequence[str] | None = None,
) -> None:
    """One row per query: the query image, then its nearest train images (green: same class).

    Args:
      query_images: ``[Q, H, W, 3]`` in ``[0, 1]``.
      query_labels: ``[Q]``.
      neighbour_images: ``[Q, K, H, W, 3]`` in ``[0, 1]``, nearest first.
      neighbour_labels: ``[Q, K]``.
      out_path: the PNG to write.
      class_names: names of the classes (default their indices).
    """
    num_queries, k = neighbour_labels.shape
    fig, axes = plt.subplots(
        num_queries, k + 1, figsize=(1.3 * (k + 1), 1.45 * num_queries), squeeze=False
    )

    def name(label):
        return class_names[label] if class_names is not None else str(label)

    for q in range(num_queries):
        row = [(query_images[q], query_labels[q], "black")] + [
            (
                neighbour_images[q, j],
                neighbour_labels[q, j],
                "tab:green" if neighbour_labels[q, j] == query_labels[q] else "tab:red",
            )
            for j in range(k)
        ]
        for j, (image, label, colour) in enumerate(row):
            ax = axes[q, j]
            ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(3 if j else 1)
            ax.set_title(name(int(label)), fontsize=7, color=colour, pad=2)
    axes[0, 0].set_title(f"query\n{name(int(query_labels[0]))}", fontsize=7, pad=2)
    fig.suptitle(f"test queries and their {k} nearest train images (cosine, backbone)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=_DPI)
    plt.close(fig)
