"""NNCLR: SimCLR-like, but each view's positive is its nearest neighbour in a support queue.

The support set is a FIFO queue of projections of earlier global batches (first view, as the
reference and solo-learn), kept in ``method_state`` and checkpointed; being filled from the
global batch, it is the same on any device count. The loss is symmetric:
``(nnclr(nn(z1), p2) + nnclr(nn(z2), p1)) / 2``.

References:
  Dwibedi et al., With a Little Help from My Friends, ICCV 2021.
  https://arxiv.org/abs/2104.14548
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import moco as moco_losses
from jaxssl.losses import nnclr as nnclr_losses
from jaxssl.methods.base import LossAux
from jaxssl.models import ssl_model


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """Backbone + BN projector (last BN affine-free) + 2-layer predictor."""
    predictor = ssl_model.make_head(
        config.model, config.method.predictor_hidden_dim, config.model.projector_dim, 2
    )
    return ssl_model.SSLModel(
        backbone=ssl_model.make_backbone(config.model),
        projector=ssl_model.make_projector(config.model, last_bn=True),
        predictor=predictor,
    )


def init_method_state(model: nn.Module, variables, config: ml_collections.ConfigDict):
    """The support queue (random unit vectors at first, as the reference) and its pointer."""
    del variables
    return {
        "support": moco_losses.init_queue(
            jax.random.key(0), config.queue_size, model.projector.output_dim
        ),
        "support_pointer": jnp.zeros((), jnp.int32),
    }


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, LossAux]:
    """NNCLR loss of two views; then enqueues the first view's projections.

    Args:
      batch: ``batch["global"]``: the views ``[B, 2, H, W, 3]``.
      config: ``config.method``: ``temperature``, ``queue_size`` (a multiple of ``B``).
    """
    del rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    if v != 2:
        raise ValueError(f"NNCLR takes exactly 2 views per image, got {v}.")
    if config.queue_size % b:
        raise ValueError(
            f"method.queue_size={config.queue_size} must be a multiple of the global batch {b} "
            "(of a micro-batch with gradient accumulation)."
        )
    images = views.reshape((b * v,) + views.shape[2:])
    (features, projections, predictions), updates = model.apply(
        variables, images, train=True, mutable=["batch_stats"]
    )
    z, p = projections.reshape(b, v, -1), predictions.reshape(b, v, -1)
    support = method_state["support"]
    nn1 = nnclr_losses.nearest_neighbours(z[:, 0], support)
    nn2 = nnclr_losses.nearest_neighbours(z[:, 1], support)
    t = config.temperature
    loss = 0.5 * (
        nnclr_losses.nnclr_loss(nn1, p[:, 1], t) + nnclr_losses.nnclr_loss(nn2, p[:, 0], t)
    )
    new_support, pointer = moco_losses.enqueue(support, method_state["support_pointer"], z[:, 0])
    new_state = {"support": new_support, "support_pointer": pointer}
    # How often the neighbour comes from the same class is a useful diagnostic, but labels are
    # not stored in the queue; log the mean similarity to the neighbour instead.
    similarity = jnp.mean(jnp.sum(nn1 * moco_losses.unit(jax.lax.stop_gradient(z[:, 0])), axis=1))
    metrics = {"train/nn_similarity": similarity}
    return loss, LossAux(features.reshape(b, v, -1), updates["batch_stats"], new_state, metrics)
