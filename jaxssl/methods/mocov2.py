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

from jaxssl.losses import contrastive
from jaxssl.methods import base, queue, teacher
from jaxssl.models import ssl_model


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """The key encoder (a copy of the query encoder) and the queue of random unit keys.

    Returns:
      ``{"target": variables, "queue": [K, P], "queue_pointer": int32 scalar}``.
    """
    return {
        **teacher.init_state(model, variables, config, key),
        "queue": queue.init(key, config.queue_size, model.projector.output_dim),
        "queue_pointer": jnp.zeros((), jnp.int32),
    }


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """``(infonce(q1, k2, queue) + infonce(q2, k1, queue)) / 2``, then enqueue ``k1, k2``.

    The loss reads the queue before this batch's keys enter it. The new queue is returned in
    ``LossAux.method_state`` (the EMA update follows in ``teacher.update_state``).

    Args:
      batch: ``batch["global"]``: the views ``[B, 2, H, W, 3]``.
      config: ``config.method``: ``temperature``, ``queue_size`` (a multiple of ``2 B``).
    """
    del rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    if v != 2:
        raise ValueError(f"MoCo v2 takes exactly 2 views per image, got {v}.")
    queue.check_size(config.queue_size, b * v, "queue_size")
    (features, q), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, 2, .]
    (_, k), _ = ssl_model.apply_views(model, method_state["target"], views, project_only=True)
    keys = method_state["queue"]
    loss = 0.5 * (
        contrastive.infonce_with_queue(q[:, 0], k[:, 1], keys, config.temperature)
        + contrastive.infonce_with_queue(q[:, 1], k[:, 0], keys, config.temperature)
    )
    new_queue, pointer = queue.enqueue(keys, method_state["queue_pointer"], k.reshape(b * v, -1))
    new_state = {**method_state, "queue": new_queue, "queue_pointer": pointer}
    return loss, base.LossAux(features, batch_stats, new_state, {})


# The model: backbone + MLP projector (MoCo v2's 2-layer head); the key encoder is its EMA with
# the cosine momentum schedule.
METHOD = base.Method(
    build_model=ssl_model.build_model,
    loss_fn=loss_fn,
    init_state=init_state,
    update_state=teacher.update_state,
)
