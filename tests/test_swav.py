"""SwAV: Sinkhorn-Knopp and the swapped-prediction loss against numpy, frozen prototypes, the
queue, multi-crop, and the smoke preset's train steps."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import sharding, trainer
from jaxssl.configs import swav_cifar10
from jaxssl.losses import swav as swav_losses
from jaxssl.methods import swav
from jaxssl.models import heads, ssl_model


def _np_sinkhorn(scores, epsilon=0.05, num_iters=3):
    """The reference algorithm in float64, written sample-major ([N, K]) with explicit masses."""
    n, k = scores.shape
    p = np.exp(np.asarray(scores, np.float64) / epsilon)
    p /= p.sum()
    for _ in range(num_iters):
        p *= (1.0 / k) / p.sum(axis=0, keepdims=True)  # each prototype's mass over samples: 1/K
        p *= (1.0 / n) / p.sum(axis=1, keepdims=True)  # each sample's mass: 1/N
    return p * n


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_swav_loss(scores, codes, temperature):
    """The reference's loop: per code view, the sum over the other views / (V - 1); mean."""
    scores, codes = np.asarray(scores, np.float64), np.asarray(codes, np.float64)
    num_views, num_code_views = scores.shape[1], codes.shape[1]
    loss = 0.0
    for c in range(num_code_views):
        subloss = 0.0
        for v in np.delete(np.arange(num_views), c):
            log_p = _np_log_softmax(scores[:, v] / temperature)
            subloss -= np.mean(np.sum(codes[:, c] * log_p, axis=1))
        loss += subloss / (num_views - 1)
    return loss / num_code_views


def _cosines(shape, seed):
    """Scores in [-1, 1] like SwAV's cosine similarities."""
    return np.tanh(np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, 5.0])  # 5: exp(S / eps) overflows float32 unshifted
def test_sinkhorn_matches_numpy(scale):
    scores = scale * _cosines((12, 7), 0)
    got = jax.jit(swav_losses.sinkhorn_knopp)(scores)
    np.testing.assert_allclose(got, _np_sinkhorn(scores), rtol=2e-5, atol=1e-7)
    assert got.dtype == jnp.float32
    bf16 = jax.jit(swav_losses.sinkhorn_knopp)(jnp.bfloat16(scores))
    assert bf16.dtype == jnp.float32
    sinkhorn = jax.jit(swav_losses.sinkhorn_knopp, static_argnums=(1, 2))
    np.testing.assert_allclose(
        sinkhorn(scores, 0.1, 5), _np_sinkhorn(scores, 0.1, 5), rtol=2e-5, atol=1e-7
    )


def test_sinkhorn_marginals_and_invariances():
    scores = _cosines((40, 8), 1)
    sinkhorn = jax.jit(swav_losses.sinkhorn_knopp, static_argnums=(1, 2))
    codes = np.asarray(sinkhorn(scores, 0.05, 3))
    assert (codes >= 0).all()
    np.testing.assert_allclose(codes.sum(1), 1.0, rtol=1e-5)  # each sample: a distribution
    # Prototypes: each should get N/K of the mass. Each iteration balances them better than
    # the last (from a per-sample softmax, 0 iterations), and exactly in the limit.
    target = 40 / 8
    imbalance = lambda q: np.abs(np.asarray(q).sum(0) - target).sum()  # noqa: E731
    imbalances = [imbalance(jax.nn.softmax(scores / 0.05, axis=1))]
    imbalances += [imbalance(sinkhorn(scores, 0.05, n)) for n in (1, 2, 3, 10, 30)]
    assert all(a > b for a, b in zip(imbalances[:-1], imbalances[1:], strict=True)), imbalances
    np.testing.assert_allclose(np.asarray(sinkhorn(scores, 0.05, 200)).sum(0), target, rtol=1e-4)
    # Equal scores: uniform codes. A constant shift changes nothing. Samples permute along.
    np.testing.assert_allclose(sinkhorn(np.zeros((6, 4), np.float32), 0.05, 3), 0.25, rtol=1e-6)
    np.testing.assert_allclose(sinkhorn(scores + 0.7, 0.05, 3), codes, rtol=1e-5, atol=1e-7)
    order = np.random.default_rng(2).permutation(40)
    np.testing.assert_allclose(sinkhorn(scores[order], 0.05, 3), codes[order], rtol=1e-5)
    # Targets: no gradient reaches the scores.
    grad = jax.grad(lambda s: jnp.sum(swav_losses.sinkhorn_knopp(s) * jnp.arange(8.0)))(scores)
    np.testing.assert_array_equal(grad, 0.0)


