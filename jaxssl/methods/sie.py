"""SIE: split invariant-equivariant representations, VICReg with a transformation-conditioned
predictor for one part of the features.

The backbone's features split into an invariant part (the first ``D - equi_dim`` dimensions)
and an equivariant part (the last ``equi_dim``), each with its own projector
(`jaxssl.models.equivariant.SIEModel`). The invariant projections of two views are pulled
together; view 2's equivariant projection is predicted from view 1's by a linear map that a
hypernetwork makes from the relative transformation between the views, so that part must keep
what the transformation changes. VICReg's variance and covariance terms hold on the whole
embedding (`jaxssl.losses.redundancy.sie_loss`).

The reference trains on 3DIEBench, whose views differ by known 3-D object rotations. Here the
transformations are jaxssl's own augmentations, whose parameters the train step records
(``data.view_transforms``: the planar rotation ``data.rotation_degrees``, the crop box and
flip, the colour-jitter factors and grayscale; `jaxssl.data.color.view_transforms`), and
``method.transform_parts`` chooses which groups of `jaxssl.data.color.relative_transform` the
hypernetwork sees. `jaxssl.evals.equivariance` measures what each part keeps.

References:
  Garrido, Najman & LeCun, Self-supervised learning of Split Invariant-Equivariant
  representations, ICML 2023. https://arxiv.org/abs/2302.10283 (code:
  facebookresearch/SIE).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.data import color
from jaxssl.losses import redundancy
from jaxssl.methods import base
from jaxssl.models import equivariant, ssl_model


def relative_transforms(batch: dict[str, jax.Array], parts) -> jax.Array:
    """The transformation from view 1 to view 2 of each image, restricted to ``parts``:
    ``[B, K]`` from ``batch["transform"]`` ``[B, 2, 11]``."""
    if "transform" not in batch:
        raise ValueError(
            "SIE needs each view's transformation in the batch: set data.view_transforms=True "
            "and data.crop_boxes=True."
        )
    transform = batch["transform"]
    relative = color.relative_transform(transform[:, 0], transform[:, 1])
    return relative[:, jnp.asarray(equivariant.transform_columns(parts))]


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """SIE loss of a batch of two augmented views with their transformations.

    Args:
      model: the `equivariant.SIEModel`.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]`` the views ``[B, 2, H, W, 3]``, ``batch["transform"]`` their
        parameters ``[B, 2, 11]`` (``data.view_transforms``).
      method_state: SIE has none; returned as is.
      config: ``config.method`` (``sim_coeff``, ``equi_factor``, ``std_coeff``,
        ``cov_coeff``, ``transform_parts``, ``prediction_variance``).
      rng: unused.
      step: unused.

    Returns:
      ``(loss, base.LossAux)``; metrics ``train/sie_<term>`` (unweighted) and
      ``train/sie_identity_equivariance``, the equivariance term of predicting view 2's
      equivariant projection by view 1's own: a predictor that uses the transformation beats it.
    """
    del rng, step
    views = batch["global"]
    if views.shape[1] != 2:
        raise ValueError(f"SIE takes exactly 2 views per image, got {views.shape[1]}.")
    relative = relative_transforms(batch, config.transform_parts)
    (features, inv, equi), batch_stats = ssl_model.apply_views(model, variables, views)
    params = {"params": variables["params"]}
    prediction = model.apply(params, equi[:, 0], relative, method=model.predict)
    loss, terms = redundancy.sie_loss(
        inv[:, 0],
        inv[:, 1],
        equi[:, 0],
        equi[:, 1],
        prediction,
        sim_coeff=config.sim_coeff,
        equi_factor=config.equi_factor,
        std_coeff=config.std_coeff,
        cov_coeff=config.cov_coeff,
        prediction_variance=config.get("prediction_variance", True),
    )
    metrics = {f"train/sie_{name}": jax.lax.stop_gradient(t) for name, t in terms.items()}
    metrics["train/sie_identity_equivariance"] = jax.lax.stop_gradient(
        jnp.mean(jnp.square(equi[:, 1] - equi[:, 0]))
    )
    embeddings = jnp.concatenate([inv, equi], axis=-1)  # [B, 2, P]
    return loss, base.LossAux(features, batch_stats, method_state, metrics, embeddings)


METHOD = base.Method(build_model=equivariant.build_model, loss_fn=loss_fn)
