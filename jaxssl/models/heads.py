"""Projector and predictor MLP heads."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


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
    """

    hidden_dim: int = 2048
    output_dim: int = 128
    num_layers: int = 2
    last_bn: bool = False
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9

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
        x = nn.Dense(self.output_dim, dtype=self.dtype, name=f"dense{self.num_layers}")(x)
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
