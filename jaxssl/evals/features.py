"""Embeddings of the eval splits, extracted once per evaluation and shared by the evaluators.

An evaluation embeds the unaugmented train split (``config.data.eval_train_split``: the kNN
memory bank, the linear probe's training rows) and test split (``eval_test_split``) with the
model in inference mode (running BatchNorm statistics), into a `Context` that every evaluator
of ``jaxssl.evals.EVALUATORS`` reads and returns a `Result` from. The trainer's periodic
evaluation and ``jaxssl eval`` build it alike, with an `Extractor`.
"""

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl import errors, sharding
from jaxssl.data import color
from jaxssl.data import tfds as input_pipeline


class Split(NamedTuple):
    """Features of one eval split: ``{"backbone": [N, D], "projector": [N, P]}``, labels, mask."""

    features: dict[str, jax.Array]
    labels: jax.Array  # [N]
    mask: jax.Array  # [N], False for padding rows


class Result(NamedTuple):
    """What an evaluator returns: flat scalar metrics, its protocol in words, JSON details."""

    metrics: dict[str, float]
    protocol: str
    details: dict[str, Any]


@dataclasses.dataclass
class Context:
    """Everything the evaluators share: extracted once, read by all.

    ``results`` fills as the evaluators run, so a later one may read an earlier one's (the
    plots draw the spectral evaluator's spectrum). ``out_prefix`` is where evaluators that
    write files (the plots) write them: ``WORKDIR/eval/<step>``; None in training, which runs
    none of them.
    """

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    model: nn.Module
    variables: dict
    train: Split
    test: Split
    make_train_batches: Callable[[], Iterator[dict[str, np.ndarray]]]
    make_test_batches: Callable[[], Iterator[dict[str, np.ndarray]]]
    workdir: str | None = None
    step: int = 0
    out_prefix: str | None = None
    results: dict[str, Result] = dataclasses.field(default_factory=dict)

    def num_real(self, split: Split) -> int:
        """The number of real (non-padding) rows of ``split``."""
        return int(jax.device_get(split.mask.sum()))


def bag_of_patches(embed: Callable) -> Callable:
    """EMP-SSL's evaluation embedding: the mean of the embeddings of an image's patches.

    The patches are random resized crops drawn like the training patches, cut on the host
    (``config.evals.patches``, `jaxssl.data.tfds.make_eval_iterator`) and keyed by
    ``patches.seed`` and the patch index only, so every evaluation of every checkpoint sees
    the same patches; every patch is embedded, and the image's embedding is their mean (Tong et
    al. 2023, "bag of features"). Patches are embedded one at a time (``lax.scan``): the
    activations are those of one batch of patches, not ``P`` of them.

    Args:
      embed: ``(variables, images [B, s, s, 3]) -> pytree of [B, ...]`` features.

    Returns:
      ``(variables, patches [B, P, s, s, 3]) ->`` the same pytree, averaged over the patches.

    References:
      Tong, Chen, Ma & LeCun, EMP-SSL: Towards Self-Supervised Learning in One Training
      Epoch, 2023. https://arxiv.org/abs/2304.03977
    """

    def embed_patches(variables, patches):
        def add_patch(total, patch):  # [B, s, s, 3]
            features = embed(variables, patch)
            return jax.tree.map(jnp.add, total, features), None

        by_patch = jnp.swapaxes(patches, 0, 1)  # [P, B, s, s, 3]
        shapes = jax.eval_shape(embed, variables, by_patch[0])
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
        total, _ = jax.lax.scan(add_patch, zeros, by_patch)
        return jax.tree.map(lambda x: x / patches.shape[1], total)

    return embed_patches


ENCODERS = ("online", "target")


