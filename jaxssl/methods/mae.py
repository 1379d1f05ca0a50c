"""MAE: masked autoencoders, pixels of the masked patches predicted from the visible ones.

References:
  He et al., Masked Autoencoders Are Scalable Vision Learners, CVPR 2022.
  https://arxiv.org/abs/2111.06377 (code: facebookresearch/mae)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import errors
from jaxssl.losses import reconstruction
from jaxssl.methods import base
from jaxssl.models import masked, masking, ssl_model, vit


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The ViT of ``config.model`` as encoder and a ``TokenPredictor`` decoder of
    ``config.method.decoder_dim/depth/heads`` predicting ``p*p*3`` pixels per masked patch."""
    encoder = ssl_model.make_backbone(config.model)
    if not isinstance(encoder, vit.ViT):
        raise errors.ConfigError(
            f"MAE masks patch tokens and needs a ViT backbone (model.backbone one of "
            f"{sorted(vit.SIZES)}), not {config.model.backbone!r}."
        )
    p = encoder.patch_size
    decoder = masked.TokenPredictor(
        embed_dim=config.method.decoder_dim,
        depth=config.method.decoder_depth,
        num_heads=config.method.decoder_heads,
        output_dim=p * p * 3,
        grid_size=encoder.image_size // p,
        dtype=jnp.dtype(config.model.dtype),
    )
    return masked.MaskedAutoencoder(encoder, decoder, config.method.mask_ratio)


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """MAE's loss of a batch: every view masked at random, its masked patches reconstructed.

    Each view of ``batch["global"]`` (MAE trains on one) is an image of its own: its patch
    tokens are ranked by noise drawn from the step's key (``masking.random_masking``), the
    encoder sees the first ``(1 - mask_ratio) N``, and ``reconstruction.masked_patch_mse``
    scores the decoder's pixels at the rest against the input's patches (standardized per
    patch with ``norm_pix_loss``). As MAE's code: the targets are the normalized input
    images, the decoder also receives the encoder's CLS token, and the loss averages over masked
    patches only.

    Args:
      model: the ``MaskedAutoencoder``.
      variables: ``{"params": ...}`` (no BatchNorm).
      batch: ``batch["global"]``: ``[B, V, H, W, 3]``.
      method_state: MAE has none (``{}``); returned as is.
      config: ``config.method``: ``mask_ratio``, ``norm_pix_loss``.
      rng: the step's key; the masks are drawn from it.
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; the features are the encoder's pooled features of the visible
      tokens (what the online probe sees; evaluation embeds whole images).
    """
    del step
    views = batch["global"]
    b, v = views.shape[:2]
    images = views.reshape((b * v,) + views.shape[2:])  # [B*V, H, W, 3]
    patches = vit.patchify(images, model.backbone.patch_size)  # [B*V, N, p*p*3]
    keep, hidden = masking.random_masking(rng, b * v, patches.shape[1], config.mask_ratio)
    features, predictions = model.apply(
        {"params": variables["params"]}, images, order=jnp.concatenate([keep, hidden], axis=1)
    )  # [B*V, D], [B*V, M, p*p*3]
    targets = jax.lax.stop_gradient(vit.gather_tokens(patches, hidden))  # [B*V, M, p*p*3]
    loss = reconstruction.masked_patch_mse(predictions, targets, config.norm_pix_loss)
    return loss, base.LossAux(
        features.reshape(b, v, -1), variables.get("batch_stats", {}), method_state, {}
    )


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn)
