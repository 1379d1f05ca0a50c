"""DINO: loss and center against numpy, loss invariants, schedules, head, method, smoke run."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import sharding, trainer
from jaxssl.configs import dino_cifar10
from jaxssl.losses import byol as byol_losses
from jaxssl.losses import distillation
from jaxssl.methods import dino
from jaxssl.models import heads


def _random(shape, seed, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _np_softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


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


# --- Loss ---


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


# --- Center and teacher temperature ---


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


def test_teacher_temperature_warms_up_linearly_then_stays():
    schedule = jax.jit(distillation.teacher_temperature, static_argnums=(1, 2, 3))
    for step, expected in [(0, 0.04), (5, 0.055), (10, 0.07), (11, 0.07), (10_000, 0.07)]:
        np.testing.assert_allclose(schedule(step, 10, 0.04, 0.07), expected, rtol=1e-6)
    np.testing.assert_allclose(distillation.teacher_temperature(0, 0), 0.07, rtol=1e-7)
    np.testing.assert_allclose(distillation.teacher_temperature(3, 0, 0.04, 0.04), 0.04)


# --- Head ---


def test_weight_norm_last_layer_has_unit_norm_columns():
    layer = heads.WeightNormDense(5)
    variables = layer.init(jax.random.key(0), jnp.zeros((1, 4)))
    assert set(variables["params"]) == {"kernel"}  # g fixed to 1: no scale parameter
    apply = jax.jit(layer.apply)
    direction = np.asarray(apply(variables, jnp.eye(4)))  # rows of the identity: v / ||v||
    np.testing.assert_allclose(np.linalg.norm(direction, axis=0), 1.0, rtol=1e-6)
    kernel = np.asarray(variables["params"]["kernel"])
    np.testing.assert_allclose(
        direction, kernel / np.linalg.norm(kernel, axis=0, keepdims=True), rtol=1e-6
    )
    # Only directions matter: rescaling each unit's weights changes no output.
    x = _random((3, 4), 1)
    rescaled = {"params": {"kernel": kernel * np.arange(1.0, 6.0, dtype=np.float32)}}
    np.testing.assert_allclose(apply(rescaled, x), apply(variables, x), rtol=1e-5, atol=1e-6)
    # With a learned scale g (norm_last_layer=False) it starts at 1 and multiplies the units.
    scaled = heads.WeightNormDense(5, learn_scale=True)
    scaled_variables = scaled.init(jax.random.key(0), jnp.zeros((1, 4)))
    np.testing.assert_array_equal(scaled_variables["params"]["scale"], 1.0)
    scaled_variables["params"]["scale"] = np.arange(1.0, 6.0, dtype=np.float32)
    np.testing.assert_allclose(
        scaled.apply(scaled_variables, jnp.eye(4)), direction * np.arange(1.0, 6.0), rtol=1e-5
    )


def test_dino_head_outputs_cosines_of_the_normalized_bottleneck():
    head = heads.DINOHead(output_dim=16, hidden_dim=8, bottleneck_dim=4)
    x = _random((6, 10), 0, scale=3.0)
    variables = head.init(jax.random.key(0), x)
    assert set(variables["params"]) == {"dense1", "dense2", "dense3", "last_layer"}
    assert "batch_stats" not in variables  # no BatchNorm by default
    logits = np.asarray(jax.jit(head.apply)(variables, x))
    assert logits.shape == (6, 16)
    # Unit-norm bottleneck times unit-norm units: every logit is a cosine.
    assert np.abs(logits).max() <= 1.0 + 1e-6
    params = variables["params"]
    hidden = np.asarray(x, np.float64)
    for name in ("dense1", "dense2"):
        hidden = hidden @ params[name]["kernel"] + params[name]["bias"]
        hidden = np.asarray(nn.gelu(hidden, approximate=False))
    bottleneck = hidden @ params["dense3"]["kernel"] + params["dense3"]["bias"]
    bottleneck /= np.linalg.norm(bottleneck, axis=-1, keepdims=True)
    kernel = np.asarray(params["last_layer"]["kernel"], np.float64)
    expected = bottleneck @ (kernel / np.linalg.norm(kernel, axis=0, keepdims=True))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    with_bn = heads.DINOHead(output_dim=16, hidden_dim=8, bottleneck_dim=4, use_bn=True)
    assert "bn1" in with_bn.init(jax.random.key(0), x)["batch_stats"]


# --- Method ---


@pytest.fixture(scope="module")
def smoke():
    """The smoke preset on 2 devices, with SGD so that step 1 already moves the parameters."""
    config = dino_cifar10.get_config("smoke")
    config.optim.name = "sgd"
    config.optim.warmup_epochs = 0.0
    config.mesh.data = 2
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = jax.device_get(run.init_state())
    return config, mesh, run, state


def _batch(config, mesh, seed=0, num_local=0):
    rng = np.random.default_rng(seed)
    b = config.train.batch_size
    host_batch = {
        "global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
        "index": np.arange(b, dtype=np.int32),
    }
    if num_local:
        host_batch["local"] = rng.normal(size=(b, num_local, 16, 16, 3)).astype(np.float32)
    return sharding.to_global(host_batch, mesh)


def _flat(views):
    return views.reshape((-1,) + views.shape[2:])


def test_method_state_starts_as_a_copy_with_zero_center(smoke):
    config, _, _, state = smoke
    method_state = state.method_state
    assert set(method_state) == {"target", "center"}
    assert set(method_state["target"]["params"]) == {"backbone", "projector"}
    chex.assert_trees_all_equal(method_state["target"]["params"], state.params)
    chex.assert_trees_all_equal(method_state["target"]["batch_stats"], state.batch_stats)
    np.testing.assert_array_equal(method_state["center"], np.zeros(config.method.out_dim))


def test_local_views_reach_the_student_only(smoke):
    config, mesh, run, state = smoke
    model, method_config = run.model, config.method
    batch = _batch(config, mesh, seed=1, num_local=2)
    method_state = dict(state.method_state)
    method_state["center"] = _random((config.method.out_dim,), 2, scale=0.1)

    @jax.jit
    def compute(variables, method_state, batch):
        def loss(params, batch):
            variables_ = {**variables, "params": params}
            # Step 3: after the warm-up, the last layer trainable.
            return dino.loss_fn(
                model, variables_, batch, method_state, method_config, None, jnp.int32(3)
            )

        (with_local, aux), grads = jax.value_and_grad(loss, has_aux=True)(
            variables["params"], batch
        )
        # The same loss from its parts: student on global then local views, teacher on global.
        b = batch["global"].shape[0]
        (_, student), _ = model.apply(
            variables, _flat(batch["global"]), train=True, mutable=["batch_stats"]
        )
        (_, local), _ = model.apply(
            variables, _flat(batch["local"]), train=True, mutable=["batch_stats"]
        )
        (_, teacher), _ = model.apply(
            method_state["target"],
            _flat(batch["global"]),
            train=True,
            method=model.project,
            mutable=["batch_stats"],
        )
        student = jnp.concatenate([student.reshape(b, 2, -1), local.reshape(b, 2, -1)], 1)
        by_parts = distillation.dino_loss(
            student, teacher.reshape(b, 2, -1), method_state["center"], 0.07, 0.1
        )
        return with_local, by_parts, aux, teacher, grads

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    with_local, by_parts, aux, teacher, grads = jax.device_get(
        compute(variables, method_state, batch)
    )
    np.testing.assert_allclose(with_local, by_parts, rtol=1e-5)
    assert aux.features.shape[:2] == (config.train.batch_size, 2)  # the probe sees global views
    np.testing.assert_allclose(aux.metrics["train/teacher_temp"], 0.07, rtol=1e-6)
    # The center moves 10% towards the mean teacher output over the global batch's global
    # views (the teacher never sees the local ones).
    np.testing.assert_allclose(
        aux.method_state["center"],
        0.9 * method_state["center"] + 0.1 * np.asarray(teacher, np.float64).mean(0),
        rtol=1e-5,
        atol=1e-7,
    )
    chex.assert_tree_all_finite(grads)
    for name in ("backbone", "projector"):
        assert max(float(np.abs(g).max()) for g in jax.tree.leaves(grads[name])) > 1e-6, name


def test_last_layer_is_frozen_first_and_the_teacher_gets_no_gradient(smoke):
    config, mesh, run, state = smoke
    assert config.method.freeze_last_layer_steps == 1
    batch = _batch(config, mesh)
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def loss(params, target, step):
        method_state = {**state.method_state, "target": target}
        variables_ = {**variables, "params": params}
        return dino.loss_fn(run.model, variables_, batch, method_state, config.method, None, step)[
            0
        ]

    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
    largest = lambda tree: max(float(np.abs(g).max()) for g in jax.tree.leaves(tree))  # noqa: E731
    for step, frozen in [(0, True), (1, False)]:
        grads, target_grads = jax.device_get(
            grad_fn(state.params, state.method_state["target"], jnp.int32(step))
        )
        last_layer = grads["projector"]["last_layer"]["kernel"]
        if frozen:
            np.testing.assert_array_equal(last_layer, 0.0)
        else:
            assert np.abs(last_layer).max() > 1e-7
        assert largest(grads["backbone"]) > 1e-6
        assert largest(grads["projector"]["dense1"]) > 1e-6
        for g in jax.tree.leaves(target_grads):
            np.testing.assert_array_equal(g, 0.0)


# Compiles a whole train step: the slow lane.
@pytest.mark.slow
def test_smoke_preset_trains_with_center_ema_and_schedules(smoke):
    config, mesh, run, state = smoke
    state = jax.tree.map(jnp.copy, state)  # the step donates its input
    num_steps = int(config.train.num_steps)
    assert num_steps == 4
    batches = [_batch(config, mesh, seed) for seed in range(num_steps)]
    first_target = jax.device_get(state.method_state["target"])

    def directions(state):
        kernel = np.asarray(jax.device_get(state.params["projector"]["last_layer"]["kernel"]))
        return kernel / np.linalg.norm(kernel, axis=0, keepdims=True)

    history, temps = [directions(state)], []
    for step, batch in enumerate(batches):
        state, metrics = run.train_step(state, batch)
        metrics = jax.device_get(metrics)
        assert not metrics["train/nonfinite"] and np.isfinite(metrics["train/loss"])
        temps.append(float(metrics["train/teacher_temp"]))
        history.append(directions(state))
        if step == 0:
            # The center left 0 and the teacher followed the student with the cosine momentum.
            after = jax.device_get(state)
            assert np.abs(after.method_state["center"]).max() > 1e-6
            m = float(byol_losses.cosine_momentum(0, num_steps, config.method.base_momentum))
            online = {"params": after.params, "batch_stats": after.batch_stats}
            expected = jax.tree.map(lambda t, o, m=m: m * t + (1 - m) * o, first_target, online)
            chex.assert_trees_all_close(
                after.method_state["target"], expected, rtol=1e-6, atol=1e-7
            )
    # Teacher temperature 0.04 -> 0.07 over 2 steps, following the train step's step.
    np.testing.assert_allclose(temps, [0.04, 0.055, 0.07, 0.07], rtol=1e-6)
    # The last layer's directions stay put during the frozen first step (weight decay only
    # rescales the weight-normalized columns) and move afterwards.
    np.testing.assert_allclose(history[1], history[0], rtol=1e-5, atol=1e-7)
    assert np.abs(history[2] - history[1]).max() > 1e-6
    chex.assert_tree_all_finite(jax.device_get((state.params, state.method_state)))
    assert int(state.nonfinite_steps) == 0
