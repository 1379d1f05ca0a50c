"""MoCo's InfoNCE losses and its FIFO key queue (pure jax.numpy).

References:
  He et al., Momentum Contrast for Unsupervised Visual Representation Learning, CVPR 2020.
  https://arxiv.org/abs/1911.05722
  Chen et al., Improved Baselines with Momentum Contrastive Learning (MoCo v2), 2020.
  https://arxiv.org/abs/2003.04297
  Chen, Xie & He, An Empirical Study of Training Self-Supervised Vision Transformers
  (MoCo v3), ICCV 2021. https://arxiv.org/abs/2104.02057
"""

import jax
import jax.numpy as jnp


def unit(x: jax.Array) -> jax.Array:
    """Rows scaled to unit L2 norm, in float32."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


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
    """
    q = unit(q)
    k = jax.lax.stop_gradient(unit(k))
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
    """
    q = unit(q)
    k = jax.lax.stop_gradient(unit(k))
    logits = q @ k.T / temperature  # [N, N]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(logits)) * (2 * temperature)


def init_queue(key: jax.Array, size: int, dim: int) -> jax.Array:
    """``[size, dim]`` random unit vectors: the reference code's initial queue."""
    return unit(jax.random.normal(key, (size, dim), jnp.float32))


def enqueue(queue: jax.Array, pointer: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Writes ``keys`` ``[N, D]`` (normalized here) at row ``pointer``; FIFO over ``K`` rows.

    ``K`` must be a multiple of ``N`` (checked by the caller), so a batch never wraps.
    Returns ``(queue, (pointer + N) % K)``.
    """
    keys = jax.lax.stop_gradient(unit(keys)).astype(queue.dtype)
    queue = jax.lax.dynamic_update_slice(queue, keys, (pointer, jnp.zeros((), pointer.dtype)))
    return queue, (pointer + keys.shape[0]) % queue.shape[0]
