"""ViT backbones: sizes, patch embedding, position-embedding interpolation, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import sharding, trainer
from jaxssl.configs import simclr_vit_cifar10
from jaxssl.models import ssl_model, vit


@pytest.mark.parametrize(
    "name, millions", [("vit_tiny", 5.524), ("vit_small", 21.665), ("vit_base", 85.798)]
)
def test_parameter_counts_match_the_published_models(name, millions):
    # timm's vit_{tiny,small,base}_patch16_224 without the classifier head.
    model = vit.make_vit(name, patch_size=16, image_size=224)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    count = sum(x.size for x in jax.tree.leaves(shapes))
    assert abs(count / 1e6 - millions) < 1e-3


def test_config_depth_replaces_the_sizes_number_of_blocks():
    config = simclr_vit_cifar10.get_config("smoke")
    config.model.vit_depth = 3
    shapes = jax.eval_shape(
        ssl_model.make_backbone(config.model).init, jax.random.key(0), jnp.zeros((1, 16, 16, 3))
    )
    blocks = {k for k in shapes["params"] if k.startswith("block")}
    assert blocks == {"block1", "block2", "block3"}
    config.model.vit_depth = 0
    assert ssl_model.make_backbone(config.model).depth == vit.SIZES[config.model.backbone][1]
    with pytest.raises(ValueError, match="depth must be >= 0"):
        vit.make_vit("vit_tiny", depth=-1)


def _tiny(**kwargs):
    model = vit.ViT(embed_dim=16, depth=2, num_heads=2, patch_size=4, image_size=16, **kwargs)
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 3)).astype(np.float32)
    return model, model.init(jax.random.key(0), x), x


def test_patch_embedding_is_a_stride_p_convolution():
    model, variables, x = _tiny()
    dense = variables["params"]["patch_embedding"]
    kernel = dense["kernel"].reshape(4, 4, 3, 16)  # (row, column, channel) flattened
    conv = jax.lax.conv_general_dilated(
        x, kernel, (4, 4), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    _, captured = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    tokens = captured["intermediates"]["patch_embedding"]["__call__"][0]  # [B, N, D]
    np.testing.assert_allclose(tokens, conv.reshape(3, 16, 16) + dense["bias"], atol=1e-4)


def test_position_embeddings_interpolate_to_other_grids():
    grid = np.arange(16, dtype=np.float32).reshape(16, 1) * np.ones((1, 5), np.float32)
    np.testing.assert_array_equal(vit.interpolate_grid(jnp.asarray(grid), (4, 4)), grid)
    constant = jnp.full((16, 5), 0.25)
    np.testing.assert_allclose(vit.interpolate_grid(constant, (7, 3)), 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="square grid"):
        vit.interpolate_grid(jnp.zeros((12, 5)), (4, 4))
    model, variables, x = _tiny()
    small = model.apply(variables, x[:, :8, :8])  # a 2x2 grid: local multi-crop views
    large = model.apply(variables, np.concatenate([x, x], axis=1)[:, :24, :16])  # 6x4
    assert small.shape == large.shape == (3, 16)
    assert np.isfinite(small).all() and np.isfinite(large).all()
    with pytest.raises(ValueError, match="multiples of the patch size"):
        model.apply(variables, x[:, :10, :10])


def test_pooling_and_bfloat16():
    model, variables, x = _tiny(pooling="cls")
    mean_model = model.clone(pooling="mean")
    cls_features = model.apply(variables, x)
    mean_features = mean_model.apply(variables, x)
    assert not np.allclose(cls_features, mean_features)
    bf16 = model.clone(dtype=jnp.bfloat16).apply(variables, x)
    assert bf16.dtype == jnp.float32  # pooled features are float32 for the loss and probes
    np.testing.assert_allclose(bf16, cls_features, atol=0.1, rtol=0.1)
    with pytest.raises(ValueError, match="pooling"):
        model.clone(pooling="max").apply(variables, x)


@pytest.mark.slow  # ~23 s; ViT methods run 1-vs-8 in tests/test_step.py (slow lane)
def test_simclr_vit_trains_on_eight_devices():
    config = simclr_vit_cifar10.get_config("smoke")
    config.optim.base_lr = 1e-3
    config.optim.warmup_epochs = 0.0
    backbone = ssl_model.make_backbone(config.model)
    assert isinstance(backbone, vit.ViT) and backbone.image_size == 16
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = run.init_state()
    rng = np.random.default_rng(0)
    b = config.train.batch_size
    batch = {
        "global": rng.normal(size=(b, 2, 16, 16, 3)).astype(np.float32),
        "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
        "index": np.arange(b, dtype=np.int32),
    }
    losses = []
    for _ in range(3):
        state, metrics = run.train_step(state, sharding.to_global(batch, mesh))
        losses.append(float(metrics["train/loss"]))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    # Evaluation embeds full 32 px images through the interpolated position embeddings.
    features = run.model.apply(
        {"params": state.params, "batch_stats": state.batch_stats},
        np.zeros((2, 32, 32, 3), np.float32),
        method=run.model.embed,
    )
    assert features.shape == (2, 192)
