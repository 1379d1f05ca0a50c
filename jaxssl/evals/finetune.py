"""Fine-tuning: the whole backbone and a linear head trained on a labelled subset of the train
split, scored on the test split (SimCLR's and BYOL's semi-supervised protocol, at CPU scale).

For each fraction of ``evals.finetune.label_fractions`` (1.0: every label) and each of the
first ``evals.finetune.num_seeds`` seeds of ``evals.label_subset_seeds``, a class-balanced
subset of the train split is drawn (`jaxssl.evals.subsets`, the same images the low-label
linear probe and few-shot kNN use). Its held-out part, a class-balanced
``holdout_fraction`` of the subset, chooses the learning rate from ``evals.finetune.lrs``:
one fine-tune per rate on the rest, scored on the held-out part; then the chosen rate
fine-tunes on the whole subset, scored once on the test split. Only the subset's labels are
ever read, and the test split never chooses anything.

A fine-tune: ``steps`` steps of SGD with Nesterov momentum 0.9 on batches of ``batch_size``
images drawn at random from the fitted rows, cosine-decayed lr, weight decay
``weight_decay`` on the kernels, BatchNorm in train mode (its running statistics continue
from the checkpoint's), random crops of the 4-px zero-padded image and horizontal flips
(the CIFAR fine-tuning augmentation), and a zero-initialized linear head on the backbone's
pooled features. From a random initialization, the same procedure is supervised training
from scratch: the baseline every fine-tuned method must beat.

One process only: the subset's images are gathered on its host.
"""

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxssl import errors
from jaxssl.data import color
from jaxssl.evals import features, subsets


def load_images(make_batches) -> tuple[np.ndarray, np.ndarray]:
    """The real rows of an eval split on the host: ``(images uint8 [N, S, S, 3], labels [N])``."""
    images, labels = [], []
    for batch in make_batches():
        real = np.asarray(batch["mask"], bool)
        images.append(np.asarray(batch["image"])[real])
        labels.append(np.asarray(batch["label"])[real])
    return np.concatenate(images), np.concatenate(labels)


def pad_crop_flip(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
    """A random ``S x S`` crop of each zero-padded image, flipped with probability 1/2.

    Args:
      key: the draw.
      images: ``[B, S, S, C]``.
      padding: zeros added on every side before cropping.
    """
    b, s = images.shape[0], images.shape[1]
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offset_key, flip_key = jax.random.split(key)
    offsets = jax.random.randint(offset_key, (b, 2), 0, 2 * padding + 1)
    flips = jax.random.bernoulli(flip_key, 0.5, (b,))

    def crop(image, offset, flip):
        out = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (s, s, image.shape[-1]))
        return jnp.where(flip, out[:, ::-1], out)

    return jax.vmap(crop)(padded, offsets, flips)


class Classifier(nn.Module):
    """A backbone and a zero-initialized linear head on its pooled features."""

    backbone: nn.Module
    num_classes: int

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array:
        feats = self.backbone(images, train=train)  # [B, D]
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(
            feats.astype(jnp.float32)
        )


def _decay_mask(params):
    """Weight decay on kernels only (not on biases, norms or embeddings' scales)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", "") == "kernel", params
    )


def make_fine_tune_fn(
    classifier: Classifier,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    steps: int,
    batch_size: int,
    weight_decay: float,
):
    """``fine_tune(variables, images, labels, count, lr, key) -> variables``: ``steps`` SGD
    steps on random batches of the first ``count`` rows of the uint8 ``images`` ``[N, S, S,
    3]``: one jitted step called ``steps`` times, as the train loop does. Callers pad
    ``images`` to one ``N`` so that every subset size runs the same compiled program."""
    schedule = optax.cosine_decay_schedule(1.0, steps)

    def make_tx(lr):
        return optax.chain(
            optax.add_decayed_weights(weight_decay, mask=_decay_mask),
            optax.sgd(lambda count: lr * schedule(count), momentum=0.9, nesterov=True),
        )

    @partial(jax.jit, donate_argnums=(0,))
    def step(carry, images, labels, count, lr, step_key):
        params, batch_stats, opt_state = carry
        sample_key, augment_key = jax.random.split(step_key)
        rows = jax.random.randint(sample_key, (batch_size,), 0, count)
        batch = pad_crop_flip(augment_key, images[rows])
        inputs = color.to_model_input(batch, mean, std)

        def loss_fn(params):
            logits, updates = classifier.apply(
                {"params": params, "batch_stats": batch_stats},
                inputs,
                train=True,
                mutable=["batch_stats"],
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels[rows])
            return loss.mean(), updates["batch_stats"]

        grads, batch_stats = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = make_tx(lr).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state

    def fine_tune(variables, images, labels, count, lr, key):
        params = jax.tree.map(jnp.array, variables["params"])  # copies: the step donates
        batch_stats = jax.tree.map(jnp.array, variables["batch_stats"])
        carry = (params, batch_stats, make_tx(lr).init(params))
        images, labels = jnp.asarray(images), jnp.asarray(labels)
        lr = jnp.float32(lr)
        for step_key in jax.random.split(key, steps):
            carry = step(carry, images, labels, count, lr, step_key)
        return {"params": carry[0], "batch_stats": carry[1]}

    return fine_tune


def make_accuracy_fn(classifier: Classifier, mean, std, batch_size: int = 500):
    """``accuracy(variables, images uint8 [N, S, S, 3], labels [N]) -> top-1`` in inference
    mode, ``batch_size`` images at a time."""

    @jax.jit
    def correct(variables, images, labels, valid):
        logits = classifier.apply(variables, color.to_model_input(images, mean, std), train=False)
        return jnp.sum((jnp.argmax(logits, -1) == labels) & valid)

    def accuracy(variables, images, labels):
        total = 0
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pad = batch_size - len(chunk)  # one compiled shape for every chunk
            total += int(
                correct(
                    variables,
                    np.pad(chunk, ((0, pad), (0, 0), (0, 0), (0, 0))),
                    np.pad(labels[start : start + batch_size], (0, pad)),
                    np.arange(batch_size) < len(chunk),
                )
            )
        return total / len(images)

    return accuracy


def initial_variables(context: features.Context, classifier: Classifier, image_size: int):
    """The checkpoint's backbone (weights and BatchNorm statistics) and a fresh head."""
    fresh = jax.jit(partial(classifier.init, train=False))(
        jax.random.key(0), jnp.zeros((1, image_size, image_size, 3))
    )
    params = dict(fresh["params"])
    params["backbone"] = context.variables["params"]["backbone"]
    batch_stats = dict(fresh.get("batch_stats", {}))
    if "backbone" in context.variables.get("batch_stats", {}):
        batch_stats["backbone"] = context.variables["batch_stats"]["backbone"]
    return {"params": params, "batch_stats": batch_stats}


