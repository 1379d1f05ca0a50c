"""I-JEPA: multi-block masks, padded tokens, the feature loss, the EMA target, train steps."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import schedules, sharding
from jaxssl.configs import ijepa_cifar10
from jaxssl.losses import reconstruction
from jaxssl.methods import ijepa
from jaxssl.models import masked, masking, vit
from tests import helpers


def _reference_block_size(u, rows, cols, scale, aspect):
    # facebookresearch/ijepa src/masks/multiblock.py, _sample_block_size, in plain Python.
    s = scale[0] + u * (scale[1] - scale[0])
    keep = int(rows * cols * s)
    a = aspect[0] + u * (aspect[1] - aspect[0])
    h, w = int(round(math.sqrt(keep * a))), int(round(math.sqrt(keep / a)))
    while h >= rows:
        h -= 1
    while w >= cols:
        w -= 1
    return h, w


def test_block_sizes_follow_the_reference():
    for u in np.linspace(0.0, 1.0, 37):
        for grid, scale, aspect in [
            ((8, 8), (0.15, 0.2), (0.75, 1.5)),
            ((14, 14), (0.15, 0.2), (0.75, 1.5)),
            ((14, 14), (0.85, 1.0), (1.0, 1.0)),
        ]:
            h, w = masking.block_size(jnp.float32(u), grid, scale, aspect)
            assert (int(h), int(w)) == _reference_block_size(float(u), *grid, scale, aspect)
    assert masking.max_block_tokens((8, 8), (0.15, 0.2), (0.75, 1.5)) == 12


def test_multiblock_masks_geometry_and_determinism():
    key = jax.random.key(11)
    masks = masking.multiblock_masks(key, 64, (8, 8))
    assert masks.context.shape == (64, 16) and masks.targets.shape == (64, 4, 12)
    again = masking.multiblock_masks(key, 64, (8, 8))
    chex.assert_trees_all_equal(masks, again)
    other = masking.multiblock_masks(jax.random.fold_in(key, 1), 64, (8, 8))
    assert not np.array_equal(other.targets, masks.targets)
    context, context_valid = np.asarray(masks.context), np.asarray(masks.context_valid)
    targets, targets_valid = np.asarray(masks.targets), np.asarray(masks.targets_valid)
    sizes = targets_valid.sum(-1)
    assert len(np.unique(sizes)) == 1 and 9 <= sizes[0, 0] <= 12  # one size per batch
    for i in range(64):
        covered = set()
        for j in range(4):
            cells = targets[i, j][targets_valid[i, j]]
            rows, cols = cells // 8, cells % 8
            h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
            assert h * w == len(cells) == len(set(cells))  # a full rectangle
            assert rows.max() < 7 and cols.max() < 7  # randint(0, H - h): never the last line
            covered |= set(cells.tolist())
        kept = context[i][context_valid[i]]
        assert not covered & set(kept.tolist())  # the context never sees a target
        assert list(kept) == sorted(kept)  # raster order, the first ones kept
        assert context_valid[i].tolist() == sorted(context_valid[i].tolist(), reverse=True)


def test_padding_slots_change_nothing():
    model = vit.ViT(embed_dim=16, depth=2, num_heads=2, patch_size=4, image_size=16)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    variables = model.init(jax.random.key(0), x)
    keep = jnp.asarray([[1, 2, 3, 0], [5, 6, 0, 0]], jnp.int32)
    valid = jnp.asarray([[True, True, True, False], [True, True, False, False]])
    cls, tokens = model.apply(variables, x, keep=keep, keep_valid=valid, output="tokens")
    other = keep.at[:, 3].set(9).at[1, 2].set(12)  # different tokens in the padding slots
    cls2, tokens2 = model.apply(variables, x, keep=other, keep_valid=valid, output="tokens")
    np.testing.assert_allclose(cls, cls2, atol=1e-5)
    np.testing.assert_allclose(tokens[0, :3], tokens2[0, :3], atol=1e-5)
    np.testing.assert_allclose(tokens[1, :2], tokens2[1, :2], atol=1e-5)
    alone, _ = model.apply(variables, x[1:], keep=keep[1:, :2], output="tokens")
    np.testing.assert_allclose(cls[1], alone[0], atol=1e-5)  # as if the padding were absent
    pooled = model.clone(pooling="mean").apply(variables, x, keep=keep, keep_valid=valid)
    np.testing.assert_allclose(pooled[1], np.mean(tokens[1, :2], axis=0), atol=1e-5)

    predictor = masked.TokenPredictor(embed_dim=8, depth=1, num_heads=2, output_dim=3, grid_size=4)
    context = np.random.default_rng(1).normal(size=(2, 4, 16)).astype(np.float32)
    queries = jnp.asarray([[7, 8, 0], [9, 10, 11]], jnp.int32)
    query_valid = jnp.asarray([[True, True, False], [True, True, True]])
    args = (context, keep, queries, (4, 4))
    params = predictor.init(jax.random.key(1), *args)
    out = predictor.apply(params, *args, context_valid=valid, query_valid=query_valid)
    moved = predictor.apply(
        params, context, other, queries.at[0, 2].set(15), (4, 4), None, valid, query_valid
    )
    np.testing.assert_allclose(out[0, :2], moved[0, :2], atol=1e-5)
    np.testing.assert_allclose(out[1], moved[1], atol=1e-5)


def test_feature_loss_matches_numpy_and_skips_padding():
    rng = np.random.default_rng(2)
    p, t = rng.normal(size=(2, 3, 5, 4, 6)).astype(np.float32) * 2
    valid = rng.random(size=(3, 5, 4)) < 0.6
    d = p - t
    huber = np.where(np.abs(d) < 1, 0.5 * d * d, np.abs(d) - 0.5)
    expected = (huber * valid[..., None]).sum() / (valid.sum() * 6)
    value = reconstruction.masked_feature_regression(p, t, valid)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    l2 = (d * d * valid[..., None]).sum() / (valid.sum() * 6)
    np.testing.assert_allclose(
        reconstruction.masked_feature_regression(p, t, valid, "l2"), l2, rtol=1e-5
    )
    with pytest.raises(ValueError, match="smooth_l1"):
        reconstruction.masked_feature_regression(p, t, valid, "l1")
    normed = np.asarray(reconstruction.layer_norm(jnp.asarray(p)))
    np.testing.assert_allclose(normed.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(normed.var(-1), 1.0, rtol=1e-3)


def test_linear_momentum_schedule():
    assert float(schedules.linear_momentum(0, 100, 0.996)) == pytest.approx(0.996)
    assert float(schedules.linear_momentum(50, 100, 0.996)) == pytest.approx(0.998)
    assert float(schedules.linear_momentum(500, 100, 0.996)) == pytest.approx(1.0)


def _build():
    return helpers.smoke_run(ijepa_cifar10.get_config("smoke"))


def test_the_loss_is_the_prediction_of_the_layer_normed_ema_targets():
    config, _, run, state = _build()
    batch = helpers.random_views_batch(config)  # two 32 px views: an 8 x 8 grid
    key = jax.random.key(3)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    # A target encoder that differs from the online one, to see which one the targets use.
    target = jax.tree.map(lambda x: x * 0.9, state.method_state)
    loss, aux = jax.jit(
        lambda b: ijepa.loss_fn(run.model, variables, b, target, config.method, key, 0)
    )(batch)
    b = config.train.batch_size
    images = batch["global"].reshape(2 * b, 32, 32, 3)
    masks = ijepa.draw_masks(key, 2 * b, (8, 8), config.method)
    encoder = run.model.backbone
    tokens = encoder.apply(
        {"params": target["target"]["params"]["backbone"]}, images, output="tokens"
    )[1]
    tokens = np.asarray(tokens)
    normed = (tokens - tokens.mean(-1, keepdims=True)) / np.sqrt(
        tokens.var(-1, keepdims=True) + 1e-5
    )
    idx = np.asarray(masks.targets)  # [2B, 4, T]
    expected_targets = np.take_along_axis(normed[:, None], idx[..., None], axis=2)
    _, predictions = run.model.apply(variables, images, masks=masks)
    d = np.asarray(predictions) - expected_targets
    huber = np.where(np.abs(d) < 1, 0.5 * d * d, np.abs(d) - 0.5)
    valid = np.asarray(masks.targets_valid)[..., None]
    np.testing.assert_allclose(loss, (huber * valid).sum() / (valid.sum() * d.shape[-1]), rtol=1e-4)
    assert aux.features.shape == (b, 2, 192)
    assert float(aux.metrics["train/ijepa_context_tokens"]) <= 16


@pytest.mark.slow  # ~40 s of train steps; the loss and padding checks stay in the default lane
def test_smoke_train_steps_lower_the_loss_and_move_the_target_linearly():
    config, mesh, run, state = _build()
    batch = sharding.to_global(helpers.random_views_batch(config), mesh)
    key = jax.random.key(0)

    @jax.jit
    def loss(state):
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        return ijepa.loss_fn(
            run.model, variables, batch, state.method_state, config.method, key, 0
        )[0]

    before = float(loss(state))
    first, _ = run.train_step(jax.tree.map(jnp.copy, state), batch)
    m = float(schedules.linear_momentum(0, config.train.num_steps, config.method.base_momentum))
    expected = jax.tree.map(
        lambda t, o: m * t + (1 - m) * o,
        state.method_state["target"]["params"]["backbone"],
        first.params["backbone"],
    )
    chex.assert_trees_all_close(
        first.method_state["target"]["params"]["backbone"], expected, atol=1e-6
    )
    assert set(first.method_state["target"]["params"]) == {"backbone"}  # no predictor copy
    for _ in range(4):
        state, metrics = run.train_step(state, batch)
        assert not jax.device_get(metrics["train/nonfinite"])
    chex.assert_tree_all_finite(jax.device_get(state.params))
    assert float(loss(state)) < before
