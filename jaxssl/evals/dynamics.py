"""Instruments of training dynamics, measured on a fixed probe set every few training steps.

Every ``config.evals.dynamics.every_steps`` steps the training loop calls `Dynamics.measure`
with the current `jaxssl.state.TrainState`; one jitted function (not the train step) computes,
on the same ``num_images`` train images every time:

- ``spectrum.npz``: the eigenvalues of the covariance of backbone features and of projector
  outputs of the unaugmented images (inference mode, as the kNN evaluator embeds them);
- ``scalars.npz``: RankMe, the collapse indicator, alignment and uniformity of both, the
  method's loss (``loss/total``) and its ``LossAux.metrics`` (``aux/<name>``: the loss terms
  and other diagnostics) on the fixed augmented views, global norms, and for EMA-teacher
  methods the student-teacher distance;
- ``layers.npz``: per parameter leaf (path joined with ``/``), the weight norm, the norm of the
  loss's gradient, the update-to-weight ratio ``|dw| / |w|`` of the optimizer's update for that
  gradient and, for LARS, the trust ratio.

Each file is columnar: ``step`` ``[T]`` and one array per quantity with the measurements in
rows. `load` reads them back; `jaxssl.evals.dynamics_plots` draws them.
"""

import copy
import os
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxssl import errors, methods, optim, sharding
from jaxssl.data import color, crops, folder
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import features, layers, spectral

DIRECTORY = "dynamics"
FILES = ("spectrum", "scalars", "layers")
EMBEDDINGS = ("backbone", "projector")

# Folded into the probe seed: the colour augmentation of the fixed views and the key the
# method's loss gets are streams of their own, fixed for every measurement.
_AUGMENT_STREAM, _LOSS_STREAM = 0, 1


# --- The probe set ---


class ProbeSet(NamedTuple):
    """The fixed images of every measurement, on the host (uint8, deterministic in the seed).

    ``images`` are the unaugmented images at ``data.eval_image_size`` (as the kNN evaluator
    embeds them); ``views`` the training crops of each image, drawn once (``"global"`` ``[N, V,
    S, S, 3]``, and ``"local"`` for multi-crop), which the measurement colour-augments with a
    fixed key.
    """

    images: np.ndarray  # [N, E, E, 3] uint8
    views: dict[str, np.ndarray]  # {"global": [N, V, S, S, 3] uint8, ...}
    labels: np.ndarray  # [N] int32
    indices: np.ndarray  # [N] int32, positions in data.train_split


def _open_train_split(data_config: ml_collections.ConfigDict):
    """``(dataset, n)`` of the whole train split in this process (every process, all of it)."""
    if data_config.name == "folder":
        dataset, n, _ = folder.open_config_split(data_config, data_config.train_split, 0, 1)
        return dataset, n
    if data_config.get("decode_crop", False):
        raise errors.ConfigError(
            "evals.dynamics needs images of one size; data.decode_crop (JPEGs of any size) is "
            "not supported: set --config.evals.dynamics.every_steps=0."
        )
    return input_pipeline.load_split(
        data_config.name,
        data_config.train_split,
        data_config.data_dir,
        0,
        1,
        num_fake_examples=data_config.fake_train_examples,
    )


def make_probe_set(data_config: ml_collections.ConfigDict, num_images: int, seed: int) -> ProbeSet:
    """``num_images`` train images chosen by ``seed``, their eval images and training crops.

    Built on the host once; the same on every call, process and restart (the crops are keyed
    by (seed, example index, epoch 0, view), `jaxssl.data.crops.random_crops`).

    Args:
      data_config: the ``config.data`` ConfigDict (TFDS, ``fake`` or ``folder``).
      num_images: how many images; at most the split's size.
      seed: chooses the images and their crops.

    Returns:
      The `ProbeSet`, rows sorted by index in the split.
    """
    dataset, num_examples = _open_train_split(data_config)
    if num_images > num_examples:
        raise errors.ConfigError(
            f"evals.dynamics.num_images={num_images} but {data_config.train_split} has only "
            f"{num_examples} examples."
        )
    chosen = np.sort(np.random.default_rng(seed).choice(num_examples, num_images, replace=False))
    images, labels, indices = [], [], []
    for batch in dataset.batch(4096).as_numpy_iterator():
        rows = np.isin(batch["index"], chosen)
        images.append(batch["image"][rows])
        labels.append(batch["label"][rows])
        indices.append(batch["index"][rows])
    images, labels = np.concatenate(images), np.concatenate(labels).astype(np.int32)
    indices = np.concatenate(indices).astype(np.int32)
    cropped = input_pipeline.crop_train_batch(
        {"image": images, "label": labels, "index": indices, "epoch": 0}, seed, data_config
    )
    views = {group: np.asarray(cropped[group]) for group in ("global", "local") if group in cropped}
    size = int(data_config.eval_image_size)
    if images.shape[1:3] != (size, size):  # as make_eval_iterator resizes
        images = np.asarray(crops.resize(images, size))
    return ProbeSet(images, views, labels, indices)


