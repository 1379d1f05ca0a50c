"""I-JEPA: a context block's tokens predict an EMA target encoder's tokens of target blocks.

References:
  Assran et al., Self-Supervised Learning from Images with a Joint-Embedding Predictive
  Architecture, CVPR 2023. https://arxiv.org/abs/2301.08243 (code: facebookresearch/ijepa)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import errors
from jaxssl.losses import reconstruction
from jaxssl.methods import base, teacher
from jaxssl.models import masked, masking, ssl_model, vit


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The ViT of ``config.model`` as context encoder and a ``TokenPredictor`` of
    ``config.method.predictor_dim/depth/heads`` back to the encoder's width."""
    encoder = ssl_model.make_backbone(config.model)
    if not isinstance(encoder, vit.ViT):
        raise errors.ConfigError(
            f"I-JEPA masks patch tokens and needs a ViT backbone (model.backbone one of "
            f"{sorted(vit.SIZES)}), not {config.model.backbone!r}."
        )
    predictor = masked.TokenPredictor(
        embed_dim=config.method.predictor_dim,
        depth=config.method.predictor_depth,
        num_heads=config.method.predictor_heads,
        output_dim=encoder.embed_dim,
        grid_size=encoder.image_size // encoder.patch_size,
        dtype=jnp.dtype(config.model.dtype),
    )
    return masked.JointEmbeddingPredictor(encoder, predictor)


def draw_masks(
    rng: jax.Array, batch_size: int, grid: tuple[int, int], config: ml_collections.ConfigDict
) -> masking.BlockMasks:
    """The batch's multi-block masks from the step's key and ``config.method``."""
    return masking.multiblock_masks(
        rng,
        batch_size,
        grid,
        num_targets=config.num_targets,
        target_scale=tuple(config.target_scale),
        target_aspect=tuple(config.target_aspect),
        context_scale=tuple(config.context_scale),
        context_tokens=config.context_tokens,
    )


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """I-JEPA's loss of a batch: each image's context predicts its target blocks' features.

    As the reference's ``train.py``: the target encoder (the EMA copy of the encoder, in the
    method state) embeds the whole image, its tokens are layer-normed over the feature axis
    (no affine) and gathered at each target block; the context encoder sees the context
    tokens only; the predictor, given the context tokens and mask tokens at a block's
    positions, predicts that block; ``reconstruction.masked_feature_regression`` (smooth-L1 as
    the reference code; ``config.loss="l2"`` for the paper's text) averages over every valid
    target token and feature. Masks come from the step's key (``masking.multiblock_masks``).
    Every view of ``batch["global"]`` is an image of its own (I-JEPA trains on one).

    Args:
      model: the ``JointEmbeddingPredictor``.
      variables: ``{"params": ...}`` (no BatchNorm).
      batch: ``batch["global"]``: ``[B, V, H, W, 3]``.
      method_state: ``{"target": {"params": {"backbone": ...}, "batch_stats": {}}}``, the
        EMA target encoder (``teacher.py``), returned as is (updated after the step).
      config: ``config.method``: the mask parameters (``num_targets``, ``target_scale``,
        ``target_aspect``, ``context_scale``, ``context_tokens``) and ``loss``.
      rng: the step's key; the masks are drawn from it.
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; the features are the mean of the context tokens.
    """
    del step
    views = batch["global"]
    b, v = views.shape[:2]
    images = views.reshape((b * v,) + views.shape[2:])  # [B*V, H, W, 3]
    p = model.backbone.patch_size
    grid = (images.shape[1] // p, images.shape[2] // p)
    masks = draw_masks(rng, b * v, grid, config)
    target_tokens = model.apply(
        {"params": method_state["target"]["params"]}, images, method=model.tokens
    )  # [B*V, N, D]
    targets = reconstruction.layer_norm(target_tokens)
    j, t = masks.targets.shape[1:]
    targets = vit.gather_tokens(targets, masks.targets.reshape(b * v, j * t))
    targets = jax.lax.stop_gradient(targets.reshape(b * v, j, t, -1))  # [B*V, J, T, D]
    features, predictions = model.apply(
        {"params": variables["params"]}, images, masks=masks
    )  # [B*V, D], [B*V, J, T, D]
    loss = reconstruction.masked_feature_regression(
        predictions, targets, masks.targets_valid, config.loss
    )
    metrics = {
        "train/ijepa_context_tokens": jnp.mean(jnp.sum(masks.context_valid, axis=1)),
        "train/ijepa_target_tokens": jnp.mean(jnp.sum(masks.targets_valid, axis=2)),
    }
    return loss, base.LossAux(
        features.reshape(b, v, -1), variables.get("batch_stats", {}), method_state, metrics
    )


# The target encoder: teacher.py's EMA copy of the backbone (the predictor is not copied),
# with I-JEPA's linear momentum schedule (config.method.momentum_schedule = "linear").
METHOD = base.Method(
    build_model=build_model,
    loss_fn=loss_fn,
    init_state=teacher.init_state,
    update_state=teacher.update_state,
)
