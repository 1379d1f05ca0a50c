"""Contrastive losses over the global batch.

The general loss is the multi-positive NT-Xent of SupCon over a *positive-pair graph* on the
``M`` embeddings of all views of the global batch: SimCLR's graph links the views of one image,
SupCon's links equal labels, semi-supervised training uses their union. The graph is given as
integer group ids (positives = same id; ``[M]``, the memory-friendly form) or as an explicit
``[M, M]`` 0/1 matrix.

Two implementations, equal in value and gradients: ``multi_positive_nt_xent`` holds the full
``[M, M]`` similarity matrix (simplest; best for batches of a few thousand), and
``multi_positive_nt_xent_blockwise`` never holds more than ``[M / devices, chunk_size]`` of it
(for global batches of tens of thousands of views).
"""

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    # Normalization in float32: bf16 norms of 128-d vectors lose ~2 digits.
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def nt_xent_logits(z1: jax.Array, z2: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
    """Similarity logits and positive indices of the 2N x 2N NT-Xent problem.

    Args:
      z1: embeddings of the first view, ``[N, D]``.
      z2: embeddings of the second view, ``[N, D]``; row ``i`` is the positive of ``z1[i]``.
      temperature: softmax temperature ``tau``.

    Returns:
      ``(logits, positives)``: ``logits[a, b] = cos(z_a, z_b) / tau`` over the stacked
      ``[z1; z2]`` with the diagonal set to ``-inf``, ``[2N, 2N]``, and for each anchor the index
      of its positive, ``[2N]``.
    """
    chex.assert_equal_shape((z1, z2))
    chex.assert_rank(z1, 2)
    n = z1.shape[0]
    z = _l2_normalize(jnp.concatenate([z1, z2], axis=0))  # [2N, D]
    logits = z @ z.T / temperature  # [2N, 2N]
    # An anchor is never its own negative (or positive): mask self-similarity out of the softmax.
    logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
    positives = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(0, n)])  # [2N]
    return logits, positives


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float = 0.1) -> jax.Array:
    r"""Normalized-temperature cross-entropy (NT-Xent), the SimCLR loss.

    With :math:`u_a` the L2-normalized rows of :math:`[z_1; z_2]` (:math:`2N` embeddings) and
    :math:`p(a)` the index of the other view of the same image,

    .. math::
      \ell_a = -\log \frac{\exp(u_a^\top u_{p(a)} / \tau)}
                          {\sum_{b \ne a} \exp(u_a^\top u_b / \tau)},
      \qquad \mathcal{L} = \frac{1}{2N} \sum_{a=1}^{2N} \ell_a .

    Every anchor has one positive and :math:`2N - 2` negatives; the mean runs over both
    directions (view 1 -> view 2 and view 2 -> view 1), so the loss is symmetric in the views.
    Called under ``jax.jit`` on sharded inputs, :math:`N` is the global batch: negatives come from
    every device without an explicit all-gather. Computed in float32 whatever the input dtype.
    This is ``multi_positive_nt_xent`` over the augmentation graph of the ``2N`` views.

    Args:
      z1: embeddings of the first view, ``[N, D]``.
      z2: embeddings of the second view, ``[N, D]``.
      temperature: softmax temperature ``tau`` (SimCLR: 0.1 on ImageNet, 0.2-0.5 on CIFAR).

    Returns:
      The scalar loss.

    References:
      Chen et al., A Simple Framework for Contrastive Learning of Visual Representations
      (SimCLR), ICML 2020. https://arxiv.org/abs/2002.05709
    """
    chex.assert_equal_shape((z1, z2))
    n = z1.shape[0]
    image_ids = jnp.arange(n, dtype=jnp.int32)
    return multi_positive_nt_xent(
        jnp.concatenate([z1, z2]),  # [2N, D]
        temperature,
        ids=jnp.concatenate([image_ids, image_ids]),  # [2N]: the other view is the positive
    )


