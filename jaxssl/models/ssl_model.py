"""The composition every method trains: backbone + projector (+ predictor)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.models import heads, resnet, vit


class SSLModel(nn.Module):
    """Backbone followed by a projector (and an optional predictor).

    ``__call__`` returns ``(features, projections)`` (and predictions if a predictor is set):
    features feed kNN and the linear probe, projections feed the loss.

    Attributes:
      backbone: module mapping images ``[B, H, W, 3]`` to features ``[B, D]``.
      projector: module mapping features to embeddings ``[B, P]``.
      predictor: optional module on top of the projector (BYOL, SimSiam).
    """

    backbone: nn.Module
    projector: nn.Module
    predictor: nn.Module | None = None

    def __call__(self, images: jax.Array, train: bool = True):
        features, projections = self.project(images, train=train)
        if self.predictor is None:
            return features, projections
        return features, projections, self.predictor(projections, train=train)

    def project(self, images: jax.Array, train: bool = True):
        """``(features, projections)`` without the predictor.

        BYOL's target network is this path: applied with variables that hold only the backbone
        and projector (the EMA copy), since the predictor's are never read.
        """
        features = self.backbone(images, train=train)  # [B, D]
        chex.assert_rank(features, 2)
        projections = self.projector(features, train=train)  # [B, P]
        return features, projections

    def project_tokens(self, images: jax.Array, mask: jax.Array | None = None, train: bool = True):
        """A ViT's ``(features [B, D], cls projections [B, K], patch projections [B, N, K])``:
        the projector applied to the final CLS token and to every patch token (iBOT's shared
        head), in one call on ``[B * (1 + N), D]`` rows (a head with BatchNorm would pool
        their statistics). ``mask`` ``[B, N]``: patches the ViT replaces by its mask token.
        ``features`` are what ``project`` gives: CLS or mean patch token by the ViT's
        ``pooling``."""
        if not isinstance(self.backbone, vit.ViT):
            raise ValueError("Token outputs need a ViT backbone (model.backbone = vit_*).")
        cls, patches = self.backbone(images, train=train, output="tokens", mask=mask)
        features = cls if self.backbone.pooling == "cls" else vit.mean_tokens(patches)
        b, n, d = patches.shape
        tokens = jnp.concatenate([cls[:, None], patches], axis=1).reshape(b * (1 + n), d)
        out = self.projector(tokens, train=train).reshape(b, 1 + n, -1)
        return features, out[:, 0], out[:, 1:]

    def embed(self, images: jax.Array) -> jax.Array:
        """Backbone features in inference mode (running BN statistics), ``[B, D]``."""
        return self.backbone(images, train=False)


def build_model(config: ml_collections.ConfigDict) -> SSLModel:
    """Backbone + MLP projector from ``config.model``: the model of every method without a
    predictor or a head of its own (a method's ``build_model``)."""
    return SSLModel(backbone=make_backbone(config.model), projector=make_projector(config.model))


def apply_views(
    model: SSLModel, variables, views: jax.Array, project_only: bool = False
) -> tuple[tuple[jax.Array, ...], dict]:
    """Runs ``model`` in train mode once on a group of views, as one batch.

    The views are flattened batch-major (``[B * V, ...]``, image ``i``'s views in rows
    ``i * V ...``), so each device's rows stay on that device, and the BatchNorm statistics are
    those of all ``B * V`` views of the global batch.

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}`` (the online network, or an EMA
        teacher's backbone and projector with ``project_only``).
      views: ``[B, V, H, W, 3]``.
      project_only: run ``model.project`` (backbone and projector, no predictor), the path of
        a teacher whose variables hold only those.

    Returns:
      ``(outputs, batch_stats)``: the model's outputs (``(features, projections)`` and
      predictions if the model has a predictor and ``project_only`` is False), each
      ``[B, V, ...]``; and the updated BatchNorm statistics (``{}`` without BatchNorm).
    """
    b, v = views.shape[:2]
    images = views.reshape((b * v,) + views.shape[2:])  # [B*V, H, W, 3]
    outputs, updates = model.apply(
        variables,
        images,
        train=True,
        method=model.project if project_only else None,
        mutable=["batch_stats"],
    )
    outputs = tuple(x.reshape((b, v) + x.shape[1:]) for x in outputs)
    return outputs, updates.get("batch_stats", {})


def apply_token_views(
    model: SSLModel, variables, views: jax.Array, mask: jax.Array | None = None
) -> tuple[tuple[jax.Array, jax.Array, jax.Array], dict]:
    """`apply_views` of ``model.project_tokens``: ``views`` ``[B, V, H, W, 3]``, optional
    ``mask`` ``[B, V, N]``; returns ``((features, cls projections, patch projections),
    batch_stats)``, each output ``[B, V, ...]``."""
    b, v = views.shape[:2]
    flat_mask = None if mask is None else mask.reshape((b * v,) + mask.shape[2:])
    return apply_flat_views(model, variables, views, model.project_tokens, flat_mask)


def apply_flat_views(model: nn.Module, variables, views: jax.Array, method, *args):
    """``model.apply(..., method=method)`` in train mode on ``views`` ``[B, V, ...]`` flattened
    batch-major, its outputs reshaped back to ``[B, V, ...]``; ``(outputs, batch_stats)``."""
    b, v = views.shape[:2]
    images = views.reshape((b * v,) + views.shape[2:])
    outputs, updates = model.apply(variables, images, *args, method=method, mutable=["batch_stats"])
    outputs = tuple(x.reshape((b, v) + x.shape[1:]) for x in outputs)
    return outputs, updates.get("batch_stats", {})


def make_backbone(model_config: ml_collections.ConfigDict) -> nn.Module:
    """The backbone named by ``config.model.backbone``: a ResNet (``resnet.BACKBONES``: width,
    stem, conv lowering, last block width) or a ViT (``vit.SIZES``: depth, patch size, image
    size, pooling, position embeddings, registers)."""
    dtype = jnp.dtype(model_config.dtype)
    last_block_width = model_config.get("last_block_width", 0)
    if model_config.backbone in vit.SIZES:
        if last_block_width:
            raise ValueError(
                "model.last_block_width widens or narrows a ResNet's last block; a ViT has no "
                "such block (its blocks keep one width). Use a ResNet backbone or leave "
                "model.last_block_width=0."
            )
        return vit.make_vit(
            model_config.backbone,
            depth=model_config.get("vit_depth", 0),
            patch_size=model_config.patch_size,
            image_size=model_config.image_size,
            pooling=model_config.pooling,
            position=model_config.get("position", "learned"),
            num_registers=model_config.get("num_registers", 0),
            mask_token=model_config.get("mask_token", False),
            dtype=dtype,
        )
    return resnet.make_backbone(
        model_config.backbone,
        width=model_config.width,
        stem=model_config.stem,
        dtype=dtype,
        conv_impl=model_config.conv_impl,
        bn_momentum=model_config.bn_momentum,
        last_block_width=last_block_width,
    )


def make_head(
    model_config: ml_collections.ConfigDict,
    hidden_dim: int,
    output_dim: int,
    num_layers: int,
    **kwargs,
) -> heads.MLP:
    """An MLP head in ``config.model``'s dtype and BatchNorm momentum."""
    return heads.MLP(
        hidden_dim=hidden_dim,
        output_dim=output_dim,
        num_layers=num_layers,
        dtype=jnp.dtype(model_config.dtype),
        bn_momentum=model_config.bn_momentum,
        **kwargs,
    )


def make_projector(model_config: ml_collections.ConfigDict, **kwargs) -> heads.MLP:
    """The projector of ``config.model`` (``projector_hidden_dim/dim/layers``,
    ``projector_init_scale``)."""
    kwargs.setdefault("output_init_scale", model_config.get("projector_init_scale", 1.0))
    return make_head(
        model_config,
        model_config.projector_hidden_dim,
        model_config.projector_dim,
        model_config.projector_layers,
        **kwargs,
    )
