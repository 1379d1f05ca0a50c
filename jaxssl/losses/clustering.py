"""SwAV's online codes (Sinkhorn-Knopp) and its swapped-prediction loss (pure jax.numpy).

Under ``jit`` the arrays are global, so the reference code's ``all_reduce`` of the sums over
samples is just a sum over axis 0 here: the codes are equipartitioned over the whole global
batch (and the queue), on any number of devices.

References:
  Caron, Misra, Mairal, Goyal, Bojanowski & Joulin, Unsupervised Learning of Visual Features
  by Contrasting Cluster Assignments (SwAV), NeurIPS 2020. https://arxiv.org/abs/2006.09882
"""

import chex
import jax
import jax.numpy as jnp


def sinkhorn_knopp(
    scores: jax.Array,
    epsilon: float | jax.Array = 0.05,
    num_iters: int = 3,
    valid: jax.Array | None = None,
) -> jax.Array:
    r"""Soft codes of ``N`` samples over ``K`` prototypes, equipartitioned over the samples.

    The reference's ``distributed_sinkhorn``: with :math:`Q = \exp(S / \varepsilon)^\top`
    (``[K, N]``) scaled to sum to 1, ``num_iters`` times divide each prototype row by its sum
    and by ``K`` (each prototype gets mass :math:`1/K`), then each sample column by its sum and
    by ``N`` (each sample gets mass :math:`1/N`); finally :math:`N Q^\top`. This approximates
    the entropy-regularized optimal transport

    .. math::
      \max_{Q \in \mathcal{Q}} \operatorname{Tr}(Q^\top C^\top Z) + \varepsilon H(Q),\quad
      \mathcal{Q} = \{Q \in \mathbb{R}_+^{K \times N} : Q 1_N = \tfrac1K 1_K,\
      Q^\top 1_K = \tfrac1N 1_N\}.

    Returned rows sum to 1 exactly (the last step normalizes samples); prototype columns sum to
    about ``N / K``, exactly only in the limit of many iterations. Computed in float32. The
    scores are shifted by their maximum before ``exp`` (no overflow for unbounded scores); the
    first normalization cancels the shift, so the result is the reference's. No gradient flows
    through the codes (they are targets).

    Args:
      scores: ``[N, K]`` sample-prototype scores (cosine similarities in SwAV).
      epsilon: entropy regularization :math:`\varepsilon` (SwAV: 0.05).
      num_iters: Sinkhorn iterations (SwAV: 3).
      valid: optional ``[N]`` bool: only these samples take part (the others' rows are 0),
        ``N`` being their count; DINOv2 balances the masked patch tokens only.

    Returns:
      ``[N, K]`` codes, each (valid) row a distribution over the prototypes.

    References:
      Caron et al., SwAV, NeurIPS 2020, Sec. 3.1 and Appendix A.1.
      https://arxiv.org/abs/2006.09882
      Cuturi, Sinkhorn Distances, NeurIPS 2013. https://arxiv.org/abs/1306.0895
    """
    chex.assert_rank(scores, 2)
    scores = jax.lax.stop_gradient(scores.astype(jnp.float32)) / epsilon
    if valid is None:
        q = jnp.exp(scores - jnp.max(scores)).T  # [K, N]
        num_samples = q.shape[1]
    else:
        shift = jnp.max(jnp.where(valid[:, None], scores, -jnp.inf))
        q = jnp.where(valid[None, :], jnp.exp(jnp.minimum(scores - shift, 0.0)).T, 0.0)
        num_samples = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
    num_prototypes = q.shape[0]
    q = q / jnp.maximum(jnp.sum(q), 1e-30)  # 0 only with no valid sample: all codes 0

    def iteration(_, q):
        row = jnp.sum(q, axis=1, keepdims=True)
        q = q / jnp.maximum(row, 1e-30) / num_prototypes  # prototypes: mass 1/K each
        column = jnp.sum(q, axis=0, keepdims=True)
        return q / jnp.maximum(column, 1e-30) / num_samples  # samples: mass 1/N each

    # A loop, not unrolled Python: compile time stays flat in num_iters.
    q = jax.lax.fori_loop(0, num_iters, iteration, q)
    return (q * num_samples).T  # [N, K]


def swav_codes(
    scores: jax.Array,
    queue_scores: jax.Array | None = None,
    epsilon: float = 0.05,
    num_iters: int = 3,
) -> jax.Array:
    """Codes of each code view, over the batch and optionally a queue of earlier embeddings.

    Each code view is assigned on its own (the reference's loop over ``crops_for_assign``). With
    a queue, the queue's scores join the batch's before Sinkhorn-Knopp (more samples to
    equipartition over: SwAV's remedy for batches smaller than the number of prototypes) and
    only the batch's rows of the codes are kept.

    Args:
      scores: ``[B, C, K]`` scores of the ``C`` code views (SwAV: the 2 global views).
      queue_scores: optional ``[C, L, K]`` scores of the queued embeddings of each code view.
      epsilon: entropy regularization (SwAV: 0.05).
      num_iters: Sinkhorn iterations (SwAV: 3).

    Returns:
      ``[B, C, K]`` codes; no gradient flows through them.
    """
    b, c, k = scores.shape
    per_view = jnp.swapaxes(scores, 0, 1)  # [C, B, K]
    if queue_scores is not None:
        chex.assert_shape(queue_scores, (c, None, k))
        per_view = jnp.concatenate([queue_scores.astype(per_view.dtype), per_view], axis=1)
    codes = jax.vmap(lambda s: sinkhorn_knopp(s, epsilon, num_iters)[-b:])(per_view)  # [C, B, K]
    return jax.lax.stop_gradient(jnp.swapaxes(codes, 0, 1))


