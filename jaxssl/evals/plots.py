"""PNG figures of a run: training curves, embedding spectrum, 2-D projection, retrieval grid.

Host-side numpy + matplotlib. The figures are ``matplotlib.figure.Figure`` objects saved
straight to PNG, without pyplot, so no display is needed and importing this module leaves the
caller's matplotlib backend alone. Every ``plot_*`` function takes plain arrays or files and
writes one PNG; the evaluator `run` draws all of them for ``jaxssl eval``.
"""

import glob
import json
import os
from collections.abc import Callable, Sequence

import jax
import matplotlib
import ml_collections
import numpy as np
from absl import logging
from matplotlib.figure import Figure

from jaxssl.evals import features, knn, spectral

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
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)

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


def plot_spectrum(eigenvalues: dict[str, np.ndarray], out_path: str) -> None:
    """Sorted singular values of the centred embeddings (sqrt of covariance eigenvalues), log.

    Args:
      eigenvalues: ``{name: [D] covariance eigenvalues, descending}``, e.g. backbone, projector.
      out_path: the PNG to write.
    """
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
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
    colours = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"]
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
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
    fig = Figure(figsize=(1.3 * (k + 1), 1.45 * num_queries))
    axes = fig.subplots(num_queries, k + 1, squeeze=False)

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


def _host(x: jax.Array) -> np.ndarray:
    return np.asarray(jax.device_get(x))


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


def run(context: features.Context) -> features.Result:
    """Training curves, spectrum, 2-D projection and retrieval grid as PNGs.

    Writes ``<out_prefix>_{curves,spectrum,embedding,retrieval}.png``; the curves include the
    metrics of the evaluators that ran before this one. A multi-process run draws only the
    curves.

    Args:
      context: the extracted features, with ``workdir`` and ``out_prefix`` set.

    Returns:
      No metrics; details ``{"files": {figure: path}}``.
    """
    config, data = context.config.evals.plots, context.config.data
    prefix = context.out_prefix
    files = {}
    eval_dir = os.path.dirname(prefix)
    earlier = [r for r in read_eval_results(eval_dir) if r["step"] != context.step]
    current = {
        "step": context.step,
        "metrics": {k: v for r in context.results.values() for k, v in r.metrics.items()},
    }
    files["curves"] = f"{prefix}_curves.png"
    plot_training_curves(
        read_jsonl(os.path.join(context.workdir, "metrics.jsonl")),
        sorted([*earlier, current], key=lambda r: r["step"]),
        files["curves"],
    )
    if jax.process_count() > 1:
        logging.warning("Multi-process run: only the training-curve plot is drawn.")
        return features.Result({}, "PNG figures", {"files": files})

    if "spectral" in context.results:
        eigenvalues = context.results["spectral"].details["covariance_eigenvalues"]
    else:
        rows = spectral.first_real_rows(context.train.mask, context.num_real(context.train))
        eigenvalues = {
            name: _host(spectral.covariance_spectrum(split_features[rows]))
            for name, split_features in context.train.features.items()
        }
    files["spectrum"] = f"{prefix}_spectrum.png"
    plot_spectrum(eigenvalues, files["spectrum"])

    class_names = _class_names(data)
    test_mask = _host(context.test.mask)
    test_labels = _host(context.test.labels)
    points = np.flatnonzero(test_mask)[: config.num_points]
    files["embedding"] = f"{prefix}_embedding.png"
    plot_embedding_2d(
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
    plot_retrieval(
        _gather_images(context.make_test_batches, queries),
        test_labels[queries],
        _gather_images(context.make_train_batches, neighbours),
        _host(context.train.labels)[neighbours],
        files["retrieval"],
        class_names,
    )
    return features.Result({}, "PNG figures", {"files": files})
