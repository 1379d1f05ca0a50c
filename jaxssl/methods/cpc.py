"""CPC v2: contrastive predictive coding over a grid of overlapping patches.

Each view is cut into a ``G x G`` grid of ``method.patch_size`` px patches every
``method.patch_stride`` px (`jaxssl.data.pretext.patch_grid`); the backbone embeds every patch
alone (``z``, its pooled features); a context network of row-causal convolutions
(``ContextNetwork``: output row ``i`` sees input rows ``<= i`` only) summarizes the rows above;
and one linear map per offset ``k`` of ``method.offsets`` predicts, from the context at
``(i, j)``, the embedding of the patch ``k`` rows below. InfoNCE scores each prediction
against every patch embedding of the global batch
(`jaxssl.losses.contrastive.cpc_infonce`).

As CPC v2 where this CPU-sized form allows: the patches overlap by half, so the default
offsets start at 2 (row ``i + 1`` shares half its pixels with row ``i``, a shortcut); the
negatives are the other patches of the image and of the batch. Not implemented: CPC v2's
per-patch augmentations, and its layer normalization in place of BatchNorm (here the
backbone's BatchNorm statistics span all patches of the global batch, which can leak a little
information between patches of one image). The paper's context network is a 12-block
PixelCNN-style ResNet; here ``method.context_depth`` residual blocks of ``(2, 3)`` masked
convolutions.

Evaluation embeds whole images with the backbone, like every method's.

References:
  van den Oord, Li & Vinyals, Representation Learning with Contrastive Predictive Coding,
  2018. https://arxiv.org/abs/1807.03748
  Henaff et al., Data-Efficient Image Recognition with Contrastive Predictive Coding,
  ICML 2020. https://arxiv.org/abs/1905.09272
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.data import pretext
from jaxssl.losses import contrastive
from jaxssl.methods import base
from jaxssl.models import ssl_model


class ContextNetwork(nn.Module):
    """Row-causal residual convolutions over a grid of embeddings ``[B, G, G, D]``: a block
    pads the grid with one zero row on top and convolves ``(2, 3)`` without padding in
    height, so output row ``i`` depends on rows ``i - 1`` and ``i`` of its input only, and the
    stack on rows ``<= i``."""

    width: int
    depth: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        x = nn.Dense(self.width, dtype=self.dtype, name="embed")(z)
        for i in range(self.depth):
            h = jnp.pad(nn.relu(x), ((0, 0), (1, 0), (1, 1), (0, 0)))
            x = x + nn.Conv(
                self.width, (2, 3), padding="VALID", dtype=self.dtype, name=f"conv{i + 1}"
            )(h)
        return nn.relu(x).astype(jnp.float32)


class CPCModel(nn.Module):
    """Patch encoder (the backbone), context network and one linear predictor per offset.

    ``__call__`` on patch grids ``[B, G, G, p, p, 3]`` (training): ``(z [B, G, G, D],
    predictions [B, G, G, K, D])``. On whole images ``[B, S, S, 3]``: in inference mode
    ``(features, features)`` (the evaluators' call); in train mode (initialization) the
    images' patch grid first.
    """

    backbone: nn.Module
    context: ContextNetwork
    num_offsets: int
    patch_size: int
    patch_stride: int

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = True):
        if inputs.ndim == 4 and not train:
            features = self.backbone(inputs, train=False)
            return features, features
        if inputs.ndim == 4:
            inputs = pretext.patch_grid(inputs, self.patch_size, self.patch_stride)
        b, g = inputs.shape[:2]
        z = self.backbone(inputs.reshape((b * g * g,) + inputs.shape[3:]), train=train)
        z = z.reshape(b, g, g, -1)  # [B, G, G, D]
        context = self.context(z)
        predictions = nn.DenseGeneral((self.num_offsets, z.shape[-1]), name="predictors")(
            context
        )  # [B, G, G, K, D]
        return z, predictions

    def embed(self, images: jax.Array) -> jax.Array:
        """Backbone features of whole images in inference mode, ``[B, D]``."""
        return self.backbone(images, train=False)


def build_model(config: ml_collections.ConfigDict) -> CPCModel:
    """The backbone of ``config.model`` as patch encoder and ``config.method``'s context
    network and predictors."""
    method = config.method
    return CPCModel(
        backbone=ssl_model.make_backbone(config.model),
        context=ContextNetwork(
            method.context_width, method.context_depth, jnp.dtype(config.model.dtype)
        ),
        num_offsets=len(method.offsets),
        patch_size=method.patch_size,
        patch_stride=method.patch_stride,
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
    """CPC's InfoNCE of a batch of views, each view a grid of its own.

    Args:
      model: the ``CPCModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, V, S, S, 3]``.
      method_state: none (``{}``); returned as is.
      config: ``config.method``: ``patch_size``, ``patch_stride``, ``offsets``.
      rng: unused (the model is deterministic).
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; the features are each view's mean patch embedding.
    """
    del rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    images = views.reshape((b * v,) + views.shape[2:])
    grid = pretext.patch_grid(images, config.patch_size, config.patch_stride)
    (z, predictions), updates = model.apply(variables, grid, train=True, mutable=["batch_stats"])
    loss = contrastive.cpc_infonce(predictions, z, tuple(config.offsets))
    features = jnp.mean(z, axis=(1, 2)).reshape(b, v, -1)
    return loss, base.LossAux(features, updates.get("batch_stats", {}), method_state, {})


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn)
