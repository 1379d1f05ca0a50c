"""Per-step schedules of the methods' own hyper-parameters (the learning rate's are optax's, in
`jaxssl.optim`): functions of the traced step, so a resumed run follows them exactly.
"""

import jax
import jax.numpy as jnp


def cosine_momentum(step: jax.Array | int, total_steps: float, base: float = 0.996) -> jax.Array:
    r"""BYOL's EMA momentum, from ``base`` at step 0 to 1 at ``total_steps`` on a cosine.

    .. math::
      m(k) = 1 - (1 - m_0) \, \frac{\cos(\pi k / K) + 1}{2},

    with ``k`` clipped to ``[0, K]`` (as the reference does) so steps past the end stay at 1.

    Args:
      step: the current step ``k`` (before its update).
      total_steps: the run's length ``K``.
      base: the momentum at step 0, ``m_0`` (BYOL: 0.996 on ImageNet; solo-learn uses 0.99
        on CIFAR).

    Returns:
      The momentum, a float32 scalar.

    References:
      Grill et al., BYOL, NeurIPS 2020, Sec. 3.2. https://arxiv.org/abs/2006.07733
    """
    total = max(float(total_steps), 1.0)
    progress = jnp.clip(jnp.asarray(step, jnp.float32), 0.0, total) / total
    return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def linear_momentum(step: jax.Array | int, total_steps: float, base: float = 0.996) -> jax.Array:
    r"""I-JEPA's EMA momentum, from ``base`` at step 0 to 1 at ``total_steps`` on a line:
    :math:`m(k) = m_0 + (1 - m_0) \, k / K`, ``k`` clipped to ``[0, K]``.

    References:
      Assran et al., I-JEPA, CVPR 2023 (code: ``momentum_scheduler`` in ``src/train.py``,
      ``ipe_scale`` 1). https://arxiv.org/abs/2301.08243
    """
    total = max(float(total_steps), 1.0)
    progress = jnp.clip(jnp.asarray(step, jnp.float32), 0.0, total) / total
    return base + (1.0 - base) * progress


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
