"""RotNet: the network predicts by how many quarter turns its input was rotated.

Every view of ``batch["global"]`` is fed in all four rotations, 0, 90, 180 and 270 degrees, in
the same batch (Gidaris et al.: "feeding all four rotated copies of an image simultaneously"
gave the best results), and a classifier on the backbone's pooled features predicts the
rotation with softmax cross-entropy. The paper's CIFAR-10 networks are NINs whose rotation
classifier is their upper conv blocks; here the backbone is any of jaxssl's and the classifier
an MLP head of ``method.head_hidden_dim`` / ``method.head_layers`` (1: linear). The paper
reports the second conv block as the best probed layer; jaxssl evaluates the pooled backbone
features like every other method.

References:
  Gidaris, Singh & Komodakis, Unsupervised Representation Learning by Predicting Image
  Rotations, ICLR 2018. https://arxiv.org/abs/1803.07728
  (code: gidariss/FeatureLearningRotNet)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.data import pretext
from jaxssl.losses import classification
from jaxssl.methods import base
from jaxssl.models import ssl_model


def build_model(config: ml_collections.ConfigDict) -> ssl_model.SSLModel:
    """The backbone of ``config.model`` and a rotation classifier (4 logits) as its head."""
    head = ssl_model.make_head(
        config.model,
        config.method.head_hidden_dim,
        pretext.NUM_ROTATIONS,
        config.method.head_layers,
    )
    return ssl_model.SSLModel(backbone=ssl_model.make_backbone(config.model), projector=head)


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """Rotation-prediction cross-entropy of a batch of views.

    The ``B * V * 4`` rotated images go through the model as one batch (BatchNorm statistics
    of all of them), image-major, so each device rotates and embeds its own rows.

    Args:
      model: the ``SSLModel`` whose projector is the rotation classifier.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: ``[B, V, S, S, 3]`` square views.
      method_state: RotNet has none (``{}``); returned as is.
      config: ``config.method`` (no field is read here; the head is built from it).
      rng: unused: the rotations are all four, not drawn.
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; the features are those of the upright views, ``[B, V, D]``;
      ``train/pretext_top1`` is the rotation accuracy.
    """
    del config, rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    images = views.reshape((b * v,) + views.shape[2:])  # [B*V, S, S, 3]
    rotated = pretext.quarter_turns(images)  # [B*V, 4, S, S, 3]
    rotated = rotated.reshape((b, v * pretext.NUM_ROTATIONS) + views.shape[2:])
    (features, logits), batch_stats = ssl_model.apply_views(model, variables, rotated)
    labels = jnp.tile(jnp.arange(pretext.NUM_ROTATIONS), (b, v))  # [B, V*4]
    loss = classification.softmax_cross_entropy(logits, labels)
    metrics = {"train/pretext_top1": classification.top1(logits, labels)}
    upright = features[:, :: pretext.NUM_ROTATIONS]  # [B, V, D]
    return loss, base.LossAux(upright, batch_stats, method_state, metrics)


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn)
