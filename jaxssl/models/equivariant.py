"""SIE's networks: a backbone whose features split into an invariant and an equivariant part,
a projector for each, and a hypernetwork predictor conditioned on the transformation.

References:
  Garrido, Najman & LeCun, Self-supervised learning of Split Invariant-Equivariant
  representations, ICML 2023. https://arxiv.org/abs/2302.10283 (code:
  facebookresearch/SIE, ``src/models.py``, ``src/hypernetwork.py``).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.data import color
from jaxssl.models import resnet, ssl_model, vit


class SIEModel(nn.Module):
    """Backbone features ``[B, D]``: the first ``D - equi_dim`` dimensions are the invariant
    part, the last ``equi_dim`` the equivariant part, each through its own projector.

    ``__call__`` returns ``(features, invariant projections, equivariant projections)``;
    ``predict(equi, transform)`` maps view 1's equivariant projections to a prediction of view
    2's with the linear map :math:`W(t) = \\sum_k t_k A_k` that a linear, bias-free
    hypernetwork gives for the relative transformation ``t`` (the reference's defaults:
    ``--hypernetwork linear``, no ``--bias-hypernet``, no ``--bias-pred``, predictor
    ``De -> De``). The map is applied as ``sum_k t_k (A_k x)`` instead of materializing the
    per-example ``[De, De]`` weights: the same numbers without a ``[B, De, De]`` array.

    Attributes:
      backbone: images ``[B, H, W, 3]`` -> features ``[B, D]``.
      projector_inv: MLP on the invariant part.
      projector_equi: MLP on the equivariant part.
      equi_dim: the equivariant part's width, ``0 < equi_dim < D``.
    """

    backbone: nn.Module
    projector_inv: nn.Module
    projector_equi: nn.Module
    equi_dim: int
    equi_width: int  # the equivariant projector's output width
    latent_dim: int  # the width of the relative transformation
    # Residual form: W(t) = I + sum_k (t - t_0)_k A_k, t_0 the identity transformation, so
    # the predictor starts near the identity and maps "no transformation" to it exactly.
    residual: bool = False
    identity: tuple[float, ...] = ()  # t_0, the relative transformation of identical views
    init_scale: float = 1.0

    def setup(self):
        # torch.nn.Linear(K, De * De, bias=False)'s init: U(-1/sqrt(K), 1/sqrt(K)), times
        # init_scale (0 starts the residual form at the identity map).
        bound = 1.0 / self.latent_dim**0.5 * self.init_scale
        self.hypernetwork = self.param(
            "hypernetwork",
            lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound),
            (self.latent_dim, self.equi_width, self.equi_width),
        )  # A_k[out, in]

    def __call__(self, images: jax.Array, train: bool = True):
        features = self.backbone(images, train=train)
        inv, equi = split_features(features, self.equi_dim)
        inv = self.projector_inv(inv, train=train)
        return features, inv, self.projector_equi(equi, train=train)

    def predict(self, equi: jax.Array, transform: jax.Array) -> jax.Array:
        """``[B, De]`` equivariant projections of view 1, ``[B, K]`` relative transformations
        -> ``[B, De]`` predicted projections of view 2."""
        equi, transform = equi.astype(jnp.float32), transform.astype(jnp.float32)
        mapped = jnp.einsum("koi,bi->bko", self.hypernetwork, equi)
        if not self.residual:
            return jnp.einsum("bk,bko->bo", transform, mapped)
        delta = transform - jnp.asarray(self.identity, jnp.float32)
        return equi + jnp.einsum("bk,bko->bo", delta, mapped)

    def embed(self, images: jax.Array) -> jax.Array:
        """Backbone features in inference mode, ``[B, D]``."""
        return self.backbone(images, train=False)


def part_slices(width: int, equi_dim: int) -> tuple[slice, slice]:
    """``(invariant, equivariant)`` column slices of ``width``-d features: the last
    ``equi_dim`` dimensions are the equivariant part (the reference's
    ``x_emb[..., inv_repr_size:]``)."""
    if not 0 < equi_dim < width:
        raise ValueError(
            f"method.equi_dim must be in (0, {width}) for {width}-d features, got {equi_dim}."
        )
    return slice(0, width - equi_dim), slice(width - equi_dim, width)


def split_features(features: jax.Array, equi_dim: int) -> tuple[jax.Array, jax.Array]:
    """``(invariant, equivariant)`` parts of ``[..., D]`` features (`part_slices`)."""
    inv, equi = part_slices(features.shape[-1], equi_dim)
    return features[..., inv], features[..., equi]


def feature_dim(model_config: ml_collections.ConfigDict) -> int:
    """The width of ``config.model``'s backbone features."""
    if model_config.backbone in vit.SIZES:
        return vit.SIZES[model_config.backbone][0]
    return resnet.feature_dim(
        model_config.backbone, model_config.width, model_config.get("last_block_width", 0)
    )


def build_model(config: ml_collections.ConfigDict) -> SIEModel:
    """The SIE model of ``config.model`` and ``config.method.equi_dim``: each projector keeps
    ``config.model``'s layer count and its widths scaled by its part's share of the features
    (the reference's ``np.round(mlp_dims * ratio)``)."""
    model_config = config.model
    backbone = ssl_model.make_backbone(model_config)
    width = feature_dim(model_config)
    equi_dim = config.method.equi_dim
    part_slices(width, equi_dim)  # raises for an equi_dim the features cannot split at

    def projector(share):
        return ssl_model.make_head(
            model_config,
            round(model_config.projector_hidden_dim * share),
            round(model_config.projector_dim * share),
            model_config.projector_layers,
        )

    projector_equi = projector(equi_dim / width)
    return SIEModel(
        backbone=backbone,
        projector_inv=projector((width - equi_dim) / width),
        projector_equi=projector_equi,
        equi_dim=equi_dim,
        equi_width=projector_equi.output_dim,
        latent_dim=transform_dim(config.method.transform_parts),
        residual=config.method.get("residual_predictor", False),
        init_scale=config.method.get("hypernetwork_init_scale", 1.0),
        identity=tuple(identity_transform(config.method.transform_parts)),
    )


def identity_transform(parts) -> list[float]:
    """The relative transformation of two identical views, restricted to ``parts``: cos 1,
    everything else 0."""
    full = [1.0] + [0.0] * (sum(map(len, color.RELATIVE_GROUPS.values())) - 1)
    return [full[i] for i in transform_columns(parts)]


def transform_dim(parts) -> int:
    """The width of the relative transformation restricted to ``parts`` (groups of
    `jaxssl.data.color.RELATIVE_GROUPS`)."""
    return len(transform_columns(parts))


def transform_columns(parts) -> list[int]:
    """Column indices of `jaxssl.data.color.relative_transform` for the groups ``parts``."""
    unknown = [p for p in parts if p not in color.RELATIVE_GROUPS]
    if unknown or not parts:
        raise ValueError(
            f"method.transform_parts must be a non-empty subset of "
            f"{tuple(color.RELATIVE_GROUPS)}, got {tuple(parts)}."
        )
    columns = []
    for group, where in color.relative_group_slices().items():
        if group in parts:
            columns += range(where.start, where.stop)
    return columns
