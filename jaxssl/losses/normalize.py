"""L2 normalization: the one implementation every loss, head and evaluator uses."""

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    r"""``x`` scaled to unit L2 norm along ``axis``, in float32.

    .. math::
      \hat x = x \,/\, \max(\|x\|_2, \varepsilon)

    computed as ``x * rsqrt(max(|x|^2, eps^2))``, as in the BYOL reference: a zero vector stays
    zero (cosine 0) instead of becoming NaN. Always float32, whatever the input dtype: bf16 norms
    of 128-d vectors lose about two digits, which a temperature of 0.1 magnifies.

    Args:
      x: any array.
      axis: the axis normalized (``-1``: rows of ``[N, D]``; ``0``: columns of a ``[D, K]``
        kernel).
      eps: the smallest norm divided by.

    Returns:
      A float32 array of ``x``'s shape.
    """
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))
