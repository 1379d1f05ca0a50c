"""SIE (Garrido, Najman & LeCun 2023): the rotation op, the recorded view parameters, the
relative transformation, the loss, the hypernetwork predictor and the equivariance evaluator."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import optim
from jaxssl.configs import sie_cifar10
from jaxssl.data import color
from jaxssl.evals import equivariance
from jaxssl.losses import redundancy
from jaxssl.methods import sie
from jaxssl.models import equivariant
from tests import helpers


def test_rotate_zero_is_identity_and_quarter_turn_is_rot90():
    images = np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(color.rotate(images, jnp.zeros(3)), images, atol=1e-6)
    quarter = color.rotate(images, jnp.full(3, np.pi / 2))
    # Counter-clockwise as displayed: np.rot90 turns the first axis towards the second.
    np.testing.assert_allclose(quarter, np.rot90(images, k=1, axes=(1, 2)), atol=1e-5)
    # A 45-degree turn leaves the corners outside the source: zero fill.
    turned = np.asarray(color.rotate(np.ones((1, 9, 9, 1), np.float32), jnp.full(1, np.pi / 4)))
    assert turned[0, 0, 0, 0] == 0.0 and turned[0, 4, 4, 0] == pytest.approx(1.0)


def _data_config(**changes):
    config = sie_cifar10.get_config("smoke").data
    config.update(changes)
    return config


def _views(b=16, size=8, seed=0):
    rng = np.random.default_rng(seed)
    views = rng.integers(0, 256, size=(b, 2, size, size, 3)).astype(np.uint8)
    corner = rng.integers(0, 10, size=(b, 2, 2)).astype(np.float32)
    extent = rng.integers(8, 22, size=(b, 2, 2)).astype(np.float32)
    flipped = (rng.random((b, 2, 1)) < 0.5).astype(np.float32)
    return views, np.concatenate([corner, extent, flipped], -1)


def test_view_transforms_are_the_parameters_augment_views_applied():
    views, boxes = _views()
    key = jax.random.key(3)
    # Brightness alone (order-free), rotation, grayscale half the time, no blur / solarize.
    config = _data_config(
        contrast=0.0, saturation=0.0, hue=0.0, color_jitter_prob=0.7, grayscale_prob=0.5,
        solarize_prob=0.0, blur_prob=0.0, rotation_degrees=40.0, mean=(0, 0, 0), std=(1, 1, 1),
    )  # fmt: skip
    out = np.asarray(color.augment_views(key, views, config))
    t = np.asarray(color.view_transforms(key, boxes, config))
    assert t.shape == (16, 2, len(color.VIEW_FIELDS))
    np.testing.assert_array_equal(t[..., 1:6], boxes)
    angle, brightness, gray = t[..., 0], t[..., 6], t[..., 10]
    assert np.all(np.abs(angle) <= np.deg2rad(40.0) + 1e-6) and np.std(angle) > 0.1
    assert np.any(brightness == 1.0) and np.any(brightness != 1.0)  # skipped and applied
    np.testing.assert_array_equal(t[..., 7:10], np.broadcast_to([1.0, 1.0, 0.0], (16, 2, 3)))
    flat = views.reshape(-1, 8, 8, 3).astype(np.float32) / 255.0
    expected = np.asarray(color.rotate(flat, angle.reshape(-1)))
    expected = np.clip(expected * brightness.reshape(-1, 1, 1, 1), 0.0, 1.0)
    luma = expected @ np.asarray([0.299, 0.587, 0.114], np.float32)
    expected = np.where(gray.reshape(-1, 1, 1, 1) > 0, luma[..., None], expected)
    np.testing.assert_allclose(out.reshape(-1, 8, 8, 3), expected, atol=1e-5)


def test_augment_batch_records_transforms_and_needs_crop_boxes():
    views, boxes = _views()
    config = _data_config()
    out = color.augment_batch(jax.random.key(0), {"global": views, "global_box": boxes}, config)
    assert out["transform"].shape == (16, 2, 11)
    with pytest.raises(ValueError, match="crop_boxes=True"):
        color.augment_batch(jax.random.key(0), {"global": views}, config)


def test_relative_transform_of_known_views():
    # View 1: box (top 0, left 4, 16 x 8), unflipped, angle 0.1, brightness 1.2, gray.
    # View 2: box (8, 4, 8 x 16), flipped, angle 0.4, brightness 0.9, not gray.
    first = np.asarray([0.1, 0, 4, 16, 8, 0, 1.2, 1, 1, 0.05, 1], np.float32)
    second = np.asarray([0.4, 8, 4, 8, 16, 1, 0.9, 1.1, 1, -0.05, 0], np.float32)
    got = np.asarray(color.relative_transform(first, second))
    expected = [
        np.cos(0.3), np.sin(0.3),
        (12 - 8) / 16, (12 - 8) / 8, np.log(0.5), np.log(2.0), 1.0,
        -0.3, 0.1, 0.0, -0.1, -1.0,
    ]  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    same = np.asarray(color.relative_transform(first, first))
    np.testing.assert_allclose(same, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], atol=1e-6)
    assert sum(map(len, color.RELATIVE_GROUPS.values())) == got.shape[-1]
    assert equivariant.transform_columns(("crop",)) == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="transform_parts"):
        equivariant.transform_columns(("scale",))


def _numpy_sie(i1, i2, e1, e2, p, sim, factor, std, cov, eps=1e-4):
    def variance(z):
        return np.mean(np.maximum(0.0, 1.0 - np.sqrt(z.var(axis=0, ddof=1) + eps)))

    def covariance(z):
        c = np.cov(z, rowvar=False)
        return (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / z.shape[1]

    z1, z2 = np.concatenate([i1, e1], 1), np.concatenate([i2, e2], 1)
    return (
        sim * np.mean((i1 - i2) ** 2)
        + factor * sim * np.mean((p - e2) ** 2)
        + std * (variance(z1) / 2 + variance(z2) / 2 + variance(p) / 2)
        + cov * (covariance(z1) + covariance(z2))
    )


def test_sie_loss_matches_numpy_and_rewards_the_right_prediction():
    rng = np.random.default_rng(1)
    i1, i2 = rng.normal(size=(2, 32, 6))
    e1, e2, p = rng.normal(size=(3, 32, 4)) * 0.5
    args = dict(sim_coeff=10.0, equi_factor=4.5, std_coeff=10.0, cov_coeff=1.0)
    loss, terms = redundancy.sie_loss(i1, i2, e1, e2, p, **args)
    np.testing.assert_allclose(loss, _numpy_sie(i1, i2, e1, e2, p, 10, 4.5, 10, 1), rtol=1e-5)
    no_var, _ = redundancy.sie_loss(i1, i2, e1, e2, p, prediction_variance=False, **args)
    np.testing.assert_allclose(no_var, loss - 10.0 * terms["prediction_variance"], rtol=1e-5)
    exact, exact_terms = redundancy.sie_loss(i1, i2, e1, e2, e2, **args)
    assert float(exact_terms["equivariance"]) == 0.0 and float(exact) < float(loss)
    assert set(terms) == {
        "invariance",
        "equivariance",
        "variance",
        "prediction_variance",
        "covariance",
    }


class _Flat(nn.Module):
    """A stand-in backbone: images -> 32 features (the smoke ResNet's width), cheap to init."""

    @nn.compact
    def __call__(self, images, train=True):
        del train
        return nn.Dense(32)(images.reshape(images.shape[0], -1))


def _small_sie(config, **changes):
    model = equivariant.build_model(config)  # the real widths, then a cheap backbone
    return model.clone(backbone=_Flat(), **changes)


def test_hypernetwork_predictor_is_the_linear_map_of_the_transformation():
    config = sie_cifar10.get_config("smoke")
    model = _small_sie(config)
    assert model.projector_inv.output_dim == 8 and model.projector_equi.output_dim == 8
    images = jnp.zeros((2, 4, 4, 3))
    variables = model.init(jax.random.key(0), images, train=True)
    hyper = np.asarray(variables["params"]["hypernetwork"])  # [K, De, De]
    assert hyper.shape == (12, 8, 8)
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(5, 8)), rng.normal(size=(5, 12))
    got = model.apply({"params": variables["params"]}, x, t, method=model.predict)
    weights = np.einsum("bk,koi->boi", t, hyper)  # the per-example W(t), materialized
    np.testing.assert_allclose(got, np.einsum("boi,bi->bo", weights, x), rtol=1e-4, atol=1e-5)
    features, inv, equi = model.apply(variables, images, train=False)
    assert features.shape == (2, 32) and inv.shape == equi.shape == (2, 8)
    config.method.equi_dim = 32
    with pytest.raises(ValueError, match="equi_dim"):
        equivariant.build_model(config)