def contrastive_top1(z1: jax.Array, z2: jax.Array) -> jax.Array:
    """Fraction of the 2N anchors whose most similar other embedding is their positive.

    Args:
      z1: embeddings of the first view, ``[N, D]``.
      z2: embeddings of the second view, ``[N, D]``.

    Returns:
      Scalar accuracy in [0, 1]; a cheap signal that the SimCLR task is being solved.
    """
    logits, positives = nt_xent_logits(z1, z2, temperature=1.0)
    return jnp.mean(jnp.argmax(logits, axis=-1) == positives)


# --- The positive-pair graph ---


def augmentation_graph_ids(batch_size: int, num_views: int) -> jax.Array:
    """Group ids of SimCLR's augmentation graph for a batch-major ``[B * V]`` flattening.

    Row ``b * V + v`` (view ``v`` of image ``b``, as ``z.reshape(B * V, D)`` of ``[B, V, D]``
    gives) gets id ``b``: the positives of a view are the other views of its image.

    Args:
      batch_size: ``B``, images in the (global) batch.
      num_views: ``V``, views per image.

    Returns:
      ``[B * V]`` int32 ids.
    """
    return jnp.repeat(jnp.arange(batch_size, dtype=jnp.int32), num_views)


def union_graph_ids(image_ids: jax.Array, labels: jax.Array) -> jax.Array:
    """Group ids of the union of the augmentation graph and the label graph (semi-supervised).

    Positives of an embedding are the other views of its image and, where its label is known,
    every embedding with the same label. Since the views of an image share its label, this union
    is again a partition into groups: labelled embeddings grouped by label, unlabelled ones by
    image. So ids suffice and no ``[M, M]`` matrix is needed.

    Args:
      image_ids: non-negative index of each embedding's source image, ``[M]``.
      labels: each embedding's class, ``-1`` where unknown, ``[M]``.

    Returns:
      ``[M]`` int32 ids: the label where known, else ``-1 - image_id`` (never a label).
    """
    chex.assert_equal_shape((image_ids, labels))
    image_ids, labels = image_ids.astype(jnp.int32), labels.astype(jnp.int32)
    return jnp.where(labels >= 0, labels, -1 - image_ids)


def positives_from_ids(ids: jax.Array) -> jax.Array:
    """The ``[M, M]`` boolean positive-pair matrix of group ids: same id, diagonal excluded."""
    chex.assert_rank(ids, 1)
    return (ids[:, None] == ids[None, :]) & ~jnp.eye(ids.shape[0], dtype=bool)


def _check_graph(embeddings: jax.Array, ids: jax.Array | None, positives: jax.Array | None):
    chex.assert_rank(embeddings, 2)
    if (ids is None) == (positives is None):
        raise ValueError("Pass exactly one of `ids` ([M] group ids) and `positives` ([M, M]).")
    m = embeddings.shape[0]
    if ids is None:
        chex.assert_shape(positives, (m, m))
    else:
        chex.assert_shape(ids, (m,))


