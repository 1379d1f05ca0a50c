"""The train step: one pure function of (state, batch), compiled once in trainer.py."""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl import errors, methods
from jaxssl.data import color
from jaxssl.losses import gaussianity
from jaxssl.state import TrainState

# Folded into the base key once: the colour augmentation's randomness is its own stream,
# independent of the key the method's loss gets (``fold_in(base_key, step)``).
_AUGMENT_STREAM = 0x61756721
# Folded into the step's key for the drop-in SIGReg's directions, apart from the method's draws.
_SIGREG_STREAM = 0x73696772


def sigreg_penalty(
    embeddings: jax.Array | None, rng: jax.Array, config: ml_collections.ConfigDict
) -> jax.Array:
    """SIGReg of a method's ``[B, V, P]`` projections: the mean over views of
    `gaussianity.sliced_epps_pulley` over the global batch, every view with the same
    directions, drawn from ``fold_in(rng, _SIGREG_STREAM)`` (``config``: ``config.sigreg``)."""
    if embeddings is None:
        raise errors.ConfigError(
            "sigreg.weight > 0 needs a method whose loss reports the embeddings it shapes "
            "(LossAux.embeddings); this one does not. Set sigreg.weight=0, or use one of "
            "simclr, dcl, supcon, vicreg, barlow_twins, byol, simsiam, wmse, tico, mmcr "
            "(LeJEPA has SIGReg in its own loss)."
        )
    key = jax.random.fold_in(rng, _SIGREG_STREAM)
    per_view = jax.vmap(
        lambda z: gaussianity.sliced_epps_pulley(
            z, key, config.num_slices, config.t_max, config.num_knots
        ),
        in_axes=1,
    )(embeddings)  # [V]
    return jnp.mean(per_view)