def evaluated_variables(encoder: str, params, batch_stats, method_state) -> dict:
    """The variables an evaluation embeds with: ``config.evals.encoder`` of a state's parts.

    ``"online"``: the trained network itself. ``"target"``: its backbone and projector replaced
    by the EMA teacher's (``method_state["target"]``, `jaxssl.methods.teacher`), weights and
    BatchNorm averages alike: the network DINO's and I-JEPA's papers evaluate (their teacher
    is an average of the student's recent weights). Other entries (predictor, probe) are the
    online ones.

    Raises:
      errors.ConfigError: an unknown encoder, or ``"target"`` for a method without a teacher.
    """
    if encoder not in ENCODERS:
        raise errors.ConfigError(f"evals.encoder must be one of {ENCODERS}, not {encoder!r}.")
    variables = {"params": params, "batch_stats": batch_stats}
    if encoder == "online":
        return variables
    if not isinstance(method_state, dict) or "target" not in method_state:
        raise errors.ConfigError(
            "evals.encoder='target' evaluates the EMA teacher, and this method keeps none "
            "(methods with one: BYOL, MoCo v2/v3, DINO, DINOv2, I-JEPA, ...): use 'online'."
        )
    target = method_state["target"]
    return {
        "params": {**params, **target["params"]},
        "batch_stats": {**batch_stats, **target.get("batch_stats", {})},
    }


def embed_views(model: nn.Module, variables, views: jax.Array) -> dict[str, jax.Array]:
    """``{"backbone": [B, D], "projector": [B, P]}`` of normalized float views, inference mode."""
    outputs = model.apply(variables, views, train=False)
    return {"backbone": outputs[0], "projector": outputs[1]}


def make_embed_fn(
    model: nn.Module,
    mesh: jax.sharding.Mesh,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool = False,
    patches=None,
) -> Callable:
    """Jitted ``(variables, uint8 images) -> {"backbone": [B, D], "projector": [B, P]}``.

    Args:
      model: the ``SSLModel``.
      mesh: the mesh; features stay sharded over the batch axes like the images.
      mean: per-channel mean of the normalization, ``config.data.mean``.
      std: per-channel standard deviation, ``config.data.std``.
      flip: embed the horizontally flipped images instead.
      patches: ``config.evals.patches``; with ``patches.num > 0`` the function takes the
        host's patches ``[B, P, s, s, 3]`` and an image's features are the means over its
        patches (`bag_of_patches`, EMP-SSL's evaluation).

    Returns:
      The embedding function.
    """

    def embed(variables, images):  # [B, H, W, 3] uint8
        if flip:
            images = images[:, :, ::-1]
        return embed_views(model, variables, color.to_model_input(images, mean, std))

    if patches is not None and patches.num > 0:
        embed = bag_of_patches(embed)
    return jax.jit(embed, out_shardings=sharding.batch_sharding(mesh))


def extract(
    embed_fn: Callable, variables, batches: Iterator[dict[str, np.ndarray]], mesh: jax.sharding.Mesh
) -> Split:
    """Runs ``embed_fn`` over every batch and concatenates features, labels and masks on device.

    Args:
      embed_fn: jitted ``(variables, images) -> features``, a dict of ``[B, ...]`` arrays.
      variables: model variables.
      batches: per-process batches ``{"image", "label", "mask"}``, and ``"patches"`` for a
        bag-of-patches evaluation (`jaxssl.data.tfds.make_eval_iterator`), which ``embed_fn``
        then gets instead of ``"image"``.
      mesh: the mesh the batches are sharded over.

    Returns:
      The split's features, labels and mask as global arrays.
    """
    features, labels, masks = [], [], []
    for batch in batches:
        images = batch.get("patches", batch["image"])
        batch = sharding.to_global(
            {"images": images, "label": batch["label"], "mask": batch["mask"]}, mesh
        )
        features.append(embed_fn(variables, batch["images"]))
        labels.append(batch["label"])
        masks.append(batch["mask"])
    features = jax.tree.map(lambda *parts: jnp.concatenate(parts), *features)
    return Split(features, jnp.concatenate(labels), jnp.concatenate(masks))