def _mean_over_anchors(
    log_normalizer: jax.Array, positive_logit_sum: jax.Array, num_positives: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(sum of loss_a over anchors with positives, number of such anchors)``; args ``[M]``."""
    has_positives = num_positives > 0
    per_anchor = log_normalizer - positive_logit_sum / jnp.maximum(num_positives, 1)
    return jnp.sum(jnp.where(has_positives, per_anchor, 0.0)), jnp.sum(has_positives)


# --- Dense: the full [M, M] similarity matrix ---


def _dense_logits(
    embeddings: jax.Array, temperature: float, ids: jax.Array | None, positives: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """``(logits with -inf on the diagonal, positive mask without it)``, both ``[M, M]``."""
    u = _l2_normalize(embeddings)  # [M, D]
    is_self = jnp.eye(u.shape[0], dtype=bool)  # [M, M]
    logits = jnp.where(is_self, -jnp.inf, u @ u.T / temperature)  # [M, M]
    positive = (ids[:, None] == ids[None, :]) if positives is None else positives.astype(bool)
    return logits, positive & ~is_self


def multi_positive_nt_xent(
    embeddings: jax.Array,
    temperature: float = 0.1,
    *,
    ids: jax.Array | None = None,
    positives: jax.Array | None = None,
) -> jax.Array:
    r"""Multi-positive NT-Xent over a positive-pair graph (SupCon's :math:`L_{out}`).

    With :math:`u_1, \dots, u_M` the L2-normalized embeddings (all views of the batch stacked)
    and :math:`P(a)` the positives of anchor :math:`a` (never :math:`a` itself),

    .. math::
      \ell_a = -\frac{1}{|P(a)|} \sum_{p \in P(a)} \log
               \frac{\exp(u_a^\top u_p / \tau)}{\sum_{b \ne a} \exp(u_a^\top u_b / \tau)},
      \qquad \mathcal{L} = \frac{1}{|A|} \sum_{a \in A} \ell_a,
      \quad A = \{a : |P(a)| > 0\}.

    Anchors without positives only serve as negatives (0 if no anchor has a positive). With
    two views and :math:`P(a)` = the other view of the same image this is exactly NT-Xent
    (``nt_xent``). Holds the ``[M, M]`` similarities; ``multi_positive_nt_xent_blockwise``
    computes the same value and gradients in bounded memory. Under ``jax.jit`` on sharded
    inputs :math:`M` is the global batch. Computed in float32 whatever the input dtype.

    Args:
      embeddings: ``[M, D]``, need not be normalized.
      temperature: softmax temperature ``tau``.
      ids: ``[M]`` integer group ids; positives are the other embeddings with the same id (the
        image index: SimCLR; the label: SupCon; ``union_graph_ids``: semi-supervised).
      positives: ``[M, M]`` 0/1 matrix, ``positives[a, p]`` = 1 if ``p`` is a positive of ``a``
        (need not be symmetric; the diagonal is ignored). Exactly one of ``ids``/``positives``.

    Returns:
      The scalar loss.

    References:
      Khosla et al., Supervised Contrastive Learning, NeurIPS 2020, Eq. 2 (:math:`L_{out}`).
      https://arxiv.org/abs/2004.11362
      Chen et al., A Simple Framework for Contrastive Learning of Visual Representations
      (SimCLR), ICML 2020. https://arxiv.org/abs/2002.05709
    """
    _check_graph(embeddings, ids, positives)
    logits, positive = _dense_logits(embeddings, temperature, ids, positives)  # [M, M] each
    total, count = _mean_over_anchors(
        jax.nn.logsumexp(logits, axis=-1),  # [M]
        jnp.sum(jnp.where(positive, logits, 0.0), axis=-1),  # [M]
        jnp.sum(positive, axis=-1),  # [M]
    )
    return total / jnp.maximum(count, 1)


def multi_positive_top1(
    embeddings: jax.Array, *, ids: jax.Array | None = None, positives: jax.Array | None = None
) -> jax.Array:
    """Fraction of anchors (with positives) whose most similar other embedding is a positive.

    Args:
      embeddings: ``[M, D]``.
      ids: ``[M]`` group ids, or
      positives: ``[M, M]`` 0/1 matrix, as in ``multi_positive_nt_xent``.

    Returns:
      Scalar accuracy in [0, 1]; ``contrastive_top1`` for the augmentation graph.
    """
    _check_graph(embeddings, ids, positives)
    logits, positive = _dense_logits(embeddings, 1.0, ids, positives)  # [M, M] each
    nearest = jnp.argmax(logits, axis=-1)  # [M]
    hit = jnp.take_along_axis(positive, nearest[:, None], axis=-1)[:, 0]  # [M]
    has_positives = jnp.any(positive, axis=-1)  # [M]
    return jnp.sum(hit & has_positives) / jnp.maximum(jnp.sum(has_positives), 1)


# --- Blockwise: bounded memory, same value and gradients ---


def _batch_mesh(
    embeddings: jax.Array, mesh: jax.sharding.Mesh | None, axis_name: str | tuple[str, ...]
) -> tuple[jax.sharding.Mesh | jax.sharding.AbstractMesh, tuple[str, ...]] | None:
    """``(mesh, axes)``: the mesh and those of ``axis_name`` it has, which split the batch; or
    None to compute on one device."""
    if mesh is None:
        mesh = jax.sharding.get_abstract_mesh()  # set by jax.set_mesh(mesh)
    if mesh.empty:
        # Inside a jit whose inputs carry NamedShardings (the train step), every traced value's
        # type carries that mesh, with or without jax.set_mesh.
        mesh = getattr(getattr(jax.typeof(embeddings), "sharding", None), "mesh", mesh)
    names = (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)
    axes = tuple(a for a in names if not mesh.empty and a in mesh.axis_names)
    if not axes:
        return None
    axis_types = dict(zip(mesh.axis_names, mesh.axis_types, strict=True))
    size = math.prod(mesh.shape[a] for a in axes)
    # Already inside a shard_map over the axes (Manual): the rows here are this device's alone.
    # A batch that does not split evenly is computed whole (still chunked) on each device.
    manual = any(axis_types[a] == jax.sharding.AxisType.Manual for a in axes)
    if manual or size == 1 or embeddings.shape[0] % size:
        return None
    return mesh, axes


def _chunks(x: jax.Array, chunk_size: int, axis: int) -> jax.Array:
    """``x`` zero-padded along ``axis`` to ``K * chunk_size``, split into ``K`` chunks (axis 0)."""
    num_chunks = -(-x.shape[axis] // chunk_size)
    padding = [(0, 0)] * x.ndim
    padding[axis] = (0, num_chunks * chunk_size - x.shape[axis])
    x = jnp.pad(x, padding)
    x = x.reshape(x.shape[:axis] + (num_chunks, chunk_size) + x.shape[axis + 1 :])
    return jnp.moveaxis(x, axis, 0)


class _Rows(NamedTuple):
    """Anchor rows of the similarity matrix (one device's share, or all of them)."""

    anchors: jax.Array  # [m, D], normalized
    first_row: jax.Array | int  # global index of anchors[0]
    columns: jax.Array  # [M, D], normalized: every embedding
    anchor_ids: jax.Array | None  # [m]; with column_ids [M], or
    column_ids: jax.Array | None
    anchor_positives: jax.Array | None  # [m, M], the anchors' rows of the positives matrix


def _scan_columns(body, init, rows: _Rows, temperature: float, chunk_size: int, remat: bool):
    """Folds ``body(carry, logits, positive)`` over column chunks of the rows' logits.

    ``logits`` (``[m, C]``) has ``-inf`` at the anchor itself and at padding columns, and
    ``positive`` (``[m, C]``) is False there. With ``remat`` the backward pass recomputes each
    chunk instead of storing it, so neither pass holds more than one chunk of logits.
    """
    num_columns = rows.columns.shape[0]
    chunk_size = min(chunk_size, num_columns)
    row_index = rows.first_row + jnp.arange(rows.anchors.shape[0])  # [m], global
    xs = {
        "columns": _chunks(rows.columns, chunk_size, 0),  # [K, C, D]
        "start": jnp.arange(-(-num_columns // chunk_size)) * chunk_size,  # [K]
        # Per chunk: the columns' ids [K, C], or the anchors' rows of the matrix [K, m, C].
        "keys": (
            _chunks(rows.column_ids, chunk_size, 0)
            if rows.anchor_positives is None
            else _chunks(rows.anchor_positives.astype(bool), chunk_size, 1)
        ),
    }

    def step(carry, x):
        column_index = x["start"] + jnp.arange(chunk_size)  # [C], global
        excluded = row_index[:, None] == column_index[None, :]  # [m, C]
        excluded |= (column_index >= num_columns)[None, :]  # padding
        logits = rows.anchors @ x["columns"].T / temperature  # [m, C]
        if rows.anchor_positives is None:
            positive = rows.anchor_ids[:, None] == x["keys"][None, :]  # [m, C]
        else:
            positive = x["keys"]  # [m, C]
        return body(carry, jnp.where(excluded, -jnp.inf, logits), positive & ~excluded), None

    if remat:
        step = jax.checkpoint(step, prevent_cse=False)
    return jax.lax.scan(step, init, xs)[0]


def _loss_rows(rows: _Rows, temperature: float, chunk_size: int):
    """Streaming log-sum-exp over column chunks: ``(loss sum, anchors with positives)``."""

    def body(carry, logits, positive):
        running_max, running_sum, positive_logit_sum, num_positives = carry
        # The shift only keeps exp() in range; the log-sum-exp does not depend on it, so its
        # gradient is exact with the shift held constant.
        new_max = jax.lax.stop_gradient(jnp.maximum(running_max, jnp.max(logits, axis=-1)))
        shift = jnp.where(jnp.isfinite(new_max), new_max, 0.0)  # [m]
        running_sum = running_sum * jnp.exp(running_max - shift) + jnp.sum(
            jnp.exp(logits - shift[:, None]), axis=-1
        )
        positive_logit_sum += jnp.sum(jnp.where(positive, logits, 0.0), axis=-1)
        num_positives += jnp.sum(positive, axis=-1)
        return new_max, running_sum, positive_logit_sum, num_positives

    like = rows.anchors[:, 0]  # [m]; *_like keeps its per-device type inside shard_map
    init = (
        jnp.full_like(like, -jnp.inf),
        jnp.zeros_like(like),
        jnp.zeros_like(like),
        jnp.zeros_like(like, jnp.int32),
    )
    running_max, running_sum, positive_logit_sum, num_positives = _scan_columns(
        body, init, rows, temperature, chunk_size, remat=True
    )
    log_normalizer = jnp.log(running_sum) + jnp.where(jnp.isfinite(running_max), running_max, 0.0)
    return _mean_over_anchors(log_normalizer, positive_logit_sum, num_positives)


def _top1_rows(rows: _Rows, temperature: float, chunk_size: int):
    """Streaming arg-max over column chunks: ``(anchors whose nearest is a positive, anchors
    with positives)``. Ties go to the lowest column, as ``jnp.argmax`` does."""

    def body(carry, logits, positive):
        best, hit, num_positives = carry
        chunk_best = jnp.max(logits, axis=-1)  # [m]
        nearest = jnp.argmax(logits, axis=-1)  # [m]
        chunk_hit = jnp.take_along_axis(positive, nearest[:, None], axis=-1)[:, 0]  # [m]
        better = chunk_best > best
        num_positives += jnp.sum(positive, axis=-1)
        return jnp.where(better, chunk_best, best), jnp.where(better, chunk_hit, hit), num_positives

    like = rows.anchors[:, 0]  # [m]
    init = (
        jnp.full_like(like, -jnp.inf),
        jnp.zeros_like(like, bool),
        jnp.zeros_like(like, jnp.int32),
    )
    _, hit, num_positives = _scan_columns(body, init, rows, temperature, chunk_size, remat=False)
    return jnp.sum(hit & (num_positives > 0)), jnp.sum(num_positives > 0)


def _blockwise_mean(
    rows_fn,
    embeddings: jax.Array,
    ids: jax.Array | None,
    positives: jax.Array | None,
    mesh: jax.sharding.Mesh | None,
    axis_name: str | tuple[str, ...],
    temperature: float,
    chunk_size: int,
) -> jax.Array:
    """``sum / count`` of ``rows_fn`` over all anchors, each device taking its own rows."""
    _check_graph(embeddings, ids, positives)
    found = _batch_mesh(embeddings, mesh, axis_name)
    if found is None:
        u = _l2_normalize(embeddings)  # [M, D]
        total, count = rows_fn(_Rows(u, 0, u, ids, ids, positives), temperature, chunk_size)
        return total / jnp.maximum(count, 1)

    # Per-device semantics on purpose: every device scores its own anchor rows against all M
    # columns (all-gathered: [M, D] is small), so no device ever holds the [M, M] logits. The
    # all-gather's transpose (a reduce-scatter) returns the column gradients to their rows.
    batch_mesh, axis_name = found

    def per_device(local_embeddings, local_ids, local_positives):
        anchors = _l2_normalize(local_embeddings)  # [M / n, D]
        rows = _Rows(
            anchors=anchors,
            first_row=jax.lax.axis_index(axis_name) * anchors.shape[0],
            columns=jax.lax.all_gather(anchors, axis_name, tiled=True),  # [M, D]
            anchor_ids=local_ids,
            column_ids=(
                None if local_ids is None else jax.lax.all_gather(local_ids, axis_name, tiled=True)
            ),
            anchor_positives=local_positives,
        )
        return jax.lax.psum(rows_fn(rows, temperature, chunk_size), axis_name)

    total, count = jax.shard_map(
        per_device,
        mesh=batch_mesh,
        in_specs=(jax.P(axis_name),) * 3,
        out_specs=jax.P(),
        axis_names=set(axis_name),
    )(embeddings, ids, positives)
    return total / jnp.maximum(count, 1)


def multi_positive_nt_xent_blockwise(
    embeddings: jax.Array,
    temperature: float = 0.1,
    *,
    ids: jax.Array | None = None,
    positives: jax.Array | None = None,
    chunk_size: int = 1024,
    mesh: jax.sharding.Mesh | None = None,
    axis_name: str | tuple[str, ...] = ("data", "fsdp"),
) -> jax.Array:
    r"""``multi_positive_nt_xent`` in bounded memory: same value and gradients.

    Same loss (SupCon's :math:`L_{out}`, mean over anchors with positives), but the
    :math:`M \times M` similarities are never held. With the batch split over ``axis_name`` of
    the mesh, each device all-gathers the normalized ``[M, D]`` embeddings (and ids), then
    streams its ``M / n`` anchor rows against ``chunk_size`` columns at a time (``lax.scan``
    with an online log-sum-exp); the scan body is rematerialized (``jax.checkpoint``) so the
    backward pass recomputes each chunk instead of storing it. Per-device memory is
    :math:`O(M D + (M / n) \cdot \text{chunk\_size})` (plus ``[M / n, M]`` if ``positives`` is
    given as a matrix); the mean is a ``psum`` over devices. Compute is the dense one plus a
    second evaluation of each chunk's logits in the backward pass.

    The mesh is ``mesh`` if given, else the one set by ``jax.set_mesh``, else the one the
    embeddings' type carries inside a ``jax.jit`` whose inputs have ``NamedSharding`` s (the
    train step). With no such mesh, an ``axis_name`` of size 1, or an ``M`` that does not split
    evenly over it, the same chunked computation runs on one device, in
    :math:`O(M \cdot \text{chunk\_size})` memory.

    Args:
      embeddings: ``[M, D]``, need not be normalized; row-sharded over ``axis_name``.
      temperature: softmax temperature ``tau``.
      ids: ``[M]`` integer group ids, or
      positives: ``[M, M]`` 0/1 matrix, as in ``multi_positive_nt_xent``.
      chunk_size: columns per chunk (the last chunk is padded).
      mesh: the mesh; None to find it as above.
      axis_name: the mesh axis (or axes, major first) that split the batch; names the mesh
        lacks are ignored, so the default suits both ``("data",)`` and ``("data", "fsdp")``.

    Returns:
      The scalar loss.

    References:
      Khosla et al., Supervised Contrastive Learning, NeurIPS 2020, Eq. 2 (:math:`L_{out}`).
      https://arxiv.org/abs/2004.11362
      Milakov & Gimelshein, Online normalizer calculation for softmax, 2018 (the streaming
      log-sum-exp). https://arxiv.org/abs/1805.02867
    """
    args = (embeddings, ids, positives, mesh, axis_name, temperature, chunk_size)
    return _blockwise_mean(_loss_rows, *args)


def multi_positive_top1_blockwise(
    embeddings: jax.Array,
    *,
    ids: jax.Array | None = None,
    positives: jax.Array | None = None,
    chunk_size: int = 1024,
    mesh: jax.sharding.Mesh | None = None,
    axis_name: str | tuple[str, ...] = ("data", "fsdp"),
) -> jax.Array:
    """``multi_positive_top1`` in bounded memory (a streaming arg-max; forward only).

    Args:
      embeddings: ``[M, D]``.
      ids: ``[M]`` group ids, or
      positives: ``[M, M]`` 0/1 matrix, as in ``multi_positive_nt_xent``.
      chunk_size, mesh, axis_name: as in ``multi_positive_nt_xent_blockwise``.

    Returns:
      Scalar accuracy in [0, 1].
    """
    embeddings = jax.lax.stop_gradient(embeddings)  # a metric: no gradient to carry
    return _blockwise_mean(_top1_rows, embeddings, ids, positives, mesh, axis_name, 1.0, chunk_size)
