"""DINO: head, method, smoke run (the loss is in test_distillation.py, the schedules in
test_schedules.py)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import errors, schedules, sharding, trainer
from jaxssl.configs import dino_cifar10, dinov2_cifar10
from jaxssl.losses import capacity, distillation
from jaxssl.methods import dino
from jaxssl.models import heads, masking, ssl_model


def _random(shape, seed, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _np_softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


# --- Loss ---


# --- Center and teacher temperature ---


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
    return _smoke(dino_cifar10.get_config("smoke"))


def _smoke(config):
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
            m = float(schedules.cosine_momentum(0, num_steps, config.method.base_momentum))
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


def test_koleo_weight_adds_dinov2_koleo_of_each_global_views_features(smoke):
    config, mesh, run, state = smoke
    batch = _batch(config, mesh, seed=3)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    with_koleo = config.method.copy_and_resolve_references()
    with_koleo.koleo_weight = 0.1

    def loss(method_config):
        return dino.loss_fn(run.model, variables, batch, state.method_state, method_config, None, 0)

    plain, _ = loss(config.method)
    value, aux = loss(with_koleo)
    spread = capacity.koleo(aux.features[:, 0]) + capacity.koleo(aux.features[:, 1])
    np.testing.assert_allclose(aux.metrics["train/koleo"], spread, rtol=1e-5)
    np.testing.assert_allclose(value, plain + 0.1 * spread, rtol=1e-5)


# --- DINOv2's additions: iBOT's masked-patch loss, Sinkhorn-Knopp targets ---


@pytest.fixture(scope="module")
def dinov2_smoke():
    return _smoke(dinov2_cifar10.get_config("smoke"))


def test_ibot_adds_the_shared_heads_masked_patch_loss_and_moves_a_patch_center(dinov2_smoke):
    config, mesh, run, state = dinov2_smoke
    assert state.method_state["patch_center"].shape == (config.method.out_dim,)
    batch = _batch(config, mesh, seed=4)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    method_config = config.method.copy_and_resolve_references()
    method_config.centering = "center"
    method_config.koleo_weight = 0.0
    method_config.ibot_weight = 0.5
    rng = jax.random.key(7)
    value, aux = dino.loss_fn(
        run.model, variables, batch, state.method_state, method_config, rng, 3
    )
    b, grid = config.train.batch_size, (32 // 8) ** 2
    mask = masking.patch_masks(rng, 2 * b, grid, 0.5, (0.1, 0.5)).reshape(b, 2, grid)
    views = batch["global"]
    (_, s_cls, s_patch), _ = ssl_model.apply_token_views(run.model, variables, views, mask)
    (_, t_cls, t_patch), _ = ssl_model.apply_token_views(
        run.model, state.method_state["target"], batch["global"]
    )
    temp = schedules.teacher_temperature(
        3, method_config.warmup_teacher_temp_steps, 0.04, method_config.teacher_temp
    )
    patch_center = state.method_state["patch_center"]
    patch_loss = distillation.ibot_patch_loss(
        s_patch, distillation.teacher_probabilities(t_patch, patch_center, temp), mask, 0.1
    )
    dino_part = distillation.dino_loss(s_cls, t_cls, state.method_state["center"], temp, 0.1)
    np.testing.assert_allclose(aux.metrics["train/ibot"], patch_loss, rtol=1e-5)
    np.testing.assert_allclose(value, dino_part + 0.5 * patch_loss, rtol=1e-5)
    np.testing.assert_allclose(
        aux.method_state["patch_center"],
        0.1 * distillation.masked_center(t_patch, mask),
        rtol=1e-5,
        atol=1e-7,
    )
    assert 0.0 < float(aux.metrics["train/masked_fraction"]) < 0.5
    # No image masked: no patch loss, and the CLS loss is DINO's on the plain views.
    method_config.mask_probability = 0.0
    value, aux = dino.loss_fn(
        run.model, variables, batch, state.method_state, method_config, rng, 3
    )
    assert float(aux.metrics["train/ibot"]) == 0.0
    (_, plain_cls, _), _ = ssl_model.apply_token_views(run.model, variables, batch["global"])
    np.testing.assert_allclose(
        value,
        distillation.dino_loss(plain_cls, t_cls, state.method_state["center"], temp, 0.1),
        rtol=1e-5,
    )


def test_sinkhorn_centering_gives_balanced_targets_and_keeps_the_centers(dinov2_smoke):
    config, mesh, run, state = dinov2_smoke
    assert config.method.centering == "sinkhorn"
    batch = _batch(config, mesh, seed=5)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    value, aux = dino.loss_fn(
        run.model, variables, batch, state.method_state, config.method, jax.random.key(1), 0
    )
    assert np.isfinite(float(value)) and float(aux.metrics["train/ibot"]) > 0
    chex.assert_trees_all_equal(
        (aux.method_state["center"], aux.method_state["patch_center"]),
        (state.method_state["center"], state.method_state["patch_center"]),
    )
    assert "train/koleo" in aux.metrics


@pytest.mark.slow  # ~20 s of train steps; the losses above stay in the default lane
def test_dinov2_smoke_steps_stay_finite(dinov2_smoke):
    config, mesh, run, state = dinov2_smoke
    state = run.init_state()
    for seed in range(3):
        state, metrics = run.train_step(state, _batch(config, mesh, seed=seed))
        assert not jax.device_get(metrics["train/nonfinite"])
        assert float(metrics["train/ibot"]) > 0
    chex.assert_tree_all_finite(jax.device_get((state.params, state.method_state)))


def test_ibot_needs_a_vit_with_a_mask_token():
    resnet = dino_cifar10.get_config("smoke")
    resnet.method.ibot_weight = 1.0
    resnet_run = trainer.build(resnet, sharding.make_mesh(resnet.mesh))
    resnet_state = jax.device_get(resnet_run.init_state())
    variables = {"params": resnet_state.params, "batch_stats": resnet_state.batch_stats}
    with pytest.raises(errors.ConfigError, match="mask_token=True"):
        dino.loss_fn(
            resnet_run.model,
            variables,
            _batch(resnet, sharding.make_mesh(resnet.mesh)),
            resnet_state.method_state,
            resnet.method,
            jax.random.key(0),
            0,
        )
