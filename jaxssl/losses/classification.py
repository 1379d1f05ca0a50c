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
