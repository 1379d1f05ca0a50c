"""The Python entry point for notebooks and research code: a run's pieces from a config.

    from jaxssl import api
    from jaxssl.configs import simclr_cifar10

    config = simclr_cifar10.get_config("smoke")
    run = api.build(config)  # model, state initializer, jitted train step, on config.mesh
    state = run.init_state()
    batch = api.make_batch(images, labels, config.data, epoch=0)  # the views of your arrays
    state, metrics = run.train_step(state, batch)
    embed_fn = api.make_embed_fn(run)
    top1 = api.knn_top1(
        embed_fn(state, train_images)["backbone"], train_labels,
        embed_fn(state, test_images)["backbone"], test_labels, k=20,
    )

Nothing here is a second copy of the trainer: `build` is `jaxssl.trainer.build` (the one jit of
the train step), `make_batch` cuts views as the input pipeline does
(`jaxssl.data.tfds.crop_train_batch`), `make_embed_fn` is the evaluators' embedding
(`jaxssl.evals.features.make_embed_fn`) and `knn_top1` their weighted kNN
(`jaxssl.evals.knn.knn_predict`). The state is the plain `jaxssl.state.TrainState` pytree, so
``jax.tree``, ``jax.vmap`` or your own Orbax calls apply to it directly. Single process:
multi-host runs go through ``jaxssl train``. See docs/api.md.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl import sharding, trainer
from jaxssl import state as state_lib
from jaxssl.data import tfds as input_pipeline
from jaxssl.evals import features, knn


def build(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None
) -> trainer.Training:
    """The model, state initializer and jitted train step of ``config``, as training builds them.

    Args:
      config: a run config, e.g. ``simclr_cifar10.get_config("smoke")``.
      mesh: the devices to run on; default ``config.mesh`` (all visible devices).

    Returns:
      A `jaxssl.trainer.Training`: ``run.init_state()`` gives a fresh `TrainState` and
      ``run.train_step(state, batch) -> (state, metrics)`` trains one step (the state is
      donated: keep using the returned one); ``run.model``, ``run.mesh``, ``run.config``.

    Raises:
      ValueError: ``train.batch_size`` does not divide over the mesh's devices.
    """
    mesh = sharding.make_mesh(config.mesh) if mesh is None else mesh
    trainer.check_batch_size(config, mesh)
    return trainer.build(config, mesh)


def make_batch(
    images: np.ndarray,
    labels: np.ndarray,
    data_config: ml_collections.ConfigDict,
    *,
    index: np.ndarray | None = None,
    epoch: int = 0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The train step's batch of your images: their random resized, flipped crops, on the host.

    The crops are the input pipeline's (``data.num_views`` views of ``data.image_size`` px,
    and multi-crop's ``data.local_views``); the colour augmentation runs in the train step.

    Args:
      images: uint8 ``[B, H, W, 3]``; ``B`` is the config's ``train.batch_size``.
      labels: int ``[B]``, read only by the online probe (and label-using methods).
      data_config: ``config.data``.
      index: ``[B]`` the images' indices in your dataset (default ``0..B-1``); with ``epoch``
        and ``seed`` they key the crops, so the same numbers give the same views.
      epoch: a counter to draw new crops of the same images, e.g. the step.
      seed: the data seed.

    Returns:
      ``{"global": uint8 [B, V, S, S, 3], "label": int32 [B], "index": int32 [B]}`` (and
      ``"local"`` for multi-crop) as numpy arrays.
    """
    images = np.asarray(images, np.uint8)
    index = np.arange(len(images)) if index is None else np.asarray(index)
    batch = {
        "image": images,
        "label": np.asarray(labels, np.int32),
        "index": index,
        "epoch": np.int64(epoch),
    }
    crops = input_pipeline.crop_train_batch(batch, seed, data_config)
    return {name: np.asarray(value) for name, value in crops.items()}


def make_embed_fn(run: trainer.Training, batch_size: int = 256) -> Callable:
    """Returns ``embed_fn(state, images) -> {"backbone": [N, D], "projector": [N, P]}``.

    The evaluators' embedding: the model in inference mode (running BatchNorm statistics) on
    unaugmented images normalized with ``data.mean`` / ``data.std``; numpy in, numpy out.

    Args:
      run: from `build`.
      batch_size: images per compiled call (rounded up to a multiple of the devices); the
        last batch is padded, so any ``N`` works without recompiling.

    Returns:
      The embedding function; ``state`` is a `TrainState` (embedded with the network
      ``config.evals.encoder`` names) or the model variables
      ``{"params", "batch_stats"}`` (`jaxssl.evaluate.restore_state` reads them from a
      training run's checkpoint), ``images`` are uint8 ``[N, H, W, 3]``.
    """
    data = run.config.data
    embed = features.make_embed_fn(run.model, run.mesh, data.mean, data.std)
    devices = run.mesh.devices.size
    batch_size = -(-batch_size // devices) * devices

    def embed_fn(state: state_lib.TrainState | dict, images: np.ndarray) -> dict[str, np.ndarray]:
        if isinstance(state, dict):  # already variables, e.g. from evaluate.restore_state
            variables = state
        else:  # the network evals.encoder names: the trained one or its EMA teacher
            variables = features.evaluated_variables(
                run.config.evals.encoder, state.params, state.batch_stats, state.method_state
            )
        images = np.asarray(images, np.uint8)
        num_images = len(images)
        padding = [(0, -num_images % batch_size)] + [(0, 0)] * (images.ndim - 1)
        images = np.pad(images, padding)
        parts = []
        for start in range(0, len(images), batch_size):
            part = {"image": images[start : start + batch_size]}
            parts.append(embed(variables, sharding.to_global(part, run.mesh)["image"]))
        parts = jax.device_get(parts)
        return {name: np.concatenate([p[name] for p in parts])[:num_images] for name in parts[0]}

    return embed_fn


def knn_top1(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
) -> float:
    """Top-1 accuracy of weighted kNN: the train rows vote for each test row's label.

    The protocol of ``jaxssl eval`` and training's ``knn/top1`` (`jaxssl.evals.knn`): cosine
    similarity, the ``k`` nearest train rows vote with weights ``exp(sim / temperature)``.

    Args:
      train_features: ``[N, D]`` memory bank.
      train_labels: ``[N]`` int labels.
      test_features: ``[Q, D]`` queries.
      test_labels: ``[Q]`` int labels.
      k: neighbours (at most ``N``).
      temperature: vote temperature.
      num_classes: default the largest label + 1.

    Returns:
      The accuracy, in ``[0, 1]``.

    References:
      Wu et al., Unsupervised Feature Learning via Non-Parametric Instance Discrimination,
      CVPR 2018. https://arxiv.org/abs/1805.01978
    """
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    chunk_size = 256
    queries = np.asarray(test_features, np.float32)
    queries = np.pad(queries, ((0, -len(queries) % chunk_size), (0, 0)))
    predictions = knn.knn_predict(
        jnp.asarray(train_features, jnp.float32),
        jnp.asarray(train_labels, jnp.int32),
        jnp.ones(len(train_labels), bool),
        jnp.asarray(queries),
        ks=(min(k, len(train_labels)),),
        temperature=temperature,
        num_classes=num_classes,
        chunk_size=chunk_size,
    )
    predictions = np.asarray(jax.device_get(predictions))[0, : len(test_labels)]  # [Q]
    return float(np.mean(predictions == test_labels))