def make_train_step(
    model: nn.Module,
    method: methods.Method,
    probe: nn.Module,
    tx: optax.GradientTransformation,
    probe_tx: optax.GradientTransformation,
    lr_schedule: optax.Schedule,
    config: ml_collections.ConfigDict,
    base_key: jax.Array,
) -> Callable:
    """Builds ``step_fn(state, batch) -> (state, metrics)``.

    The batch holds the host's crops, ``batch["global"]`` uint8 ``[B, V, S, S, 3]`` (and
    multi-crop's ``batch["local"]``); the step first applies the colour augmentation and
    normalization to them (`jaxssl.data.color.augment_batch`), keyed by
    ``fold_in(fold_in(base_key, _AUGMENT_STREAM), step)``.

    Args:
      model: the method's ``SSLModel``.
      method: the method (``loss_fn`` and ``update_state``; `jaxssl.methods.base.Method`).
      probe: linear classifier trained on ``stop_gradient`` backbone features.
      tx: optimizer of the model parameters.
      probe_tx: optimizer of the probe.
      lr_schedule: for logging the learning rate.
      config: the full run config.
      base_key: the run's base key; the step's key is ``fold_in(base_key, step)``, so a resumed
        run draws the same randomness without storing keys.

    Returns:
      The step function (not yet jitted).
    """

    accum_steps = config.train.grad_accum_steps
    num_steps = int(config.train.num_steps)

    augment_key = jax.random.fold_in(base_key, _AUGMENT_STREAM)

    def total_loss(params, probe_params, batch_stats, method_state, batch, rng, step):
        variables = {"params": params, "batch_stats": batch_stats}
        loss, aux = method.loss_fn(model, variables, batch, method_state, config.method, rng, step)
        extra = {}
        weight = config.sigreg.weight  # a traced [R] value in a sweep: then always computed
        if not (isinstance(weight, int | float) and weight == 0):
            sigreg = sigreg_penalty(aux.embeddings, rng, config.sigreg)
            loss = loss + weight * sigreg
            extra["train/sigreg"] = jax.lax.stop_gradient(sigreg)
        # The probe reads features but must never shape them: labels stay out of pre-training.
        features = jax.lax.stop_gradient(aux.features)  # [B, V, D]
        features = features.reshape(-1, features.shape[-1])  # [B*V, D]
        logits = probe.apply({"params": probe_params}, features)  # [B*V, C]
        probe_labels = jnp.repeat(batch["label"], aux.features.shape[1])  # batch-major, [B*V]
        probe_loss = optax.softmax_cross_entropy_with_integer_labels(logits, probe_labels).mean()
        metrics = {
            **aux.metrics,
            **extra,
            "train/loss": loss,
            "probe/loss": probe_loss,
            "probe/top1": jnp.mean(jnp.argmax(logits, -1) == probe_labels),
        }
        return loss + probe_loss, ((aux.batch_stats, aux.method_state), metrics)

    grad_fn = jax.value_and_grad(total_loss, argnums=(0, 1), has_aux=True)

    def accumulated_grads(state, batch, rng):
        """Mean gradients over ``accum_steps`` micro-batches, one at a time (``lax.scan``).

        Micro-batch ``j`` is rows ``j, j + k, j + 2k, ...`` of the global batch, so with the
        batch split over devices every device holds an equal part of every micro-batch.
        BatchNorm statistics are those of each micro-batch, and the running averages (and any
        method state, e.g. a queue) are updated once per micro-batch; a loss over the batch
        (contrastive negatives) sees one micro-batch. Only for losses that are means of
        per-example terms, with no BatchNorm, is this the same as one step on the whole batch
        (tests/test_precision.py).
        """

        def split(x):  # [B, ...] -> [k, B/k, ...]
            x = x.reshape((x.shape[0] // accum_steps, accum_steps) + x.shape[1:])
            return jnp.swapaxes(x, 0, 1)

        def body(carry, micro):
            model_state, grads, probe_grads = carry
            micro_batch, index = micro
            (total, (model_state, metrics)), (g, pg) = grad_fn(
                state.params,
                state.probe_params,
                *model_state,
                micro_batch,
                jax.random.fold_in(rng, index),
                state.step,
            )
            grads, probe_grads = jax.tree.map(jnp.add, (grads, probe_grads), (g, pg))
            return (model_state, grads, probe_grads), (total, metrics)

        zeros = jax.tree.map(jnp.zeros_like, (state.params, state.probe_params))
        (model_state, grads, probe_grads), (totals, metrics) = jax.lax.scan(
            body,
            ((state.batch_stats, state.method_state), *zeros),
            (jax.tree.map(split, batch), jnp.arange(accum_steps)),
        )
        grads, probe_grads = jax.tree.map(lambda g: g / accum_steps, (grads, probe_grads))
        metrics = jax.tree.map(jnp.mean, metrics)
        return (jnp.mean(totals), (model_state, metrics)), (grads, probe_grads)

    def step_fn(state: TrainState, batch: dict[str, jax.Array]):
        rng = jax.random.fold_in(base_key, state.step)
        # Per-example ops, vmapped: each device augments its own rows of the batch. The
        # whole batch is augmented before any micro-batch split.
        batch = color.augment_batch(jax.random.fold_in(augment_key, state.step), batch, config.data)
        if accum_steps == 1:
            (total, ((batch_stats, method_state), metrics)), (grads, probe_grads) = grad_fn(
                state.params,
                state.probe_params,
                state.batch_stats,
                state.method_state,
                batch,
                rng,
                state.step,
            )
        else:
            (total, ((batch_stats, method_state), metrics)), (grads, probe_grads) = (
                accumulated_grads(state, batch, rng)
            )
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        probe_updates, probe_opt_state = probe_tx.update(
            probe_grads, state.probe_opt_state, state.probe_params
        )
        params = optax.apply_updates(state.params, updates)
        # E.g. an EMA teacher following the new params; most methods keep the loss's state.
        method_state = method.update_state(
            method_state, params, batch_stats, state.step, num_steps, config.method
        )
        updated = state.replace(
            params=params,
            batch_stats=batch_stats,
            method_state=method_state,
            opt_state=opt_state,
            probe_params=optax.apply_updates(state.probe_params, probe_updates),
            probe_opt_state=probe_opt_state,
        )
        # A NaN/Inf loss or gradient never reaches the state: the update is dropped (the step
        # still advances, so data and randomness stay keyed by step) and counted; the host
        # loop then stops or skips on, as `config.train.on_nonfinite` says.
        finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
        finite &= jnp.isfinite(optax.tree.norm(probe_grads))
        new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, state)
        new_state = new_state.replace(
            step=state.step + 1, nonfinite_steps=state.nonfinite_steps + (~finite)
        )
        metrics = {
            **metrics,
            "train/lr": lr_schedule(state.step),
            "train/grad_norm": grad_norm,
            "train/nonfinite": (~finite).astype(jnp.float32),
        }
        return new_state, metrics

    return step_fn