def test_residual_predictor_is_the_identity_at_no_transformation():
    config = sie_cifar10.get_config("smoke")
    config.method.residual_predictor = True
    config.method.transform_parts = ("rotation", "color")
    model = _small_sie(config)
    assert model.identity == (1.0, 0.0, 0, 0, 0, 0, 0)
    variables = model.init(jax.random.key(0), jnp.zeros((2, 4, 4, 3)), train=True)
    x = np.random.default_rng(0).normal(size=(3, 8))
    same = np.tile(np.asarray(model.identity, np.float32), (3, 1))
    got = model.apply({"params": variables["params"]}, x, same, method=model.predict)
    np.testing.assert_allclose(got, x, rtol=1e-5, atol=1e-6)
    moved = model.apply({"params": variables["params"]}, x, same + 0.5, method=model.predict)
    assert np.abs(np.asarray(moved) - x).max() > 1e-3  # A is not zero at the default init


@pytest.mark.slow  # a jitted loss and gradients of the smoke model (~40 s)
def test_sie_loss_fn_needs_transforms():
    config, mesh, state, loss, grads, _ = helpers.method_loss_and_grads("sie", 1)
    assert np.isfinite(loss) and float(np.abs(grads["hypernetwork"]).max()) > 0
    config.data.view_transforms = False
    batch = helpers.random_views_batch(config)
    with pytest.raises(ValueError, match="view_transforms=True"):
        sie.relative_transforms(batch, config.method.transform_parts)


