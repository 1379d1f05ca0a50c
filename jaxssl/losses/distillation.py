"""Self-distillation (DINO): the student's cross-entropy to a centered, sharpened teacher.

The teacher's outputs are centered (a running mean is subtracted) and sharpened (a low
temperature) so that neither collapse mode wins: centering alone pushes towards the uniform
distribution, sharpening alone towards one dimension. The teacher temperature's schedule is
`jaxssl.schedules.teacher_temperature`. All reductions are over the global batch
and computed in float32 whatever the input dtype.

References:
  Caron et al., Emerging Properties in Self-Supervised Vision Transformers (DINO), ICCV 2021.
  https://arxiv.org/abs/2104.14294
"""

import chex
import jax
import jax.numpy as jnp


def teacher_probabilities(
    teacher_logits: jax.Array, center: jax.Array, teacher_temp: float | jax.Array
) -> jax.Array:
    r"""The teacher's targets :math:`\mathrm{softmax}((t - c) / \tau_t)`, without gradient.

    Args:
      teacher_logits: teacher outputs ``[..., K]``.
      center: the running center ``[K]``.
      teacher_temp: the teacher temperature :math:`\tau_t` (a scalar, possibly scheduled).

    Returns:
      Probabilities over the last axis, float32, the shape of ``teacher_logits``.
    """
    chex.assert_shape(center, (teacher_logits.shape[-1],))
    centered = teacher_logits.astype(jnp.float32) - center.astype(jnp.float32)
    # The teacher is a target, never trained through the loss (DINO's "sg" in Fig. 2).
    return jax.lax.stop_gradient(jax.nn.softmax(centered / teacher_temp, axis=-1))


def dino_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    center: jax.Array,
    teacher_temp: float | jax.Array,
    student_temp: float = 0.1,
) -> jax.Array:
    r"""DINO's loss: cross-entropy from every teacher view to every other student view.

    With teacher targets :math:`q_i = \mathrm{softmax}((t_i - c) / \tau_t)` (stop-gradient) and
    student log-probabilities :math:`\log p_j = \mathrm{log\_softmax}(s_j / \tau_s)`,

    .. math::
      \mathcal{L} = \frac{1}{|P|} \sum_{(i, j) \in P} \frac{1}{B} \sum_{b=1}^{B}
        \sum_{k=1}^{K} -q_{b,i,k} \log p_{b,j,k},
      \qquad P = \{(i, j) : i < V_t,\ j < V_s,\ i \ne j\},

    i.e. the cross-entropy summed over the output dimension, averaged over the batch and then
    over all (teacher view, student view) pairs of different views, as in the reference
    ``DINOLoss``. The first ``V_t`` student views must be the global views the teacher saw, in
    the same order (that is how a pair of "the same view" is recognized); local views follow.

    Args:
      student_logits: student outputs ``[B, V_s, K]``: the global views, then the local ones.
      teacher_logits: teacher outputs ``[B, V_t, K]`` of the global views, ``V_t <= V_s``.
      center: the running center of the teacher outputs ``[K]`` (``update_center``).
      teacher_temp: :math:`\tau_t`; DINO warms it up from 0.04 (``teacher_temperature``).
      student_temp: :math:`\tau_s`, 0.1 in DINO.

    Returns:
      The scalar loss. It is at least the mean teacher entropy, with equality iff every
      student distribution equals the teacher targets it is paired with.

    References:
      Caron et al., DINO, ICCV 2021, Eq. 3 and Algorithm 1. https://arxiv.org/abs/2104.14294
    """
    chex.assert_rank((student_logits, teacher_logits), 3)
    b, num_student, k = student_logits.shape
    num_teacher = teacher_logits.shape[1]
    chex.assert_shape(teacher_logits, (b, num_teacher, k))
    if not 1 <= num_teacher <= num_student or num_student < 2:
        raise ValueError(
            f"DINO pairs {num_teacher} teacher views with {num_student} student views: needs "
            "1 <= V_t <= V_s and V_s >= 2."
        )
    targets = teacher_probabilities(teacher_logits, center, teacher_temp)  # [B, V_t, K]
    return cross_view_entropy(student_logits, targets, student_temp)


