"""Contrastive losses over the global batch.

The general loss is the multi-positive NT-Xent of SupCon over a *positive-pair graph* on the
``M`` embeddings of all views of the global batch: SimCLR's graph links the views of one image,
SupCon's links equal labels, semi-supervised training uses their union. The graph is given as
integer group ids (positives = same id; ``[M]``, the memory-friendly form) or as an explicit
``[M, M]`` 0/1 matrix.

``multi_positive_nt_xent`` holds the full ``[M, M]`` similarity matrix (simplest; best for
batches of a few thousand); `jaxssl.losses.contrastive_blockwise` computes the same value and
gradients without ever holding more than ``[M / devices, chunk_size]`` of it (for global batches
of tens of thousands of views).

The InfoNCE variants with a momentum encoder follow: against a queue of earlier keys (MoCo v2)
or the other keys of the batch (MoCo v3), and NNCLR's, whose positive is a support-set
neighbour. ``decoupled_nt_xent`` is DCL's two-view NT-Xent without the positive in the
denominator.

References:
  Chen et al., A Simple Framework for Contrastive Learning of Visual Representations (SimCLR),
  ICML 2020. https://arxiv.org/abs/2002.05709
  Khosla et al., Supervised Contrastive Learning, NeurIPS 2020.
  https://arxiv.org/abs/2004.11362
  He et al., Momentum Contrast for Unsupervised Visual Representation Learning, CVPR 2020.
  https://arxiv.org/abs/1911.05722
  Chen, Xie & He, An Empirical Study of Training Self-Supervised Vision Transformers
  (MoCo v3), ICCV 2021. https://arxiv.org/abs/2104.02057
  Dwibedi et al., With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning
  of Visual Representations (NNCLR), ICCV 2021. https://arxiv.org/abs/2104.14548
  Yeh et al., Decoupled Contrastive Learning (DCL, DCLW), ECCV 2022.
  https://arxiv.org/abs/2110.06848
"""

import chex
import jax
import jax.numpy as jnp

from jaxssl.losses import normalize


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
    z = normalize.l2_normalize(jnp.concatenate([z1, z2], axis=0))  # [2N, D]
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


def decoupled_nt_xent(
    z1: jax.Array, z2: jax.Array, temperature: float = 0.1, vmf_sigma: float = 0.0
) -> jax.Array:
    r"""Decoupled contrastive loss (DCL; DCLW with ``vmf_sigma > 0``): NT-Xent without the
    positive in the denominator.

    With :math:`u_i, v_i` the L2-normalized rows of ``z1``, ``z2`` and :math:`N` the global
    batch, the one-way loss of anchor :math:`u_i` is

    .. math::
      \ell_i = -w_i \, u_i^\top v_i / \tau
        + \log \sum_{k \ne i} \left[ e^{u_i^\top u_k / \tau} + e^{u_i^\top v_k / \tau} \right],

    the same :math:`2N - 2` negatives as NT-Xent, but the positive term no longer appears in
    the normalizer, which removes the "negative-positive coupling" that makes NT-Xent's
    gradient vanish for easy positives and small batches (Yeh et al. 2022, Eq. 6; this is also
    the form in which NT-Xent is often written on slides, a denominator over negatives only).
    DCL: :math:`w_i = 1`. DCLW: :math:`w_i = 2 - N \, \mathrm{softmax}_i(u_i^\top v_i /
    \sigma)`, the negative von Mises-Fisher weighting that puts more weight on hard positives.
    The loss is the mean over anchors of both directions, as lightly's ``DCLLoss`` (the
    reference code, raminnakhli/Decoupled-Contrastive-Learning, returns one direction and its
    training script adds the two, twice this value). The weights are not stop-gradiented, as
    in both. Computed in float32.

    Args:
      z1: ``[N, D]`` embeddings of the first view.
      z2: ``[N, D]`` embeddings of the second view; row ``i`` is the positive of ``z1[i]``.
      temperature: ``tau`` (0.1 in the reference and in lightly).
      vmf_sigma: ``sigma`` of DCLW's weighting (0.5 in the paper); 0 for DCL.

    Returns:
      The scalar loss.

    References:
      Yeh et al., Decoupled Contrastive Learning, ECCV 2022. https://arxiv.org/abs/2110.06848
    """
    chex.assert_equal_shape((z1, z2))
    chex.assert_rank(z1, 2)
    n = z1.shape[0]
    u = normalize.l2_normalize(z1.astype(jnp.float32))
    v = normalize.l2_normalize(z2.astype(jnp.float32))
    is_self = jnp.eye(n, dtype=bool)

    def one_way(a, b):  # anchors a, positives b: [N] losses
        cross = a @ b.T / temperature  # [N, N], the positives on the diagonal
        within = a @ a.T / temperature  # [N, N], the anchor itself on the diagonal
        positive = -jnp.diagonal(cross)
        if vmf_sigma > 0:
            positive = positive * (2.0 - n * jax.nn.softmax(jnp.sum(a * b, -1) / vmf_sigma))
        negatives = jnp.concatenate(
            [jnp.where(is_self, -jnp.inf, within), jnp.where(is_self, -jnp.inf, cross)], axis=1
        )  # [N, 2N]
        return positive + jax.nn.logsumexp(negatives, axis=1)

    return 0.5 * (jnp.mean(one_way(u, v)) + jnp.mean(one_way(v, u)))


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


