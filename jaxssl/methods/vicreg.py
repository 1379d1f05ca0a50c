"""VICReg: invariance between two views plus variance and covariance regularization of each.

References:
  Bardes, Ponce & LeCun, VICReg: Variance-Invariance-Covariance Regularization for
  Self-Supervised Learning, ICLR 2022. https://arxiv.org/abs/2105.04906
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
    """VICReg loss of a batch of two augmented views.

    Both views go through backbone and expander as one batch, so the expander's hidden
    BatchNorm statistics pool the two views (the official code runs the views one after the
    other). Variance and covariance are per view, over the global batch
    (``redundancy.vicreg_loss``).

    Args:
      model: the ``SSLModel``.
      variables: ``{"params": ..., "batch_stats": ...}``.
      batch: ``batch["global"]``: the views ``[B, 2, H, W, 3]``.
      method_state: VICReg has none (``{}``); returned as is.
      config: the ``config.method`` section (``sim_coeff``, ``std_coeff``, ``cov_coeff``;
        optional ``variant``: ``"exp"`` / ``"ctr"``, VICReg-exp / VICReg-ctr of Garrido et
        al. 2023, with ``exp_temperature``; ``redundancy.vicreg_loss``).
      rng: unused (the model is deterministic); part of the method protocol.
      step: unused (no schedule inside the loss); part of the method protocol.

    Returns:
      ``(loss, base.LossAux)``; metrics ``train/vicreg_invariance`` (MSE between the views),
      ``train/vicreg_variance`` (hinge on the per-dimension std: 1 - sqrt(eps) when fully
      collapsed, 0 when every std >= 1) and ``train/vicreg_covariance``, all unweighted.
    """
    del rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    if v != 2:
        raise ValueError(f"VICReg takes exactly 2 views per image, got {v}.")
    (features, z), batch_stats = ssl_model.apply_views(model, variables, views)  # [B, 2, .]
    loss, terms = redundancy.vicreg_loss(
        z[:, 0],
        z[:, 1],
        sim_coeff=config.sim_coeff,
        std_coeff=config.std_coeff,
        cov_coeff=config.cov_coeff,
        variant=config.get("variant", "vicreg"),
        temperature=config.get("exp_temperature", 0.1),
    )
    metrics = {f"train/vicreg_{name}": jax.lax.stop_gradient(t) for name, t in terms.items()}
    return loss, base.LossAux(features, batch_stats, method_state, metrics, z)


# The model: backbone + VICReg expander, ``config.model.projector_layers`` linear layers (3 in
# the paper: 8192-8192-8192; 2048-2048-2048 in solo-learn's CIFAR recipe), BN + ReLU after each
# hidden layer, the last one plain. The paper's last layer has no bias; ``heads.MLP``'s has one,
# which changes nothing: every term of the loss is invariant to a shift shared by both views, so
# the bias gets zero gradient and stays at its zero init.
METHOD = base.Method(build_model=ssl_model.build_model, loss_fn=loss_fn)
