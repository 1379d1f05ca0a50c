"""DeepCluster: k-means of the network's own features gives pseudo-labels to classify.

Every epoch, the features of the whole training set are clustered into ``method.num_clusters``
groups (`jaxssl.losses.clustering.kmeans`, on device), each example's cluster becomes its
label, and the network plus a freshly initialized linear classifier learn to predict it, the
loss weighted by the inverse size of the example's cluster (DeepCluster samples images
uniformly over the clusters to the same end: a big cluster must not dominate).

The clustering is a step of the one jitted train step. The features are the projector's
L2-normalized outputs (DeepCluster: the fc7 features, PCA-whitened to 256 dimensions and
L2-normalized; no PCA here), kept per example in a bank (``method_state["bank"]``, a row per
position in ``data.train_split``) as the step sees them. The first epoch only fills the bank
with the initial network's features (its loss is 0), as DeepCluster clusters the initial
network's features first; at the start of every later epoch the bank, which then holds the
features from the epoch before, is clustered (DeepCluster recomputes them with the network of
the epoch start: here they are up to an epoch stale). The classifier, whose classes are new
after each clustering, lives in the method state (``"head"``, re-drawn at each clustering)
and takes plain SGD with momentum at ``method.head_lr`` inside the step, on stop-gradient
features; the backbone and projector take the run's optimizer.

References:
  Caron, Bojanowski, Joulin & Douze, Deep Clustering for Unsupervised Learning of Visual
  Features, ECCV 2018. https://arxiv.org/abs/1807.05520 (code: facebookresearch/deepcluster)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import clustering, normalize
from jaxssl.methods import base, memory_bank
from jaxssl.models import ssl_model

_HEAD_STREAM = 0x68656164  # folded into the step's key for each re-drawn classifier


def build_model(config: ml_collections.ConfigDict) -> ssl_model.SSLModel:
    """Backbone + ``config.model``'s projector (the clustered features)."""
    memory_bank.check_size(config.method.bank_size, config.data)
    return ssl_model.build_model(config)


def _new_head(key: jax.Array, dim: int, num_clusters: int) -> dict:
    """A linear classifier drawn as Flax's Dense (LeCun normal kernel, zero bias)."""
    kernel = jax.random.normal(key, (dim, num_clusters), jnp.float32) / jnp.sqrt(dim)
    return {"kernel": kernel, "bias": jnp.zeros((num_clusters,), jnp.float32)}


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """The bank (zeros), the assignments (zeros) and their clusters' sizes, the classifier
    and its momentum."""
    del variables
    dim = model.projector.output_dim
    head = _new_head(key, dim, config.num_clusters)
    return {
        "bank": jnp.zeros((config.bank_size, dim), jnp.float32),
        "assignments": jnp.zeros((config.bank_size,), jnp.int32),
        "cluster_sizes": jnp.ones((config.num_clusters,), jnp.float32),
        "head": head,
        "head_momentum": jax.tree.map(jnp.zeros_like, head),
    }


def _recluster(state: dict, key: jax.Array, config: ml_collections.ConfigDict) -> dict:
    """k-means of the bank -> new assignments, cluster sizes and a re-drawn classifier."""
    kmeans_key, head_key = jax.random.split(key)
    _, assignments = clustering.kmeans(
        kmeans_key, state["bank"], config.num_clusters, config.kmeans_iters, config.kmeans_chunk
    )
    sizes = jnp.bincount(assignments, length=config.num_clusters).astype(jnp.float32)
    head = _new_head(head_key, state["bank"].shape[1], config.num_clusters)
    return {
        **state,
        "assignments": assignments,
        "cluster_sizes": sizes,
        "head": head,
        "head_momentum": jax.tree.map(jnp.zeros_like, head),
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
    """DeepCluster's loss of a batch: classify each view into its example's cluster.

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]`` ``[B, V, H, W, 3]`` (DeepCluster: ``V = 1``),
        ``batch["index"]`` ``[B]``.
      method_state: see `init_state`.
      config: ``config.method``: ``num_clusters``, ``steps_per_epoch``, ``head_lr``,
        ``head_momentum``, ``head_weight_decay``, ``kmeans_iters``, ``kmeans_chunk``.
      rng: the step's key: the clustering's initial centroids and the new classifier.
      step: the step; the clustering runs at ``step % steps_per_epoch == 0`` from epoch 1.

    Returns:
      ``(loss, base.LossAux)`` with the updated bank, assignments and classifier.
    """
    steps_per_epoch = max(1, int(config.steps_per_epoch))
    epoch_start = (step % steps_per_epoch == 0) & (step >= steps_per_epoch)
    state = jax.lax.cond(
        epoch_start,
        lambda s: _recluster(s, jax.random.fold_in(rng, _HEAD_STREAM), config),
        lambda s: s,
        method_state,
    )
    views = batch["global"]
    b, v = views.shape[:2]
    (features, z), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, V, .]
    z = normalize.l2_normalize(z).reshape(b * v, -1)
    index = batch["index"]
    labels = jnp.repeat(state["assignments"][index], v)  # [B*V]
    weights = 1.0 / jnp.maximum(state["cluster_sizes"][labels], 1.0)
    weights = weights / jnp.sum(weights)
    active = (step >= steps_per_epoch).astype(jnp.float32)  # epoch 0 fills the bank

    def classification_loss(head, z):
        logits = z @ head["kernel"] + head["bias"]
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
        return active * jnp.sum(weights * nll)

    head = jax.lax.stop_gradient(state["head"])
    loss = classification_loss(head, z)
    # The classifier's own update: SGD with momentum on the stop-gradient features.
    head_grads = jax.grad(classification_loss)(head, jax.lax.stop_gradient(z))
    head_grads = jax.tree.map(lambda g, w: g + config.head_weight_decay * w, head_grads, head)
    momentum = jax.tree.map(
        lambda m, g: config.head_momentum * m + g, state["head_momentum"], head_grads
    )
    new_head = jax.tree.map(lambda w, m: w - config.head_lr * m, head, momentum)
    bank = (
        state["bank"]
        .at[index]
        .set(jax.lax.stop_gradient(z.reshape(b, v, -1).mean(axis=1)), mode="drop")
    )
    new_state = {**state, "bank": bank, "head": new_head, "head_momentum": momentum}
    return loss, base.LossAux(features, batch_stats, new_state, {}, z.reshape(b, v, -1))


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn, init_state=init_state)
