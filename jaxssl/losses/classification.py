"""Classification losses of the pretext tasks (RotNet's rotation, Jigsaw's permutation):
softmax cross-entropy over the global batch and its top-1 accuracy."""

import jax
import jax.numpy as jnp


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Mean softmax cross-entropy of integer labels over every row of the global batch.

    .. math::
      \mathcal{L} = -\frac{1}{N} \sum_n \log \frac{e^{\ell_{n, y_n}}}{\sum_c e^{\ell_{n c}}}

    Args:
      logits: ``[..., C]`` unnormalized class scores.
      labels: ``[...]`` int class indices in ``[0, C)``.
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[..., None], axis=-1))


def top1(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of rows whose highest logit is the label's (ties count as wrong)."""
    label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)
    return jnp.mean((logits > label_logit).sum(axis=-1) == 0)


def soft_encode(
    values: jax.Array, centres: jax.Array, num_neighbours: int = 5, sigma: float = 5.0
) -> jax.Array:
    """Zhang et al.'s soft targets: each value's ``num_neighbours`` nearest bin centres,
    weighted by a Gaussian of the distance (``sigma``), normalized to sum to 1.

    Args:
      values: ``[..., K]`` points (ab colours, ``K = 2``).
      centres: ``[Q, K]`` bin centres.
      num_neighbours: bins that get mass.
      sigma: the Gaussian's width, in the values' units.

    Returns:
      ``[..., Q]`` distributions.
    """
    squared = jnp.sum(jnp.square(values[..., None, :] - centres), axis=-1)  # [..., Q]
    nearest, index = jax.lax.top_k(-squared, num_neighbours)  # [..., n]
    weights = jax.nn.softmax(nearest / (2.0 * sigma**2), axis=-1)  # exp(-d^2 / 2s^2), normed
    one_hot = jax.nn.one_hot(index, centres.shape[0], dtype=weights.dtype)  # [..., n, Q]
    return jnp.einsum("...n,...nq->...q", weights, one_hot)


def rebalancing_weights(
    distribution: jax.Array, centres: jax.Array, mix: float = 0.5, sigma: float = 5.0
) -> jax.Array:
    """Zhang et al.'s class-rebalancing weights of the bins: ``w ∝ ((1 - mix) p~ + mix /
    Q)^-1`` with ``p~`` the bins' empirical distribution smoothed by a Gaussian of width
    ``sigma`` over the bin centres, normalized so that ``E_p~[w] = 1`` (rare, saturated
    colours weigh more; the paper's ``lambda = 1/2``, ``sigma = 5``).

    Args:
      distribution: ``[Q]`` empirical bin frequencies (summing to 1).
      centres: ``[Q, K]`` bin centres.
      mix: ``lambda``, the weight of the uniform distribution.
      sigma: the smoothing width.

    Returns:
      ``[Q]`` weights.
    """
    squared = jnp.sum(jnp.square(centres[:, None] - centres[None]), axis=-1)  # [Q, Q]
    kernel = jnp.exp(-squared / (2.0 * sigma**2))
    smoothed = kernel @ distribution
    smoothed = smoothed / jnp.sum(smoothed)
    weights = 1.0 / ((1.0 - mix) * smoothed + mix / distribution.shape[0])
    return weights / jnp.sum(smoothed * weights)


def soft_cross_entropy(
    logits: jax.Array, targets: jax.Array, weights: jax.Array | None = None
) -> jax.Array:
    """Mean over rows of ``w_row * -sum_q targets_q log softmax(logits)_q``.

    Args:
      logits: ``[..., Q]``.
      targets: ``[..., Q]`` distributions.
      weights: ``[...]`` per-row weights (None: 1).
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    per_row = -jnp.sum(targets * log_probs, axis=-1)
    if weights is not None:
        per_row = weights * per_row
    return jnp.mean(per_row)
