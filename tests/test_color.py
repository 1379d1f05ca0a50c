"""Tests for the on-device augmentations, jaxssl.data.color, against jaxssl.data.augment."""

import json
import os
import re
import types

import flax.linen
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import tensorflow as tf

from jaxssl.configs import base, simclr_cifar10
from jaxssl import sharding, trainer
from jaxssl import state as state_lib
from jaxssl import step as step_lib
from jaxssl.data import augment, color, fake, tfds
from jaxssl.methods import base as methods_base

BATCH = 8


def _data_config(**overrides) -> ml_collections.ConfigDict:
    config = base.get_base_config().data
    config.update(dict(name="fake", fake_train_examples=64, fake_test_examples=32) | overrides)
    return config


def _images_uint8(batch: int = BATCH) -> np.ndarray:
    return fake.make_examples("train", batch)[0]


def _images_float(batch: int = BATCH) -> np.ndarray:
    return _images_uint8(batch).astype(np.float32) / 255.0


def _host_uniforms(num: int, batch: int = BATCH, op: int = 0) -> np.ndarray:
    keys = augment.example_keys(7, tf.range(batch), 0, 0)
    return augment.random_uniforms(keys, op, num).numpy()


def _jit(fn, *static):
    return jax.jit(fn, static_argnums=static)


# --- Geometry ---


def test_identity_crop_box_gives_the_image_back():
    images = _images_uint8()
    boxes = jnp.tile(jnp.array([0.0, 0.0, 32.0, 32.0]), (BATCH, 1))
    out = _jit(color.resized_crop, 2)(images, boxes, 32)
    assert out.shape == (BATCH, 32, 32, 3) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, images / 255.0, atol=1e-6)
    # Full-area square crops are the only window random_resized_crop can pick here.
    whole = _jit(color.random_resized_crop, 2, 3, 4)(
        jax.random.key(0), images, 32, (1.0, 1.0), (1.0, 1.0)
    )
    np.testing.assert_allclose(whole, images / 255.0, atol=1e-6)
    # A window is read alone: a 16x16 box resized to 16 px is that quarter of the image.
    quarter = jnp.tile(jnp.array([8.0, 16.0, 16.0, 16.0]), (BATCH, 1))
    np.testing.assert_allclose(
        _jit(color.resized_crop, 2)(images, quarter, 16), images[:, 8:24, 16:32] / 255.0, atol=1e-6
    )


def test_crop_boxes_follow_the_host_sampling_exactly():
    for height, width, scale in ((32, 32, (0.08, 1.0)), (32, 40, (0.08, 1.0)), (32, 64, (2, 3))):
        uniforms = _host_uniforms(augment.CROP_UNIFORMS, batch=512)
        host = np.stack(
            [
                t.numpy()
                for t in augment._crop_windows(uniforms, height, width, scale, (3 / 4, 4 / 3))
            ],
            axis=1,
        )
        device = jax.jit(color._crop_boxes, static_argnums=(1, 2, 3, 4))(
            uniforms, height, width, scale, (3 / 4, 4 / 3)
        )
        np.testing.assert_array_equal(device, host)
    # scale (2, 3) never fits a 32x64 image: torchvision's centred fallback, 32x43.
    np.testing.assert_array_equal(device, [[0, 10, 32, 43]] * 512)


def test_sampled_crop_boxes_have_torchvision_statistics():
    boxes = np.asarray(
        jax.jit(color.sample_crop_boxes, static_argnums=(1, 2, 3))(jax.random.key(1), 4000, 32, 40)
    )
    top, left, height, width = boxes.T
    assert np.all((height >= 1) & (height <= 32) & (width >= 1) & (width <= 40))
    assert np.all((top >= 0) & (top + height <= 32) & (left >= 0) & (left + width <= 40))
    np.testing.assert_array_equal(boxes, np.round(boxes))
    assert top.max() > 0 and left.max() > 0
    # Same distribution as the host's windows from its own random numbers.
    host = augment._crop_windows(
        _host_uniforms(augment.CROP_UNIFORMS, batch=4000), 32, 40, (0.08, 1.0), (3 / 4, 4 / 3)
    )
    host_top, host_left, host_height, host_width = (t.numpy() for t in host)
    area, host_area = height * width / (32 * 40), host_height * host_width / (32 * 40)
    assert area.min() > 0.05 and area.max() <= 1.0 and 0.45 < area.mean() < 0.6
    assert abs(area.mean() - host_area.mean()) < 0.02  # standard error ~0.005
    assert abs(area.std() - host_area.std()) < 0.02
    log_ratio, host_log_ratio = np.log(width / height), np.log(host_width / host_height)
    assert abs(log_ratio.mean() - host_log_ratio.mean()) < 0.02
    assert abs((top / (32 - height + 1)).mean() - (host_top / (32 - host_height + 1)).mean()) < 0.03


