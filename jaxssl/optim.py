"""Optimizers: LARS / SGD / AdamW with warmup-cosine schedules and bias+norm masks."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl import errors


def make_lr_schedule(config: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to ``config.lr``, then cosine decay to ``lr * end_lr_factor``.

    Args:
      config: the ``config.optim`` section (``lr``, ``warmup_steps``, ``end_lr_factor``).
      num_steps: total training steps.

    Returns:
      A schedule mapping the step to the learning rate.
    """
    warmup = int(min(config.warmup_steps, max(num_steps - 1, 0)))
    decay = max(num_steps, warmup + 1) - warmup
    peak, end = config.lr, config.lr * config.end_lr_factor

    # optax.warmup_cosine_decay_schedule's values, written so that ``lr`` may be a traced
    # array (a sweep's replica, `jaxssl.sweep`): optax branches on ``peak_value == 0``.
    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warming = peak * step / max(warmup, 1)
        progress = jnp.clip(step - warmup, 0, decay) / decay
        decaying = end + (peak - end) * 0.5 * (1 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warmup, warming, decaying)

    return schedule


def decay_mask(params, exclude: tuple[str, ...] = ()) -> object:
    """True for weights that get weight decay and LARS adaptation: kernels, not biases or norms.

    Biases and BatchNorm scales/offsets are vectors; excluding them follows SimCLR / BYOL
    (LARS "exclude bias and BN") and keeps the trust ratio of tiny vectors from exploding.
    Parameters whose path has a name in ``exclude`` (``optim.exclude_from_adaptation``) are
    excluded too: plain momentum SGD under LARS, no weight decay (e.g. SIE's hypernetwork,
    which starts at zero, where LARS's trust ratio would keep it).
    """

    def keep(path, p):
        names = {str(getattr(key, "key", key)) for key in path}
        return p.ndim > 1 and not names & set(exclude)

    return jax.tree_util.tree_map_with_path(keep, params)


def _mask(config):
    return functools.partial(decay_mask, exclude=tuple(config.get("exclude_from_adaptation", ())))


def make_optimizer(
    config: ml_collections.ConfigDict, num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Optimizer named by ``config.name`` from ``OPTIMIZERS``.

    Args:
      config: the ``config.optim`` section.
      num_steps: total training steps (for the schedule).

    Returns:
      ``(tx, lr_schedule)``.

    References:
      You et al., Large Batch Training of Convolutional Networks (LARS), 2017.
      Loshchilov & Hutter, Decoupled Weight Decay Regularization (AdamW), ICLR 2019.
    """
    if config.name not in OPTIMIZERS:
        raise errors.ConfigError(f"Unknown optimizer {config.name!r}; valid: {sorted(OPTIMIZERS)}.")
    schedule = make_lr_schedule(config, num_steps)
    return OPTIMIZERS[config.name](config, schedule), schedule


def _lars(config, schedule):
    return optax.lars(
        schedule,
        weight_decay=config.weight_decay,
        weight_decay_mask=_mask(config),
        trust_coefficient=config.trust_coefficient,
        trust_ratio_mask=_mask(config),
        momentum=config.momentum,
    )


def _sgd(config, schedule):
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=_mask(config)),
        optax.sgd(schedule, momentum=config.momentum),
    )


def _adamw(config, schedule):
    return optax.adamw(
        schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay, mask=_mask(config)
    )


OPTIMIZERS = {"lars": _lars, "sgd": _sgd, "adamw": _adamw}
