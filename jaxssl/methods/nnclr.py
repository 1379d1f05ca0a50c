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

from jaxssl.losses import contrastive, normalize
from jaxssl.methods import base, queue
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


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """The support queue (random unit vectors at first, as the reference) and its pointer."""
    del variables
    return {
        "support": queue.init(key, config.queue_size, model.projector.output_dim),
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
) -> tuple[jax.Array, base.LossAux]:
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
    queue.check_size(config.queue_size, b, "queue_size")
    (features, z, p), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, 2, .]
    support = method_state["support"]
    nn1 = contrastive.nearest_neighbours(z[:, 0], support)
    nn2 = contrastive.nearest_neighbours(z[:, 1], support)
    t = config.temperature
    loss = 0.5 * (contrastive.nnclr_loss(nn1, p[:, 1], t) + contrastive.nnclr_loss(nn2, p[:, 0], t))
    new_support, pointer = queue.enqueue(support, method_state["support_pointer"], z[:, 0])
    new_state = {"support": new_support, "support_pointer": pointer}
    # How often the neighbour comes from the same class is a useful diagnostic, but labels are
    # not stored in the queue; log the mean similarity to the neighbour instead.
    z1 = normalize.l2_normalize(jax.lax.stop_gradient(z[:, 0]))  # [B, P]
    metrics = {"train/nn_similarity": jnp.mean(jnp.sum(nn1 * z1, axis=1))}
    return loss, base.LossAux(features, batch_stats, new_state, metrics)


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn, init_state=init_state)
