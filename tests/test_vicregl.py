"""VICRegL: crop boxes and location grids, matching, the local and global terms against numpy,
the method's loss and train steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import errors, sharding
from jaxssl.configs import vicregl_cifar10
from jaxssl.data import crops, tfds
from jaxssl.losses import redundancy
from jaxssl.methods import vicregl
from tests import helpers


def _np_nearest(distances, k):
    b, n, _ = distances.shape
    nearest, best = distances.argmin(-1), distances.min(-1)
    if k is None:
        rows = np.tile(np.arange(n), (b, 1))
    else:
        rows = np.stack([np.sort(np.argsort(best[i], kind="stable")[:k]) for i in range(b)])
    return rows, np.take_along_axis(nearest, rows, 1)


def _np_terms(x, y, eps=1e-4):
    def variance(z):
        return np.maximum(0.0, 1.0 - np.sqrt(z.var(0, ddof=1) + eps)).mean()

    def covariance(z):
        n, k, c = z.shape
        values = []
        for slot in range(k):
            centered = z[:, slot] - z[:, slot].mean(0)
            cov = centered.T @ centered / (n - 1)
            values.append(((cov**2).sum() - (np.diag(cov) ** 2).sum()) / c)
        return np.mean(values)

    return (
        ((x - y) ** 2).mean(),
        variance(x) / 2 + variance(y) / 2,
        covariance(x) / 2 + covariance(y) / 2,
    )


def _np_local(m1, m2, l1, l2, num_matches):
    b = m1.shape[0]
    batch = np.arange(b)[:, None]

    def both(distances, k1, k2):
        terms = []
        for src, dst, d, k in ((m1, m2, distances, k1), (m2, m1, distances.transpose(0, 2, 1), k2)):
            rows, cols = _np_nearest(d, k)
            terms.append(_np_terms(src[batch, rows], dst[batch, cols]))
        return [(a + c) / 2 for a, c in zip(*terms, strict=True)]

    feature = both(((m1[:, :, None] - m2[:, None]) ** 2).sum(-1), None, None)
    location = both(((l1[:, :, None] - l2[:, None]) ** 2).sum(-1), *num_matches)
    return [f + g for f, g in zip(feature, location, strict=True)]


def test_location_grid_is_the_cell_centres_mirrored_when_flipped():
    boxes = np.asarray([[2.0, 4.0, 8.0, 16.0, 0.0], [2.0, 4.0, 8.0, 16.0, 1.0]], np.float32)
    grid = np.asarray(redundancy.location_grid(boxes, 2, 4))
    assert grid.shape == (2, 8, 2)
    ys, xs = [4.0, 8.0], [6.0, 10.0, 14.0, 18.0]
    np.testing.assert_allclose(grid[0], [(y, x) for y in ys for x in xs])
    np.testing.assert_allclose(grid[1], [(y, x) for y in ys for x in xs[::-1]])


def test_view_boxes_locate_the_crops_pixels():
    # A source whose pixels hold their own coordinates: each crop pixel must show the source
    # point its box places it at (the resampling is linear on a linear ramp).
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([rows * 8 + 4, cols * 8 + 4, np.zeros_like(rows)], -1).astype(np.uint8)
    images = np.repeat(image[None], 16, axis=0)
    index = np.arange(16)
    kwargs = dict(num_views=2, scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3), flip_prob=0.5)
    views = crops.random_crops(images, index, 3, 7, size=16, **kwargs).numpy()
    views = views.astype(np.float32)
    boxes = crops.view_boxes(index, 3, 7, height=32, width=32, **kwargs).numpy()
    assert boxes.shape == (16, 2, 5) and set(np.unique(boxes[..., 4])) <= {0.0, 1.0}
    assert 0 < boxes[..., 4].mean() < 1  # both flipped and unflipped views occur
    grid = np.asarray(redundancy.location_grid(boxes, 16, 16)).reshape(16, 2, 16, 16, 2)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from edge clamping
    # Pixel values are 8 * coordinate (+4 for the pixel centre), grids in pixel units.
    np.testing.assert_allclose(views[..., 0][inner], 8 * grid[..., 0][inner], atol=3.0)
    np.testing.assert_allclose(views[..., 1][inner], 8 * grid[..., 1][inner], atol=3.0)


def test_crop_train_batch_adds_the_boxes_of_its_views():
    config = vicregl_cifar10.get_config("smoke").data
    config.local_views = 2
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    batch = {"image": images, "label": np.zeros(4), "index": np.arange(4), "epoch": 1}
    out = tfds.crop_train_batch(batch, 5, config)
    assert out["global_box"].shape == (4, 2, 5) and out["local_box"].shape == (4, 2, 5)
    expected = crops.crop_view_boxes(images, np.arange(4), 1, 5, config, "local").numpy()
    np.testing.assert_array_equal(out["local_box"].numpy(), expected)


def test_nearest_matches_match_numpy_in_index_order():
    distances = np.random.default_rng(1).random((3, 9, 5)).astype(np.float32)
    for k in (None, 4):
        rows, cols = map(np.asarray, redundancy.nearest_matches(jnp.asarray(distances), k))
        expected_rows, expected_cols = _np_nearest(distances, k)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_array_equal(cols, expected_cols)


def test_local_and_global_terms_match_numpy():
    rng = np.random.default_rng(2)
    m1, m2 = rng.normal(size=(6, 9, 5)), rng.normal(size=(6, 4, 5))
    l1, l2 = 32 * rng.random((6, 9, 2)), 32 * rng.random((6, 4, 2))
    got = redundancy.vicregl_local_terms(*map(jnp.asarray, (m1, m2, l1, l2)), (3, 2))
    np.testing.assert_allclose(got, _np_local(m1, m2, l1, l2, (3, 2)), rtol=2e-5, atol=1e-6)
    # Global: with two views VICReg's terms, but the covariance is the views' mean.
    z = rng.normal(size=(16, 2, 7)).astype(np.float32)
    inv, var, cov = redundancy.vicregl_global_terms(jnp.asarray(z))
    _, terms = redundancy.vicreg_loss(z[:, 0], z[:, 1])
    np.testing.assert_allclose(
        (inv, var, 2 * cov),
        (terms["invariance"], terms["variance"], terms["covariance"]),
        rtol=1e-5,
    )


def test_matched_pairs_that_agree_have_no_invariance_and_grads_reach_both_maps():
    rng = np.random.default_rng(3)
    m = jnp.asarray(rng.normal(size=(8, 4, 6)), jnp.float32)
    loc = jnp.asarray(32 * rng.random((8, 4, 2)), jnp.float32)
    inv, _, _ = redundancy.vicregl_local_terms(m, m, loc, loc, (2, 2))
    assert float(inv) < 1e-10

    def loss(a, b):
        return sum(redundancy.vicregl_local_terms(a, b, loc, loc[:, ::-1], (2, 2)))

    ga, gb = jax.grad(loss, argnums=(0, 1))(m, m[:, ::-1] + 0.1)
    assert float(jnp.abs(ga).sum()) > 0 and float(jnp.abs(gb).sum()) > 0


@pytest.fixture(scope="module")
def smoke():
    return helpers.smoke_run(vicregl_cifar10.get_config("smoke"))


def test_the_loss_is_alpha_weighted_global_and_local_vicreg(smoke):
    config, _, run, state = smoke
    batch = helpers.random_views_batch(config, seed=1)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    value, aux = jax.jit(
        lambda b: vicregl.loss_fn(run.model, variables, b, {}, config.method, None, 0)
    )(batch)
    views = jnp.asarray(batch["global"]).reshape((-1, 32, 32, 3))
    (_, z, maps), _ = run.model.apply(
        variables, views, method=run.model.project_maps, mutable=["batch_stats"]
    )
    b = config.train.batch_size
    z, maps = z.reshape((b, 2, -1)), maps.reshape((b, 2) + maps.shape[1:])
    side = int(round(maps.shape[2] ** 0.5))
    loc = redundancy.location_grid(jnp.asarray(batch["global_box"]), side, side)
    g = redundancy.vicregl_global_terms(z)
    pairs = [(0, 1), (1, 0)]
    local = [
        redundancy.vicregl_local_terms(maps[:, i], maps[:, j], loc[:, i], loc[:, j], (4, 2))
        for i, j in pairs
    ]
    l_terms = [sum(t[k] for t in local) / 2 for k in range(3)]
    weights = (25.0, 25.0, 1.0)
    expected = 0.75 * sum(w * t for w, t in zip(weights, g, strict=True)) + 0.25 * sum(
        w * t for w, t in zip(weights, l_terms, strict=True)
    )
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_allclose(aux.metrics["train/vicregl_local_invariance"], l_terms[0], rtol=1e-5)
    assert aux.embeddings.shape == z.shape  # the SIGReg drop-in can act on the expander
    del batch["global_box"]
    with pytest.raises(errors.ConfigError, match="crop_boxes=True"):
        vicregl.loss_fn(run.model, variables, batch, {}, config.method, None, 0)


def test_vicregl_needs_a_resnet():
    config = vicregl_cifar10.get_config("smoke")
    config.model.backbone = "vit_tiny"
    with pytest.raises(errors.ConfigError, match="ResNet backbone"):
        vicregl.build_model(config)


@pytest.mark.slow  # ~15 s of train steps; the loss above stays in the default lane
def test_smoke_train_steps_stay_finite_and_lower_the_loss(smoke):
    config, mesh, run, state = smoke
    batch = sharding.to_global(helpers.random_views_batch(config), mesh)
    first = None
    for _ in range(4):
        state, metrics = run.train_step(state, batch)
        assert not jax.device_get(metrics["train/nonfinite"])
        first = float(metrics["train/loss"]) if first is None else first
    assert float(metrics["train/loss"]) < first
