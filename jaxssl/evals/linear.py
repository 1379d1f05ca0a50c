"""Offline linear probe: a softmax classifier on frozen, whitened backbone features.

Protocol: features of the unaugmented train and test images are extracted once (inference
mode, `jaxssl.evals.features`). Features are centred and whitened with the
statistics of the rows being fitted (PCA whitening with a small shrinkage; standardizing
alone leaves SSL features with covariance condition numbers of ~1e4, which made L-BFGS ~10x
slower for the same accuracy). A multinomial logistic regression with L2 penalty
``(wd / 2) ||W||^2`` on the whitened features (bias not penalized) is fitted full-batch by
L-BFGS (``optax.lbfgs``) until the gradient norm is below a tolerance, for every weight decay
of a grid in one compiled loop (largest first, each warm-started from the previous). The
weight decay is chosen on a held-out part of the TRAIN split (its last ``holdout_fraction`` of
rows); the classifier is then refitted on the whole train split with that weight decay and
scored once on the test split (top-1, top-5). The test split never influences any choice.

Optionally the features of horizontally flipped train images are added as extra training
examples (the held-out rows' flips stay out of the fit).

References:
  Kolesnikov, Zhai, Beyer, Revisiting Self-Supervised Visual Representation Learning, CVPR
  2019 (L-BFGS / full-batch linear evaluation). https://arxiv.org/abs/1901.09005
  Chen et al., A Simple Framework for Contrastive Learning of Visual Representations,
  ICML 2020 (linear evaluation on frozen features). https://arxiv.org/abs/2002.05709
"""

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jaxssl.evals import features, subsets

# Whitening shrinkage: eigenvalues below this fraction of the largest are not fully inflated,
# which bounds the condition number of the fit at ~1/_SHRINKAGE.
_SHRINKAGE = 1e-3