def test_resized_crop_matches_host_for_the_same_windows():
    images = _images_uint8()
    uniforms = _host_uniforms(augment.CROP_UNIFORMS)
    host = augment.random_resized_crop(images, uniforms, 24).numpy()
    boxes = color._crop_boxes(jnp.asarray(uniforms), 32, 32, (0.08, 1.0), (3 / 4, 4 / 3))
    device = _jit(color.resized_crop, 2)(images, boxes, 24)
    np.testing.assert_allclose(device, host, atol=1e-5)
    # Upsampling [0, 1] x2 has PyTorch's bilinear values (half-pixel centres, edge clamp).
    row = jnp.broadcast_to(jnp.array([0.0, 1.0])[None, None, :, None], (1, 2, 2, 3))
    out = color.resized_crop(row, jnp.array([[0.0, 0.0, 2.0, 2.0]]), 4)
    np.testing.assert_allclose(out[0, 0, :, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)


def test_flip_twice_is_the_identity_and_mirrors_selected_examples():
    images = _images_float()
    key = jax.random.key(3)
    flip = _jit(color.random_flip)
    once = flip(key, images)
    np.testing.assert_array_equal(flip(key, once), images)
    mirrored = np.all(np.asarray(once) == images[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(np.asarray(once) == images, axis=(1, 2, 3))
    assert np.all(mirrored | kept) and mirrored.any() and kept.any()
    np.testing.assert_array_equal(color.random_flip(key, images, 1.0), images[:, :, ::-1])
    np.testing.assert_array_equal(color.random_flip(key, images, 0.0), images)


# --- Colour ---


def test_grayscale_has_equal_channels_with_itu_r_601_weights():
    colours = jnp.eye(3).reshape(3, 1, 1, 3)
    np.testing.assert_allclose(color.rgb_to_grayscale(colours).ravel(), [0.299, 0.587, 0.114])
    images = _images_float()
    gray = _jit(color.random_grayscale)(jax.random.key(0), images, 1.0)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_allclose(
        gray, augment.random_grayscale(images, tf.zeros([BATCH, 1])), atol=1e-6
    )
    np.testing.assert_array_equal(color.random_grayscale(jax.random.key(0), images, 0.0), images)


def test_colour_adjustments_are_torchvision_definitions_and_match_host():
    images = _images_float()
    ones = jnp.ones([BATCH])
    for identity in (color.adjust_brightness, color.adjust_contrast, color.adjust_saturation):
        np.testing.assert_allclose(jax.jit(identity)(images, ones), images, atol=1e-7)
    np.testing.assert_allclose(jax.jit(color.adjust_hue)(images, 0 * ones), images, atol=2e-6)
    np.testing.assert_allclose(
        color.adjust_brightness(images, 2 * ones), np.clip(2 * images, 0, 1), atol=1e-6
    )
    gray_mean = (images @ np.array([0.299, 0.587, 0.114])).mean(axis=(1, 2))
    np.testing.assert_allclose(
        color.adjust_contrast(images, 0 * ones),
        np.broadcast_to(gray_mean[:, None, None, None], images.shape),
        atol=1e-6,
    )
    red = jnp.array([1.0, 0.0, 0.0]).reshape(1, 1, 1, 3)
    np.testing.assert_allclose(
        color.adjust_hue(red, jnp.array([1 / 3])).ravel(), [0, 1, 0], atol=1e-5
    )
    np.testing.assert_allclose(
        color.adjust_hue(red, jnp.array([-0.5])).ravel(), [0, 1, 1], atol=1e-5
    )
    # Random factors: the host's TF ops give the same pixels.
    factors = np.linspace(0.0, 1.8, BATCH).astype(np.float32)
    deltas = np.linspace(-0.5, 0.5, BATCH).astype(np.float32)
    for device_op, host_op, values in (
        (color.adjust_brightness, augment.adjust_brightness, factors),
        (color.adjust_contrast, augment.adjust_contrast, factors),
        (color.adjust_saturation, augment.adjust_saturation, factors),
        (color.adjust_hue, augment.adjust_hue, deltas),
    ):
        np.testing.assert_allclose(
            jax.jit(device_op)(images, values), host_op(images, values).numpy(), atol=2e-6
        )


def test_color_jitter_runs_each_examples_random_order_like_the_host():
    images = _images_float()
    uniforms = _host_uniforms(augment.JITTER_UNIFORMS, op=3)
    uniforms[:, 0] = 0.0  # the host jitters every example
    host = augment.random_color_jitter(images, uniforms, 0.8, 0.4, 0.4, 0.4, 0.1).numpy()
    factors = np.stack(
        [*(0.6 + 0.8 * uniforms[:, i] for i in (1, 2, 3)), (2 * uniforms[:, 4] - 1) * 0.1], 1
    )
    order = np.argsort(uniforms[:, 5:9], axis=1, kind="stable")
    assert len({tuple(o) for o in order}) > 1
    device = _jit(color.jitter_in_order)(images, factors, order)
    np.testing.assert_allclose(device, host, atol=2e-6)
    # ... and it is the four ops applied one after the other in that order.
    ops = [
        jax.jit(op)
        for op in (
            color.adjust_brightness,
            color.adjust_contrast,
            color.adjust_saturation,
            color.adjust_hue,
        )
    ]
    for i in range(BATCH):
        expected = images[i : i + 1]
        for op in order[i]:
            expected = ops[op](expected, factors[i : i + 1, op])
        np.testing.assert_allclose(device[i : i + 1], expected, atol=2e-6)
    jitter = _jit(color.color_jitter, 2, 3, 4, 5, 6)
    key = jax.random.key(0)
    np.testing.assert_array_equal(jitter(key, images, 0.0, 0.4, 0.4, 0.4, 0.1), images)
    np.testing.assert_array_equal(jitter(key, images, 1.0, 0.0, 0.0, 0.0, 0.0), images)
    changed = np.abs(jitter(key, images, 1.0, 0.4, 0.4, 0.4, 0.1) - images).max(axis=(1, 2, 3))
    assert np.all(changed > 0.01)


def test_blur_preserves_constants_and_matches_host():
    images = _images_float()
    blur = _jit(color.gaussian_blur, 2)
    np.testing.assert_allclose(
        blur(np.full_like(images, 0.3), jnp.full([BATCH], 2.0), 9), 0.3, atol=1e-6
    )
    np.testing.assert_allclose(blur(images, jnp.full([BATCH], 0.1), 9), images, atol=1e-6)
    sigmas = np.linspace(0.1, 2.0, BATCH).astype(np.float32)
    for kernel_size in (3, 9):  # 3: SimCLR's 10% kernel at 32 px
        np.testing.assert_allclose(
            blur(images, sigmas, kernel_size),
            augment.gaussian_blur(images, sigmas, kernel_size).numpy(),
            atol=1e-6,
        )
    blurred = blur(images, jnp.full([BATCH], 2.0), 9)
    assert np.abs(np.diff(blurred, axis=2)).mean() < 0.5 * np.abs(np.diff(images, axis=2)).mean()
    # Reflect padding: an edge pixel's missing neighbours are its inner ones, not zeros.
    edge = np.zeros((1, 5, 5, 1), np.float32)
    edge[0, :, 1] = 1.0
    taps = np.exp(-(np.arange(-1, 2) ** 2) / 2.0)
    taps /= taps.sum()
    np.testing.assert_allclose(blur(edge, jnp.ones([1]), 3)[0, 2, 0, 0], 2 * taps[0], atol=1e-6)


def test_solarize_inverts_pixels_at_or_above_the_threshold():
    pixels = jnp.array([0.0, 0.49, 0.5, 0.51, 1.0]).reshape(1, 1, 5, 1)
    np.testing.assert_allclose(color.solarize(pixels, 0.5).ravel(), [0.0, 0.49, 0.5, 0.49, 0.0])
    images = _images_float()
    key = jax.random.key(0)
    np.testing.assert_array_equal(
        color.random_solarize(key, images, 1.0), np.where(images < 0.5, images, 1 - images)
    )
    np.testing.assert_array_equal(color.random_solarize(key, images, 0.0), images)


def test_normalize():
    images = _images_float()
    out = color.normalize(images, (0.5, 0.4, 0.3), (0.2, 0.1, 0.5))
    np.testing.assert_allclose(
        out * np.array([0.2, 0.1, 0.5]) + np.array([0.5, 0.4, 0.3]), images, atol=1e-6
    )
    np.testing.assert_allclose(
        out, augment.normalize(images, (0.5, 0.4, 0.3), (0.2, 0.1, 0.5)), atol=1e-6
    )


# --- Views ---


def test_views_depend_only_on_key_and_step():
    config = _data_config(blur_prob=0.5, solarize_prob=0.2)
    batch = {"image": _images_uint8(), "label": np.arange(BATCH, dtype=np.int32)}
    augment_fn = jax.jit(lambda key, batch: color.augment_batch(key, batch, config))
    base_key = jax.random.key(0)

    def views(step):
        return np.asarray(augment_fn(jax.random.fold_in(base_key, step), batch)["global"])

    step3 = views(3)
    assert step3.shape == (BATCH, 2, 32, 32, 3) and step3.dtype == np.float32
    assert np.isfinite(step3).all() and step3.min() < -1.0 and step3.max() > 1.0
    np.testing.assert_array_equal(step3, views(3))
    assert np.abs(step3 - views(4)).mean(axis=(2, 3, 4)).min() > 0.01
    assert np.abs(step3[:, 0] - step3[:, 1]).mean(axis=(1, 2, 3)).min() > 0.01
    out = augment_fn(jax.random.fold_in(base_key, 3), batch)
    assert sorted(out) == ["global", "label"]
    # Multi-crop: the local group has its own size, crops and randomness.
    local_config = _data_config(
        blur_prob=0.5, solarize_prob=0.2, local_views=3, local_image_size=16
    )
    both = jax.jit(lambda key, batch: color.augment_batch(key, batch, local_config))(
        jax.random.fold_in(base_key, 3), batch
    )
    np.testing.assert_array_equal(both["global"], step3)
    assert both["local"].shape == (BATCH, 3, 16, 16, 3)


def test_augmentation_keeps_the_batch_sharding_without_collectives():
    config = _data_config(blur_prob=0.5, solarize_prob=0.2)
    images = fake.make_examples("train", 64)[0]
    key = jax.random.key(5)
    mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=-1, fsdp=1)))
    batch_sharding = sharding.batch_sharding(mesh)
    augment_fn = jax.jit(
        lambda key, batch: color.augment_batch(key, batch, config)["global"],
        in_shardings=(sharding.replicated(mesh), batch_sharding),
    )
    batch = sharding.to_global({"image": images}, mesh)
    compiled = augment_fn.lower(key, batch).compile()
    assert not re.search(r"all-gather|all-reduce|all-to-all|collective-permute", compiled.as_text())
    views = compiled(key, batch)
    assert views.sharding.is_equivalent_to(batch_sharding, views.ndim)
    # Same randomness for any device count (partitionable threefry): the 1-device result.
    single = jax.jit(lambda key, images: color.augment_batch(key, {"image": images}, config))
    np.testing.assert_allclose(views, single(key, images)["global"], atol=1e-6)


