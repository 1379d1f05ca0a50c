"""Colorization: the network sees an image's lightness and predicts its colours.

Each view is converted to CIE Lab (`jaxssl.data.lab`); the backbone reads the L channel alone
(``(L - 50) / 50``, repeated on its three input channels, in training and in evaluation
alike), and a decoder from its last feature maps (`jaxssl.models.decoder.ConvDecoder`)
predicts every pixel's ab colour. ``method.target``:

* ``"classification"`` (the default, Zhang et al.'s): a distribution over the in-gamut 10 x 10
  ab bins (`jaxssl.data.lab.ab_bin_centres`), trained with cross-entropy against soft targets
  (each pixel's 5 nearest bins, Gaussian sigma 5) and class rebalancing: each pixel weighted by
  its bin's ``((1 - lambda) p~ + lambda / Q)^-1`` (``lambda = 1/2``), ``p~`` the bins'
  frequencies smoothed by a sigma-5 Gaussian. The paper counts ``p~`` over ImageNet once; here
  it is a running average of the batches' soft targets (``method.distribution_momentum``),
  kept in the method state and starting uniform, so no pass over the data precedes training.
* ``"regression"``: the ab values (over 110) with squared error, the baseline the paper shows
  desaturates.

The paper predicts at a quarter of the input resolution; here the decoder returns the full
resolution. Exported or fine-tuned backbones (``jaxssl export``, the ``finetune`` evaluator)
read RGB images directly, not the lightness the pretraining showed them.

References:
  Zhang, Isola & Efros, Colorful Image Colorization, ECCV 2016.
  https://arxiv.org/abs/1603.08511 (code: richzhang/colorization)
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import errors
from jaxssl.data import lab
from jaxssl.losses import classification
from jaxssl.methods import base
from jaxssl.models import decoder, ssl_model

TARGETS = ("classification", "regression")
_AB_SCALE = 110.0  # |a|, |b| <= ~110 for sRGB colours


class Colorizer(nn.Module):
    """A ResNet on the lightness of normalized RGB images and a decoder of its feature maps.

    ``__call__`` in train mode: ``(features [B, D], outputs [B, S, S, Q or 2])``; in inference
    mode ``(features, features)`` (the evaluators' call).

    Attributes:
      backbone: a ResNet.
      decoder: the ``ConvDecoder`` to the bins' logits (or the two ab values).
      mean: the input normalization's per-channel mean (``config.data.mean``).
      std: its standard deviation.
    """

    backbone: nn.Module
    decoder: nn.Module
    mean: Sequence[float]
    std: Sequence[float]

    def to_lab(self, images: jax.Array) -> jax.Array:
        """Normalized RGB ``[B, S, S, 3]`` -> Lab ``[B, S, S, 3]``."""
        rgb = images * jnp.asarray(self.std) + jnp.asarray(self.mean)
        return lab.rgb_to_lab(rgb.astype(jnp.float32))

    def lightness(self, images: jax.Array) -> jax.Array:
        """The backbone's input: ``(L - 50) / 50`` on all three channels."""
        light = (self.to_lab(images)[..., :1] - 50.0) / 50.0
        return jnp.repeat(light, 3, axis=-1)

    def __call__(self, images: jax.Array, train: bool = True):
        inputs = self.lightness(images)
        if not train:
            features = self.backbone(inputs, train=False)
            return features, features
        maps = self.backbone(inputs, train=True, maps=True)  # [B, h, w, D]
        return jnp.mean(maps, axis=(1, 2)), self.decoder(maps, train=True)

    def embed(self, images: jax.Array) -> jax.Array:
        """Backbone features of the images' lightness in inference mode, ``[B, D]``."""
        return self.backbone(self.lightness(images), train=False)


def build_model(config: ml_collections.ConfigDict) -> Colorizer:
    """The ResNet of ``config.model`` and a decoder of ``config.method.decoder_channels`` to
    the in-gamut ab bins (or 2 values for ``method.target = "regression"``)."""
    backbone = ssl_model.make_backbone(config.model)
    decoder.require_resnet(backbone, "Colorization", config.model.backbone)
    if config.method.target not in TARGETS:
        raise errors.ConfigError(
            f"Unknown method.target {config.method.target!r}; valid: {TARGETS}."
        )
    outputs = 2 if config.method.target == "regression" else len(lab.ab_bin_centres())
    return Colorizer(
        backbone=backbone,
        decoder=decoder.ConvDecoder(
            tuple(config.method.decoder_channels),
            outputs,
            jnp.dtype(config.model.dtype),
            config.model.bn_momentum,
        ),
        mean=tuple(config.data.mean),
        std=tuple(config.data.std),
    )


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """``{"ab_distribution": [Q]}`` uniform: the running bin frequencies (classification)."""
    del model, variables, key
    if config.target != "classification":
        return {}
    num_bins = len(lab.ab_bin_centres())
    return {"ab_distribution": jnp.full((num_bins,), 1.0 / num_bins, jnp.float32)}


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """Colorization loss of a batch of views.

    Args:
      model: the ``Colorizer``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, V, S, S, 3]`` normalized RGB views.
      method_state: ``{"ab_distribution": [Q]}`` (classification) or ``{}``.
      config: ``config.method``: ``target``, ``rebalance_mix``, ``distribution_momentum``.
      rng: unused (the model is deterministic).
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)`` with the updated bin frequencies.
    """
    del rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    images = views.reshape((b * v,) + views.shape[2:])  # [N, S, S, 3]
    (features, outputs), updates = model.apply(
        variables, images, train=True, mutable=["batch_stats"]
    )
    ab = jax.lax.stop_gradient(model.to_lab(images)[..., 1:])  # [N, S, S, 2]
    if config.target == "regression":
        loss = jnp.mean(jnp.square(outputs - ab / _AB_SCALE))
        new_state = method_state
    else:
        centres = jnp.asarray(lab.ab_bin_centres())
        targets = classification.soft_encode(ab, centres)  # [N, S, S, Q]
        distribution = jax.lax.stop_gradient(method_state["ab_distribution"])
        bin_weights = classification.rebalancing_weights(
            distribution, centres, config.rebalance_mix
        )
        pixel_weights = bin_weights[jnp.argmax(targets, axis=-1)]  # the nearest bin's
        loss = classification.soft_cross_entropy(outputs, targets, pixel_weights)
        momentum = config.distribution_momentum
        batch_distribution = jnp.mean(targets, axis=(0, 1, 2))
        new_state = {
            "ab_distribution": momentum * distribution + (1.0 - momentum) * batch_distribution
        }
    return loss, base.LossAux(
        features.reshape(b, v, -1), updates.get("batch_stats", {}), new_state, {}
    )


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn, init_state=init_state)