def run(context: features.Context) -> features.Result:
    """Fine-tuning on ``evals.finetune.label_fractions`` of the labels; see the module doc.

    Returns:
      ``finetune/top1_frac<f>`` (mean over seeds) and ``finetune/top1_frac<f>_std``; details
      with the per-seed accuracies, subset sizes and chosen learning rates.
    """
    if jax.process_count() > 1:
        raise errors.ConfigError(
            "The finetune evaluator gathers the labelled images on one host: run `jaxssl eval` "
            "in a single process (without --distributed)."
        )
    config, data = context.config.evals.finetune, context.config.data
    seeds = tuple(context.config.evals.label_subset_seeds)[: config.num_seeds]
    train_images, train_labels = load_images(context.make_train_batches)
    test_images, test_labels = load_images(context.make_test_batches)
    classifier = Classifier(context.model.backbone, data.num_classes)
    start = initial_variables(context, classifier, train_images.shape[1])
    fine_tune = make_fine_tune_fn(
        classifier,
        data.mean,
        data.std,
        steps=config.steps,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
    )
    accuracy = make_accuracy_fn(classifier, data.mean, data.std)
    # On device once; each fine-tune gathers its subset there.
    device_images, device_labels = jnp.asarray(train_images), jnp.asarray(train_labels)
    metrics, per_fraction = {}, {}
    for fraction in config.label_fractions:
        results = []
        for seed in seeds:
            chosen = subsets.balanced_subset(
                train_labels, subsets.fraction_quotas(train_labels, fraction), seed
            )
            labels = train_labels[chosen]
            held = subsets.balanced_subset(
                labels, subsets.fraction_quotas(labels, config.holdout_fraction), seed + 1
            )
            fit = np.setdiff1d(np.arange(len(chosen)), held)
            key = jax.random.fold_in(jax.random.key(config.seed), seed)

            def tune(rows, lr, key=key):  # rows of the train split; padded to the split's size
                index = np.pad(rows, (0, len(train_labels) - len(rows)))
                return fine_tune(
                    start, device_images[index], device_labels[index], len(rows), lr, key
                )

            holdout_top1 = {}
            for lr in config.lrs if len(config.lrs) > 1 else ():  # one lr: nothing to choose
                tuned = tune(chosen[fit], float(lr))
                holdout_top1[float(lr)] = accuracy(tuned, train_images[chosen[held]], labels[held])
            best_lr = max(
                holdout_top1 or {float(config.lrs[0]): 0.0},
                key=lambda lr: (holdout_top1.get(lr, 0.0), -lr),
            )
            tuned = tune(chosen, best_lr)
            results.append(
                {
                    "top1": accuracy(tuned, test_images, test_labels),
                    "size": len(chosen),
                    "lr": best_lr,
                    "holdout_top1": holdout_top1,
                }
            )
        mean, std = subsets.mean_and_std([r["top1"] for r in results])
        metrics[f"finetune/top1_frac{fraction:g}"] = mean
        metrics[f"finetune/top1_frac{fraction:g}_std"] = std
        per_fraction[f"{fraction:g}"] = {
            key: [r[key] for r in results] for key in ("top1", "size", "lr", "holdout_top1")
        }
    description = protocol(config, seeds, data.eval_train_split, data.eval_test_split)
    return features.Result(metrics, description, {"per_fraction": per_fraction})


def protocol(
    config: ml_collections.ConfigDict, seeds: Sequence[int], train_split: str, test_split: str
) -> str:
    """The fine-tuning protocol in words, stored and printed beside its numbers."""
    fractions = ",".join(f"{f:g}" for f in config.label_fractions)
    if len(config.lrs) > 1:
        lrs = ",".join(f"{lr:g}" for lr in config.lrs)
        choice = (
            f"lr in {{{lrs}}} chosen on the subset's held-out {config.holdout_fraction:.0%}, "
            "refit on the whole subset"
        )
    else:
        choice = f"lr {config.lrs[0]:g} (fixed, not chosen)"
    return (
        f"fine-tuning: backbone + zero-init linear head, {config.steps} steps of Nesterov SGD "
        f"(batch {config.batch_size}, cosine lr, wd {config.weight_decay:g} on kernels, "
        f"pad-4 crop + flip) on {fractions} of the labels of {train_split} (class-balanced, "
        f"seeds {','.join(str(s) for s in seeds)}); {choice}; scored on {test_split}"
    )
