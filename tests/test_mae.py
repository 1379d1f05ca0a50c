"""MAE: the masked-patch loss, the token predictor, masked encoding and train steps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import errors, sharding, trainer
from jaxssl.configs import mae_cifar10, simclr_cifar10
from jaxssl.losses import reconstruction
from jaxssl.methods import mae
from jaxssl.models import masked, masking, vit
from tests import helpers


def _standardize(x):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, ddof=1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-6)


@pytest.mark.parametrize("normalize", [True, False])
def test_loss_scores_masked_patches_only(normalize):
    rng = np.random.default_rng(0)
    b, n, p = 4, 16, 12
    pixels = rng.normal(size=(b, n, p)).astype(np.float32) * 3 + 1
    full_predictions = rng.normal(size=(b, n, p)).astype(np.float32)
    hidden = np.stack([rng.permutation(n)[:12] for _ in range(b)])  # [B, M]
    mask = np.zeros((b, n), np.float32)
    np.put_along_axis(mask, hidden, 1.0, axis=1)
    # MAE's formula over the whole grid: (per-patch MSE * mask).sum() / mask.sum().
    target = _standardize(pixels) if normalize else pixels
    expected = (np.mean((full_predictions - target) ** 2, -1) * mask).sum() / mask.sum()
    take = lambda x: np.take_along_axis(x, hidden[..., None], axis=1)  # noqa: E731
    value = reconstruction.masked_patch_mse(take(full_predictions), take(pixels), normalize)
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_standardized_patches_have_zero_mean_and_unit_unbiased_variance():
    x = np.random.default_rng(1).normal(size=(3, 5, 48)).astype(np.float32) * 4 - 2
    z = np.asarray(reconstruction.standardize_patches(jnp.asarray(x)))
    np.testing.assert_allclose(z.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.var(-1, ddof=1), 1.0, rtol=1e-4)


def test_token_predictor_sees_positions_not_the_order_of_its_inputs():
    predictor = masked.TokenPredictor(embed_dim=16, depth=2, num_heads=2, output_dim=5, grid_size=4)
    rng = np.random.default_rng(2)
    context = rng.normal(size=(2, 6, 8)).astype(np.float32)
    positions = np.stack([rng.permutation(16) for _ in range(2)]).astype(np.int32)
    context_pos, query_pos = positions[:, :6], positions[:, 6:]
    prefix = rng.normal(size=(2, 1, 8)).astype(np.float32)
    variables = predictor.init(jax.random.key(0), context, context_pos, query_pos, (4, 4), prefix)
    out = predictor.apply(variables, context, context_pos, query_pos, (4, 4), prefix)
    assert out.shape == (2, 10, 5)
    # Shuffling the context (with its positions) changes nothing; shuffling the queries
    # shuffles the predictions.
    perm = rng.permutation(6)
    shuffled = predictor.apply(
        variables, context[:, perm], context_pos[:, perm], query_pos, (4, 4), prefix
    )
    np.testing.assert_allclose(shuffled, out, atol=1e-5)
    qperm = rng.permutation(10)
    np.testing.assert_allclose(
        predictor.apply(variables, context, context_pos, query_pos[:, qperm], (4, 4), prefix),
        out[:, qperm],
        atol=1e-5,
    )
    # Moving a context token to another position changes the predictions.
    moved = context_pos.copy()
    moved[:, 0] = query_pos[:, 0]
    assert not np.allclose(
        predictor.apply(variables, context, moved, query_pos, (4, 4), prefix), out, atol=1e-4
    )


def _build(**method_changes):
    config = mae_cifar10.get_config("smoke")
    config.method.update(method_changes)
    return helpers.smoke_run(config)


def test_the_loss_is_masked_reconstruction_of_the_step_key_draw():
    config, _, run, state = _build()
    batch = helpers.random_views_batch(config)  # two 32 px views: 64 tokens, 16 kept
    key = jax.random.key(7)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    loss, aux = jax.jit(
        lambda batch: mae.loss_fn(run.model, variables, batch, {}, config.method, key, 0)
    )(batch)
    b = config.train.batch_size
    assert aux.features.shape == (b, 2, 192)
    # Rebuilt: the same draw, the model on the kept tokens, numpy targets of the hidden ones.
    images = batch["global"].reshape(2 * b, 32, 32, 3)
    keep, hidden = masking.random_masking(key, 2 * b, 64, 0.75)
    _, predictions = run.model.apply(variables, images, order=jnp.concatenate([keep, hidden], 1))
    patches = (
        images.reshape(2 * b, 8, 4, 8, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2 * b, 64, 48)
    )
    targets = _standardize(np.take_along_axis(patches, np.asarray(hidden)[..., None], axis=1))
    np.testing.assert_allclose(loss, np.mean((np.asarray(predictions) - targets) ** 2), rtol=1e-4)
    # The encoder sees the kept patches only: repainting the hidden ones leaves the features
    # and predictions alone (and changes only the targets).
    repainted = patches.copy()
    np.put_along_axis(repainted, np.asarray(hidden)[..., None], 5.0, axis=1)
    repainted = repainted.reshape(2 * b, 8, 8, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5)
    repainted = repainted.reshape(2 * b, 32, 32, 3)
    order = jnp.concatenate([keep, hidden], 1)
    a = run.model.apply(variables, images, order=order)
    c = run.model.apply(variables, repainted, order=order)
    chex.assert_trees_all_close(a, c, atol=1e-5)


def test_mae_needs_a_vit():
    config = mae_cifar10.get_config("smoke")
    config.model.backbone = simclr_cifar10.get_config("smoke").model.backbone
    with pytest.raises(errors.ConfigError, match="ViT backbone"):
        trainer.build(config, sharding.make_mesh(config.mesh))


@pytest.mark.slow  # ~33 s of train steps; the loss checks stay in the default lane
def test_smoke_train_steps_lower_the_loss_and_evaluate_whole_images():
    config, mesh, run, state = _build()
    batch = sharding.to_global(helpers.random_views_batch(config), mesh)
    key = jax.random.key(0)

    @jax.jit
    def loss(state):  # one fixed mask: the step draws its own from its key
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        return mae.loss_fn(run.model, variables, batch, {}, config.method, key, 0)[0]

    before = float(loss(state))
    for _ in range(4):
        state, metrics = run.train_step(state, batch)
        assert not jax.device_get(metrics["train/nonfinite"])
    chex.assert_tree_all_finite(jax.device_get(state.params))
    assert float(loss(state)) < before
    # Evaluation embeds whole images with the encoder alone.
    features = run.model.apply({"params": state.params}, batch["global"][:, 0], method="embed")
    encoder = vit.make_vit(
        "vit_tiny", patch_size=4, image_size=16, position="sincos", pooling="mean"
    )
    expected = encoder.apply({"params": state.params["backbone"]}, batch["global"][:, 0])
    np.testing.assert_allclose(features, expected, atol=1e-5)
