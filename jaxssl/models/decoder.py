"""Convolutional decoders from a ResNet's last feature maps back to pixels, for the
reconstruction pretext tasks (denoising autoencoder, context encoder).

References:
  Pathak et al., Context Encoders: Feature Learning by Inpainting, CVPR 2016.
  https://arxiv.org/abs/1604.07379
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl import errors
from jaxssl.models import resnet


def require_resnet(backbone: nn.Module, method: str, backbone_name: str) -> None:
    """Raises unless ``backbone`` is a ResNet, whose last feature maps a decoder reads."""
    if not isinstance(backbone, resnet.ResNet):
        raise errors.ConfigError(
            f"{method}: the decoder reads a ResNet's feature maps; model.backbone must be one "
            f"of {sorted(resnet.BACKBONES)}, not {backbone_name!r}."
        )


class ChannelwiseDense(nn.Module):
    """Pathak et al.'s channel-wise fully connected layer: every channel's ``h x w`` map is
    mapped to a new ``h x w`` map by its own dense layer (no parameters shared across
    channels, none connecting channels), then a 1x1 convolution mixes the channels. It lets
    every output position see the whole image at ``C (hw)^2`` parameters instead of a fully
    connected layer's ``(C hw)^2``."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(
                1.0, "fan_in", "truncated_normal", in_axis=1, out_axis=2
            ),
            (c, h * w, h * w),
        )
        bias = self.param("bias", nn.initializers.zeros, (c,))
        y = jnp.einsum("bpc,cpq->bqc", x.reshape(b, h * w, c).astype(self.dtype), kernel)
        y = (y + bias).reshape(b, h, w, c)
        return nn.Conv(c, (1, 1), dtype=self.dtype, name="mix")(nn.relu(y))


class ConvDecoder(nn.Module):
    """Feature maps ``[B, h, w, C]`` -> ``[B, h * 2^k, w * 2^k, output_channels]``: ``k =
    len(channels)`` up-convolutions (4x4, stride 2, then BatchNorm and ReLU, DCGAN's
    generator blocks as in Pathak et al.'s decoder), then a 3x3 convolution to the output.

    Attributes:
      channels: output channels of each up-convolution.
      output_channels: channels of the result (3 for pixels).
      dtype: computation dtype.
      bn_momentum: BatchNorm running-average momentum.
    """

    channels: Sequence[int]
    output_channels: int = 3
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        for i, channels in enumerate(self.channels):
            x = nn.ConvTranspose(
                channels, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype,
                name=f"upconv{i + 1}",
            )(x)  # fmt: skip
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                dtype=self.dtype,
                name=f"bn{i + 1}",
            )(x)
            x = nn.relu(x)
        x = nn.Conv(self.output_channels, (3, 3), dtype=self.dtype, name="out")(x)
        return x.astype(jnp.float32)


class Autoencoder(nn.Module):
    """A ResNet encoder, an optional channel-wise bottleneck and a ``ConvDecoder``.

    In train mode ``__call__`` returns ``(features [B, D], reconstructions [B, S, S, 3])``:
    the pooled features of the (corrupted) input and the decoder's output from the last
    feature maps. In inference mode (the evaluators' call) it returns ``(features,
    features)`` of the input images, as the masked-modeling models do.

    Attributes:
      backbone: a ResNet (``maps=True`` gives its last feature maps).
      decoder: the ``ConvDecoder``.
      bottleneck: ``ChannelwiseDense`` (the context encoder) or None.
    """

    backbone: nn.Module
    decoder: nn.Module
    bottleneck: nn.Module | None = None

    def __call__(self, images: jax.Array, train: bool = True):
        if not train:
            features = self.backbone(images, train=False)
            return features, features
        maps = self.backbone(images, train=True, maps=True)  # [B, h, w, D]
        features = jnp.mean(maps, axis=(1, 2))
        if self.bottleneck is not None:
            maps = self.bottleneck(maps)
        return features, self.decoder(maps, train=True)

    def embed(self, images: jax.Array) -> jax.Array:
        """Backbone features in inference mode, ``[B, D]``."""
        return self.backbone(images, train=False)
