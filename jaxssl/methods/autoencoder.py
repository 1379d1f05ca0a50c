"""Reconstruction pretext tasks: the denoising autoencoder and the context encoder.

Both corrupt each view, encode it with the backbone, decode the backbone's last feature maps
back to pixels (`jaxssl.models.decoder`) and score the reconstruction of the clean,
normalized view with a per-pixel weighted squared error
(`jaxssl.losses.reconstruction.weighted_pixel_mse`). ``method.corruption`` selects the task:

* ``"drop_pixels"`` (denoising autoencoder, Vincent et al. 2008): masking noise, a random
  ``method.corruption_rate`` of the pixels set to 0; every pixel is reconstructed, the
  dropped ones weighted ``method.corrupted_weight`` times the others (1: the 2008 paper's
  plain loss; > 1: Vincent et al. 2010's "emphasized" denoising).
* ``"center_block"`` / ``"random_block"`` (context encoder, Pathak et al. 2016): a square of
  side ``method.block_fraction`` of the image (1/2 in the paper) filled with the mean colour,
  in the centre or at a random place; only the removed region is scored (the paper's
  reconstruction loss; its 7-px overlap weighted 10x and the adversarial loss are not
  implemented), and the encoder's maps pass a channel-wise fully connected bottleneck before
  the decoder, as the paper's.

The encoder is a ResNet (its last feature maps feed the decoder); evaluation embeds clean whole
images with it, like every method's backbone.

References:
  Vincent, Larochelle, Bengio & Manzagol, Extracting and Composing Robust Features with
  Denoising Autoencoders, ICML 2008.
  Vincent et al., Stacked Denoising Autoencoders, JMLR 2010.
  Pathak, Krahenbuhl, Donahue, Darrell & Efros, Context Encoders: Feature Learning by
  Inpainting, CVPR 2016. https://arxiv.org/abs/1604.07379
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import errors
from jaxssl.data import pretext
from jaxssl.losses import reconstruction
from jaxssl.methods import base
from jaxssl.models import decoder, ssl_model

CORRUPTIONS = ("drop_pixels", "center_block", "random_block")


def build_model(config: ml_collections.ConfigDict) -> decoder.Autoencoder:
    """The ResNet of ``config.model``, a decoder of ``config.method.decoder_channels`` (one
    up-convolution per halving of the ResNet: 3 for the CIFAR stem) and, for the block
    corruptions, the channel-wise bottleneck."""
    backbone = ssl_model.make_backbone(config.model)
    decoder.require_resnet(backbone, "The autoencoders", config.model.backbone)
    if config.method.corruption not in CORRUPTIONS:
        raise errors.ConfigError(
            f"Unknown method.corruption {config.method.corruption!r}; valid: {CORRUPTIONS}."
        )
    dtype = jnp.dtype(config.model.dtype)
    bottleneck = None
    if config.method.corruption != "drop_pixels":
        bottleneck = decoder.ChannelwiseDense(dtype=dtype)
    return decoder.Autoencoder(
        backbone=backbone,
        decoder=decoder.ConvDecoder(
            tuple(config.method.decoder_channels), 3, dtype, config.model.bn_momentum
        ),
        bottleneck=bottleneck,
    )


def corrupt(
    key: jax.Array, images: jax.Array, config: ml_collections.ConfigDict
) -> tuple[jax.Array, jax.Array]:
    """``(corrupted images, per-pixel loss weights [N, H, W])`` of ``config.corruption``."""
    if config.corruption == "drop_pixels":
        corrupted, dropped = pretext.drop_pixels(key, images, config.corruption_rate)
        return corrupted, 1.0 + (config.corrupted_weight - 1.0) * dropped
    block_key = key if config.corruption == "random_block" else None
    return pretext.drop_block(block_key, images, config.block_fraction)


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """Reconstruction loss of a batch of corrupted views.

    Args:
      model: the ``decoder.Autoencoder``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, V, S, S, 3]`` normalized views; each is corrupted and
        reconstructed on its own.
      method_state: none (``{}``); returned as is.
      config: ``config.method``: ``corruption``, ``corruption_rate``, ``corrupted_weight``,
        ``block_fraction``.
      rng: the step's key: the corruption is drawn from it.
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; the features are those of the corrupted views.
    """
    del step
    views = batch["global"]
    b, v = views.shape[:2]
    images = views.reshape((b * v,) + views.shape[2:])  # [B*V, S, S, 3]
    corrupted, weights = corrupt(rng, images, config)
    (features, reconstructions), updates = model.apply(
        variables, corrupted, train=True, mutable=["batch_stats"]
    )
    targets = jax.lax.stop_gradient(images)
    loss = reconstruction.weighted_pixel_mse(reconstructions, targets, weights)
    return loss, base.LossAux(
        features.reshape(b, v, -1), updates.get("batch_stats", {}), method_state, {}
    )


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn)
