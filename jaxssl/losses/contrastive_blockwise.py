"""Multi-positive NT-Xent in bounded memory: the same value and gradients as
`jaxssl.losses.contrastive.multi_positive_nt_xent`, never holding the ``[M, M]`` similarities.

For global batches of tens of thousands of views: each device streams its anchor rows against
chunks of columns with an online log-sum-exp (``jax.shard_map`` over the batch axes of the
mesh, ``lax.scan`` over the chunks, the scan body rematerialized for the backward pass).

References:
  Milakov & Gimelshein, Online normalizer calculation for softmax, 2018.
  https://arxiv.org/abs/1805.02867
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxssl.losses import contrastive, normalize


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
    return contrastive.mean_over_anchors(log_normalizer, positive_logit_sum, num_positives)


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
    contrastive.check_graph(embeddings, ids, positives)
    found = _batch_mesh(embeddings, mesh, axis_name)
    if found is None:
        u = normalize.l2_normalize(embeddings)  # [M, D]
        total, count = rows_fn(_Rows(u, 0, u, ids, ids, positives), temperature, chunk_size)
        return total / jnp.maximum(count, 1)

    # Per-device semantics on purpose: every device scores its own anchor rows against all M
    # columns (all-gathered: [M, D] is small), so no device ever holds the [M, M] logits. The
    # all-gather's transpose (a reduce-scatter) returns the column gradients to their rows.
    batch_mesh, axis_name = found

    def per_device(local_embeddings, local_ids, local_positives):
        anchors = normalize.l2_normalize(local_embeddings)  # [M / n, D]
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