def _whitening(features: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean ``[D]`` and whitening matrix ``[D, D]`` of the rows with positive weight.

    ``(x - mean) @ projection`` has (nearly) identity covariance: ``projection = V (Lambda +
    s lambda_max I)^{-1/2}`` from the eigendecomposition ``V Lambda V^T`` of the covariance.
    """
    w = (weights > 0).astype(jnp.float32)[:, None]  # [N, 1]
    count = jnp.maximum(w.sum(), 1.0)
    mean = (features * w).sum(axis=0) / count
    centred = (features - mean) * w
    covariance = centred.T @ centred / count  # [D, D]
    eigenvalues, eigenvectors = jnp.linalg.eigh(covariance)
    floor = _SHRINKAGE * jnp.maximum(eigenvalues[-1], 1e-12)
    return mean, eigenvectors * jax.lax.rsqrt(jnp.maximum(eigenvalues, 0.0) + floor)


def _fit_one(
    features: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    weight_decay: jax.Array,
    params: dict[str, jax.Array],
    max_steps: int,
    tolerance: float,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """L-BFGS on ``mean_w CE(features @ W + b, labels) + wd / 2 ||W||^2`` from ``params``.

    Stops when the gradient norm falls below ``tolerance`` or after ``max_steps``; returns the
    parameters and the number of steps taken.
    """
    total_weight = jnp.maximum(weights.sum(), 1.0)

    def loss_fn(params):
        logits = features @ params["w"] + params["b"]  # [N, C]
        cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return (cross_entropy * weights).sum() / total_weight + 0.5 * weight_decay * jnp.sum(
            jnp.square(params["w"])
        )

    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss_fn)

    def step(carry):
        params, opt_state, count = carry
        value, grad = value_and_grad(params, state=opt_state)
        updates, opt_state = optimizer.update(
            grad, opt_state, params, value=value, grad=grad, value_fn=loss_fn
        )
        return optax.apply_updates(params, updates), opt_state, count + 1

    def continuing(carry):
        _, opt_state, count = carry
        grad_norm = optax.tree_utils.tree_norm(optax.tree_utils.tree_get(opt_state, "grad"))
        return (count == 0) | ((count < max_steps) & (grad_norm >= tolerance))

    params, _, count = jax.lax.while_loop(
        continuing, step, (params, optimizer.init(params), jnp.zeros((), jnp.int32))
    )
    return params, count


@partial(jax.jit, static_argnames=("num_classes", "max_steps"))
def fit(
    features: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    weight_decays: jax.Array,
    *,
    num_classes: int,
    max_steps: int,
    tolerance: float = 1e-4,
) -> dict[str, jax.Array]:
    """Fits one linear classifier on whitened features per weight decay, in one compiled call.

    Args:
      features: ``[N, D]`` features (raw; whitened here with the fitted rows' statistics).
      labels: ``[N]`` int labels.
      weights: ``[N]`` per-row weights of the loss; 0 for rows that must not be fitted
        (padding, held-out rows).
      weight_decays: ``[G]`` L2 penalties ``wd`` (loss ``+ wd / 2 ||W||^2``).
      num_classes: number of classes.
      max_steps: at most this many L-BFGS iterations (each one or a few full-batch passes).
      tolerance: stop once the gradient norm of the objective is below this.

    Returns:
      ``{"mean": [D], "projection": [D, D], "w": [G, D, C], "b": [G, C], "steps": [G]}``.
    """
    features = features.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    mean, projection = _whitening(features, weights)
    whitened = (features - mean) @ projection  # [N, D]
    # The regularization path, from the largest weight decay down, each fit warm-started from
    # the previous solution. (A loop, not jax.vmap: under vmap the line search's conditionals
    # become selects that evaluate every branch, ~10x slower on CPU.)
    order = jnp.argsort(-weight_decays)

    def path_step(params, weight_decay):
        params, steps = _fit_one(
            whitened, labels, weights, weight_decay, params, max_steps, tolerance
        )
        return params, {**params, "steps": steps}

    dim = features.shape[1]
    zeros = {"w": jnp.zeros((dim, num_classes)), "b": jnp.zeros((num_classes,))}
    _, path = jax.lax.scan(path_step, zeros, weight_decays[order])
    classifiers = jax.tree.map(lambda x: x[jnp.argsort(order)], path)  # back to grid order
    return {"mean": mean, "projection": projection, **classifiers}


@partial(jax.jit, static_argnames=("top",))
def accuracy(
    classifier: dict[str, jax.Array],
    features: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    top: int = 1,
) -> jax.Array:
    """Top-``top`` accuracy ``[G]`` of each fitted classifier over the rows where ``mask``.

    Args:
      classifier: the output of `fit`.
      features: ``[N, D]`` raw features.
      labels: ``[N]`` int labels.
      mask: ``[N]`` bool, the rows to score.
      top: a row is correct if its label is among the ``top`` highest logits.

    Returns:
      Accuracies ``[G]``, one per weight decay.
    """
    whitened = (features.astype(jnp.float32) - classifier["mean"]) @ classifier["projection"]
    logits = jnp.einsum("nd,gdc->gnc", whitened, classifier["w"]) + classifier["b"][:, None]
    label_logit = jnp.take_along_axis(logits, labels[None, :, None], axis=-1)  # [G, N, 1]
    # Rank of the true class = number of classes with a strictly higher logit.
    rank = (logits > label_logit).sum(axis=-1)  # [G, N]
    correct = (rank < top) & mask[None]
    return correct.sum(axis=1) / jnp.maximum(mask.sum(), 1)


def holdout_split(mask: jax.Array, holdout_fraction: float) -> tuple[jax.Array, jax.Array]:
    """Splits the real rows of a split into a fitting part and its last ``holdout_fraction``.

    Args:
      mask: ``[N]`` bool, True for real (non-padding) rows, in the split's order.
      holdout_fraction: fraction of the real rows held out, taken from the end.

    Returns:
      ``(fit_mask [N], holdout_mask [N])``, disjoint, together ``mask``.
    """
    position = jnp.cumsum(mask) - 1  # index among the real rows
    num_fit = jnp.round(mask.sum() * (1.0 - holdout_fraction)).astype(position.dtype)
    holdout = mask & (position >= num_fit)
    return mask & ~holdout, holdout


def select_weight_decay(
    train_features: jax.Array,
    train_labels: jax.Array,
    train_mask: jax.Array,
    *,
    weight_decays: Sequence[float],
    holdout_fraction: float,
    num_classes: int,
    max_steps: int,
    tolerance: float = 1e-4,
    train_flip_features: jax.Array | None = None,
) -> tuple[float, dict[float, float]]:
    """Chooses the weight decay with the best top-1 on the held-out end of the train split.

    Only train-split arrays go in: the test split cannot influence the choice.

    Args:
      train_features: ``[N, D]`` train features.
      train_labels: ``[N]`` train labels.
      train_mask: ``[N]`` bool, real rows.
      weight_decays: the grid.
      holdout_fraction: fraction of train rows held out for the choice.
      num_classes: number of classes.
      max_steps: L-BFGS iterations at most.
      tolerance: gradient-norm stopping tolerance.
      train_flip_features: optional ``[N, D]`` features of the flipped train images, fitted
        as extra examples (only those of the fitting rows).

    Returns:
      ``(weight_decay, {weight_decay: holdout top-1})``; ties go to the larger weight decay.
    """
    fit_mask, holdout_mask = holdout_split(train_mask, holdout_fraction)
    features, labels, weights = _with_flips(
        train_features, train_labels, fit_mask, train_flip_features
    )
    grid = jnp.asarray(weight_decays, jnp.float32)
    classifier = fit(
        features,
        labels,
        weights,
        grid,
        num_classes=num_classes,
        max_steps=max_steps,
        tolerance=tolerance,
    )
    top1 = np.asarray(
        jax.device_get(accuracy(classifier, train_features, train_labels, holdout_mask))
    )
    best = len(top1) - 1 - int(np.argmax(top1[::-1]))  # the last of the best
    return float(weight_decays[best]), {
        float(wd): float(a) for wd, a in zip(weight_decays, top1, strict=True)
    }


def _with_flips(
    features: jax.Array, labels: jax.Array, mask: jax.Array, flip_features: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Fitting arrays: the rows of ``mask``, plus the same rows' flipped features if given."""
    weights = mask.astype(jnp.float32)
    if flip_features is None:
        return features, labels, weights
    return (
        jnp.concatenate([features, flip_features]),
        jnp.concatenate([labels, labels]),
        jnp.concatenate([weights, weights]),
    )


def linear_probe(
    train: tuple[jax.Array, jax.Array, jax.Array],
    test: tuple[jax.Array, jax.Array, jax.Array],
    *,
    weight_decays: Sequence[float],
    holdout_fraction: float,
    num_classes: int,
    max_steps: int,
    tolerance: float = 1e-4,
    train_flip_features: jax.Array | None = None,
) -> dict[str, float]:
    """The full protocol: choose wd on held-out train rows, refit on all train rows, test once.

    Args:
      train: ``(features [N, D], labels [N], mask [N])`` of the train split.
      test: ``(features [Q, D], labels [Q], mask [Q])`` of the test split.
      weight_decays: the weight-decay grid.
      holdout_fraction: fraction of the train split held out to choose the weight decay.
      num_classes: number of classes.
      max_steps: L-BFGS iterations per fit, at most.
      tolerance: gradient-norm stopping tolerance.
      train_flip_features: optional features of the flipped train images (extra examples).

    Returns:
      ``{"linear/top1", "linear/top5", "linear/weight_decay", "linear/holdout_top1_wd<wd>"...}``.
    """
    train_features, train_labels, train_mask = train
    test_features, test_labels, test_mask = test
    weight_decay, holdout_top1 = select_weight_decay(
        train_features,
        train_labels,
        train_mask,
        weight_decays=weight_decays,
        holdout_fraction=holdout_fraction,
        num_classes=num_classes,
        max_steps=max_steps,
        tolerance=tolerance,
        train_flip_features=train_flip_features,
    )
    features, labels, weights = _with_flips(
        train_features, train_labels, train_mask, train_flip_features
    )
    classifier = fit(
        features,
        labels,
        weights,
        jnp.asarray([weight_decay], jnp.float32),
        num_classes=num_classes,
        max_steps=max_steps,
        tolerance=tolerance,
    )
    top1, top5 = (
        float(jax.device_get(accuracy(classifier, test_features, test_labels, test_mask, top=t))[0])
        for t in (1, min(5, num_classes))
    )
    train_top1 = float(
        jax.device_get(accuracy(classifier, train_features, train_labels, train_mask))[0]
    )
    metrics = {
        "linear/top1": top1,
        "linear/top5": top5,
        "linear/train_top1": train_top1,
        "linear/weight_decay": weight_decay,
        "linear/lbfgs_steps": float(jax.device_get(classifier["steps"])[0]),
    }
    metrics |= {f"linear/holdout_top1_wd{wd:g}": a for wd, a in holdout_top1.items()}
    return metrics


def protocol(
    weight_decays: Sequence[float],
    holdout_fraction: float,
    max_steps: int,
    train_split: str,
    test_split: str,
    flip: bool,
) -> str:
    """The linear-probe protocol in words, stored and printed beside its numbers."""
    grid = ",".join(f"{wd:g}" for wd in weight_decays)
    flips = " + flipped train images" if flip else ""
    return (
        f"linear probe: softmax regression on whitened frozen features, full-batch "
        f"L-BFGS (<= {max_steps} steps); wd in {{{grid}}} chosen on the last "
        f"{holdout_fraction:.0%} of {train_split}, refit on all of {train_split}{flips}; "
        f"scored on {test_split}"
    )


def run(context: features.Context) -> features.Result:
    """The offline linear probe of ``evals.linear`` on the context's backbone features.

    Args:
      context: the extracted features; with ``evals.linear.flip`` the flipped train images
        are embedded here too.

    Returns:
      The `linear_probe` metrics and the protocol.
    """
    config, data = context.config.evals.linear, context.config.data
    flip_features = None
    if config.flip:
        embed_fn = features.make_embed_fn(
            context.model, context.mesh, data.mean, data.std, True, context.config.evals.patches
        )
        flipped = features.extract(
            embed_fn, context.variables, context.make_train_batches(), context.mesh
        )
        flip_features = flipped.features["backbone"]
    weight_decays = tuple(float(wd) for wd in config.weight_decays)
    metrics = linear_probe(
        (context.train.features["backbone"], context.train.labels, context.train.mask),
        (context.test.features["backbone"], context.test.labels, context.test.mask),
        weight_decays=weight_decays,
        holdout_fraction=config.holdout_fraction,
        num_classes=data.num_classes,
        max_steps=config.max_steps,
        tolerance=config.tolerance,
        train_flip_features=flip_features,
    )
    if metrics["linear/weight_decay"] in (min(weight_decays), max(weight_decays)):
        logging.warning(
            "Linear probe: the chosen weight decay %g is at the edge of the grid %s; consider "
            "extending --config.evals.linear.weight_decays.",
            metrics["linear/weight_decay"],
            weight_decays,
        )
    splits = (data.eval_train_split, data.eval_test_split)
    description = protocol(
        weight_decays, config.holdout_fraction, config.max_steps, *splits, config.flip
    )
    details = {}
    if config.get("label_fractions", ()):
        low_label, details["label_fractions"] = run_label_fractions(context, weight_decays)
        metrics |= low_label
        description += "; " + details["label_fractions"]["protocol"]
    return features.Result(metrics, description, details)


def run_label_fractions(
    context: features.Context, weight_decays: Sequence[float]
) -> tuple[dict[str, float], dict]:
    """The linear probe on a class-balanced fraction of the train split's labels.

    For each fraction of ``evals.linear.label_fractions`` and seed of
    ``evals.label_subset_seeds``, `jaxssl.evals.subsets` draws ``round(fraction * n_c)``
    images of each class ``c``; the probe's whole protocol (`linear_probe`) runs on them
    alone: the weight decay is chosen on the subset's last ``holdout_fraction`` (the only
    labels such a user has), then refit on the subset and scored on the whole test split.

    Returns:
      ``({"linear/top1_frac<f>": mean, "linear/top1_frac<f>_std": std over seeds}, details)``
      with the per-seed accuracies, subset sizes and chosen weight decays in the details.
    """
    config, data = context.config.evals.linear, context.config.data
    seeds = tuple(context.config.evals.label_subset_seeds)
    labels, rows = subsets.host_labels(context.train, context.mesh)
    test = (context.test.features["backbone"], context.test.labels, context.test.mask)
    metrics, per_fraction = {}, {}
    for fraction in config.label_fractions:
        results = []
        for seed in seeds:
            quotas = subsets.fraction_quotas(labels, fraction)
            chosen = rows[subsets.balanced_subset(labels, quotas, seed)]
            results.append(
                linear_probe(
                    subsets.select(context.train, chosen),
                    test,
                    weight_decays=weight_decays,
                    holdout_fraction=config.holdout_fraction,
                    num_classes=data.num_classes,
                    max_steps=config.max_steps,
                    tolerance=config.tolerance,
                )
                | {"size": len(chosen)}
            )
        top1 = [r["linear/top1"] for r in results]
        mean, std = subsets.mean_and_std(top1)
        metrics[f"linear/top1_frac{fraction:g}"] = mean
        metrics[f"linear/top1_frac{fraction:g}_std"] = std
        per_fraction[f"{fraction:g}"] = {
            "top1": top1,
            "size": [r["size"] for r in results],
            "weight_decay": [r["linear/weight_decay"] for r in results],
        }
    protocol_text = (
        f"low-label linear probe: {','.join(f'{f:g}' for f in config.label_fractions)} of the "
        f"labels of {data.eval_train_split} (class-balanced, seeds "
        f"{','.join(str(s) for s in seeds)}; mean and std over seeds), wd chosen on the "
        f"subset's last {config.holdout_fraction:.0%}, scored on {data.eval_test_split}"
    )
    return metrics, {"protocol": protocol_text, "seeds": list(seeds), "per_fraction": per_fraction}
