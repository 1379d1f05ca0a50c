"""The method protocol: a method is a value, a `Method` of pure functions (optax's pattern).

Every method module ends with ``METHOD = Method(...)``; `jaxssl.methods.METHODS` maps names to
these values. The train step (`jaxssl.step`) and the state initializer (`jaxssl.state`) call
the four functions; nothing is looked up by attribute name.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import ml_collections


class LossAux(NamedTuple):
    """What a method's ``loss_fn`` returns beside the loss."""

    features: jax.Array  # [B, V, D] backbone features of batch["global"] (the probe's input)
    batch_stats: Any  # updated BatchNorm statistics
    method_state: Any  # updated method state (returned unchanged if the method has none)
    metrics: dict[str, jax.Array]  # extra scalars to log, e.g. {"train/contrastive_top1": ...}
    # [B, V, P] the projections of batch["global"] that the loss shapes, for regularizers the
    # step adds to any method (``config.sigreg``); None where a method has no such embeddings.
    embeddings: jax.Array | None = None


def no_state(
    model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array
) -> dict:
    """The default ``init_state``: the method keeps no state beside the parameters."""
    del model, variables, config, key
    return {}


def keep_state(method_state, params, batch_stats, step, num_steps, config):
    """The default ``update_state``: the state is what the loss returned."""
    del params, batch_stats, step, num_steps, config
    return method_state


class Method(NamedTuple):
    """A self-supervised method as four pure functions, all traced in the one jitted step.

    Attributes:
      build_model: ``(config) -> nn.Module``, the networks (backbone, heads) from the full
        config; ``model.embed(images)`` gives the backbone features evaluation uses.
      loss_fn: ``(model, variables, batch, method_state, config, rng, step) -> (loss,
        LossAux)``, the pre-training loss of a global batch. ``batch["global"]`` holds the
        views ``[B, V, H, W, 3]`` (further view groups, e.g. ``batch["local"]``, may follow),
        ``batch["label"]`` the labels (only label-using graphs such as SupCon's read them).
        ``config`` is ``config.method``; ``rng`` the step's key; ``step`` the int32 step being
        trained (the same for every micro-batch), for schedules inside the loss.
      init_state: ``(model, variables, config, key) -> pytree``, the state that the optimizer
        does not train but a checkpoint must hold (EMA teachers, queues, centers), from the
        initial variables, ``config.method`` and a key derived from the run's seed.
        Default `no_state`.
      update_state: ``(method_state, params, batch_stats, step, num_steps, config) -> pytree``,
        called after the optimizer update with the new parameters (EMA teachers; ``num_steps``
        is the run's length, for schedules, read here rather than from ``config.method``
        because a checkpoint may resume under another ``train.epochs``). Default `keep_state`.
    """

    build_model: Callable[[ml_collections.ConfigDict], nn.Module]
    loss_fn: Callable[..., tuple[jax.Array, LossAux]]
    init_state: Callable[..., Any] = no_state
    update_state: Callable[..., Any] = keep_state