def test_device_views_have_the_host_views_statistics():
    # Different random numbers, same distribution: statistics over 192 x 2 views agree.
    config = _data_config()
    images = fake.make_examples("train", 192)[0]
    host = augment.simclr_views(images, np.arange(192), 0, 0, config).numpy()
    device = np.asarray(
        jax.jit(lambda key, x: color.augment_views(key, x, 2, 32, config))(
            jax.random.key(0), images
        )
    )

    def statistics(views):
        pixels = views * np.array(config.std) + np.array(config.mean)  # back to [0, 1]
        gray = np.all(np.abs(pixels - pixels[..., :1]) < 1e-5, axis=(2, 3, 4))
        return {
            "channel_mean": pixels.mean(axis=(0, 1, 2, 3)),
            "view_std": pixels.std(axis=(2, 3, 4)).mean(),
            "saturation": (pixels.max(-1) - pixels.min(-1)).mean(),
            "gray_fraction": gray.mean(),
        }

    host_stats, device_stats = statistics(host), statistics(device)
    for name, tolerance in (
        ("channel_mean", 0.03),
        ("view_std", 0.02),
        ("saturation", 0.03),
        ("gray_fraction", 0.07),
    ):
        np.testing.assert_allclose(
            device_stats[name], host_stats[name], atol=tolerance, err_msg=name
        )
    assert 0.12 < device_stats["gray_fraction"] < 0.28  # grayscale_prob 0.2


