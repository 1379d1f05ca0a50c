"""Rotation prediction from frozen features: a label-free score of a checkpoint.

The first ``evals.rotation.num_images`` images of the train split are embedded in all four
quarter turns (`jaxssl.data.pretext.quarter_turns`) by the frozen backbone, and a linear
classifier (the linear probe's whitened softmax regression, `jaxssl.evals.linear.fit`, at
weight decay ``evals.rotation.weight_decay``) learns the rotation from the first
``1 - holdout_fraction`` of the images and is scored on the rest (all four rotations of an image
on one side). No label is read. SelfAugment (Reed et al. 2021) reports that this accuracy ranks
checkpoints and augmentation policies like the supervised evaluations do (rank correlation >
0.94 on their ImageNet policies); it sits beside RankMe as a model-selection signal
(docs/evaluation.md).

References:
  Reed et al., SelfAugment: Automatic Augmentation Policies for Self-Supervised Learning,
  CVPR 2021. https://arxiv.org/abs/2009.07724
"""

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.data import pretext
from jaxssl.evals import features, linear


def rotated_batches(batches: Iterator[dict], num_images: int, num_fit: int) -> Iterator[dict]:
    """Each eval batch's images in the four quarter turns until ``num_images`` real images
    (per process) were used; rows past them are padding. The label is ``turn + 4 * held``:
    an image is held out when its rank among the used images is ``>= num_fit``, so all four
    turns of an image fall on one side."""
    seen = 0
    for batch in batches:
        if seen >= num_images:
            break
        mask = np.asarray(batch["mask"], bool)
        rank = seen + np.cumsum(mask) - 1
        keep = mask & (rank < num_images)
        held = (rank >= num_fit).astype(np.int32)
        seen += int(keep.sum())
        for turn in range(pretext.NUM_ROTATIONS):  # as pretext.quarter_turns, on the host
            turned = np.rot90(np.asarray(batch["image"]), turn, axes=(1, 2))
            yield {"image": turned, "label": turn + 4 * held, "mask": keep}


def run(context: features.Context) -> features.Result:
    """Rotation accuracy of a linear classifier on frozen backbone features (label-free).

    Returns:
      ``{"rotation/top1"}`` (held-out images) and ``{"rotation/train_top1"}``.
    """
    config, data = context.config.evals.rotation, context.config.data
    num_images = min(config.num_images, context.num_real(context.train))
    num_fit = round(num_images * (1.0 - config.holdout_fraction))
    embed_fn = features.make_embed_fn(context.model, context.mesh, data.mean, data.std)
    batches = rotated_batches(context.make_train_batches(), num_images, num_fit)
    split = features.extract(embed_fn, context.variables, batches, context.mesh)
    turns = split.labels % pretext.NUM_ROTATIONS
    held = split.mask & (split.labels >= pretext.NUM_ROTATIONS)
    fit = split.mask & ~held
    classifier = linear.fit(
        split.features["backbone"],
        turns,
        fit.astype(jnp.float32),
        jnp.asarray([config.weight_decay], jnp.float32),
        num_classes=pretext.NUM_ROTATIONS,
        max_steps=config.max_steps,
    )
    top1 = linear.accuracy(classifier, split.features["backbone"], turns, held)
    train_top1 = linear.accuracy(classifier, split.features["backbone"], turns, fit)
    metrics = {
        "rotation/top1": float(jax.device_get(top1)[0]),
        "rotation/train_top1": float(jax.device_get(train_top1)[0]),
    }
    protocol = (
        f"rotation prediction (label-free): linear probe on frozen backbone features of the "
        f"first {num_images} {data.eval_train_split} images in 4 quarter turns, "
        f"wd {config.weight_decay:g}, fit on the first {num_fit} images, scored on the rest"
    )
    return features.Result(metrics, protocol, {})
