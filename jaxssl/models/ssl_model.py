"""The composition every method trains: backbone + projector (+ predictor)."""

import chex
import flax.linen as nn
import jax


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

    def embed(self, images: jax.Array) -> jax.Array:
        """Backbone features in inference mode (running BN statistics), ``[B, D]``."""
        return self.backbone(images, train=False)
