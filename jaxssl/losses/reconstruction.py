"""Reconstruction losses of masked image modeling: pixels (MAE) and features (I-JEPA)."""

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


def layer_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Standardization over the last axis without scale or bias: I-JEPA's
    ``F.layer_norm(h, (h.size(-1),))`` of the target features (biased variance, eps 1e-5)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.var(x, axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps)


def smooth_l1(x: jax.Array, beta: float = 1.0) -> jax.Array:
    """Elementwise Huber-type ``smooth_l1_loss`` of a difference (PyTorch's, ``beta`` 1)."""
    a = jnp.abs(x)
    return jnp.where(a < beta, 0.5 * x * x / beta, a - 0.5 * beta)


def masked_feature_regression(
    predictions: jax.Array, targets: jax.Array, valid: jax.Array, kind: str = "smooth_l1"
) -> jax.Array:
    r"""I-JEPA's loss: predicted against target features at the target tokens, mean over the
    valid tokens and the feature axis.

    .. math::
      \mathcal{L} = \frac{1}{D \, |V|} \sum_{t \in V} \sum_{d} \rho(\hat{s}_{td} - s_{td})

    with :math:`\rho` the smooth-L1 of the reference code (``F.smooth_l1_loss``, beta 1;
    the paper writes an L2 distance) or the square (``kind="l2"``). Padding tokens (``valid``
    False) count for nothing; with no padding this is the reference's mean over all elements.

    Args:
      predictions: ``[..., T, D]``.
      targets: ``[..., T, D]`` (layer-normed target-encoder features; no gradient wanted: the
        caller stops it).
      valid: ``[..., T]`` bool.
      kind: ``"smooth_l1"`` (reference code) or ``"l2"`` (paper's text).
    """
    if kind not in ("smooth_l1", "l2"):
        raise ValueError(f"Unknown feature loss {kind!r}; valid: 'smooth_l1', 'l2'.")
    diff = predictions.astype(jnp.float32) - targets.astype(jnp.float32)
    per_element = smooth_l1(diff) if kind == "smooth_l1" else jnp.square(diff)
    weights = valid.astype(jnp.float32)[..., None]  # [..., T, 1]
    count = jnp.maximum(jnp.sum(weights) * diff.shape[-1], 1.0)
    return jnp.sum(per_element * weights) / count


def weighted_pixel_mse(predictions: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
    r"""Squared error per pixel (mean over channels), averaged with per-pixel weights over the
    global batch: the denoising autoencoder's loss (weights 1 everywhere, or more on the
    corrupted pixels) and the context encoder's (weights 1 on the removed region, 0 elsewhere).

    .. math::
      \mathcal{L} = \frac{\sum_{b, i, j} w_{bij} \frac{1}{C} \lVert \hat{x}_{bij} - x_{bij}
      \rVert^2}{\sum_{b, i, j} w_{bij}}

    Args:
      predictions: ``[B, H, W, C]``.
      targets: ``[B, H, W, C]``.
      weights: ``[B, H, W]`` non-negative, not all zero.
    """
    per_pixel = jnp.mean(jnp.square(predictions - targets), axis=-1)  # [B, H, W]
    return jnp.sum(weights * per_pixel) / jnp.sum(weights)
