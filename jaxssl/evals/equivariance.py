"""What the invariant and the equivariant parts of the features keep (SIE's evaluation).

Two measurements on the frozen backbone features, each per part: ``invariant`` (the first
``D - equi_dim`` dimensions), ``equivariant`` (the last ``equi_dim``) and ``full``:

* classification: the offline linear probe of ``evals.linear`` (`jaxssl.evals.linear`) on the
  part's features of the unaugmented eval splits;
* transformation prediction: ``evals.equivariance.num_pairs`` pairs of augmented train views
  with their known relative transformation (`jaxssl.data.color.relative_transform`: rotation,
  crop, colour); an MLP on the concatenated features of the two views regresses it (the
  reference's ``eval_angle_prediction.py``: an MLP on the concatenated pair, scored by
  :math:`R^2`), fit on the first ``1 - holdout_fraction`` of the pairs (stopped early on a
  fifth of them), :math:`R^2` per column on the rest, averaged within each group. Columns
  that do not vary (e.g. rotation in a run without ``data.rotation_degrees``) are left out.

A part that is invariant to a group predicts it badly (:math:`R^2` near 0); a part that is
equivariant to it predicts it well. ``equi_dim`` is ``evals.equivariance.equi_dim`` or else the
method's ``method.equi_dim`` (SIE); any other method can be split at the same place as a control.

References:
  Garrido, Najman & LeCun, Self-supervised learning of Split Invariant-Equivariant
  representations, ICML 2023, Sec. 5. https://arxiv.org/abs/2302.10283
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxssl.data import color
from jaxssl.evals import features, linear
from jaxssl.models import equivariant


class _Regressor(nn.Module):
    hidden: int
    outputs: int

    @nn.compact
    def __call__(self, x):
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.outputs)(x)


def _standardize(x: jax.Array, fit: int) -> jax.Array:
    mean = jnp.mean(x[:fit], axis=0)
    std = jnp.std(x[:fit], axis=0)
    return (x - mean) / jnp.where(std > 0, std, 1.0)


def regression_r2(
    inputs: jax.Array,
    targets: jax.Array,
    *,
    fit: int,
    hidden: int,
    steps: int,
    lr: float,
    seed: int = 0,
    validation_fraction: float = 0.2,
    every: int = 25,
) -> np.ndarray:
    """:math:`R^2` per target column of an MLP fit on rows ``[:fit]``, scored on ``[fit:]``.

    Inputs and targets are standardized with the fit rows' statistics; full-batch Adam on the
    mean squared error of the first ``1 - validation_fraction`` of the fit rows, up to
    ``steps`` steps, stopped early: the held-out rows are scored with the parameters of the
    checkpoint (every ``every`` steps) with the lowest error on the last
    ``validation_fraction`` of the fit rows, so an MLP that overfits a small set of pairs
    scores no worse than it validated. A column without variance in the fit rows gets NaN.

    Args:
      inputs: ``[N, F]``.
      targets: ``[N, T]``.
      fit: the number of fitting rows, ``0 < fit < N``.
      hidden: the width of the MLP's two hidden layers.
      steps: Adam steps, at most.
      lr: Adam's learning rate.
      seed: the initialization seed.
      validation_fraction: the share of the fit rows that chooses the stopping step.
      every: steps between checkpoints.

    Returns:
      ``[T]`` float64 :math:`R^2` on the held-out rows.
    """
    x = _standardize(inputs.astype(jnp.float32), fit)
    y = _standardize(targets.astype(jnp.float32), fit)
    train = int(round(fit * (1.0 - validation_fraction)))
    model = _Regressor(hidden, y.shape[1])
    params = model.init(jax.random.key(seed), x[:1])
    tx = optax.adam(lr)

    def loss_fn(params, rows):
        return jnp.mean(jnp.square(model.apply(params, x[rows]) - y[rows]))

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            grads = jax.grad(loss_fn)(params, slice(0, train))
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        def chunk(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=every)
            validation = loss_fn(carry[0], slice(train, fit))
            return carry, (validation, model.apply(carry[0], x[fit:]))

        _, (validation, predictions) = jax.lax.scan(
            chunk, (params, tx.init(params)), None, length=max(steps // every, 1)
        )
        return predictions[jnp.argmin(validation)]

    predicted = np.asarray(jax.device_get(run(params)), np.float64)
    held = np.asarray(jax.device_get(y[fit:]), np.float64)
    residual = np.sum((predicted - held) ** 2, axis=0)
    total = np.sum((held - held.mean(axis=0)) ** 2, axis=0)
    varies = np.asarray(jax.device_get(jnp.std(targets[:fit], axis=0) > 0))
    return np.where(varies & (total > 0), 1.0 - residual / np.where(total > 0, total, 1.0), np.nan)


def _parts(width: int, equi_dim: int) -> dict[str, slice]:
    if not equi_dim:
        return {"full": slice(0, width)}
    invariant, equivariant_ = equivariant.part_slices(width, equi_dim)
    return {"invariant": invariant, "equivariant": equivariant_, "full": slice(0, width)}


def run(context: features.Context) -> features.Result:
    """Linear probes and transformation :math:`R^2` of each part of the backbone features."""
    config = context.config
    cfg, data = config.evals.equivariance, config.data
    equi_dim = cfg.equi_dim or (config.get("method") or {}).get("equi_dim", 0)
    width = context.train.features["backbone"].shape[1]
    parts = _parts(width, equi_dim)
    metrics, details = {}, {"columns": {}}
    probe = config.evals.linear
    weight_decays = tuple(float(wd) for wd in probe.weight_decays)
    for name, part in parts.items():
        result = linear.linear_probe(
            (context.train.features["backbone"][:, part], context.train.labels, context.train.mask),
            (context.test.features["backbone"][:, part], context.test.labels, context.test.mask),
            weight_decays=weight_decays,
            holdout_fraction=probe.holdout_fraction,
            num_classes=data.num_classes,
            max_steps=probe.max_steps,
            tolerance=probe.tolerance,
        )
        metrics[f"equivariance/linear_{name}"] = result["linear/top1"]

    pairs, relative = features.transformed_view_pairs(context, cfg.num_pairs)
    first, second = pairs["backbone"]
    num = first.shape[0]
    fit = int(round(num * (1.0 - cfg.holdout_fraction)))
    names = [column for group in color.RELATIVE_GROUPS.values() for column in group]
    for name, part in parts.items():
        inputs = jnp.concatenate([first[:, part], second[:, part]], axis=1)
        r2 = regression_r2(
            inputs,
            relative,
            fit=fit,
            hidden=cfg.hidden,
            steps=cfg.steps,
            lr=cfg.lr,
            seed=config.seed,
        )
        details["columns"][name] = {
            column: (None if np.isnan(value) else float(value))
            for column, value in zip(names, r2, strict=True)
        }
        for group, columns in color.relative_group_slices().items():
            values = r2[columns]
            if not np.all(np.isnan(values)):
                metrics[f"equivariance/r2_{name}_{group}"] = float(np.nanmean(values))
    description = (
        f"equivariance: parts of the {width}-d backbone features "
        + ", ".join(f"{n} [{p.start}:{p.stop}]" for n, p in parts.items())
        + f"; linear probe per part ({data.eval_train_split} -> {data.eval_test_split}); "
        f"R^2 of the relative transformation of {num} pairs of augmented {data.train_split} "
        f"views (rotation {data.get('rotation_degrees', 0.0):g} deg, crops, colours) from the "
        f"concatenated pair by a 2x{cfg.hidden} MLP (<= {cfg.steps} full-batch Adam steps, lr "
        f"{cfg.lr:g}, stopped early on the last 20%) fit on {fit}, scored on {num - fit}; mean "
        "over each group's varying columns"
    )
    return features.Result(metrics, description, details)
