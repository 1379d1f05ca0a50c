"""The methods' per-step schedules: EMA momentum, teacher temperature."""

import jax
import numpy as np

from jaxssl import schedules


def test_cosine_momentum_endpoints_and_midpoint():
    momentum = jax.jit(schedules.cosine_momentum, static_argnums=(1, 2))
    np.testing.assert_allclose(momentum(0, 1000, 0.996), 0.996, rtol=1e-7)
    np.testing.assert_allclose(momentum(500, 1000, 0.996), 0.998, rtol=1e-7)
    np.testing.assert_allclose(momentum(1000, 1000, 0.996), 1.0, rtol=1e-7)
    np.testing.assert_allclose(momentum(5000, 1000, 0.996), 1.0, rtol=1e-7)  # clipped
    np.testing.assert_allclose(schedules.cosine_momentum(0, 10), 0.996, rtol=1e-7)


def test_teacher_temperature_warms_up_linearly_then_stays():
    schedule = jax.jit(schedules.teacher_temperature, static_argnums=(1, 2, 3))
    for step, expected in [(0, 0.04), (5, 0.055), (10, 0.07), (11, 0.07), (10_000, 0.07)]:
        np.testing.assert_allclose(schedule(step, 10, 0.04, 0.07), expected, rtol=1e-6)
    np.testing.assert_allclose(schedules.teacher_temperature(0, 0), 0.07, rtol=1e-7)
    np.testing.assert_allclose(schedules.teacher_temperature(3, 0, 0.04, 0.04), 0.04)