# --- Pipeline and training ---


def test_train_iterator_ships_uint8_images_when_augmenting_on_device():
    kwargs = dict(global_batch_size=16, seed=0, start_step=1, process_index=0, process_count=1)
    raw = next(tfds.make_train_iterator(_data_config(augment_on_device=True), **kwargs))
    views = next(tfds.make_train_iterator(_data_config(), **kwargs))
    assert sorted(raw) == ["image", "index", "label"]
    assert raw["image"].shape == (16, 32, 32, 3) and raw["image"].dtype == np.uint8
    np.testing.assert_array_equal(raw["index"], views["index"])  # same examples, same order
    images, _ = fake.make_examples("train", 64)
    np.testing.assert_array_equal(raw["image"], images[raw["index"]])


# Compiles a whole train step: the slow lane.
@pytest.mark.slow
def test_smoke_training_with_on_device_augmentation(tmp_path):
    config = simclr_cifar10.get_config("smoke")
    config.data.augment_on_device = True
    config.train.progress_bar = False
    config.train.epochs = 0.125  # 2 steps of 32 out of 512 fake examples
    config.evals.knn.batch_size = 128
    results = trainer.train_and_evaluate(config, str(tmp_path))
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    train_records = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train_records] == [1, 2]
    assert all(np.isfinite(r["train/loss"]) and r["train/nonfinite"] == 0 for r in train_records)
    # SimCLR at temperature 0.2 on a random net: ~log(2B - 1) = 4.1; NaN views would show.
    assert 2.0 < train_records[0]["train/loss"] < 6.0
    assert 0.0 <= results["knn/top1"] <= 1.0
    with open(os.path.join(tmp_path, "config.json")) as f:
        assert json.load(f)["data"]["augment_on_device"] is True