def check_graph(embeddings: jax.Array, ids: jax.Array | None, positives: jax.Array | None):
    """Raises unless exactly one of ``ids`` ``[M]`` and ``positives`` ``[M, M]`` is given for
    ``embeddings`` ``[M, D]`` (shared with `jaxssl.losses.contrastive_blockwise`)."""
    chex.assert_rank(embeddings, 2)
    if (ids is None) == (positives is None):
        raise ValueError("Pass exactly one of `ids` ([M] group ids) and `positives` ([M, M]).")
    m = embeddings.shape[0]
    if ids is None:
        chex.assert_shape(positives, (m, m))
    else:
        chex.assert_shape(ids, (m,))


def mean_over_anchors(
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
    u = normalize.l2_normalize(embeddings)  # [M, D]
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
    negatives: jax.Array | None = None,
    negative_similarity: str = "cosine",
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
      negatives: optional ``[M, M]`` boolean, the negatives each anchor's denominator keeps
        (``sample_negatives``); the sum over :math:`b \ne a` then runs over :math:`P(a)` and
        these only. ``None``: every non-positive is a negative.
      negative_similarity: ``"cosine"``; ``"abs"`` or ``"square"``: the negatives' logits are
        :math:`|u_a^\top u_b| / \tau` or :math:`(u_a^\top u_b)^2 / \tau` (SimCLR-abs,
        SimCLR-sq of Garrido et al. 2023, Sec. 4: a negative is pushed to be orthogonal, not
        opposite, as dimension-contrastive methods push dimensions). The positives keep the
        cosine (our reading: the paper's text transforms "the cosine similarities" of the
        negative term; a transformed positive would let a view's pair be opposite).

    Returns:
      The scalar loss.

    References:
      Khosla et al., Supervised Contrastive Learning, NeurIPS 2020, Eq. 2 (:math:`L_{out}`).
      https://arxiv.org/abs/2004.11362
      Chen et al., A Simple Framework for Contrastive Learning of Visual Representations
      (SimCLR), ICML 2020. https://arxiv.org/abs/2002.05709
    """
    check_graph(embeddings, ids, positives)
    logits, positive = _dense_logits(embeddings, temperature, ids, positives)  # [M, M] each
    if negative_similarity != "cosine":
        if negative_similarity not in NEGATIVE_SIMILARITIES:
            raise ValueError(
                f"Unknown negative_similarity {negative_similarity!r}; valid: "
                f"{sorted(NEGATIVE_SIMILARITIES)}."
            )
        transform = NEGATIVE_SIMILARITIES[negative_similarity]
        # logits = cos / tau off the diagonal (-inf on it, which stays excluded).
        transformed = transform(logits * temperature) / temperature
        logits = jnp.where(positive | jnp.isneginf(logits), logits, transformed)
    if negatives is not None:
        chex.assert_shape(negatives, logits.shape)
        logits = jnp.where(positive | negatives, logits, -jnp.inf)
    total, count = mean_over_anchors(
        jax.nn.logsumexp(logits, axis=-1),  # [M]
        jnp.sum(jnp.where(positive, logits, 0.0), axis=-1),  # [M]
        jnp.sum(positive, axis=-1),  # [M]
    )
    return total / jnp.maximum(count, 1)


# The similarity of a negative pair in SimCLR-abs / -sq (``multi_positive_nt_xent``).
NEGATIVE_SIMILARITIES = {"cosine": lambda s: s, "abs": jnp.abs, "square": jnp.square}


def sample_negatives(key: jax.Array, ids: jax.Array, num_negatives: int) -> jax.Array:
    """A random ``num_negatives``-subset of each anchor's negatives, for SimCLR with few
    negatives (Bordes et al. 2023, "Towards Democratizing Joint-Embedding Self-Supervised
    Learning": SimCLR still learns with a single negative per anchor).

    Each row draws its own subset, uniformly among the embeddings of other groups, from
    ``key`` (one draw over the global ``[M, M]``, so the same on any number of devices). A
    row with fewer negatives than ``num_negatives`` keeps all of them: a ``num_negatives`` of
    at least ``M`` gives back the full NT-Xent.

    Args:
      key: a JAX key (the step's).
      ids: ``[M]`` group ids (``multi_positive_nt_xent``'s); negatives have another id.
      num_negatives: ``k >= 1``, negatives kept per anchor.

    Returns:
      ``[M, M]`` boolean, ``True`` at the kept negatives.
    """
    chex.assert_rank(ids, 1)
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}.")
    m = ids.shape[0]
    candidate = ids[:, None] != ids[None, :]  # [M, M]: other groups (never the anchor)
    # Rank the candidates of each row in a random order (non-candidates last), keep the first k.
    order = jnp.where(candidate, jax.random.uniform(key, (m, m)), 2.0)
    ranks = jnp.argsort(jnp.argsort(order, axis=1), axis=1)  # [M, M]
    return candidate & (ranks < num_negatives)


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
    check_graph(embeddings, ids, positives)
    logits, positive = _dense_logits(embeddings, 1.0, ids, positives)  # [M, M] each
    nearest = jnp.argmax(logits, axis=-1)  # [M]
    hit = jnp.take_along_axis(positive, nearest[:, None], axis=-1)[:, 0]  # [M]
    has_positives = jnp.any(positive, axis=-1)  # [M]
    return jnp.sum(hit & has_positives) / jnp.maximum(jnp.sum(has_positives), 1)


# --- With a momentum encoder: MoCo v2 (queue), MoCo v3 (in-batch); NNCLR ---


def infonce_with_queue(
    q: jax.Array, k: jax.Array, queue: jax.Array, temperature: float = 0.2
) -> jax.Array:
    r"""MoCo v1/v2: each query's key is its positive, the queue's keys its negatives.

    With unit vectors, logits :math:`[q_i \cdot k_i, q_i \cdot Q^\top] / T` and the
    cross-entropy of class 0, mean over the ``N`` queries (the reference code's
    ``CrossEntropyLoss`` on ``[N, 1 + K]`` logits). Keys and queue get no gradient.

    Args:
      q: ``[N, D]`` queries (normalized here).
      k: ``[N, D]`` keys of the same images from the momentum encoder (normalized here).
      queue: ``[K, D]`` unit-norm keys of earlier batches.
      temperature: ``T`` (0.2 in MoCo v2).

    Returns:
      The scalar loss.
    """
    q = normalize.l2_normalize(q)
    k = jax.lax.stop_gradient(normalize.l2_normalize(k))
    queue = jax.lax.stop_gradient(queue.astype(jnp.float32))
    positive = jnp.sum(q * k, axis=-1, keepdims=True)  # [N, 1]
    negative = q @ queue.T  # [N, K]
    logits = jnp.concatenate([positive, negative], axis=1) / temperature
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])


def infonce_in_batch(q: jax.Array, k: jax.Array, temperature: float = 0.2) -> jax.Array:
    r"""MoCo v3's ``ctr(q, k)``: the other keys of the (global) batch are the negatives.

    Logits :math:`q k^\top / T` over unit vectors, ``N x N``; cross-entropy of the diagonal,
    mean over queries, times :math:`2T` as in the reference code (which all-gathers the keys;
    under ``jit`` the batch is already global). The caller symmetrizes:
    ``ctr(q1, k2) + ctr(q2, k1)``.

    Args:
      q: ``[N, D]`` queries (normalized here).
      k: ``[N, D]`` keys of the same images (normalized here, no gradient).
      temperature: ``T`` (0.2 in MoCo v3).

    Returns:
      The scalar loss.
    """
    q = normalize.l2_normalize(q)
    k = jax.lax.stop_gradient(normalize.l2_normalize(k))
    logits = q @ k.T / temperature  # [N, N]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(logits)) * (2 * temperature)


def nearest_neighbours(z: jax.Array, support: jax.Array) -> jax.Array:
    """For each row of ``z`` ``[N, D]``, the most cosine-similar row of ``support`` ``[K, D]``
    (unit rows), without gradient: ``[N, D]``."""
    support = jax.lax.stop_gradient(support.astype(jnp.float32))
    nearest = jnp.argmax(jax.lax.stop_gradient(normalize.l2_normalize(z)) @ support.T, axis=1)
    return support[nearest]


def nnclr_loss(neighbours: jax.Array, predictions: jax.Array, temperature: float = 0.2):
    r"""``CE(nn_i \cdot p_j / T, i)``: the neighbour of view 1 of image ``i`` must pick view 2's
    prediction of image ``i`` among the (global) batch's. Mean over the ``N`` rows.

    Args:
      neighbours: ``[N, D]`` support-set neighbours of one view's projections.
      predictions: ``[N, D]`` the other view's predictions.
      temperature: ``T`` (0.1 in the paper, 0.2 in solo-learn's CIFAR recipe).

    Returns:
      The scalar loss.
    """
    logits = normalize.l2_normalize(neighbours) @ normalize.l2_normalize(predictions).T
    logits = logits / temperature  # [N, N]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(logits))


def instance_discrimination(
    z: jax.Array, bank: jax.Array, index: jax.Array, temperature: float = 0.07
) -> jax.Array:
    r"""NPID's non-parametric softmax: each embedding classifies its own example among every
    example of the training set, whose memory-bank rows are the class weights.

    .. math::
      \mathcal{L} = -\frac{1}{B} \sum_i \log
        \frac{\exp(v_{y_i}^\top z_i / \tau)}{\sum_{j=1}^{N} \exp(v_j^\top z_i / \tau)}

    with ``z`` and the bank rows ``v`` L2-normalized and ``y_i`` the example's index in the
    split. This is the full softmax of NPID's code (its ``LinearAverage`` + cross-entropy,
    used when ``nce_k = 0``), not its NCE approximation; the bank's row of the example itself
    is its stale embedding from the last visit, as in the reference (the row is updated after
    the loss). The bank gets no gradient.

    Args:
      z: ``[B, D]`` embeddings of the global batch (normalized here).
      bank: ``[N, D]`` memory bank, unit rows.
      index: ``[B]`` int32 row of each example in the bank.
      temperature: ``tau`` (NPID: 0.07 on ImageNet, 0.1 in its CIFAR script).

    References:
      Wu, Xiong, Yu & Lin, Unsupervised Feature Learning via Non-Parametric Instance
      Discrimination, CVPR 2018. https://arxiv.org/abs/1805.01978
    """
    z = normalize.l2_normalize(z)
    logits = z @ jax.lax.stop_gradient(bank).T / temperature  # [B, N]
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, index[:, None], axis=-1))


def cpc_infonce(predictions: jax.Array, targets: jax.Array, offsets: tuple[int, ...]) -> jax.Array:
    r"""CPC's InfoNCE over a grid: the context at row ``i`` predicts the patch embedding
    ``k`` rows below, against every other patch embedding of the global batch.

    For each offset ``k`` of ``offsets`` and each position ``(b, i, j)`` with ``i + k < G``,
    the logits are the dot products of the prediction ``\hat z^k_{bij}`` with all ``B G^2``
    targets; the positive is ``z_{b, i+k, j}``; the other patches of the same image and of
    the other images are the negatives (CPC v2, Henaff et al. 2020). The loss is the mean
    over offsets of the mean cross-entropy over their valid positions.

    Args:
      predictions: ``[B, G, G, K, D]``: the prediction for ``offsets[n]`` at ``[..., n, :]``.
      targets: ``[B, G, G, D]`` patch embeddings.
      offsets: the ``K`` row offsets, each in ``[1, G)``.

    Returns:
      The scalar loss.

    References:
      van den Oord, Li & Vinyals, Representation Learning with Contrastive Predictive Coding,
      2018. https://arxiv.org/abs/1807.03748
      Henaff et al., Data-Efficient Image Recognition with Contrastive Predictive Coding
      (CPC v2), ICML 2020. https://arxiv.org/abs/1905.09272
    """
    b, g, _, num_offsets, d = predictions.shape
    if len(offsets) != num_offsets or not all(1 <= k < g for k in offsets):
        raise ValueError(f"offsets {offsets} must be {num_offsets} row offsets in [1, {g}).")
    candidates = targets.reshape(b * g * g, d)  # [M, D]
    flat = jnp.arange(b * g * g).reshape(b, g, g)
    losses = []
    for n, k in enumerate(offsets):
        queries = predictions[:, : g - k, :, n].reshape(-1, d)  # [b (g-k) g, D]
        positives = flat[:, k:, :].reshape(-1)  # the patch k rows below
        log_probs = jax.nn.log_softmax(queries @ candidates.T, axis=-1)
        losses.append(-jnp.mean(jnp.take_along_axis(log_probs, positives[:, None], axis=-1)))
    return sum(losses) / num_offsets
