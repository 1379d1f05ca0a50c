"""DINO: a student matches an EMA teacher's centered, sharpened outputs across views.

Student = backbone + ``heads.DINOHead``; teacher = an EMA copy of both, kept in
``method_state["target"]`` (`jaxssl.methods.teacher`, shared with BYOL and MoCo). The
teacher sees the global views only; the student sees the global views and, with multi-crop,
``batch["local"]``. ``method_state`` also holds the ``center`` of the teacher outputs. The
teacher-temperature schedule and the frozen last layer read the step the train step passes
to ``loss_fn``.

DINOv2's additions are options of the same method (``dinov2_cifar10.py`` combines them): iBOT's
masked-patch self-distillation (``method.ibot_weight``: the student's global views have random
patches replaced by the ViT's mask token, and its patch outputs through the shared head match
the teacher's of the unmasked patches; a separate ``patch_center``), the KoLeo regularizer
(``method.koleo_weight``) and Sinkhorn-Knopp teacher targets instead of centering
(``method.centering = "sinkhorn"``).

References:
  Caron et al., Emerging Properties in Self-Supervised Vision Transformers, ICCV 2021.
  https://arxiv.org/abs/2104.14294
  Zhou et al., iBOT: Image BERT Pre-Training with Online Tokenizer, ICLR 2022.
  https://arxiv.org/abs/2111.07832
  Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, TMLR 2024.
  https://arxiv.org/abs/2304.07193 (code: facebookresearch/dinov2)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import errors, schedules
from jaxssl.losses import capacity, clustering, distillation
from jaxssl.methods import base, teacher
from jaxssl.models import heads, masking, ssl_model, vit

CENTERINGS = ("center", "sinkhorn")


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """Backbone + DINO head: ``config.model.projector_layers`` linear layers of
    ``projector_hidden_dim`` to a ``projector_dim`` bottleneck, then ``config.method.out_dim``
    weight-normalized output units (``norm_last_layer``, ``use_bn_in_head``)."""
    head = heads.DINOHead(
        output_dim=config.method.out_dim,
        hidden_dim=config.model.projector_hidden_dim,
        bottleneck_dim=config.model.projector_dim,
        num_layers=config.model.projector_layers,
        use_bn=config.method.use_bn_in_head,
        norm_last_layer=config.method.norm_last_layer,
        dtype=jnp.dtype(config.model.dtype),
        bn_momentum=config.model.bn_momentum,
    )
    return ssl_model.SSLModel(backbone=ssl_model.make_backbone(config.model), projector=head)


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """Teacher = a copy of the student; center = 0 (as in the reference).

    Returns:
      ``{"target": teacher variables, "center": [K] float32}``, and ``"patch_center"`` ``[K]``
      with iBOT (``ibot_weight > 0``).
    """
    out_dim = variables["params"]["projector"]["last_layer"]["kernel"].shape[-1]
    state = {
        **teacher.init_state(model, variables, config, key),
        "center": jnp.zeros((out_dim,), jnp.float32),
    }
    if config.get("ibot_weight", 0.0):
        state["patch_center"] = jnp.zeros((out_dim,), jnp.float32)
    return state


def _freeze_last_layer(params, frozen: jax.Array):
    """``params`` with no gradient into the head's last layer while ``frozen`` (a bool scalar).

    The reference drops the last layer's gradients during the first epoch(s), which stabilizes
    the start of training. ``where(frozen, stop_gradient(w), w)`` has the value ``w`` either
    way, and gradient 0 or 1. The optimizer still sees a zero gradient, so its weight decay
    still scales the kernel, but the layer is weight-normalized: scaling a column leaves its
    direction, hence the outputs, unchanged.
    """
    head = params["projector"]
    last_layer = jax.tree.map(
        lambda w: jnp.where(frozen, jax.lax.stop_gradient(w), w), head["last_layer"]
    )
    return {**params, "projector": {**head, "last_layer": last_layer}}


def loss_fn(
    model: nn.Module,
    variables,
    batch: dict[str, jax.Array],
    method_state,
    config: ml_collections.ConfigDict,
    rng: jax.Array,
    step: jax.Array,
) -> tuple[jax.Array, base.LossAux]:
    """DINO loss of a batch of global (and optionally local) views; updates the center.

    The student runs once on the ``B * V`` global views and, with multi-crop, once on the
    ``B * L`` local views (one pass per resolution; the local pass's BatchNorm running
    averages are not kept, so evaluation statistics are those of global views). The teacher
    (EMA variables in ``method_state["target"]``, train-mode BatchNorm as in BYOL) runs on the
    global views only. ``distillation.dino_loss`` pairs every teacher view with every other
    student view, using the center and teacher temperature of the current step; the returned
    ``method_state`` holds the center moved towards this global batch's teacher mean (after
    the loss, as in the reference). With ``train.grad_accum_steps > 1`` that happens once per
    micro-batch.

    Args:
      model: the ``SSLModel`` with a ``DINOHead`` projector.
      variables: ``{"params": ..., "batch_stats": ...}`` of the student.
      batch: ``batch["global"]``: ``[B, V, H, W, 3]``, ``V >= 2`` (DINO: 2); optionally
        ``batch["local"]``: ``[B, L, h, w, 3]``.
      method_state: ``{"target", "center"}`` (``init_state``).
      config: ``config.method``: ``student_temp``, ``teacher_temp``, ``warmup_teacher_temp``,
        ``warmup_teacher_temp_steps``, ``center_momentum``, ``freeze_last_layer_steps``;
        optional ``koleo_weight`` (> 0: DINOv2's KoLeo regularizer, ``capacity.koleo``, on
        the student's backbone features of each global view, summed over the views, weight
        0.1 in DINOv2).
        Optional (DINOv2): ``ibot_weight`` (> 0: iBOT's patch loss, ``mask_probability``,
        ``mask_ratio`` (lo, hi) of ``masking.patch_masks``; needs a ViT with
        ``model.mask_token``), ``centering`` (``"center"``, DINO's, or ``"sinkhorn"``:
        Sinkhorn-Knopp over the global batch, 3 iterations at the teacher temperature).
      rng: the step's key; iBOT's masks are drawn from it.
      step: int32 scalar, the step being trained (``state.step``), for schedules.

    Returns:
      ``(loss, base.LossAux)``; metrics: the teacher temperature and the mean entropy of the
      teacher targets (near ``log K``: uniform collapse; near 0: one-hot collapse); with iBOT
      ``train/ibot`` (unweighted) and the fraction of masked patches.
    """
    views = batch["global"]
    b, v = views.shape[:2]
    if v < 2:
        raise ValueError(f"DINO needs at least 2 global views per image, got {v}.")
    centering = config.get("centering", "center")
    if centering not in CENTERINGS:
        raise errors.ConfigError(f"Unknown method.centering {centering!r}; valid: {CENTERINGS}.")
    ibot = config.get("ibot_weight", 0.0)
    params = _freeze_last_layer(variables["params"], step < config.freeze_last_layer_steps)
    student_variables = {"params": params, "batch_stats": variables.get("batch_stats", {})}
    if ibot:
        if not (isinstance(model.backbone, vit.ViT) and model.backbone.mask_token):
            raise errors.ConfigError(
                "method.ibot_weight > 0 masks patches: it needs a ViT backbone "
                "(model.backbone=vit_*) with model.mask_token=True."
            )
        grid = (views.shape[2] // model.backbone.patch_size) * (
            views.shape[3] // model.backbone.patch_size
        )
        mask = masking.patch_masks(
            rng, b * v, grid, config.mask_probability, tuple(config.mask_ratio)
        ).reshape(b, v, grid)
        (features, student, student_patches), batch_stats = ssl_model.apply_token_views(
            model, student_variables, views, mask
        )
        (_, teacher_out, teacher_patches), _ = ssl_model.apply_token_views(
            model, method_state["target"], views
        )
        teacher_patches = jax.lax.stop_gradient(teacher_patches)  # [B, V, N, K]
    else:
        (features, student), batch_stats = ssl_model.apply_views(
            model, student_variables, views
        )  # [B, V, .]
        (_, teacher_out), _ = ssl_model.apply_views(
            model, method_state["target"], views, project_only=True
        )
    if "local" in batch:
        (_, local_student), _ = ssl_model.apply_views(model, student_variables, batch["local"])
        student = jnp.concatenate([student, local_student], axis=1)  # [B, V + L, K]
    # The teacher is trained only by the EMA: no gradient reaches it (it is not in `params`
    # either, so this documents the method more than it changes anything).
    teacher_out = jax.lax.stop_gradient(teacher_out)  # [B, V, K]
    teacher_temp = schedules.teacher_temperature(
        step, config.warmup_teacher_temp_steps, config.warmup_teacher_temp, config.teacher_temp
    )
    center = method_state["center"]
    k = teacher_out.shape[-1]
    if centering == "center":
        targets = distillation.teacher_probabilities(teacher_out, center, teacher_temp)
        new_state = {
            **method_state,
            "center": distillation.update_center(center, teacher_out, config.center_momentum),
        }
    else:  # DINOv2's sinkhorn_knopp_teacher: the teacher outputs of all global views at once
        targets = clustering.sinkhorn_knopp(teacher_out.reshape(-1, k), teacher_temp, 3)
        targets = targets.reshape(teacher_out.shape)
        new_state = dict(method_state)
    loss = distillation.cross_view_entropy(student, targets, config.student_temp)
    entropy = -jnp.mean(jnp.sum(targets * jnp.log(jnp.maximum(targets, 1e-30)), axis=-1))
    metrics = {"train/teacher_temp": teacher_temp, "train/teacher_entropy": entropy}
    if ibot:
        patch_center = method_state["patch_center"]
        if centering == "center":
            patch_targets = distillation.teacher_probabilities(
                teacher_patches, patch_center, teacher_temp
            )
            moved = distillation.update_center(
                patch_center,
                distillation.masked_center(teacher_patches, mask)[None],
                config.center_momentum,
            )
            new_state["patch_center"] = moved
        else:  # balanced over the masked patch tokens only, as DINOv2
            patch_targets = clustering.sinkhorn_knopp(
                teacher_patches.reshape(-1, k), teacher_temp, 3, valid=mask.reshape(-1)
            ).reshape(teacher_patches.shape)
        patch_loss = distillation.ibot_patch_loss(
            student_patches, patch_targets, mask, config.student_temp
        )
        loss = loss + ibot * patch_loss
        metrics["train/ibot"] = jax.lax.stop_gradient(patch_loss)
        metrics["train/masked_fraction"] = jnp.mean(mask.astype(jnp.float32))
    if config.get("koleo_weight", 0.0):
        # DINOv2's KoLeo on the student's backbone features, per global view, summed.
        spread = sum(capacity.koleo(features[:, i]) for i in range(v))
        loss = loss + config.koleo_weight * spread
        metrics["train/koleo"] = jax.lax.stop_gradient(spread)
    return loss, base.LossAux(features, batch_stats, new_state, metrics)


# The teacher: an EMA of the student with the cosine momentum schedule (``base_momentum`` -> 1).
# The center is updated in ``loss_fn``, which has the teacher outputs of the current batch.
METHOD = base.Method(
    build_model=build_model,
    loss_fn=loss_fn,
    init_state=init_state,
    update_state=teacher.update_state,
)
