"""Reconstruction losses of masked image modeling."""

import jax
import jax.numpy as jnp


def standardize_patches(patches: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Each patch's pixels minus their mean, over ``sqrt(var + eps)``: MAE's ``norm_pix_loss``.

    The variance is the unbiased one (``ddof=1``), as ``torch.Tensor.var`` in MAE's code.

    Args:
      patches: ``[..., P]`` flattened patches.
    """
    mean = jnp.mean(patches, axis=-1, keepdims=True)
    var = jnp.var(patches, axis=-1, keepdims=True, ddof=1)
    return (patches - mean) / jnp.sqrt(var + eps)


def masked_patch_mse(
    predictions: jax.Array, targets: jax.Array, normalize_targets: bool = True
) -> jax.Array:
    r"""MAE's loss: mean squared error per masked patch, averaged over the masked patches.

    .. math::
      \mathcal{L} = \frac{1}{B M} \sum_{b, m} \frac{1}{P} \lVert \hat{x}_{bm} - x_{bm} \rVert^2

    Only the masked patches are passed: MAE's ``(loss * mask).sum() / mask.sum()`` with every
    image masking the same number ``M`` of patches is this mean. The mean is over the global
    batch.

    Args:
      predictions: ``[B, M, P]`` predicted pixels of the masked patches.
      targets: ``[B, M, P]`` their pixels (the normalized input images, patchified).
      normalize_targets: standardize each target patch first (``norm_pix_loss``; He et al.
        2022, Table 1d: better representations).
    """
    if normalize_targets:
        targets = standardize_patches(targets)
    return jnp.mean(jnp.square(predictions - targets))
