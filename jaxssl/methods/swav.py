"""SwAV: predict the online cluster codes (Sinkhorn-Knopp) of one view from the other views.

Model: backbone + MLP projector + prototypes, a bias-free linear layer of ``num_prototypes``
unit vectors applied to L2-normalized projections, so scores are cosine similarities. Codes
come from the 2 global views only; every view, multi-crop's small ones (``batch["local"]``)
included, predicts the codes of the global views it is not.

Three places where this differs from the reference code (facebookresearch/swav,
``main_swav.py``), all consequences of keeping the step one pure function of pytrees:

* Unit prototypes. The reference re-normalizes the prototype weights in place (without
  gradient) before every step. Parameters cannot be written outside the optimizer here, so the
  forward pass uses the normalized kernel ``W / ||W||`` (per prototype) instead: the same
  scores, and gradients are those of the normalized kernel, i.e. the reference's gradient
  with its radial part (which the reference's next re-normalization discards) removed, divided
  by ``||W||``. This is weight normalization with a fixed unit gain; solo-learn uses
  ``weight_norm`` with a learnable gain instead.
* Frozen prototypes. For the first ``freeze_prototypes_epochs`` the prototypes get no gradient
  (the reference skips their update with ``p.grad = None``). Here the kernel goes through
  ``jnp.where(frozen, stop_gradient(W), W)``, so its gradient is zero; weight decay and LARS
  still scale ``W`` as a whole, which leaves every prototype's direction, and so the scores,
  unchanged. The freeze follows the step the train step passes to ``loss_fn``, as the
  learning-rate schedule does.
* The queue is one global FIFO per global view, `jaxssl.methods.queue`'s ring buffer (the
  reference keeps ``queue_length / world_size`` rows per GPU, shifted newest-first, and
  equipartitions over the union with ``all_reduce``; the same set of rows, in another order,
  which Sinkhorn-Knopp does not see). As in the reference it fills from ``queue_start_epochs``
  on and joins the codes' Sinkhorn-Knopp once full; the scores use the current prototypes.

References:
  Caron et al., Unsupervised Learning of Visual Features by Contrasting Cluster Assignments,
  NeurIPS 2020. https://arxiv.org/abs/2006.09882
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import clustering, normalize
from jaxssl.methods import base, queue
from jaxssl.models import ssl_model

# SwAV assigns codes to (and queues) the 2 global views: the reference's crops_for_assign.
NUM_CODE_VIEWS = 2


def prototype_scores(embeddings: jax.Array, kernel: jax.Array) -> jax.Array:
    """Cosine similarities ``[N, K]`` of embeddings ``[N, P]`` and the ``[P, K]`` kernel's
    prototypes (its columns, L2-normalized)."""
    return normalize.l2_normalize(embeddings) @ normalize.l2_normalize(kernel, axis=0)


class Prototypes(nn.Module):
    """``K`` prototype vectors; maps projections ``[B, P]`` to cosine scores ``[B, K]``.

    A bias-free linear layer on L2-normalized inputs whose ``kernel`` ``[P, K]`` is used with
    unit columns (see the module docstring). It sits in ``SSLModel``'s predictor slot, so its
    parameters are ``params["predictor"]["kernel"]``.
    """

    num_prototypes: int

    @nn.compact
    def __call__(self, projections: jax.Array, train: bool = True) -> jax.Array:
        del train  # no BatchNorm or dropout
        # Gaussian columns are uniform directions on the sphere (and have norm ~1 at init).
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (projections.shape[-1], self.num_prototypes),
            jnp.float32,
        )
        return prototype_scores(projections, kernel)  # [B, K]


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """Backbone + MLP projector + ``config.method.num_prototypes`` prototypes.

    Raises:
      ValueError: fewer prototypes than projection dimensions. Their span then has an
        orthogonal complement, and projections that fall into it score 0 against every
        prototype: uniform codes and predictions, the loss stuck at ``log K``. Measured: with
        100 prototypes and 128-d projections the run collapsed there within 20 steps.
    """
    num_prototypes, dim = config.method.num_prototypes, config.model.projector_dim
    if num_prototypes < dim:
        raise ValueError(
            f"method.num_prototypes={num_prototypes} is below model.projector_dim={dim}: the "
            "projections can collapse orthogonal to every prototype (uniform codes, loss "
            f"log {num_prototypes}). Use at least {dim} prototypes or a smaller projector_dim."
        )
    return ssl_model.SSLModel(
        backbone=ssl_model.make_backbone(config.model),
        projector=ssl_model.make_projector(config.model),
        predictor=Prototypes(config.method.num_prototypes),
    )


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """With ``queue_length > 0``, the empty queue of each global view; else nothing.

    Returns:
      ``{"queue": [2, L, P] zeros, "queue_filled": int32}``, or ``{}``. ``queue_filled`` counts
      the rows written, kept below ``2 L``: the queue is full from ``L`` on, and the next write
      goes to row ``queue_filled % L``.
    """
    del variables, key
    state = {}
    if config.queue_length > 0:
        shape = (NUM_CODE_VIEWS, config.queue_length, model.projector.output_dim)
        state["queue"] = jnp.zeros(shape, jnp.float32)
        state["queue_filled"] = jnp.zeros((), jnp.int32)
    return state


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """SwAV's swapped-prediction loss of 2 global views (and optional local views).

    The global views go through the model as one batch, multi-crop's local views
    (``batch["local"]``) as another (one pass per resolution); the running BatchNorm averages
    kept are those of the global views, as in SimCLR's multi-crop. Codes: Sinkhorn-Knopp over
    the global batch (plus the queue, once full) of each global view's scores, without gradient.
    Loss: ``clustering.swapped_prediction_loss`` over all views. Then the global views'
    normalized projections enter the queue (from ``queue_start_steps`` on).

    Args:
      model: the ``SSLModel`` with ``Prototypes`` as predictor.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, 2, H, W, 3]``; optionally ``batch["local"]``:
        ``[B, L, h, w, 3]``.
      method_state: the queue (``init_state``), or ``{}``.
      config: ``config.method``: ``temperature``, ``epsilon``, ``sinkhorn_iters``,
        ``freeze_prototypes_steps``, ``queue_length`` (a multiple of ``B``; 0: no queue),
        ``queue_start_steps``.
      rng: unused (the model is deterministic); part of the method protocol.
      step: int32 scalar, the step being trained (``state.step``), for schedules.

    Returns:
      ``(loss, base.LossAux)``; ``LossAux.method_state`` holds the updated queue.
    """
    del rng
    views = batch["global"]
    b, v = views.shape[:2]
    if v != NUM_CODE_VIEWS:
        raise ValueError(f"SwAV takes exactly {NUM_CODE_VIEWS} global views, got {v}.")
    queue.check_size(config.queue_length, b, "queue_length")
    # Frozen prototypes: the forward pass is unchanged, the kernel's gradient is zero.
    frozen = step < int(config.freeze_prototypes_steps)
    params = dict(variables["params"])
    kernel = params["predictor"]["kernel"]
    kernel = jnp.where(frozen, jax.lax.stop_gradient(kernel), kernel)
    params["predictor"] = {**params["predictor"], "kernel": kernel}
    variables = {**variables, "params": params}

    (features, projections, scores), batch_stats = ssl_model.apply_views(model, variables, views)
    all_scores = scores  # [B, V, K], the global views first
    if "local" in batch:
        (_, _, local_scores), _ = ssl_model.apply_views(model, variables, batch["local"])
        all_scores = jnp.concatenate([scores, local_scores], axis=1)

    def codes_fn(queue_scores):
        return clustering.swav_codes(
            scores, queue_scores, epsilon=config.epsilon, num_iters=config.sinkhorn_iters
        )

    new_state = dict(method_state)
    metrics = {"train/prototypes_frozen": frozen.astype(jnp.float32)}
    if config.queue_length > 0:
        stored, filled = method_state["queue"], method_state["queue_filled"]
        use_queue = filled >= config.queue_length
        # Scores of the queued (unit) embeddings with the current prototypes, no gradient.
        sg_kernel = jax.lax.stop_gradient(kernel)
        queue_scores = jax.vmap(lambda q: prototype_scores(q, sg_kernel))(stored)  # [2, L, K]
        codes = jax.lax.cond(use_queue, codes_fn, lambda _: codes_fn(None), queue_scores)
        rows = jnp.swapaxes(projections, 0, 1)  # [2, B, P], normalized by enqueue
        written, _ = jax.vmap(queue.enqueue, in_axes=(0, None, 0))(
            stored, filled % config.queue_length, rows
        )
        started = step >= int(config.queue_start_steps)
        new_state["queue"] = jnp.where(started, written, stored)
        count = filled + b
        count = jnp.where(count >= 2 * config.queue_length, count - config.queue_length, count)
        new_state["queue_filled"] = jnp.where(started, count, filled).astype(jnp.int32)
        metrics["train/queue_in_use"] = use_queue.astype(jnp.float32)
    else:
        codes = codes_fn(None)  # [B, 2, K]

    loss = clustering.swapped_prediction_loss(all_scores, codes, config.temperature)
    return loss, base.LossAux(features, batch_stats, new_state, metrics)


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn, init_state=init_state)
