"""Mixed precision (bfloat16 compute, float32 state) and gradient accumulation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import methods, sharding, trainer
from jaxssl.configs import simclr_cifar10
from jaxssl.data import color


def _batches(config, count, size=32):
    rng = np.random.default_rng(0)
    b = config.train.batch_size
    for _ in range(count):
        yield {
            "global": rng.integers(0, 256, (b, 2, size, size, 3), np.uint8),  # the host's crops
            "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
            "index": np.arange(b, dtype=np.int32),
        }


def _train(config, steps):
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = jax.jit(run.init_fn, out_shardings=sharding.replicated(mesh))(run.init_key)
    history = []
    for batch in _batches(config, steps):
        state, metrics = run.train_step(state, sharding.to_global(batch, mesh))
        history.append(jax.device_get(metrics))
    return jax.device_get(state), history


def _smoke(**train):
    config = simclr_cifar10.get_config("smoke")
    config.optim.name = "sgd"
    config.optim.warmup_epochs = 0.0
    config.train.update(train)
    return config


@pytest.mark.slow  # ~31 s; the bfloat16 ViT and im2col checks stay in the default lane
def test_bfloat16_training_is_finite_close_to_float32_and_keeps_float32_state():
    f32_config, bf16_config = _smoke(), _smoke()
    bf16_config.model.dtype = "bfloat16"
    f32_state, f32_history = _train(f32_config, 5)
    bf16_state, bf16_history = _train(bf16_config, 5)
    f32_loss = np.array([m["train/loss"] for m in f32_history])
    bf16_loss = np.array([m["train/loss"] for m in bf16_history])
    assert np.isfinite(bf16_loss).all() and not any(m["train/nonfinite"] for m in bf16_history)
    np.testing.assert_allclose(bf16_loss, f32_loss, rtol=2e-2)
    for tree in (bf16_state.params, bf16_state.opt_state, bf16_state.batch_stats):
        assert {x.dtype for x in jax.tree.leaves(tree) if x.ndim} == {np.dtype("float32")}
    # The bf16 run really computed in bf16: its losses are not bitwise the float32 ones.
    assert not np.array_equal(bf16_loss, f32_loss)


class _PerExampleModel(nn.Module):
    """A BatchNorm-free encoder: no coupling between the examples of a batch."""

    def setup(self):
        self.backbone = nn.Dense(16)
        self.projector = nn.Dense(8)

    def embed(self, x):
        return jnp.tanh(self.backbone(x.reshape(x.shape[0], -1)))

    def __call__(self, x, train=True):
        features = self.embed(x)
        return features, self.projector(features)


def _per_example_loss(model, variables, batch, method_state, config, rng, step):
    """Mean over examples of the squared distance between the two views' projections."""
    del config, rng, step
    views = batch["global"]
    b, v = views.shape[:2]
    features, z = model.apply(variables, views.reshape((b * v,) + views.shape[2:]))
    z = z.reshape(b, v, -1)
    loss = jnp.mean(jnp.sum((z[:, 0] - z[:, 1]) ** 2, axis=-1))
    aux = methods.LossAux(features.reshape(b, v, -1), variables["batch_stats"], method_state, {})
    return loss, aux


@pytest.fixture
def per_example_method(monkeypatch):
    method = methods.Method(
        build_model=lambda config: _PerExampleModel(), loss_fn=_per_example_loss
    )
    monkeypatch.setitem(methods.METHODS, "per_example", method)


def test_accumulating_micro_batches_equals_one_big_batch(per_example_method):
    configs = {k: _smoke(grad_accum_steps=k) for k in (1, 4)}
    for config in configs.values():
        config.method.name = "per_example"
    (state1, history1), (state4, history4) = (_train(configs[k], 2) for k in (1, 4))
    for m1, m4 in zip(history1, history4, strict=True):
        np.testing.assert_allclose(m4["train/loss"], m1["train/loss"], rtol=1e-5)
        np.testing.assert_allclose(m4["train/grad_norm"], m1["train/grad_norm"], rtol=1e-5)
    for a, b in zip(*map(jax.tree.leaves, (state1.params, state4.params)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The steps moved the parameters, so the comparison is not vacuous.
    assert history1[0]["train/grad_norm"] > 1e-3


@pytest.mark.slow  # ~45 s; accumulation equal to one big batch stays in the default lane
def test_accumulation_with_batchnorm_and_contrastive_loss_is_per_micro_batch():
    config = _smoke(grad_accum_steps=2)
    # No colour augmentation: the step feeds the model the normalized crops, as below.
    config.data.update(dict(color_jitter_prob=0.0, grayscale_prob=0.0))
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = jax.jit(run.init_fn, out_shardings=sharding.replicated(mesh))(run.init_key)
    batch = next(_batches(config, 1))
    views = np.asarray(color.to_model_input(batch["global"], config.data.mean, config.data.std))
    method = methods.get_method("simclr")

    @jax.jit
    def simclr_loss(views):
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        return method.loss_fn(run.model, variables, {"global": views}, {}, config.method, None, 0)[
            0
        ]

    # Micro-batch j is rows j, j + 2, ...: its own negatives and BatchNorm statistics.
    expected = np.mean([simclr_loss(views[j::2]) for j in range(2)])
    whole = float(simclr_loss(views))
    _, metrics = run.train_step(state, sharding.to_global(batch, mesh))  # donates `state`
    np.testing.assert_allclose(metrics["train/loss"], expected, rtol=1e-5)
    assert abs(whole - expected) > 1e-3  # not what one step on the whole batch gives


def test_micro_batches_must_divide_over_devices(tmp_path):
    with pytest.raises(ValueError, match="grad_accum_steps=8"):
        trainer.train_and_evaluate(_smoke(grad_accum_steps=8), str(tmp_path))  # 32/8 < 8 devices