# --- The measurement ---


def make_measure_fn(
    model: nn.Module,
    method: methods.Method,
    config: ml_collections.ConfigDict,
    num_chunks: int,
) -> Callable:
    """``measure_fn(state, probe) -> {"spectrum", "scalars", "layers"}``, not jitted.

    ``probe`` holds the probe set in ``num_chunks`` chunks of ``evals.dynamics.batch_size``:
    ``{"images": [C, B, E, E, 3], "global": [C, B, V, S, S, 3], ("local"), "label": [C, B],
    "index": [C, B]}``. Chunk ``c`` is colour-augmented with ``fold_in(key, c)`` and is one
    batch of the method's loss (its BatchNorm statistics, its negatives); gradients and loss
    terms are the means over the chunks, like gradient accumulation. The loss sees the state's
    ``method_state`` (teacher, queue) and ``step``; the online probe's loss is left out.

    Which embeddings: the spectrum, RankMe, collapse indicator and uniformity are of the
    unaugmented images, alignment of views 0 and 1 of each image, all in inference mode
    (running BatchNorm statistics, as the evaluators embed), for the backbone features and
    the projector outputs alike; alignment and uniformity L2-normalize them.

    The update is ``tx.update(grads, state.opt_state, state.params)``: the step the optimizer
    would take at ``state.step`` from this gradient, with its momentum so far (``|dw|`` is 0
    while a warm-up's learning rate is).

    Args:
      model: the method's ``SSLModel``.
      method: the method; its ``loss_fn`` gives the loss, the terms and the gradients.
      config: the run config.
      num_chunks: ``C``.

    Returns:
      The measurement function of a `jaxssl.state.TrainState` and the probe arrays.
    """
    tx, _ = optim.make_optimizer(config.optim, int(config.train.num_steps))
    base_key = jax.random.key(config.evals.dynamics.seed)
    augment_key = jax.random.fold_in(base_key, _AUGMENT_STREAM)
    loss_key = jax.random.fold_in(base_key, _LOSS_STREAM)
    data = config.data

    def measure_fn(state, probe):
        variables = {"params": state.params, "batch_stats": state.batch_stats}

        def loss(params, batch, rng):
            chunk_variables = {"params": params, "batch_stats": state.batch_stats}
            value, aux = method.loss_fn(
                model, chunk_variables, batch, state.method_state, config.method, rng, state.step
            )
            return value, aux.metrics

        grad_fn = jax.value_and_grad(loss, has_aux=True)

        def chunk(grads_sum, inputs):
            chunk_probe, index = inputs
            views = {k: v for k, v in chunk_probe.items() if k != "images"}
            # The same colours at every measurement: the key depends on the chunk alone.
            batch = color.augment_batch(jax.random.fold_in(augment_key, index), views, data)
            images = color.to_model_input(chunk_probe["images"], data.mean, data.std)
            clean = features.embed_views(model, variables, images)  # {name: [B, D]}
            # Both views of a pair in one inference-mode pass (per-example, so the same as two).
            pair = batch["global"][:, :2]  # [B, 2, S, S, 3]
            pair = pair.reshape(-1, *pair.shape[2:])  # [B*2, S, S, 3], batch-major
            embedded = features.embed_views(model, variables, pair)
            firsts = {name: z[0::2] for name, z in embedded.items()}
            seconds = {name: z[1::2] for name, z in embedded.items()}
            (value, terms), grads = grad_fn(
                state.params, batch, jax.random.fold_in(loss_key, index)
            )
            grads_sum = jax.tree.map(jnp.add, grads_sum, grads)
            return grads_sum, (clean, firsts, seconds, value, terms)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        chunks = jnp.arange(num_chunks)
        # Unrolled: XLA:CPU runs convolutions inside a while loop tens of times slower than the
        # same convolutions outside one (measured: 8 conv gradients 30.7 s under lax.map,
        # 0.45 s unrolled), and num_chunks is small.
        grads, (clean, firsts, seconds, values, terms) = jax.lax.scan(
            chunk, zeros, (probe, chunks), unroll=True
        )
        grads = jax.tree.map(lambda g: g / num_chunks, grads)
        rows = lambda x: x.reshape(-1, x.shape[-1])  # noqa: E731  [C, B, D] -> [N, D]

        spectrum, scalars = {}, {}
        for name in EMBEDDINGS:
            z = rows(clean[name])  # [N, D]
            spectrum[name] = spectral.covariance_spectrum(z)
            scalars[f"rankme/{name}"] = spectral.rankme(z)
            scalars[f"collapse/{name}"] = spectral.collapse_indicator(z)
            scalars[f"uniformity/{name}"] = spectral.uniformity(z)
            scalars[f"alignment/{name}"] = spectral.alignment(
                rows(firsts[name]), rows(seconds[name])
            )
        scalars["loss/total"] = jnp.mean(values)
        for name, term in terms.items():  # the method's own: loss terms and diagnostics
            scalars[f"aux/{name.removeprefix('train/')}"] = jnp.mean(term)

        updates, _ = tx.update(grads, state.opt_state, state.params)
        scalars["weight_norm/total"] = optax.tree.norm(state.params)
        scalars["grad_norm/total"] = optax.tree.norm(grads)
        scalars["update_ratio/total"] = optax.tree.norm(updates) / scalars["weight_norm/total"]
        per_layer = {}
        for group, values in (
            ("weight_norm", layers.leaf_norms(state.params)),
            ("grad_norm", layers.leaf_norms(grads)),
            ("update_ratio", layers.update_ratios(updates, state.params)),
        ):
            per_layer.update({f"{group}/{path}": value for path, value in values.items()})
        if config.optim.name == "lars":
            ratios = layers.lars_trust_ratios(
                grads,
                state.params,
                config.optim.trust_coefficient,
                config.optim.weight_decay,
                tuple(config.optim.get("exclude_from_adaptation", ())),
            )
            per_layer.update({f"trust_ratio/{path}": value for path, value in ratios.items()})
        if isinstance(state.method_state, dict) and "target" in state.method_state:
            # The teacher copies backbone + projector only (methods/teacher.py).
            target = state.method_state["target"]["params"]
            online = {name: state.params[name] for name in target}
            scalars["teacher/relative_distance"] = layers.relative_distance(online, target)
        return {"spectrum": spectrum, "scalars": scalars, "layers": per_layer}

    return measure_fn