def test_train_step_makes_the_views_keyed_by_step():
    # The real step function around a stand-in method whose loss reads the views and hands
    # them back as a metric: the step makes batch["global"] from batch["image"] with
    # fold_in(augment_key, step), on the batch split over 8 devices as the trainer jits it.
    config = simclr_cifar10.get_config("smoke")
    config.data.augment_on_device = True
    config.data.blur_prob = 0.5

    def loss_fn(model, variables, batch, method_state, method_config, rng, step):
        del model, method_config, rng, step
        views = batch["global"]  # [B, V, S, S, 3]
        features = views.mean(axis=(2, 3)) * variables["params"]["scale"]  # [B, V, 3]
        loss = jnp.mean(features**2)
        return loss, methods_base.LossAux(
            features, variables["batch_stats"], method_state, {"views": views}
        )

    probe = flax.linen.Dense(10)
    tx = probe_tx = optax.sgd(0.1)
    params = {"scale": jnp.ones(())}
    probe_params = probe.init(jax.random.key(0), jnp.zeros((1, 3)))["params"]
    state = state_lib.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats={},
        method_state={},
        opt_state=tx.init(params),
        probe_params=probe_params,
        probe_opt_state=probe_tx.init(probe_params),
        nonfinite_steps=jnp.zeros((), jnp.int32),
    )
    base_key = jax.random.key(11)
    step_fn = step_lib.make_train_step(
        None,
        types.SimpleNamespace(loss_fn=loss_fn),
        probe,
        tx,
        probe_tx,
        optax.constant_schedule(0.1),
        config,
        base_key,
    )
    mesh = sharding.make_mesh(config.mesh)
    train_step = jax.jit(
        step_fn, in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh))
    )
    images = fake.make_examples("train", 32)[0]
    host_batch = {"image": images, "label": np.zeros(32, np.int32)}
    batch = sharding.to_global(host_batch, mesh)
    assert len(batch["image"].sharding.device_set) == 8

    def views_at(step):
        new_state, metrics = train_step(state.replace(step=jnp.asarray(step, jnp.int32)), batch)
        assert int(new_state.step) == step + 1 and np.isfinite(metrics["train/loss"])
        return np.asarray(metrics["views"])

    views = views_at(7)
    assert views.shape == (32, 2, 32, 32, 3)
    augment_key = jax.random.fold_in(base_key, step_lib._AUGMENT_STREAM)
    expected = jax.jit(lambda key: color.augment_batch(key, host_batch, config.data))(
        jax.random.fold_in(augment_key, 7)
    )["global"]
    np.testing.assert_allclose(views, expected, atol=1e-5)
    np.testing.assert_array_equal(views, views_at(7))  # a resumed step redraws its views
    assert np.abs(views - views_at(8)).mean(axis=(2, 3, 4)).min() > 0.01
