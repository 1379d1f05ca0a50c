"""A bias-free 2-D convolution with a choice of lowering.

``implementation="native"`` is ``lax.conv_general_dilated``: the right choice on TPU and GPU.
``implementation="im2col"`` gathers the k*k shifted windows into the channel axis and does one
matrix product. XLA:CPU runs its matmuls (and bf16 matmuls with float32 accumulation on AMX)
far faster than its convolutions, so this is the fast path on CPU hosts. Both share the
parameter layout of ``flax.linen.Conv`` (``kernel: [kh, kw, cin, cout]``) and the same
symmetric ``k // 2`` zero padding, so checkpoints are interchangeable and outputs agree to
rounding.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _im2col(x: jax.Array, kernel_size: tuple[int, int], strides: int) -> jax.Array:
    """Windows of ``x`` ``[B, H, W, C]`` stacked on channels: ``[B, Ho, Wo, kh*kw*C]``."""
    kh, kw = kernel_size
    if (kh, kw) == (1, 1):
        return x[:, ::strides, ::strides, :]
    ph, pw = kh // 2, kw // 2
    _, h, w, _ = x.shape
    ho = (h + 2 * ph - kh) // strides + 1
    wo = (w + 2 * pw - kw) // strides + 1
    xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    # (dy, dx) outer, channel inner: matches kernel.reshape(kh * kw * C, cout).
    windows = [
        xp[
            :,
            dy : dy + strides * (ho - 1) + 1 : strides,
            dx : dx + strides * (wo - 1) + 1 : strides,
            :,
        ]
        for dy in range(kh)
        for dx in range(kw)
    ]
    return jnp.concatenate(windows, axis=-1)


class Conv(nn.Module):
    """Bias-free convolution with ``k // 2`` padding, as in ResNets.

    Attributes:
      features: output channels.
      kernel_size: ``(kh, kw)``.
      strides: spatial stride (same on both axes).
      dtype: computation dtype; the kernel parameter stays float32.
      implementation: ``"native"`` or ``"im2col"``.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: int = 1
    dtype: Any = jnp.float32
    implementation: str = "native"
    kernel_init: Any = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param(
            "kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), jnp.float32
        )
        x = x.astype(self.dtype)
        kernel = kernel.astype(self.dtype)
        if self.implementation == "native":
            return jax.lax.conv_general_dilated(
                x,
                kernel,
                window_strides=(self.strides, self.strides),
                padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                preferred_element_type=jnp.float32,
            ).astype(self.dtype)
        if self.implementation == "im2col":
            patches = _im2col(x, (kh, kw), self.strides)  # [B, Ho, Wo, kh*kw*C]
            # Accumulate in float32 even for bf16 operands (AMX tiles do this natively).
            y = jax.lax.dot_general(
                patches,
                kernel.reshape(-1, self.features),
                (((3,), (0,)), ((), ())),
                preferred_element_type=jnp.float32,
            )
            return y.astype(self.dtype)  # [B, Ho, Wo, features]
        raise ValueError(
            f"Unknown conv implementation {self.implementation!r}; valid: 'native', 'im2col'."
        )