def swapped_prediction_loss(
    scores: jax.Array, codes: jax.Array, temperature: float = 0.1
) -> jax.Array:
    r"""SwAV's loss: predict the code of a code view from every other view.

    With :math:`p_{v} = \operatorname{softmax}(s_{v} / \tau)` the prediction of view ``v`` and
    :math:`q_c` the code of code view ``c`` (views ``0 .. C-1``),

    .. math::
      \mathcal{L} = \frac{1}{C} \sum_{c=0}^{C-1} \frac{1}{V-1} \sum_{v \ne c}
        \frac{1}{B} \sum_{b=1}^{B} -\sum_{k=1}^{K} q_{b c k} \log p_{b v k},

    the reference's reduction (``subloss / (sum(nmb_crops) - 1)``, then ``/ len(crops_for_
    assign)``), i.e. the mean over the ``C (V - 1)`` (code view, other view) pairs. With 2
    views: :math:`\frac12 [\ell(z_1, q_2) + \ell(z_2, q_1)]`. Computed in float32.

    Args:
      scores: ``[B, V, K]`` prototype scores of all views, the ``C`` code views first (the
        global views, then the local ones of multi-crop).
      codes: ``[B, C, K]`` codes of the code views (``swav_codes``), targets without gradient.
      temperature: softmax temperature :math:`\tau` (SwAV: 0.1).

    Returns:
      The scalar loss.

    References:
      Caron et al., SwAV, NeurIPS 2020, Eq. 2-3. https://arxiv.org/abs/2006.09882
    """
    b, v, k = scores.shape
    c = codes.shape[1]
    chex.assert_shape(codes, (b, c, k))
    if not 1 <= c <= v or v < 2:
        raise ValueError(f"Need 1 <= C <= V and V >= 2 views, got C={c}, V={v}.")
    log_predictions = jax.nn.log_softmax(scores.astype(jnp.float32) / temperature, axis=-1)
    codes = jax.lax.stop_gradient(codes.astype(jnp.float32))
    # cross[c, v]: mean over the batch of H(q_c, p_v).
    cross = -jnp.einsum("bck,bvk->cv", codes, log_predictions) / b  # [C, V]
    others = 1.0 - jnp.eye(c, v, dtype=jnp.float32)  # a code view does not predict itself
    return jnp.sum(cross * others) / (c * (v - 1))


def kmeans(
    key: jax.Array, points: jax.Array, num_clusters: int, num_iters: int = 20, chunk: int = 4096
) -> tuple[jax.Array, jax.Array]:
    """Lloyd's k-means of ``points`` ``[N, D]`` on device, the distances ``chunk`` rows at a
    time (memory ``chunk x K``); DeepCluster's clustering step.

    Initialized with ``num_clusters`` distinct points drawn from ``key``. An empty cluster
    takes a non-empty cluster's centroid plus a small perturbation (DeepCluster's and faiss's
    rule; here the largest cluster's). ``N`` must be a multiple of ``chunk`` or smaller than it.

    Args:
      key: the initial centroids' draw (and the perturbations').
      points: ``[N, D]``.
      num_clusters: ``K <= N``.
      num_iters: Lloyd iterations.
      chunk: rows per distance block.

    Returns:
      ``(centroids [K, D], assignments [N] int32)``, the assignments to the final centroids.
    """
    n, d = points.shape
    chunk = min(chunk, n)
    if n % chunk:
        raise ValueError(f"k-means of {n} points needs a multiple of chunk={chunk} rows.")
    init_key, split_key = jax.random.split(key)
    first = jax.random.choice(init_key, n, (num_clusters,), replace=False)
    centroids = points[first]
    blocks = points.reshape(n // chunk, chunk, d)

    def assign(centroids):
        norms = jnp.sum(jnp.square(centroids), axis=-1)  # [K]

        def nearest(block):  # [C, D] -> [C]
            return jnp.argmin(norms[None] - 2.0 * block @ centroids.T, axis=-1)

        return jax.lax.map(nearest, blocks).reshape(n)

    def update(i, centroids):
        assignments = assign(centroids)
        sums = jax.ops.segment_sum(points, assignments, num_clusters)  # [K, D]
        counts = jnp.bincount(assignments, length=num_clusters)  # [K]
        means = sums / jnp.maximum(counts, 1)[:, None]
        largest = centroids[jnp.argmax(counts)]
        noise = 1e-4 * jax.random.normal(jax.random.fold_in(split_key, i), (num_clusters, d))
        return jnp.where((counts > 0)[:, None], means, largest + noise)

    centroids = jax.lax.fori_loop(0, num_iters, update, centroids)
    return centroids, assign(centroids).astype(jnp.int32)
