"""ResNet backbones (Flax Linen) returning pooled features ``[B, D]``.

CIFAR stem: one 3x3 stride-1 convolution and no max-pool (He et al. 2016, Sec. 4.2, as used by
SimCLR's CIFAR experiments and solo-learn); ImageNet stem: 7x7 stride-2 convolution + 3x3
max-pool. ``width`` is the channel count of the first stage (64 in the paper).
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.models import conv as conv_lib

ModuleDef = Any


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut.

    ``out_filters`` > 0 sets the output channels (the second convolution's and the
    shortcut's) apart from ``filters`` (the first convolution's): ``ResNet.last_block_width``.
    """

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    strides: int = 1
    out_filters: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        residual = x
        y = self.conv(self.filters, (3, 3), self.strides, name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        out_filters = self.out_filters or self.filters
        y = self.conv(out_filters, (3, 3), 1, name="conv2")(y)
        # Zero-init the last BN scale so each block starts as the identity (Goyal et al. 2017).
        y = self.norm(name="bn2", scale_init=nn.initializers.zeros)(y)
        if residual.shape != y.shape:
            residual = self.conv(out_filters, (1, 1), self.strides, name="proj_conv")(residual)
            residual = self.norm(name="proj_bn")(residual)
        return nn.relu(residual + y)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck with 4x channel expansion (``out_filters`` > 0: the last
    1x1 convolution's and the shortcut's output channels instead of ``4 * filters``)."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    strides: int = 1
    out_filters: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        residual = x
        y = nn.relu(self.norm(name="bn1")(self.conv(self.filters, (1, 1), 1, name="conv1")(x)))
        y = nn.relu(
            self.norm(name="bn2")(self.conv(self.filters, (3, 3), self.strides, name="conv2")(y))
        )
        out_filters = self.out_filters or self.filters * 4
        y = self.conv(out_filters, (1, 1), 1, name="conv3")(y)
        y = self.norm(name="bn3", scale_init=nn.initializers.zeros)(y)
        if residual.shape != y.shape:
            residual = self.conv(out_filters, (1, 1), self.strides, name="proj_conv")(residual)
            residual = self.norm(name="proj_bn")(residual)
        return nn.relu(residual + y)


class ResNet(nn.Module):
    """ResNet returning globally average-pooled features.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
      block_cls: ``BasicBlock`` or ``BottleneckBlock``.
      width: channels of the first stage; stage ``i`` has ``width * 2**i``.
      stem: ``"cifar"`` (3x3/1, no pool) or ``"imagenet"`` (7x7/2 + max-pool).
      dtype: computation dtype (parameters stay float32).
      conv_impl: ``"auto"``, ``"native"`` or ``"im2col"`` (``jaxssl.models.conv``).
      bn_momentum: BatchNorm running-average momentum.
      last_block_width: > 0: output channels of the last block of the last stage, so the
        feature dimension, instead of the stage's (Bordes et al. 2023, "expand or narrow" the
        backbone's last block). Only that block's output changes: its first convolution (a
        bottleneck's first two) keeps the stage width, and a width that differs from the
        block's input gets a 1x1 projection shortcut. 0: the standard network.
    """

    stage_sizes: Sequence[int]
    block_cls: Callable[..., nn.Module]
    width: int = 64
    stem: str = "cifar"
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    bn_momentum: float = 0.9
    last_block_width: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True, maps: bool = False) -> jax.Array:
        """``[B, D]`` pooled features; with ``maps`` the last stage's ``[B, h, w, D]`` feature
        maps (float32) before the pooling, for local losses (VICRegL)."""
        chex.assert_rank(x, 4)  # [B, H, W, 3]
        conv = functools.partial(conv_lib.Conv, dtype=self.dtype, implementation=self.conv_impl)
        # Under jit over a ("data",) mesh the batch axis is global, so these statistics are
        # synchronized across devices: SimCLR's "global BN" with no axis_name.
        norm = functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=1e-5,
            dtype=self.dtype,
        )
        x = x.astype(self.dtype)
        if self.stem == "cifar":
            x = conv(self.width, (3, 3), 1, name="stem_conv")(x)
            x = nn.relu(norm(name="stem_bn")(x))
        elif self.stem == "imagenet":
            x = conv(self.width, (7, 7), 2, name="stem_conv")(x)
            x = nn.relu(norm(name="stem_bn")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            raise ValueError(f"Unknown stem {self.stem!r}; valid: 'cifar', 'imagenet'.")
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                strides = 2 if i > 0 and j == 0 else 1
                last = i == len(self.stage_sizes) - 1 and j == num_blocks - 1
                x = self.block_cls(
                    self.width * 2**i,
                    conv=conv,
                    norm=norm,
                    strides=strides,
                    out_filters=self.last_block_width if last else 0,
                    name=f"stage{i + 1}_block{j + 1}",
                )(x)
        # Pool in float32: the features feed the loss, the probe and kNN.
        if maps:
            return x.astype(jnp.float32)  # [B, h, w, D]
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # [B, D]


BACKBONES = {
    "resnet18": functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock),
    "resnet34": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock),
    "resnet50": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock),
}


def feature_dim(name: str, width: int, last_block_width: int = 0) -> int:
    """Dimension of the pooled features of backbone ``name`` at first-stage ``width``."""
    if last_block_width > 0:
        return last_block_width
    expansion = 4 if name == "resnet50" else 1
    return width * 8 * expansion


def make_backbone(name: str, **kwargs) -> nn.Module:
    """Backbone by name from ``BACKBONES``; raises with the valid names."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; valid: {sorted(BACKBONES)}.")
    return BACKBONES[name](**kwargs)