def cross_view_entropy(
    student_logits: jax.Array, targets: jax.Array, student_temp: float = 0.1
) -> jax.Array:
    """`dino_loss` from teacher targets already made (centered and sharpened, or by
    Sinkhorn-Knopp as DINOv2 can): ``targets`` ``[B, V_t, K]`` probabilities (no gradient),
    ``student_logits`` ``[B, V_s, K]``, the global views first."""
    chex.assert_rank((student_logits, targets), 3)
    b, num_student, k = student_logits.shape
    num_teacher = targets.shape[1]
    chex.assert_shape(targets, (b, num_teacher, k))
    if not 1 <= num_teacher <= num_student or num_student < 2:
        raise ValueError(
            f"DINO pairs {num_teacher} teacher views with {num_student} student views: needs "
            "1 <= V_t <= V_s and V_s >= 2."
        )
    targets = jax.lax.stop_gradient(targets.astype(jnp.float32))
    log_probs = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
    # Batch-mean cross-entropy of every (teacher view, student view) pair in one contraction;
    # HIGHEST keeps it float32 on TPUs, whose default matmul precision is bfloat16.
    cross_entropy = (
        -jnp.einsum("bik,bjk->ij", targets, log_probs, precision=jax.lax.Precision.HIGHEST) / b
    )  # [V_t, V_s]
    different_views = ~jnp.eye(num_teacher, num_student, dtype=bool)  # [V_t, V_s]
    num_pairs = num_teacher * num_student - num_teacher
    return jnp.sum(jnp.where(different_views, cross_entropy, 0.0)) / num_pairs


def update_center(center: jax.Array, teacher_logits: jax.Array, momentum: float = 0.9) -> jax.Array:
    r"""DINO's center update :math:`c \leftarrow m c + (1 - m) \frac{1}{N} \sum_n t_n`.

    The mean is over every teacher output of the batch (all rows of all global views). Under
    ``jax.jit`` over a mesh ``teacher_logits`` is the global batch, so this plain mean is the
    reference's ``all_reduce`` mean over devices.

    Args:
      center: the current center ``[K]``.
      teacher_logits: teacher outputs ``[..., K]`` (e.g. ``[B, V_t, K]``).
      momentum: :math:`m`, 0.9 in DINO.

    Returns:
      The new center ``[K]``, float32, with no gradient to the teacher.

    References:
      Caron et al., DINO, ICCV 2021, Eq. 4. https://arxiv.org/abs/2104.14294
    """
    k = center.shape[-1]
    chex.assert_shape(center, (k,))
    chex.assert_axis_dimension(teacher_logits, -1, k)
    rows = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32).reshape(-1, k)  # [N, K]
    return momentum * center.astype(jnp.float32) + (1.0 - momentum) * jnp.mean(rows, axis=0)


def ibot_patch_loss(
    student_patch_logits: jax.Array,
    patch_targets: jax.Array,
    mask: jax.Array,
    student_temp: float = 0.1,
) -> jax.Array:
    r"""iBOT's masked-patch self-distillation, as DINOv2's ``iBOTPatchLoss.forward_masked``.

    For view :math:`v` of image :math:`b` with masked patches :math:`M_{bv}` (the student saw
    the mask token there, the teacher the patch),

    .. math::
      \mathcal{L} = \sum_{v} \frac{1}{B} \sum_{b} \frac{1}{\max(|M_{bv}|, 1)}
        \sum_{n \in M_{bv}} \sum_k -q_{bvnk} \log p_{bvnk},

    the per-patch cross-entropy averaged over an image's masked patches, then over all images
    of the global batch (an unmasked image adds 0, as in both references), summed over the
    global views (DINOv2 scales its per-crop mean by the number of global crops).

    Args:
      student_patch_logits: ``[B, V, N, K]`` student head outputs of the patch tokens.
      patch_targets: ``[B, V, N, K]`` teacher probabilities of the same patches (no gradient).
      mask: ``[B, V, N]`` bool, the masked patches.
      student_temp: the student temperature (DINOv2: 0.1, as for the CLS loss).

    Returns:
      The scalar loss, float32.

    References:
      Zhou et al., iBOT: Image BERT Pre-Training with Online Tokenizer, ICLR 2022.
      https://arxiv.org/abs/2111.07832; Oquab et al., DINOv2, TMLR 2024,
      https://arxiv.org/abs/2304.07193 (code: ``dinov2/loss/ibot_patch_loss.py``).
    """
    chex.assert_rank(student_patch_logits, 4)
    chex.assert_equal_shape((student_patch_logits, patch_targets))
    chex.assert_shape(mask, student_patch_logits.shape[:3])
    targets = jax.lax.stop_gradient(patch_targets.astype(jnp.float32))
    log_probs = jax.nn.log_softmax(student_patch_logits.astype(jnp.float32) / student_temp, -1)
    per_patch = -jnp.sum(targets * log_probs, axis=-1)  # [B, V, N]
    weight = mask / jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1)  # [B, V, N]
    per_image = jnp.sum(per_patch * weight, axis=-1)  # [B, V]
    return jnp.sum(jnp.mean(per_image, axis=0))


def masked_center(teacher_patch_logits: jax.Array, mask: jax.Array) -> jax.Array:
    """The mean teacher output over the masked patches ``[K]`` (0 if none is masked), which
    DINOv2 moves its patch center towards (``update_center`` takes it as ``[1, K]``)."""
    k = teacher_patch_logits.shape[-1]
    rows = jax.lax.stop_gradient(teacher_patch_logits).astype(jnp.float32).reshape(-1, k)
    weights = mask.reshape(-1).astype(jnp.float32)
    return weights @ rows / jnp.maximum(jnp.sum(weights), 1.0)