# --- Columnar files ---


def _read_npz(path: str) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        return {}
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes ``path`` atomically: a reader sees the old file or the new one, never half."""
    with open(path + ".tmp", "wb") as f:
        np.savez(f, **arrays)
    os.replace(path + ".tmp", path)


def _to_records(columns: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    steps = columns.get("step", np.zeros([0]))
    return [{key: values[row] for key, values in columns.items()} for row in range(len(steps))]


def _to_columns(records: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stacks records; a quantity some record lacks is NaN there."""
    keys = list(dict.fromkeys(key for record in records for key in record))
    columns = {}
    for key in keys:
        shape = next(np.shape(r[key]) for r in records if key in r)
        missing = np.full(shape, np.nan)
        columns[key] = np.stack([np.asarray(r.get(key, missing)) for r in records])
    return columns


def dynamics_dir(path: str, name: str | None = None) -> str:
    """The directory of the dynamics files: ``path/dynamics[/name]`` for a workdir ``path``,
    else ``path[/name]`` (already a dynamics directory)."""
    if os.path.basename(os.path.normpath(path)) != DIRECTORY and os.path.isdir(
        os.path.join(path, DIRECTORY)
    ):
        path = os.path.join(path, DIRECTORY)
    return os.path.join(path, name) if name else path


