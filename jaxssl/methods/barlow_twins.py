"""Barlow Twins: the cross-correlation of two views' embeddings is pushed to the identity.

References:
  Zbontar et al., Barlow Twins: Self-Supervised Learning via Redundancy Reduction, ICML 2021.
  https://arxiv.org/abs/2103.03230
"""

import flax.linen as nn
import jax
import ml_collections

from jaxssl.losses import redundancy
from jaxssl.methods import base
from jaxssl.models import ssl_model


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """Barlow Twins loss of a batch of two augmented views.

    Both views go through backbone and projector as one batch, so the projector's hidden
    BatchNorm statistics pool the two views (the official code runs the views one after the
    other). The loss's own standardization is per view, over the global batch
    (``redundancy.barlow_twins_loss``).

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: the views ``[B, 2, H, W, 3]``.
      method_state: Barlow Twins has none (``{}``); returned as is.
      config: the ``config.method`` section (``lambd``: off-diagonal weight, ``loss_scale``:
        a factor on the whole loss, solo-learn's ``scale_loss``; 1 in the paper).
      rng: unused (the model is deterministic); part of the method protocol.
      step: unused (no schedule inside the loss); part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; metrics ``train/barlow_on_diagonal`` (sum of ``(1 - C_ii)^2``,
      0 when the views agree) and ``train/barlow_off_diagonal`` (sum of ``C_ij^2``, unweighted:
      the redundancy left between dimensions).
    """
    del rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    if v != 2:
        raise ValueError(f"Barlow Twins takes exactly 2 views per image, got {v}.")
    (features, z), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, 2, .]
    loss = config.loss_scale * redundancy.barlow_twins_loss(z[:, 0], z[:, 1], config.lambd)
    # Recomputes the correlation under stop_gradient; XLA shares it with the loss's.
    terms = redundancy.barlow_twins_terms(*jax.lax.stop_gradient((z[:, 0], z[:, 1])))
    metrics = {
        "train/barlow_on_diagonal": terms["on_diagonal"],
        "train/barlow_off_diagonal": terms["off_diagonal"],
    }
    return loss, base.LossAux(features, batch_stats, method_state, metrics, z)


# The model: backbone + projector, ``config.model.projector_layers`` linear layers (3 in the
# paper: 8192-8192-8192; 2048-2048-2048 in solo-learn's CIFAR recipe), BN + ReLU after each
# hidden layer, the last one plain. The paper's last layer has no bias; ``heads.MLP``'s has one,
# which changes nothing: the loss standardizes every dimension over the batch, so a constant
# shift gets zero gradient and the bias stays at its zero init.
METHOD = base.Method(build_model=ssl_model.build_model, loss_fn=loss_fn)
