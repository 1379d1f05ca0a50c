"""DINO's self-distillation loss and center against numpy, and the loss's invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import distillation


@pytest.mark.parametrize("num_local", [0, 2])
def test_dino_loss_matches_numpy(num_local):
    b, k = 6, 10
    student = _random((b, 2 + num_local, k), 0, scale=0.5)  # [B, V_s, K]: global, then local
    teacher = _random((b, 2, k), 1, scale=0.5)  # [B, V_t, K]
    center = _random((k,), 2, scale=0.1)
    loss = jax.jit(distillation.dino_loss)(student, teacher, center, 0.04, 0.1)
    expected = _np_dino_loss(student, teacher, center, 0.04, 0.1)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # Default student temperature 0.1; bfloat16 inputs give a float32 loss.
    np.testing.assert_allclose(
        jax.jit(distillation.dino_loss)(student, teacher, center, 0.07),
        _np_dino_loss(student, teacher, center, 0.07, 0.1),
        rtol=1e-5,
    )
    bf16 = jax.jit(distillation.dino_loss)(
        jnp.bfloat16(student), jnp.bfloat16(teacher), center, 0.04
    )
    assert bf16.dtype == jnp.float32


def test_dino_loss_is_the_teacher_entropy_at_its_minimum():
    b, k, student_temp, teacher_temp = 8, 12, 0.1, 0.04
    view = _random((b, 1, k), 0)
    teacher = np.concatenate([view, view], axis=1)  # both global views agree
    center = _random((k,), 1, scale=0.3)
    # Student logits whose softmax at student_temp is exactly the sharpened, centered teacher,
    # for every view (plus a per-row constant, which no softmax sees).
    best = student_temp * (view - center) / teacher_temp + _random((b, 1, 1), 2)
    student = np.concatenate([best] * 4, axis=1)  # 2 global + 2 local views
    loss_fn = jax.jit(distillation.dino_loss, static_argnums=(4,))
    q = _np_softmax((view[:, 0].astype(np.float64) - center) / teacher_temp)
    entropy = np.mean(-np.sum(q * np.log(q), axis=-1))
    np.testing.assert_allclose(
        loss_fn(student, teacher, center, teacher_temp, student_temp), entropy, rtol=1e-5
    )
    grad = jax.jit(jax.grad(distillation.dino_loss))(student, teacher, center, teacher_temp)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    # Cross-entropy >= entropy: any other student pays the KL divergence on top.
    for seed in range(3):
        other = student + _random(student.shape, 10 + seed, scale=0.05)
        assert float(loss_fn(other, teacher, center, teacher_temp, student_temp)) > entropy + 1e-4


def test_dino_loss_invariances_and_stop_gradient():
    b, k = 5, 7
    student, teacher = _random((b, 4, k), 0), _random((b, 2, k), 1)
    center = _random((k,), 2, scale=0.2)
    loss_fn = jax.jit(distillation.dino_loss)
    loss = loss_fn(student, teacher, center, 0.05)
    # Softmax invariance: a constant per output row changes nothing; neither does shifting the
    # teacher outputs and the center together.
    row_shift = _random((b, 1, 1), 3, scale=5.0)
    shift = _random((k,), 4)
    np.testing.assert_allclose(loss_fn(student + row_shift, teacher, center, 0.05), loss, rtol=1e-5)
    np.testing.assert_allclose(
        loss_fn(student, teacher + shift, center + shift, 0.05), loss, rtol=1e-5
    )
    # Swapping the two global views in both networks is the same set of pairs.
    swap = [1, 0, 2, 3]
    np.testing.assert_allclose(
        loss_fn(student[:, swap], teacher[:, ::-1], center, 0.05), loss, rtol=1e-6
    )
    # A student view is never paired with the teacher's output of the same view: with only the
    # 2 global views the loss is (CE(q_0, p_1) + CE(q_1, p_0)) / 2.
    two = student[:, :2]
    q = _np_softmax((teacher.astype(np.float64) - center) / 0.05)  # [B, 2, K]
    log_p = np.log(_np_softmax(two.astype(np.float64) / 0.1))  # [B, 2, K]
    cross = lambda i, j: np.mean(-np.sum(q[:, i] * log_p[:, j], -1))  # noqa: E731
    np.testing.assert_allclose(
        loss_fn(two, teacher, center, 0.05), 0.5 * (cross(0, 1) + cross(1, 0)), rtol=1e-5
    )
    # The teacher branch and the center get no gradient.
    grad_teacher, grad_center = jax.jit(jax.grad(distillation.dino_loss, argnums=(1, 2)))(
        student, teacher, center, 0.05
    )
    np.testing.assert_array_equal(grad_teacher, 0.0)
    np.testing.assert_array_equal(grad_center, 0.0)
    with pytest.raises(ValueError, match="V_t <= V_s"):
        distillation.dino_loss(student[:, :1], teacher, center, 0.05)


def test_update_center_matches_numpy_on_a_sharded_batch():
    k = 6
    center, teacher = _random((k,), 0), _random((16, 2, k), 1)  # [B, V_t, K]
    batch_mean = teacher.astype(np.float64).reshape(-1, k).mean(0)  # both views' rows
    np.testing.assert_allclose(
        jax.jit(distillation.update_center)(center, teacher),
        0.9 * center + 0.1 * batch_mean,
        rtol=1e-6,
    )
    # The batch split over 8 devices: the mean is still over the global batch.
    mesh = jax.make_mesh((8,), ("data",))
    sharded = jax.device_put(teacher, jax.NamedSharding(mesh, jax.P("data")))
    assert len(sharded.sharding.device_set) == 8
    update = jax.jit(distillation.update_center, static_argnums=(2,))
    np.testing.assert_allclose(
        update(center, sharded, 0.5), 0.5 * center + 0.5 * batch_mean, rtol=1e-6
    )
    grad = jax.grad(lambda t: distillation.update_center(center, t).sum())(teacher)
    np.testing.assert_array_equal(grad, 0.0)


def _np_dino_loss(student, teacher, center, teacher_temp, student_temp):
    """The reference's double loop over (teacher view, student view) pairs, in float64."""
    student, teacher = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    targets = _np_softmax((teacher - np.asarray(center, np.float64)) / teacher_temp)
    log_probs = np.log(_np_softmax(student / student_temp))
    total, num_pairs = 0.0, 0
    for i in range(teacher.shape[1]):
        for j in range(student.shape[1]):
            if i == j:
                continue
            total += np.mean(np.sum(-targets[:, i] * log_probs[:, j], axis=-1))
            num_pairs += 1
    return total / num_pairs