def load(path: str, name: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The measurements written so far: ``{file: {"step": [T], quantity: [T, ...]}}``.

    Args:
      path: a run's workdir or its ``dynamics/`` directory.
      name: the subdirectory a `Dynamics` of that ``name`` wrote (e.g. ``replica_3``).

    Returns:
      One dict per file of `FILES` that exists; ``{}`` if none.
    """
    directory = dynamics_dir(path, name)
    loaded = {file: _read_npz(os.path.join(directory, f"{file}.npz")) for file in FILES}
    return {file: columns for file, columns in loaded.items() if columns}


class Dynamics:
    """Measures a `jaxssl.state.TrainState` on the probe set and appends to ``WORKDIR/dynamics``.

    Builds the probe set (`make_probe_set`) and places it on the mesh at construction; the
    measurement (`make_measure_fn`) is jitted once and takes the state as an argument. Only
    process 0 writes.

    Args:
      config: the run config; ``config.evals.dynamics`` has ``num_images``, ``seed`` and
        ``batch_size`` (the chunk each loss and gradient sees; it must divide ``num_images``
        and split over the devices).
      model: the method's ``SSLModel``.
      method: the method.
      mesh: the mesh the state lives on; the probe set is split over its batch axes.
      workdir: the run's directory.
      resume_step: the step the run (re)starts from; records of later steps are dropped, as
        `jaxssl.metrics.MetricWriter` does.
      name: a subdirectory of ``WORKDIR/dynamics`` (e.g. ``replica_3`` in a sweep).
      probe: a probe set to share (e.g. between replicas); default: built from the config.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        model: nn.Module,
        method: methods.Method,
        mesh: jax.sharding.Mesh,
        workdir: str,
        resume_step: int = 0,
        name: str | None = None,
        probe: ProbeSet | None = None,
    ):
        settings = config.evals.dynamics
        num_images = int(settings.num_images) if probe is None else len(probe.labels)
        batch_size = min(int(settings.batch_size), num_images)
        if num_images % batch_size:
            raise errors.ConfigError(
                f"evals.dynamics.batch_size={batch_size} must divide "
                f"evals.dynamics.num_images={num_images}."
            )
        sharding.check_batch_size(batch_size, mesh)
        if probe is None:
            probe = make_probe_set(config.data, num_images, int(settings.seed))
        self.probe = probe
        num_chunks = num_images // batch_size
        host = {"images": self.probe.images, **self.probe.views}
        host |= {"label": self.probe.labels, "index": self.probe.indices}
        chunked = jax.sharding.NamedSharding(mesh, jax.P(None, *sharding.batch_sharding(mesh).spec))
        # Every process holds the whole probe set and hands over its devices' rows.
        self._arrays = {
            key: jax.make_array_from_callback(
                (num_chunks, batch_size, *value.shape[1:]),
                chunked,
                lambda index, v=value: v.reshape(num_chunks, batch_size, *v.shape[1:])[index],
            )
            for key, value in host.items()
        }
        self._measure_fn = jax.jit(
            make_measure_fn(model, method, config, num_chunks),
            out_shardings=sharding.replicated(mesh),
        )
        self._root = os.path.join(workdir, DIRECTORY)
        self._open(name, resume_step)

    def _open(self, name: str | None, resume_step: int) -> None:
        """Reads the records of ``name`` up to ``resume_step`` (rewriting files that had more)."""
        self.directory = os.path.join(self._root, *([name] if name else []))
        self._active = jax.process_index() == 0
        self._records = {}
        if not self._active:
            return
        os.makedirs(self.directory, exist_ok=True)
        for file in FILES:
            records = _to_records(_read_npz(self._path(file)))
            self._records[file] = [r for r in records if int(r["step"]) <= resume_step]
            if len(self._records[file]) != len(records):
                self._write(file)

    def with_name(self, name: str, resume_step: int = 0) -> "Dynamics":
        """A `Dynamics` writing to ``WORKDIR/dynamics/<name>`` that shares this one's probe set
        (on device) and compiled measurement: one compilation for all replicas of a sweep."""
        named = copy.copy(self)
        named._open(name, resume_step)
        return named

    def _path(self, file: str) -> str:
        return os.path.join(self.directory, f"{file}.npz")

    def _write(self, file: str) -> None:
        _write_npz(self._path(file), _to_columns(self._records[file]))

    def measure(self, state, step: int) -> dict[str, dict[str, np.ndarray]]:
        """Measures ``state`` and appends it as ``step`` (replacing records of steps >= step).

        Args:
          state: a `jaxssl.state.TrainState` on the mesh.
          step: the step to record it under (usually ``state.step``).

        Returns:
          ``{"spectrum": {name: [D]}, "scalars": {name: float}, "layers": {name: float}}``
          on the host, on every process.
        """
        step = int(step)
        measured = jax.device_get(self._measure_fn(state, self._arrays))
        measured = jax.tree.map(np.asarray, measured)
        if self._active:
            for file in FILES:
                kept = [r for r in self._records[file] if int(r["step"]) < step]
                self._records[file] = [*kept, {"step": np.int64(step), **measured[file]}]
                self._write(file)
        return measured

    def close(self) -> None:
        """Nothing to flush (every measurement is written at once); for symmetry with writers."""
