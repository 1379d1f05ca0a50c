"""Projector and predictor MLP heads, and DINO's head."""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.losses import normalize


class MLP(nn.Module):
    """Linear -> BN -> ReLU blocks, then a final linear layer (optionally followed by BN).

    SimCLR's projector is ``MLP(hidden_dim=2048, output_dim=128, num_layers=2)``.

    Attributes:
      hidden_dim: width of the hidden layers.
      output_dim: width of the output.
      num_layers: number of linear layers (>= 1).
      last_bn: BatchNorm (without affine parameters) after the last layer, as in SimCLR v2 /
        Barlow Twins projectors.
      dtype: computation dtype.
      bn_momentum: BatchNorm running-average momentum.
      output_init_scale: factor on the last layer's initial kernel (LeCun normal). Small values
        start the outputs near zero, the "small initialization" of Simon et al. (ICML 2023);
        the hidden layers' scale would not matter, BatchNorm follows them.
    """

    hidden_dim: int = 2048
    output_dim: int = 128
    num_layers: int = 2
    last_bn: bool = False
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    output_init_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        for i in range(self.num_layers - 1):
            x = nn.Dense(self.hidden_dim, use_bias=False, dtype=self.dtype, name=f"dense{i + 1}")(x)
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                dtype=self.dtype,
                name=f"bn{i + 1}",
            )(x)
            x = nn.relu(x)
        kernel_init = nn.initializers.variance_scaling(
            self.output_init_scale**2, "fan_in", "truncated_normal"
        )
        x = nn.Dense(
            self.output_dim,
            dtype=self.dtype,
            kernel_init=kernel_init,
            name=f"dense{self.num_layers}",
        )(x)
        if self.last_bn:
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                use_scale=False,
                use_bias=False,
                dtype=self.dtype,
                name="bn_out",
            )(x)
        return x.astype(jnp.float32)


class WeightNormDense(nn.Module):
    """A bias-free linear layer with weight normalization: ``x @ (v / ||v||) * g``.

    Each output unit's weight vector (a column of the kernel ``v``, ``[D, K]``) is divided by
    its L2 norm, so only its direction matters; ``g`` is a learned per-unit scale, or fixed to
    1 when ``learn_scale`` is off (DINO's ``norm_last_layer``). Salimans & Kingma 2016.

    Attributes:
      features: number of output units ``K``.
      learn_scale: learn ``g`` (param ``scale``, initialized to 1) instead of fixing it to 1.
      dtype: computation dtype of the matmul; the normalization is done in float32.
    """

    features: int
    learn_scale: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # U(-1/sqrt(D), 1/sqrt(D)), the scale of the reference's PyTorch nn.Linear default. The
        # direction does not depend on it, but the step size of the direction does (the
        # gradient of v / ||v|| is proportional to 1 / ||v||).
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
            (x.shape[-1], self.features),
            jnp.float32,
        )  # [D, K]
        direction = normalize.l2_normalize(kernel, axis=0)  # [D, K], unit columns
        if self.learn_scale:
            direction = direction * self.param("scale", nn.initializers.ones, (self.features,))
        return jnp.dot(x.astype(self.dtype), direction.astype(self.dtype)).astype(jnp.float32)


class DINOHead(nn.Module):
    """DINO's projection head: MLP -> L2 normalization -> weight-normalized linear layer.

    ``num_layers`` linear layers (``hidden_dim`` wide, GELU between them, BatchNorm before the
    GELU only with ``use_bn``) map features to a ``bottleneck_dim`` embedding, which is
    L2-normalized and sent through a ``WeightNormDense`` of ``output_dim`` units. With
    ``norm_last_layer`` (the default) the output units are unit vectors and every logit lies
    in ``[-1, 1]``. The MLP is initialized as in the reference (truncated normal, std 0.02,
    zero biases).

    DINO uses ``output_dim=65536`` on ImageNet; on CIFAR-10 solo-learn uses 4096.

    Attributes:
      output_dim: ``K``, the width of the output (DINO's ``out_dim``).
      hidden_dim: width of the hidden layers.
      bottleneck_dim: width of the normalized embedding.
      num_layers: linear layers of the MLP (>= 1).
      use_bn: BatchNorm after each hidden linear layer (DINO: off for ViTs).
      norm_last_layer: fix the weight-norm scale ``g`` to 1 (DINO's ``norm_last_layer``);
        otherwise it is learned.
      dtype: computation dtype.
      bn_momentum: BatchNorm running-average momentum (with ``use_bn``).

    References:
      Caron et al., Emerging Properties in Self-Supervised Vision Transformers (DINO), ICCV
      2021, Sec. 3.1 and Appendix. https://arxiv.org/abs/2104.14294
    """

    output_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    num_layers: int = 3
    use_bn: bool = False
    norm_last_layer: bool = True
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        dense = functools.partial(
            nn.Dense,
            dtype=self.dtype,
            kernel_init=nn.initializers.truncated_normal(0.02),
            bias_init=nn.initializers.zeros,
        )
        for i in range(self.num_layers - 1):
            x = dense(self.hidden_dim, name=f"dense{i + 1}")(x)
            if self.use_bn:
                x = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=self.bn_momentum,
                    dtype=self.dtype,
                    name=f"bn{i + 1}",
                )(x)
            x = nn.gelu(x, approximate=False)
        x = dense(self.bottleneck_dim, name=f"dense{self.num_layers}")(x)  # [B, bottleneck]
        # F.normalize's eps: a zero embedding maps to zero rather than NaN.
        x = normalize.l2_normalize(x)  # float32
        return WeightNormDense(
            self.output_dim,
            learn_scale=not self.norm_last_layer,
            dtype=self.dtype,
            name="last_layer",
        )(x)  # [B, K]
