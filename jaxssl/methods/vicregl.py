"""VICRegL: VICReg on the pooled embeddings plus VICReg on matched feature-map vectors.

A ResNet's last-stage feature maps go through their own MLP (``maps_projector``, applied at
every location); vectors of two views are matched by nearness in feature space and by
nearness of their cells in the source image (the crop boxes, ``data.crop_boxes``), and
VICReg's three terms act on the matched pairs. The loss is ``alpha`` times the global VICReg
terms plus ``1 - alpha`` times the local ones.

References:
  Bardes, Ponce & LeCun, VICRegL: Self-Supervised Learning of Local Visual Features,
  NeurIPS 2022. https://arxiv.org/abs/2210.01571 (code: facebookresearch/VICRegL)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import errors
from jaxssl.losses import redundancy
from jaxssl.methods import base
from jaxssl.models import resnet, ssl_model


class VICRegLModel(ssl_model.SSLModel):
    """``SSLModel`` (backbone + expander) with a ``maps_projector`` for feature-map vectors."""

    maps_projector: nn.Module | None = None

    def __call__(self, images: jax.Array, train: bool = True):
        features, projections, _ = self.project_maps(images, train=train)
        return features, projections

    def project_maps(self, images: jax.Array, train: bool = True):
        """``(features [B, D], projections [B, P], map vectors [B, h * w, Q])``."""
        maps = self.backbone(images, train=train, maps=True)  # [B, h, w, D]
        b, h, w, d = maps.shape
        features = jnp.mean(maps, axis=(1, 2))
        projections = self.projector(features, train=train)
        local = self.maps_projector(maps.reshape(b * h * w, d), train=train)
        return features, projections, local.reshape(b, h * w, -1)


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """ResNet + VICReg expander (``config.model.projector_*``) + the maps MLP
    (``config.method.maps_hidden_dim``, ``maps_dim``, ``maps_layers``)."""
    backbone = ssl_model.make_backbone(config.model)
    if not isinstance(backbone, resnet.ResNet):
        raise errors.ConfigError(
            "VICRegL matches ResNet feature-map vectors: use a ResNet backbone "
            f"(model.backbone={config.model.backbone!r} is not one)."
        )
    maps_projector = ssl_model.make_head(
        config.model,
        config.method.maps_hidden_dim,
        config.method.maps_dim,
        config.method.maps_layers,
    )
    return VICRegLModel(
        backbone=backbone,
        projector=ssl_model.make_projector(config.model),
        maps_projector=maps_projector,
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
    r"""VICRegL's loss of the global views (and multi-crop local views), with their crop boxes.

    .. math::
      \mathcal{L} = \alpha (\lambda s + \mu v + \nu c)_{global}
        + (1 - \alpha) (\lambda s + \mu v + \nu c)_{local},

    global terms ``redundancy.vicregl_global_terms`` of the expander's embeddings, local terms
    ``redundancy.vicregl_local_terms`` averaged over the view pairs (each of the first two
    views with every other view, as the reference's loops; its ``local_loss`` keeps only the
    last pair's terms, an overwrite read here as the evident mean). The views go through the
    model one group at a time (global, then local); BatchNorm statistics kept are the global
    views'. Differences from the reference: no separate lr for the maps projector
    (``--maps-lr-ratio 0.1`` there) and grids of flipped views are mirrored.

    Args:
      model: the ``VICRegLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]`` ``[B, V, H, W, 3]`` and ``batch["global_box"]`` ``[B, V, 5]``
        (``data.crop_boxes=True``); optionally ``"local"`` and ``"local_box"``.
      method_state: none (``{}``).
      config: ``config.method``: ``alpha``, ``inv_coeff``, ``var_coeff``, ``cov_coeff``,
        ``num_matches`` (two ints), ``l2_all_matches``.
      rng: unused; part of the method protocol.
      step: unused; part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; metrics: the unweighted global and local terms.
    """
    del rng, step
    if "global_box" not in batch:
        raise errors.ConfigError(
            "VICRegL needs each view's crop box in the batch: set data.crop_boxes=True."
        )
    (features, z, maps), batch_stats = ssl_model.apply_flat_views(
        model, variables, batch["global"], model.project_maps
    )
    boxes = batch["global_box"]
    grid = _grid_side(batch["global"].shape[2], maps.shape[2])
    locations = redundancy.location_grid(boxes, *grid)  # [B, V, N, 2]
    all_maps, all_locations, all_z = [maps], [locations], [z]
    if "local" in batch:
        (_, z_local, maps_local), _ = ssl_model.apply_flat_views(
            model, variables, batch["local"], model.project_maps
        )
        local_grid = _grid_side(batch["local"].shape[2], maps_local.shape[2])
        all_maps.append(maps_local)
        all_locations.append(redundancy.location_grid(batch["local_box"], *local_grid))
        all_z.append(z_local)
    views_maps = [m[:, i] for m in all_maps for i in range(m.shape[1])]
    views_locations = [g[:, i] for g in all_locations for i in range(g.shape[1])]
    z_views = jnp.concatenate(all_z, axis=1)
    if z_views.shape[1] < 2:
        raise ValueError(f"VICRegL needs at least 2 views per image, got {z_views.shape[1]}.")

    g_inv, g_var, g_cov = redundancy.vicregl_global_terms(z_views)
    pairs = [(i, j) for i in range(2) for j in range(len(views_maps)) if j != i]
    local = [
        redundancy.vicregl_local_terms(
            views_maps[i],
            views_maps[j],
            views_locations[i],
            views_locations[j],
            tuple(config.num_matches),
            config.l2_all_matches,
        )
        for i, j in pairs
    ]
    l_inv, l_var, l_cov = (sum(t[k] for t in local) / len(pairs) for k in range(3))

    def weighted(inv, var, cov):
        return config.inv_coeff * inv + config.var_coeff * var + config.cov_coeff * cov

    loss = config.alpha * weighted(g_inv, g_var, g_cov) + (1.0 - config.alpha) * weighted(
        l_inv, l_var, l_cov
    )
    terms = {
        "global_invariance": g_inv,
        "global_variance": g_var,
        "global_covariance": g_cov,
        "local_invariance": l_inv,
        "local_variance": l_var,
        "local_covariance": l_cov,
    }
    metrics = {f"train/vicregl_{k}": jax.lax.stop_gradient(v) for k, v in terms.items()}
    return loss, base.LossAux(features, batch_stats, method_state, metrics, z)


def _grid_side(image_side: int, num_cells: int) -> tuple[int, int]:
    """The ``(rows, cols)`` of a square view's ``num_cells``-vector feature map."""
    side = int(round(num_cells**0.5))
    if side * side != num_cells:
        raise ValueError(f"A {image_side} px view gave {num_cells} map vectors: not a square.")
    return side, side


METHOD = base.Method(build_model=build_model, loss_fn=loss_fn)
