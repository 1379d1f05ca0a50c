"""Token masks for masked image modeling, as fixed-shape index arrays.

A mask is a pair of index arrays into the ``N`` patch tokens of an image (row-major over the
patch grid): the tokens the encoder keeps, ``[B, K]``, and the ones it must predict, ``[B, M]``.
``K`` and ``M`` depend only on ``N`` and the configuration, never on the draw, so a step that
masks compiles once. Draws are functions of a key: the train step passes its own key
(``fold_in(run key, step)``), so a resumed run masks exactly as the uninterrupted one.
"""

import jax
import jax.numpy as jnp


def num_kept(num_tokens: int, mask_ratio: float) -> int:
    """Tokens the encoder sees under ``mask_ratio``: ``int(N * (1 - ratio))``, as MAE's code."""
    kept = int(num_tokens * (1.0 - mask_ratio))
    if not 0 < kept < num_tokens:
        raise ValueError(
            f"mask_ratio {mask_ratio} keeps {kept} of {num_tokens} tokens; it must keep at least "
            "one and mask at least one."
        )
    return kept


def random_masking(
    key: jax.Array, batch_size: int, num_tokens: int, mask_ratio: float
) -> tuple[jax.Array, jax.Array]:
    """MAE's per-image uniform random masking (He et al. 2022, ``random_masking``).

    Each image's tokens are ranked by i.i.d. uniform noise; the first ``num_kept`` are kept.

    Returns:
      ``(keep [B, K], masked [B, N - K])`` int32 token indices; together a permutation of
      ``0..N-1`` per image.
    """
    kept = num_kept(num_tokens, mask_ratio)
    noise = jax.random.uniform(key, (batch_size, num_tokens))
    order = jnp.argsort(noise, axis=1).astype(jnp.int32)  # [B, N]
    return order[:, :kept], order[:, kept:]