def test_regression_r2_finds_a_function_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 10)).astype(np.float32)
    y = np.stack([np.sin(x[:, 0]) + x[:, 1] * x[:, 2], rng.normal(size=1200), np.zeros(1200)], 1)
    r2 = equivariance.regression_r2(x, y, fit=900, hidden=64, steps=400, lr=3e-3)
    assert r2[0] > 0.8, r2
    assert r2[1] < 0.1, r2
    assert np.isnan(r2[2])  # a constant column is left out


@pytest.mark.slow
def test_smoke_run_and_equivariance_evaluation(tmp_path):
    workdir = str(tmp_path / "sie")
    train = helpers.run_jaxssl(
        "train", "--config", f"{sie_cifar10.__file__}:smoke", "--workdir", workdir,
        "--config.train.progress_bar=False",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    evaluation = helpers.run_jaxssl(
        "eval", "--workdir", workdir, "--config.evals.run=('equivariance',)",
        "--config.evals.equivariance.num_pairs=256", "--config.evals.equivariance.steps=50",
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    for name in ("linear_invariant", "linear_equivariant", "r2_equivariant_rotation"):
        assert f"| equivariance | {name} |" in evaluation.stdout, evaluation.stdout


def test_exclude_from_adaptation_masks_the_hypernetwork():
    params = {"hypernetwork": jnp.ones((2, 3, 3)), "dense": {"kernel": jnp.ones((3, 3))}}
    assert optim.decay_mask(params) == {"hypernetwork": True, "dense": {"kernel": True}}
    masked = optim.decay_mask(params, exclude=("hypernetwork",))
    assert masked == {"hypernetwork": False, "dense": {"kernel": True}}
