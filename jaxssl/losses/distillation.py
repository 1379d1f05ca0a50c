"""Self-distillation (DINO): the student's cross-entropy to a centered, sharpened teacher.

The teacher's outputs are centered (a running mean is subtracted) and sharpened (a low
temperature) so that neither collapse mode wins: centering alone pushes towards the uniform
distribution, sharpening alone towards one dimension. The schedule of the teacher temperature
lives here too, next to the only loss that reads it. All reductions are over the global batch
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


def teacher_temperature(
    step: jax.Array | int,
    warmup_steps: float,
    warmup_teacher_temp: float = 0.04,
    teacher_temp: float = 0.07,
) -> jax.Array:
    r"""The teacher temperature: linear from ``warmup_teacher_temp`` to ``teacher_temp``.

    .. math::
      \tau_t(k) = \tau_0 + (\tau_1 - \tau_0) \min(k / W, 1),

    constant at ``teacher_temp`` from step ``W`` on (and for ``W <= 0``). The reference steps
    the temperature once per epoch (``np.linspace`` over the warm-up epochs, reaching
    :math:`\tau_1` in the last warm-up epoch); this is its per-step version.

    Args:
      step: the current step ``k``.
      warmup_steps: the warm-up length ``W`` in steps.
      warmup_teacher_temp: :math:`\tau_0`, 0.04 in DINO.
      teacher_temp: :math:`\tau_1`; DINO uses 0.04 by default and 0.07 (warmed up over 30
        epochs) for its longer ViT runs; solo-learn uses 0.07 over 50 epochs.

    Returns:
      The temperature, a float32 scalar.

    References:
      Caron et al., DINO, ICCV 2021, Sec. 4 / Appendix ("linear warm-up from 0.04 to 0.07
      during the first 30 epochs"). https://arxiv.org/abs/2104.14294
    """
    if warmup_steps <= 0:
        return jnp.asarray(teacher_temp, jnp.float32)
    progress = jnp.clip(jnp.asarray(step, jnp.float32) / float(warmup_steps), 0.0, 1.0)
    return warmup_teacher_temp + (teacher_temp - warmup_teacher_temp) * progress
