"""MoCo v2: a momentum (EMA) key encoder and a queue of earlier keys as negatives.

The queue is global: every step enqueues the keys of the whole global batch (both views), so
the state, and the run, are the same on any number of devices or processes. Two deviations
from the reference code, both consequences of one global batch under ``jit``: BatchNorm is
already global, so MoCo's shuffling BN (a workaround for per-GPU statistics) is not needed;
and the loss is symmetrized over the two views (as solo-learn's MoCo v2+), with one queue
receiving the keys of both views.

References:
  Chen, Fan, Girshick & He, Improved Baselines with Momentum Contrastive Learning, 2020.
  https://arxiv.org/abs/2003.04297
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import moco as moco_losses
from jaxssl.methods import byol
from jaxssl.methods.base import LossAux
from jaxssl.models import ssl_model

# The key encoder is an EMA of backbone + projector with BYOL's cosine schedule.
update_method_state = byol.update_method_state


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """Backbone + MLP projector (MoCo v2's 2-layer head)."""
    return ssl_model.SSLModel(
        backbone=ssl_model.make_backbone(config.model),
        projector=ssl_model.make_projector(config.model),
    )


def init_method_state(model: nn.Module, variables, config: ml_collections.ConfigDict):
    """The key encoder (a copy of the query encoder) and the queue of random unit keys.

    Returns:
      ``{"target": variables, "queue": [K, P], "queue_pointer": int32 scalar}``.
    """
    state = byol.init_method_state(model, variables, config)
    state["queue"] = moco_losses.init_queue(
        jax.random.key(0), config.queue_size, model.projector.output_dim
    )
    state["queue_pointer"] = jnp.zeros((), jnp.int32)
    return state


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, LossAux]:
    """``(infonce(q1, k2, queue) + infonce(q2, k1, queue)) / 2``, then enqueue ``k1, k2``.

    The loss reads the queue before this batch's keys enter it. The new queue is returned in
    ``LossAux.method_state`` (the EMA update follows in ``update_method_state``).

    Args:
      batch: ``batch["global"]``: the views ``[B, 2, H, W, 3]``.
      config: ``config.method``: ``temperature``, ``queue_size`` (a multiple of ``2 B``).
    """
    del rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    if v != 2:
        raise ValueError(f"MoCo v2 takes exactly 2 views per image, got {v}.")
    if config.queue_size % (b * v):
        raise ValueError(
            f"method.queue_size={config.queue_size} must be a multiple of the {b * v} keys a "
            "step enqueues (2 x the global batch, or of a micro-batch with grad accumulation)."
        )
    images = views.reshape((b * v,) + views.shape[2:])  # batch-major: device rows stay put
    (features, queries), updates = model.apply(
        variables, images, train=True, mutable=["batch_stats"]
    )
    (_, keys), _ = model.apply(
        method_state["target"], images, train=True, method=model.project, mutable=["batch_stats"]
    )
    q, k = queries.reshape(b, v, -1), keys.reshape(b, v, -1)
    queue = method_state["queue"]
    loss = 0.5 * (
        moco_losses.infonce_with_queue(q[:, 0], k[:, 1], queue, config.temperature)
        + moco_losses.infonce_with_queue(q[:, 1], k[:, 0], queue, config.temperature)
    )
    new_queue, pointer = moco_losses.enqueue(queue, method_state["queue_pointer"], keys)
    new_state = {**method_state, "queue": new_queue, "queue_pointer": pointer}
    return loss, LossAux(features.reshape(b, v, -1), updates["batch_stats"], new_state, {})
