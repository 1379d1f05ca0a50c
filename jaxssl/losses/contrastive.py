"""Contrastive losses over the global batch."""

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
    logits, positives = nt_xent_logits(z1, z2, temperature)
    log_probs = jax.nn.log_softmax(logits, axis=-1)  # [2N, 2N]
    positive_log_probs = jnp.take_along_axis(log_probs, positives[:, None], axis=-1)[:, 0]  # [2N]
    return -jnp.mean(positive_log_probs)


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