def test_codes_with_a_queue_are_the_batch_rows_of_sinkhorn_over_queue_and_batch():
    scores = _cosines((6, 2, 5), 3)  # [B, C, K]
    queue_scores = _cosines((2, 12, 5), 4)  # [C, L, K]
    with_queue = jax.jit(swav_losses.swav_codes)(scores, queue_scores)
    without = jax.jit(swav_losses.swav_codes)(scores)
    for c in range(2):
        expected = _np_sinkhorn(np.concatenate([queue_scores[c], scores[:, c]]))[-6:]
        np.testing.assert_allclose(with_queue[:, c], expected, rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(without[:, c], _np_sinkhorn(scores[:, c]), rtol=2e-5)
    # Only the batch rows: they still sum to 1, and the queue changed them.
    np.testing.assert_allclose(np.asarray(with_queue).sum(-1), 1.0, rtol=1e-5)
    assert np.abs(np.asarray(with_queue) - np.asarray(without)).max() > 1e-3


@pytest.mark.parametrize("num_views", [2, 5])  # 2 global views, or 2 global + 3 local
def test_swapped_prediction_loss_matches_numpy(num_views):
    scores = _cosines((8, num_views, 6), 5)
    codes = np.asarray(jax.nn.softmax(3 * _cosines((8, 2, 6), 6)))
    loss_fn = jax.jit(swav_losses.swapped_prediction_loss, static_argnums=2)
    loss = loss_fn(scores, codes, 0.1)
    np.testing.assert_allclose(loss, _np_swav_loss(scores, codes, 0.1), rtol=1e-5)
    if num_views == 2:  # the symmetric two-view form
        h = lambda q, s: -np.mean(np.sum(q * _np_log_softmax(s / 0.1), 1))  # noqa: E731
        expected = 0.5 * (h(codes[:, 0], scores[:, 1]) + h(codes[:, 1], scores[:, 0]))
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(
        loss_fn(scores, codes, 0.5), _np_swav_loss(scores, codes, 0.5), rtol=1e-5
    )
    grad_scores, grad_codes = jax.grad(swav_losses.swapped_prediction_loss, argnums=(0, 1))(
        scores, codes
    )
    np.testing.assert_array_equal(grad_codes, 0.0)  # codes are targets
    assert np.abs(grad_scores).max() > 1e-4


def test_loss_needs_two_views():
    with pytest.raises(ValueError, match="V >= 2"):
        swav_losses.swapped_prediction_loss(jnp.zeros((4, 1, 3)), jnp.zeros((4, 1, 3)))


# --- The method on a tiny model (compiles in a moment) ---


class _TinyBackbone(nn.Module):
    """A strided conv and global pooling: any resolution, so global and local views fit."""

    @nn.compact
    def __call__(self, images, train=True):
        del train
        return jnp.mean(nn.relu(nn.Conv(8, (3, 3), strides=2)(images)), axis=(1, 2))  # [B, 8]


def _tiny(**changes):
    config = ml_collections.ConfigDict(
        dict(
            num_prototypes=10,
            temperature=0.1,
            epsilon=0.05,
            sinkhorn_iters=3,
            freeze_prototypes_steps=1,
            queue_length=0,
            queue_start_steps=0,
        )
    )
    config.update(changes)
    model = ssl_model.SSLModel(
        backbone=_TinyBackbone(),
        projector=heads.MLP(hidden_dim=16, output_dim=6, num_layers=2),
        predictor=swav.Prototypes(config.num_prototypes),
    )
    variables = model.init(jax.random.key(0), jnp.zeros((2, 16, 16, 3)), train=True)
    return model, variables, config, swav.init_method_state(model, variables, config)


def _views(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _loss(model, config):
    return jax.jit(
        lambda variables, batch, state, step: swav.loss_fn(
            model, variables, batch, state, config, None, step
        )
    )


@functools.partial(jax.jit, static_argnums=0)
def _projections_and_scores(model, variables, views):
    (_, z, scores), _ = swav._apply(model, variables, views)
    return z, scores


def _outputs(model, variables, views):
    return tuple(map(np.asarray, _projections_and_scores(model, variables, views)))


def test_prototypes_are_unit_vectors_and_scores_are_cosines():
    model, variables, _, _ = _tiny()
    kernel = variables["params"]["predictor"]["kernel"]
    assert kernel.shape == (6, 10)
    np.testing.assert_allclose(np.linalg.norm(swav.unit_prototypes(kernel), axis=0), 1.0, 1e-6)
    views = _views((4, 2, 16, 16, 3), 0)
    z, scores = _outputs(model, variables, views)
    unit = lambda x, axis: x / np.linalg.norm(x, axis=axis, keepdims=True)  # noqa: E731
    expected = unit(z, -1) @ unit(np.asarray(kernel), 0)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    # Scaling the kernel (weight decay, LARS) does not move the prototypes.
    scaled = jax.tree.map(lambda x: x, variables)
    scaled["params"]["predictor"]["kernel"] = 0.3 * kernel
    np.testing.assert_allclose(_outputs(model, scaled, views)[1], scores, rtol=1e-5, atol=1e-6)


def test_loss_fn_with_local_views_matches_the_loss_by_hand():
    model, variables, config, state = _tiny()
    batch = {"global": _views((4, 2, 16, 16, 3), 1), "local": _views((4, 3, 8, 8, 3), 2)}
    loss, aux = _loss(model, config)(variables, batch, state, 0)
    _, global_scores = _outputs(model, variables, batch["global"])
    _, local_scores = _outputs(model, variables, batch["local"])
    codes = np.stack([_np_sinkhorn(global_scores[:, c]) for c in range(2)], axis=1)
    scores = np.concatenate([global_scores, local_scores], axis=1)  # [B, 5, K]
    np.testing.assert_allclose(float(loss), _np_swav_loss(scores, codes, 0.1), rtol=1e-5)
    global_only, _ = _loss(model, config)(variables, {"global": batch["global"]}, state, 0)
    np.testing.assert_allclose(
        float(global_only), _np_swav_loss(global_scores, codes, 0.1), rtol=1e-5
    )
    assert abs(float(loss) - float(global_only)) > 1e-4
    chex.assert_shape(aux.features, (4, 2, 8))  # the probe reads the global views only


def test_wrong_view_count_and_queue_length_are_errors():
    model, variables, config, state = _tiny()
    with pytest.raises(ValueError, match="exactly 2 global views"):
        swav.loss_fn(
            model, variables, {"global": jnp.zeros((4, 3, 8, 8, 3))}, state, config, None, 0
        )
    model, variables, config, state = _tiny(queue_length=6)
    with pytest.raises(ValueError, match="multiple of the global batch 4"):
        swav.loss_fn(
            model, variables, {"global": jnp.zeros((4, 2, 8, 8, 3))}, state, config, None, 0
        )


def test_prototypes_get_no_gradient_while_frozen():
    model, variables, config, state = _tiny(freeze_prototypes_steps=3)
    batch = {"global": _views((8, 2, 16, 16, 3), 3), "local": _views((8, 2, 8, 8, 3), 4)}

    @jax.jit
    def loss_and_grads(params, step):
        def loss(params):
            variables_ = {"params": params, "batch_stats": variables["batch_stats"]}
            return swav.loss_fn(model, variables_, batch, state, config, None, step)[0]

        return jax.value_and_grad(loss)(params)

    for step, frozen in [(0, True), (2, True), (3, False), (100, False)]:
        loss, grads = loss_and_grads(variables["params"], jnp.asarray(step, jnp.int32))
        kernel_grad = np.abs(np.asarray(grads["predictor"]["kernel"])).max()
        assert (kernel_grad == 0.0) if frozen else (kernel_grad > 1e-5), (step, kernel_grad)
        assert np.abs(np.asarray(grads["projector"]["dense1"]["kernel"])).max() > 1e-5
        if step == 0:
            first_loss = float(loss)
        np.testing.assert_allclose(float(loss), first_loss, rtol=1e-6)  # same forward pass


def test_queue_fills_from_its_start_step_and_joins_the_codes_once_full():
    model, variables, config, state = _tiny(queue_length=8, queue_start_steps=1)
    assert state["queue"].shape == (2, 8, 6)
    loss_fn = _loss(model, config)
    batches = [{"global": _views((4, 2, 16, 16, 3), 10 + i)} for i in range(4)]

    def step(state, i):
        loss, aux = loss_fn(variables, batches[i], state, i)
        return float(loss), aux, aux.method_state

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    def embeddings(i):  # [2, B, P] unit projections of batch i's global views
        return unit(np.swapaxes(_outputs(model, variables, batches[i]["global"])[0], 0, 1))

    # Step 0: before queue_start_steps, nothing enters.
    loss0, aux, state = step(state, 0)
    np.testing.assert_array_equal(state["queue"], 0.0)
    assert int(state["queue_filled"]) == 0 and not aux.metrics["train/queue_in_use"]
    # Steps 1, 2: the newest batch's rows first; unused until full.
    _, aux, state = step(state, 1)
    np.testing.assert_allclose(state["queue"][:, :4], embeddings(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(state["queue"][:, 4:], 0.0)
    _, aux, state = step(state, 2)
    assert not aux.metrics["train/queue_in_use"] and int(state["queue_filled"]) == 8
    np.testing.assert_allclose(state["queue"][:, :4], embeddings(2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["queue"][:, 4:], embeddings(1), rtol=1e-5, atol=1e-6)
    # Step 3: full, so the codes equipartition over queue + batch; then batch 1 falls off.
    queue = np.asarray(state["queue"])
    loss3, aux, state = step(state, 3)
    assert aux.metrics["train/queue_in_use"]
    _, scores = _outputs(model, variables, batches[3]["global"])
    kernel = np.asarray(variables["params"]["predictor"]["kernel"])
    prototypes = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    codes = np.stack(
        [_np_sinkhorn(np.concatenate([queue[c] @ prototypes, scores[:, c]]))[-4:] for c in (0, 1)],
        axis=1,
    )
    np.testing.assert_allclose(loss3, _np_swav_loss(scores, codes, 0.1), rtol=1e-5)
    batch_codes = np.stack([_np_sinkhorn(scores[:, c]) for c in (0, 1)], axis=1)
    without_queue = _np_swav_loss(scores, batch_codes, 0.1)
    assert abs(loss3 - without_queue) > 1e-4
    np.testing.assert_allclose(state["queue"][:, :4], embeddings(3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["queue"][:, 4:], embeddings(2), rtol=1e-5, atol=1e-6)
    assert int(state["queue_filled"]) == 8


def test_queue_and_loss_are_the_same_on_one_and_eight_devices():
    model, variables, config, initial = _tiny(queue_length=16, queue_start_steps=0)
    batches = [
        {"global": np.asarray(_views((8, 2, 16, 16, 3), 20 + i)), "label": np.zeros(8, np.int32)}
        for i in range(3)
    ]
    results = []
    for devices in (1, 8):
        mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=devices, fsdp=1)))
        loss_fn = _loss(model, config)
        state, losses = initial, []
        for step, host_batch in enumerate(batches):  # the third step uses the (full) queue
            batch = sharding.to_global(host_batch, mesh)
            assert len(batch["global"].sharding.device_set) == devices
            loss, aux = loss_fn(variables, batch, state, step)
            state = aux.method_state
            losses.append(float(loss))
        results.append((losses, jax.device_get(state)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    # The projector's BatchNorm over 8 rows amplifies the float32 rounding of a different
    # reduction order to ~1e-5; a per-device (not global) queue would differ by O(1).
    chex.assert_trees_all_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-4)
    assert int(results[1][1]["queue_filled"]) == 16


# --- The smoke preset through the real train step ---


# Compiles a whole train step: the slow lane.
@pytest.mark.slow
def test_smoke_train_steps_with_multi_crop_freeze_then_train_the_prototypes():
    config = swav_cifar10.get_config("smoke")
    config.optim.name = "sgd"  # LARS+warmup starts at lr 0; SGD moves params on step 1
    config.optim.warmup_epochs = 0.0
    config.optim.weight_decay = 1e-2  # visible, so that the frozen kernel is seen to shrink
    config.data.local_views = 2
    config.mesh.data = 2
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = run.init_state()
    b = config.train.batch_size

    def batch(seed):
        rng = np.random.default_rng(seed)
        host_batch = {
            "global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32),
            "local": rng.normal(size=(b, 2, 16, 16, 3)).astype(np.float32),
            "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
            "index": np.arange(b, dtype=np.int32),
        }
        return sharding.to_global(host_batch, mesh)

    def kernel(state):
        return np.asarray(jax.device_get(state.params["predictor"]["kernel"]))

    kernels, history = [kernel(state)], []
    for seed in range(3):
        state, metrics = run.train_step(state, batch(seed))
        kernels.append(kernel(state))
        history.append(jax.device_get(metrics))
    assert [m["train/prototypes_frozen"] for m in history] == [1.0, 0.0, 0.0]
    assert [m["train/queue_in_use"] for m in history] == [0.0, 1.0, 1.0]
    assert all(np.isfinite(m["train/loss"]) and not m["train/nonfinite"] for m in history)
    # Step 0 (frozen): only weight decay scaled the kernel; the prototypes did not move.
    assert np.abs(kernels[1] - kernels[0]).max() > 1e-6
    np.testing.assert_allclose(
        swav.unit_prototypes(kernels[1]), swav.unit_prototypes(kernels[0]), atol=1e-6
    )
    # Step 1 on: they train.
    assert np.abs(swav.unit_prototypes(kernels[2]) - swav.unit_prototypes(kernels[1])).max() > 1e-4
    assert int(state.step) == 3
    assert int(state.method_state["queue_filled"]) == config.method.queue_length
    chex.assert_tree_all_finite(jax.device_get((state.params, state.method_state)))


def test_fewer_prototypes_than_projection_dimensions_is_an_error():
    config = swav_cifar10.get_config("smoke")
    config.method.num_prototypes = config.model.projector_dim - 1
    with pytest.raises(ValueError, match="collapse orthogonal to every prototype"):
        swav.build_model(config)
    config.method.num_prototypes = config.model.projector_dim
    swav.build_model(config)
