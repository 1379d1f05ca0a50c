"""The reconstruction pretext tasks: denoising autoencoder, context encoder, colorization
(corruptions, Lab, the ab bins and the colorization loss, the models, the methods)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import methods
from jaxssl.configs import colorization_cifar10
from jaxssl.data import lab, pretext
from jaxssl.losses import classification, reconstruction
from jaxssl.models import decoder
from tests import helpers


def test_drop_pixels_zeroes_whole_pixels_at_the_rate():
    images = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype(np.float32) + 5.0
    corrupted, dropped = jax.jit(pretext.drop_pixels, static_argnums=2)(
        jax.random.key(1), images, 0.25
    )
    corrupted, dropped = np.asarray(corrupted), np.asarray(dropped)
    assert abs(dropped.mean() - 0.25) < 0.03
    np.testing.assert_array_equal(corrupted[dropped == 1], 0.0)  # every channel of the pixel
    np.testing.assert_array_equal(corrupted[dropped == 0], images[dropped == 0])


def test_drop_block_removes_one_square_in_the_centre_or_anywhere():
    images = np.ones((4, 10, 10, 3), np.float32)
    corrupted, region = pretext.drop_block(None, images, 0.4)
    expected = np.zeros((10, 10))
    expected[3:7, 3:7] = 1
    np.testing.assert_array_equal(region, np.broadcast_to(expected, (4, 10, 10)))
    np.testing.assert_array_equal(corrupted[..., 0], 1 - region)
    _, region = pretext.drop_block(jax.random.key(0), np.ones((64, 10, 10, 3)), 0.4)
    region = np.asarray(region)
    assert (region.sum(axis=(1, 2)) == 16).all()  # a whole 4x4 square, inside the image
    rows = region.any(axis=2).argmax(axis=1)
    assert len(set(rows.tolist())) > 3  # positions vary


def test_weighted_pixel_mse_matches_numpy_and_ignores_zero_weight_pixels():
    rng = np.random.default_rng(2)
    predictions, targets = rng.normal(size=(2, 2, 4, 4, 3)).astype(np.float32)
    weights = (rng.random((2, 4, 4)) < 0.5).astype(np.float32)
    expected = (weights * ((predictions - targets) ** 2).mean(-1)).sum() / weights.sum()
    loss_fn = jax.jit(reconstruction.weighted_pixel_mse)
    np.testing.assert_allclose(loss_fn(predictions, targets, weights), expected, rtol=1e-5)
    grad = np.asarray(jax.grad(reconstruction.weighted_pixel_mse)(predictions, targets, weights))
    assert not grad[weights == 0].any() and grad[weights == 1].any()


def test_rgb_to_lab_known_colours_in_numpy_and_jax():
    rgb = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32)
    expected = [
        [100.0, 0.0, 0.0],
        [53.24, 80.09, 67.20],
        [87.73, -86.18, 83.18],
        [32.30, 79.19, -107.86],
        [0.0, 0.0, 0.0],
    ]
    np.testing.assert_allclose(lab.rgb_to_lab(rgb), expected, atol=0.02)
    np.testing.assert_allclose(jax.jit(lab.rgb_to_lab)(jnp.asarray(rgb)), expected, atol=0.02)


def test_ab_bins_cover_the_srgb_gamut():
    centres = lab.ab_bin_centres()
    assert 200 < len(centres) < 330  # Zhang et al.: 313 bins of their (ImageNet) gamut
    assert {(-5.0, -5.0), (5.0, 5.0)} <= {tuple(c) for c in centres.tolist()}  # greys
    ab = lab.rgb_to_lab(np.random.default_rng(3).random((1000, 3)))[:, 1:]
    distance = np.abs(ab[:, None] - centres[None]).max(-1).min(1)
    assert distance.max() <= 5.0 + 1e-4  # every sRGB colour lies in a kept cell


def test_soft_encoding_and_rebalancing():
    centres = jnp.asarray(lab.ab_bin_centres())
    values = jnp.asarray([[3.0, -4.0], [55.0, 20.0]])
    targets = np.asarray(classification.soft_encode(values, centres))
    np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
    assert ((targets > 0).sum(-1) == 5).all()
    nearest = np.argmin(((np.asarray(values)[:, None] - np.asarray(centres)) ** 2).sum(-1), 1)
    np.testing.assert_array_equal(targets.argmax(-1), nearest)
    q = len(centres)
    uniform = jnp.full((q,), 1.0 / q)
    # Uniform frequencies: weights near 1 (smoothing thins the gamut's edge bins a little).
    weights = np.asarray(classification.rebalancing_weights(uniform, centres))
    assert 0.85 < weights.min() and weights.max() < 1.2
    skewed = jnp.zeros((q,)).at[0].set(0.9).at[1:].set(0.1 / (q - 1))
    weights = np.asarray(classification.rebalancing_weights(skewed, centres))
    assert weights[0] < 1.0 < weights[-1]  # the common bin weighs less, a far rare one more


def test_soft_cross_entropy_matches_numpy():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
    targets = rng.dirichlet(np.ones(7), size=(3, 5)).astype(np.float32)
    weights = rng.random((3, 5)).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = (weights * -(targets * log_probs).sum(-1)).mean()
    np.testing.assert_allclose(
        jax.jit(classification.soft_cross_entropy)(logits, targets, weights), expected, rtol=1e-5
    )


def test_channelwise_dense_shares_nothing_across_channels():
    layer = decoder.ChannelwiseDense()
    x = np.random.default_rng(5).normal(size=(2, 3, 3, 4)).astype(np.float32)
    variables = layer.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].shape == (4, 9, 9)
    assert variables["params"]["mix"]["kernel"].shape == (1, 1, 4, 4)


def test_colorizer_reads_the_lightness_only():
    config = colorization_cifar10.get_config("smoke")
    model = methods.get_method("colorization").build_model(config)
    mean, std = np.asarray(config.data.mean), np.asarray(config.data.std)
    # A grey with pure red's lightness (L 53.24): bisection on the grey level.
    low, high = 0.0, 1.0
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if lab.rgb_to_lab(np.full(3, mid))[0] < 53.2406 else (low, mid)
    red, grey = np.zeros((1, 8, 8, 3)), np.full((1, 8, 8, 3), mid)
    red[..., 0] = 1.0
    images = jnp.asarray((np.concatenate([red, grey]) - mean) / std, jnp.float32)
    variables = jax.jit(model.init, static_argnames="train")(jax.random.key(0), images, train=True)
    features, _ = jax.jit(model.apply, static_argnames="train")(variables, images, train=False)
    np.testing.assert_allclose(features[0], features[1], atol=1e-4)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("context_encoder", marks=pytest.mark.slow),
        pytest.param("dae", marks=pytest.mark.slow),
        pytest.param("colorization", marks=pytest.mark.slow),
    ],
)
def test_reconstruction_losses_are_finite_and_train_the_backbone(name):
    _, _, state, loss, grads, _ = helpers.method_loss_and_grads(name)
    assert np.isfinite(loss) and loss > 0
    backbone_norm = np.sqrt(sum(np.sum(g**2) for g in jax.tree.leaves(grads["backbone"])))
    assert np.isfinite(backbone_norm) and backbone_norm > 0
    if name == "colorization":
        distribution = np.asarray(state.method_state["ab_distribution"])
        np.testing.assert_allclose(distribution.sum(), 1.0, rtol=1e-5)