class Extractor:
    """Embeds the eval splits of ``config.data`` with a state's variables, into a `Context`.

    Opens both splits at construction (a missing dataset fails here, before a run writes
    anything) and compiles the embedding once, for every later evaluation.

    Args:
      config: the run config; the splits' batch is ``config.evals.knn.batch_size`` (global)
        and ``config.evals.patches`` selects the bag-of-patches embedding.
      model: the ``SSLModel``.
      mesh: the mesh the features are sharded over.
    """

    def __init__(
        self, config: ml_collections.ConfigDict, model: nn.Module, mesh: jax.sharding.Mesh
    ):
        self.config, self.model, self.mesh = config, model, mesh
        iterators = {
            split: input_pipeline.make_eval_iterator(
                config.data,
                split,
                batch_size=config.evals.knn.batch_size // jax.process_count(),
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                patches=config.evals.patches,
            )
            for split in (config.data.eval_train_split, config.data.eval_test_split)
        }
        make_batches = {split: make for split, (make, _) in iterators.items()}
        self.num_examples = {split: int(n) for split, (_, n) in iterators.items()}
        self.make_train_batches = make_batches[config.data.eval_train_split]
        self.make_test_batches = make_batches[config.data.eval_test_split]
        self.embed_fn = make_embed_fn(
            model, mesh, config.data.mean, config.data.std, patches=config.evals.patches
        )

    def extract(
        self,
        variables: dict,
        workdir: str | None = None,
        step: int = 0,
        out_prefix: str | None = None,
    ) -> Context:
        """Embeds both splits with ``variables`` (``{"params", "batch_stats"}``).

        Args:
          variables: the model variables to evaluate.
          workdir: the run's directory, for evaluators that read its records (the plots).
          step: the step the variables are from.
          out_prefix: where file-writing evaluators write (see `Context`).

        Returns:
          The `Context`, its features still being computed (dispatch is asynchronous).
        """
        return Context(
            config=self.config,
            mesh=self.mesh,
            model=self.model,
            variables=variables,
            train=extract(self.embed_fn, variables, self.make_train_batches(), self.mesh),
            test=extract(self.embed_fn, variables, self.make_test_batches(), self.mesh),
            make_train_batches=self.make_train_batches,
            make_test_batches=self.make_test_batches,
            workdir=workdir,
            step=step,
            out_prefix=out_prefix,
        )


def view_pairs(context: Context, num_pairs: int) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Embeddings of ``num_pairs`` pairs of augmented train views (the run's augmentations)."""
    return transformed_view_pairs(context, num_pairs, transforms=False)[0]


def transformed_view_pairs(
    context: Context, num_pairs: int, transforms: bool = True
) -> tuple[dict[str, tuple[jax.Array, jax.Array]], jax.Array | None]:
    """`view_pairs`, and with ``transforms`` each pair's relative transformation ``[N, 12]``
    (`jaxssl.data.color.relative_transform` of the recorded view parameters; the host then
    passes crop boxes whatever ``data.crop_boxes`` says)."""
    config = context.config
    data_config = config.data
    if transforms:
        data_config = ml_collections.ConfigDict(config.data.to_dict())
        data_config.crop_boxes = True
        data_config.view_transforms = True
    batch_size = config.evals.knn.batch_size
    batches = input_pipeline.make_train_iterator(
        data_config,
        global_batch_size=batch_size,
        seed=config.seed,
        start_step=0,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    def pair_embeddings(variables, crops, key):
        # The host's crops get the training colour augmentation, as in the train step.
        views = color.augment_views(key, crops["global"], data_config)  # [B, V, S, S, 3]
        embedded = tuple(embed_views(context.model, variables, views[:, v]) for v in (0, 1))
        if not transforms:
            return embedded, None
        transform = color.view_transforms(key, crops["global_box"], data_config)
        return embedded, color.relative_transform(transform[:, 0], transform[:, 1])

    views_fn = jax.jit(pair_embeddings)
    key = jax.random.key(config.seed)
    keep = ("global", "global_box") if transforms else ("global",)
    firsts, seconds, relatives = [], [], []
    for index in range(math.ceil(num_pairs / batch_size)):
        batch = next(batches)
        crops = sharding.to_global({k: batch[k] for k in keep}, context.mesh)
        (first, second), relative = views_fn(
            context.variables, crops, jax.random.fold_in(key, index)
        )
        firsts.append(first)
        seconds.append(second)
        relatives.append(relative)
    pairs = {
        name: (
            jnp.concatenate([f[name] for f in firsts])[:num_pairs],
            jnp.concatenate([s[name] for s in seconds])[:num_pairs],
        )
        for name in firsts[0]
    }
    return pairs, (jnp.concatenate(relatives)[:num_pairs] if transforms else None)
