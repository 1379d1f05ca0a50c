"""A bias-free 2-D convolution with a choice of lowering.

``implementation="native"`` is ``lax.conv_general_dilated``: the right choice on TPU and GPU.
``implementation="im2col"`` gathers the k*k shifted windows into the channel axis and does one
matrix product. ``implementation="auto"`` (the default) is native everywhere except on the CPU
backend for convolutions whose output is at most ``AUTO_IM2COL_MAX_OUTPUT`` pixels on a side,
where it is im2col. All share the parameter layout of ``flax.linen.Conv``
(``kernel: [kh, kw, cin, cout]``) and the same symmetric ``k // 2`` zero padding, so
checkpoints are interchangeable and outputs agree to rounding.

Why "auto" switches on the output size: XLA:CPU's convolution emitter (jaxlib 0.10, YNNPACK's
convolution fusion off, see ``jaxssl/platform.py``) is pathologically slow on maps of 2x2
outputs or fewer, while im2col is slower than it on every larger map. Forward + backward, batch
512, float32, on a 2-core x86 host (``tools/bench_conv.py``):

  ======================  ========  =======
  3x3 conv, input -> out  native    im2col
  ======================  ========  =======
  2px -> 2px, 256 -> 256    701 ms    43 ms
  3px -> 2px, 128 -> 256    228 ms    21 ms
  4px -> 2px, 256 -> 256    544 ms    43 ms
  3px -> 3px, 256 -> 256     90 ms   106 ms
  4px -> 4px, 256 -> 256    113 ms   212 ms
  20px -> 20px, 32 -> 32    177 ms   354 ms
  ======================  ========  =======

A ResNet's last stage reaches 2x2 maps from 16 px inputs or less (multi-crop local views,
EMP-SSL patches, low-resolution CPU presets).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "native", "im2col")
# "auto" uses im2col on the CPU backend when both output sides are at most this (see above).
AUTO_IM2COL_MAX_OUTPUT = 2


def resolve_implementation(
    implementation: str, output_hw: tuple[int, int], backend: str | None = None
) -> str:
    """The lowering ``"auto"`` stands for at this output size: ``"native"`` or ``"im2col"``.

    Args:
      implementation: one of ``IMPLEMENTATIONS``.
      output_hw: spatial size of the convolution's output.
      backend: JAX backend name; ``jax.default_backend()`` when None.

    Returns:
      ``implementation`` itself unless it is ``"auto"``.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"Unknown conv implementation {implementation!r}; valid: {', '.join(IMPLEMENTATIONS)}."
        )
    if implementation != "auto":
        return implementation
    backend = jax.default_backend() if backend is None else backend
    small = max(output_hw) <= AUTO_IM2COL_MAX_OUTPUT
    return "im2col" if backend == "cpu" and small else "native"


def output_size(size: int, kernel: int, strides: int) -> int:
    """Output side of a ``kernel``-wide convolution with ``kernel // 2`` padding."""
    return (size + 2 * (kernel // 2) - kernel) // strides + 1


def _im2col(x: jax.Array, kernel_size: tuple[int, int], strides: int) -> jax.Array:
    """Windows of ``x`` ``[B, H, W, C]`` stacked on channels: ``[B, Ho, Wo, kh*kw*C]``."""
    kh, kw = kernel_size
    if (kh, kw) == (1, 1):
        return x[:, ::strides, ::strides, :]
    ph, pw = kh // 2, kw // 2
    _, h, w, _ = x.shape
    ho, wo = output_size(h, kh, strides), output_size(w, kw, strides)
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
      implementation: ``"auto"``, ``"native"`` or ``"im2col"`` (see the module docstring).
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: int = 1
    dtype: Any = jnp.float32
    implementation: str = "auto"
    kernel_init: Any = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param(
            "kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), jnp.float32
        )
        x = x.astype(self.dtype)
        kernel = kernel.astype(self.dtype)
        output_hw = (
            output_size(x.shape[1], kh, self.strides),
            output_size(x.shape[2], kw, self.strides),
        )
        implementation = resolve_implementation(self.implementation, output_hw)
        if implementation == "native":
            return jax.lax.conv_general_dilated(
                x,
                kernel,
                window_strides=(self.strides, self.strides),
                padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                preferred_element_type=jnp.float32,
            ).astype(self.dtype)
        patches = _im2col(x, (kh, kw), self.strides)  # [B, Ho, Wo, kh*kw*C]
        # Accumulate in float32 even for bf16 operands (AMX tiles do this natively).
        y = jax.lax.dot_general(
            patches,
            kernel.reshape(-1, self.features),
            (((3,), (0,)), ((), ())),
            preferred_element_type=jnp.float32,
        )
        return y.astype(self.dtype)  # [B, Ho, Wo, features]