def _random(shape, seed, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _np_softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def test_cross_view_entropy_from_targets_is_dino_loss():
    student, teacher = _random((6, 4, 10), 0), _random((6, 2, 10), 1)
    center = _random((10,), 2, 0.1)
    targets = distillation.teacher_probabilities(teacher, center, 0.04)
    np.testing.assert_allclose(
        distillation.cross_view_entropy(student, targets, 0.1),
        distillation.dino_loss(student, teacher, center, 0.04, 0.1),
        rtol=1e-6,
    )


def test_ibot_patch_loss_matches_numpy_and_ignores_unmasked_patches():
    b, v, n, k = 5, 2, 6, 7
    student, teacher = _random((b, v, n, k), 3), _random((b, v, n, k), 4)
    targets = np.asarray(jax.nn.softmax(teacher / 0.05, axis=-1))
    mask = np.random.default_rng(5).random((b, v, n)) < 0.4
    mask[0, 0] = False  # an unmasked view of an image adds 0
    loss = distillation.ibot_patch_loss(student, targets, mask, 0.1)
    log_p = student / 0.1 - np.log(np.exp(student / 0.1).sum(-1, keepdims=True))
    ce = -(targets * log_p).sum(-1)  # [B, V, N]
    expected = sum(
        np.mean([ce[i, j][mask[i, j]].sum() / max(mask[i, j].sum(), 1) for i in range(b)])
        for j in range(v)
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # Student outputs at unmasked patches get no gradient; the targets none at all.
    grad = jax.grad(distillation.ibot_patch_loss, argnums=(0, 1))(student, targets, mask, 0.1)
    assert np.all(np.asarray(grad[0])[~mask] == 0) and np.any(np.asarray(grad[0])[mask] != 0)
    assert np.all(np.asarray(grad[1]) == 0)


def test_masked_center_is_the_mean_over_masked_patches():
    teacher = _random((3, 2, 4, 5), 6)
    mask = np.zeros((3, 2, 4), bool)
    mask[1, 0, [0, 3]] = True
    mask[2, 1, 2] = True
    np.testing.assert_allclose(
        distillation.masked_center(teacher, mask), teacher[mask].mean(0), rtol=1e-6
    )
    np.testing.assert_allclose(distillation.masked_center(teacher, ~np.ones_like(mask)), 0.0)
