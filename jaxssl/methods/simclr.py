"""SimCLR: augmented views, a projector, NT-Xent over the global batch; SupCon; DCL.

SupCon is this method with another positive-pair graph (``config.method.graph``): ``"label"``
links every view of every image of the same class (Khosla et al.'s :math:`L^{sup}_{out}`),
``"union"`` links labelled examples by class and the rest by image (semi-supervised). The loss
is ``contrastive.multi_positive_nt_xent`` in every case. DCL (and DCLW) is this method with
``config.method.decoupled``: ``contrastive.decoupled_nt_xent``, the positive out of the
denominator (and ``vmf_sigma > 0``: DCLW's von Mises-Fisher weights on the positives).
``config.method.num_negatives = k`` keeps a random ``k`` of each anchor's negatives (Bordes et
al. 2023: SimCLR with one negative); ``config.method.negative_similarity`` ``"abs"`` or
``"square"`` gives SimCLR-abs / SimCLR-sq (Garrido et al. 2023).

References:
  Chen et al., A Simple Framework for Contrastive Learning of Visual Representations,
  ICML 2020. https://arxiv.org/abs/2002.05709
  Khosla et al., Supervised Contrastive Learning, NeurIPS 2020.
  https://arxiv.org/abs/2004.11362
  Yeh et al., Decoupled Contrastive Learning, ECCV 2022. https://arxiv.org/abs/2110.06848
  Garrido et al., On the duality between contrastive and non-contrastive self-supervised
  learning, ICLR 2023. https://arxiv.org/abs/2206.02574
  Bordes et al., Towards Democratizing Joint-Embedding Self-Supervised Learning, 2023.
  https://arxiv.org/abs/2303.01986
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses import contrastive, contrastive_blockwise
from jaxssl.methods import base
from jaxssl.models import ssl_model


def _dense_loss(z: jax.Array, ids: jax.Array, config: ml_collections.ConfigDict, rng):
    negatives = None
    if config.get("num_negatives", 0) > 0:
        negatives = contrastive.sample_negatives(rng, ids, config.num_negatives)
    loss = contrastive.multi_positive_nt_xent(
        z,
        config.temperature,
        ids=ids,
        negatives=negatives,
        negative_similarity=config.get("negative_similarity", "cosine"),
    )
    return loss, contrastive.multi_positive_top1(z, ids=ids)


def _blockwise_loss(z: jax.Array, ids: jax.Array, config: ml_collections.ConfigDict, rng):
    del rng
    if config.get("num_negatives", 0) > 0:
        raise ValueError(
            "method.num_negatives (a random subset of negatives) is computed by "
            "method.loss_impl='dense' only; its [M, M] draw is what blockwise avoids."
        )
    if config.get("negative_similarity", "cosine") != "cosine":
        raise ValueError("method.negative_similarity 'abs'/'square' needs loss_impl='dense'.")
    chunk_size = config.loss_chunk_size
    return (
        contrastive_blockwise.multi_positive_nt_xent_blockwise(
            z, config.temperature, ids=ids, chunk_size=chunk_size
        ),
        contrastive_blockwise.multi_positive_top1_blockwise(z, ids=ids, chunk_size=chunk_size),
    )


GRAPHS = ("augmentation", "label", "union")


def labelled(index: jax.Array, fraction: float) -> jax.Array:
    """Which examples keep their label in a semi-supervised run: a fixed ``fraction`` of the
    split, chosen by a hash of the example index (the same examples at every step)."""
    hashed = (index.astype(jnp.uint32) * jnp.uint32(2654435761)) >> jnp.uint32(8)
    return hashed.astype(jnp.float32) < fraction * 2.0**24


def graph_ids(
    image_ids: jax.Array, labels: jax.Array, index: jax.Array, config: ml_collections.ConfigDict
) -> jax.Array:
    """Group ids of the positive-pair graph ``config.graph`` for embeddings of ``image_ids``.

    ``"augmentation"`` (SimCLR): the views of an image. ``"label"`` (SupCon): every embedding
    of the same class. ``"union"`` (semi-supervised): labelled examples (a
    ``config.label_fraction`` of them) grouped by class, the others by image. One loss,
    ``contrastive.multi_positive_nt_xent``, for all three.

    Args:
      image_ids: ``[M]`` batch position of each embedding's image.
      labels: ``[B]`` labels of the batch's images.
      index: ``[B]`` the images' indices in the split (which ones are labelled).
      config: the ``config.method`` section.
    """
    graph = config.get("graph", "augmentation")
    if graph == "augmentation":
        return image_ids
    if graph == "label":
        return labels[image_ids].astype(jnp.int32)
    if graph == "union":
        known = jnp.where(labelled(index, config.label_fraction), labels, -1)
        return contrastive.union_graph_ids(image_ids, known[image_ids])
    raise ValueError(f"Unknown method.graph {graph!r}; valid: {GRAPHS}.")


# config.method.loss_impl -> (z [M, P], ids [M], config, rng) -> (loss, top-1). Same value and
# gradients; "blockwise" never holds the [M, M] similarities (for global batches of ~10k+).
LOSS_IMPLS = {"dense": _dense_loss, "blockwise": _blockwise_loss}


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """SimCLR loss of a batch of augmented views.

    All ``B * V`` views go through the model as one batch, so BatchNorm statistics are those of
    the whole global batch of views (SimCLR's global BN). The loss is NT-Xent over the
    augmentation graph: the positives of a view are the other views of its image, every other
    view is a negative; with ``V = 2`` this is exactly SimCLR's loss, with more views the
    multi-positive form (``contrastive.multi_positive_nt_xent``). Multi-crop
    (``batch["local"]``, ``[B, L, h, w, 3]``) adds the ``L`` small views of each image to its
    group: every view of an image is a positive of every other (Caron et al. 2020 report
    multi-crop gains for SimCLR too).

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: the views ``[B, V, H, W, 3]``, ``V >= 2``; optionally
        ``batch["local"]``: ``[B, L, h, w, 3]``.
      method_state: SimCLR has none (``{}``); returned as is.
      config: the ``config.method`` section (``temperature``, ``loss_impl``: a key of
        ``LOSS_IMPLS``, ``loss_chunk_size``: columns per chunk of ``"blockwise"``; optional
        ``decoupled`` and ``vmf_sigma``: DCL / DCLW, two views, dense; optional
        ``num_negatives`` > 0: each anchor's denominator keeps a random subset of that many
        negatives, ``contrastive.sample_negatives``, dense only; optional
        ``negative_similarity``: ``"abs"``/``"square"``, SimCLR-abs/-sq, dense only).
      rng: the step's key: the draw of ``num_negatives`` (SimCLR's model is deterministic).
      step: unused (no schedule inside the loss); part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``.
    """
    del step
    views = batch["global"]
    if config.loss_impl not in LOSS_IMPLS:
        raise ValueError(
            f"Unknown method.loss_impl {config.loss_impl!r}; valid: {sorted(LOSS_IMPLS)}."
        )
    b, v = views.shape[:2]
    if v < 2:
        raise ValueError(f"SimCLR needs at least 2 views per image, got {v}.")
    (features, projections), batch_stats = ssl_model.apply_views(model, variables, views)
    projections = projections.reshape(b * v, -1)  # [B*V, P], batch-major
    ids = contrastive.augmentation_graph_ids(b, v)  # [B*V], image index, batch-major like z
    if "local" in batch:
        # Multi-crop: the small views go through the model as their own batch (one pass per
        # resolution); their BatchNorm running averages are not kept, so the statistics used
        # at evaluation are those of full-size views.
        num_local = batch["local"].shape[1]
        (_, local_projections), _ = ssl_model.apply_views(model, variables, batch["local"])
        projections = jnp.concatenate([projections, local_projections.reshape(b * num_local, -1)])
        ids = jnp.concatenate([ids, contrastive.augmentation_graph_ids(b, num_local)])
    if config.get("decoupled", False):
        if config.get("num_negatives", 0) > 0 or (
            config.get("negative_similarity", "cosine") != "cosine"
        ):
            raise ValueError(
                "method.num_negatives and method.negative_similarity apply to NT-Xent, not to "
                "DCL (method.decoupled)."
            )
        if v != 2 or "local" in batch or config.get("graph", "augmentation") != "augmentation":
            raise ValueError(
                "method.decoupled (DCL) is the two-view loss of the augmentation graph: use "
                "data.num_views=2, no local views and method.graph='augmentation'."
            )
        z = projections.reshape(b, 2, -1)  # [B, 2, P]
        loss = contrastive.decoupled_nt_xent(
            z[:, 0], z[:, 1], config.temperature, config.get("vmf_sigma", 0.0)
        )
        top1 = contrastive.multi_positive_top1(projections, ids=ids)
        return loss, base.LossAux(
            features, batch_stats, method_state, {"train/contrastive_top1": top1}, z
        )
    if config.get("graph", "augmentation") != "augmentation":
        ids = graph_ids(ids, batch["label"], batch["index"], config)
    loss, top1 = LOSS_IMPLS[config.loss_impl](projections, ids, config, rng)  # z: [B*(V+L), P]
    metrics = {"train/contrastive_top1": top1}
    embeddings = projections[: b * v].reshape(b, v, -1)  # the global views'
    return loss, base.LossAux(features, batch_stats, method_state, metrics, embeddings)


METHOD = base.Method(build_model=ssl_model.build_model, loss_fn=loss_fn)
