"""The founding papers' ideas: SimCLR with few negatives and noise-only views (Bordes et al.
2023), the last block's width (expand or narrow), the contrastive / non-contrastive duality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxssl.configs import simclr_cifar10
from jaxssl.data import color
from jaxssl.losses import contrastive
from jaxssl.models import resnet, ssl_model

# --- SimCLR with a random subset of negatives ---


def _numpy_subset_nt_xent(z, ids, keep, temperature):
    """Multi-positive NT-Xent whose denominator runs over the positives and ``keep`` only."""
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = u @ u.T / temperature
    losses = []
    for a in range(len(z)):
        positives = [p for p in range(len(z)) if p != a and ids[p] == ids[a]]
        if not positives:
            continue
        denominator = [b for b in range(len(z)) if b != a and (ids[b] == ids[a] or keep[a, b])]
        log_normalizer = np.log(np.sum(np.exp(sim[a, denominator])))
        losses.append(np.mean([log_normalizer - sim[a, p] for p in positives]))
    return np.mean(losses)


def test_sample_negatives_keeps_k_negatives_per_anchor():
    ids = jnp.repeat(jnp.arange(6, dtype=jnp.int32), 2)  # 6 images x 2 views: 10 negatives each
    for k in (1, 3, 10):
        keep = np.asarray(contrastive.sample_negatives(jax.random.key(0), ids, k))
        np.testing.assert_array_equal(keep.sum(axis=1), k)
        assert not np.any(keep & (np.asarray(ids)[:, None] == np.asarray(ids)[None, :]))
    # More than there are: all of them.
    keep = np.asarray(contrastive.sample_negatives(jax.random.key(0), ids, 50))
    np.testing.assert_array_equal(keep, np.asarray(ids)[:, None] != np.asarray(ids)[None, :])
    # The draw is a function of the key, and rows differ.
    a = contrastive.sample_negatives(jax.random.key(1), ids, 1)
    b = contrastive.sample_negatives(jax.random.key(1), ids, 1)
    c = contrastive.sample_negatives(jax.random.key(2), ids, 1)
    np.testing.assert_array_equal(a, b)
    assert np.any(np.asarray(a) != np.asarray(c))
    assert len({int(np.argmax(row)) for row in np.asarray(a)}) > 2
    with pytest.raises(ValueError, match="num_negatives"):
        contrastive.sample_negatives(jax.random.key(0), ids, 0)


def test_nt_xent_with_a_subset_of_negatives_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(12, 5)).astype(np.float32)
    ids = np.repeat(np.arange(4), 3).astype(np.int32)  # 3 views per image
    for k in (1, 4):
        keep = contrastive.sample_negatives(jax.random.key(k), jnp.asarray(ids), k)
        loss = contrastive.multi_positive_nt_xent(z, 0.5, ids=ids, negatives=keep)
        expected = _numpy_subset_nt_xent(z, ids, np.asarray(keep), 0.5)
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # k = all negatives is NT-Xent exactly.
    keep = contrastive.sample_negatives(jax.random.key(0), jnp.asarray(ids), 12)
    np.testing.assert_allclose(
        contrastive.multi_positive_nt_xent(z, 0.5, ids=ids, negatives=keep),
        contrastive.multi_positive_nt_xent(z, 0.5, ids=ids),
        rtol=1e-6,
    )


def test_sampled_negatives_are_the_same_on_1_and_8_devices():
    """The draw is one global [M, M] array: sharding the ids over 8 devices changes nothing."""
    ids = jnp.repeat(jnp.arange(16, dtype=jnp.int32), 2)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(32, 8)), jnp.float32)

    def loss(z, ids, key):
        keep = contrastive.sample_negatives(key, ids, 3)
        return contrastive.multi_positive_nt_xent(z, 0.2, ids=ids, negatives=keep), keep

    one = jax.jit(loss)(z, ids, jax.random.key(3))
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rows = NamedSharding(mesh, P("data"))
    eight = jax.jit(loss)(jax.device_put(z, rows), jax.device_put(ids, rows), jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(one[1]), np.asarray(eight[1]))
    np.testing.assert_allclose(one[0], eight[0], rtol=1e-6)


def test_simclr_num_negatives_config():
    config = simclr_cifar10.get_config("smoke")
    assert config.method.num_negatives == 0
    config.method.loss_impl = "blockwise"
    config.method.num_negatives = 1
    from jaxssl.methods import simclr

    with pytest.raises(ValueError, match="dense"):
        simclr.LOSS_IMPLS["blockwise"](jnp.zeros((4, 3)), jnp.arange(4), config.method, None)


# --- Noise-only views ---


def test_gaussian_noise_statistics_and_the_noise_only_preset():
    images = jnp.full((64, 8, 8, 3), 0.5, jnp.float32)
    noisy = np.asarray(color.gaussian_noise(jax.random.key(0), images, 0.1))
    assert abs(noisy.mean() - 0.5) < 0.005
    assert abs(noisy.std() - 0.1) < 0.005
    config = simclr_cifar10.get_config("cpu_noise")
    data = config.data
    assert data.gaussian_noise_std == 0.1
    assert tuple(data.crop_scale) == (1.0, 1.0) and data.flip_prob == 0.0
    assert data.color_jitter_prob == 0.0 and data.grayscale_prob == 0.0
    # The two views of an image then differ by the noise alone.
    views = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 1, 8, 8, 3)), jnp.uint8)
    views = jnp.concatenate([views, views], axis=1)  # identical crops, as (1, 1) scale makes
    out = np.asarray(color.augment_views(jax.random.key(0), views, data))
    difference = (out[:, 0] - out[:, 1]) * np.asarray(data.std)  # back to the [0, 1] scale
    assert abs(difference.std() - 0.1 * np.sqrt(2)) < 0.01
    data.gaussian_noise_std = 0.0
    quiet = np.asarray(color.augment_views(jax.random.key(0), views, data))
    np.testing.assert_allclose(quiet[:, 0], quiet[:, 1])


# --- Expand or narrow the last block ---


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("last_block_width", [0, 16, 96])
def test_last_block_width_changes_only_the_last_block(name, last_block_width):
    x = jnp.zeros((2, 16, 16, 3))
    wide = resnet.make_backbone(name, width=4, last_block_width=last_block_width)
    plain = resnet.make_backbone(name, width=4)
    variables = jax.eval_shape(lambda k: wide.init(k, x, train=False), jax.random.key(0))
    reference = jax.eval_shape(lambda k: plain.init(k, x, train=False), jax.random.key(0))
    features = jax.eval_shape(lambda v: wide.apply(v, x, train=False), variables)
    assert features.shape == (2, resnet.feature_dim(name, 4, last_block_width))
    shapes = jax.tree_util.tree_map(lambda a: a.shape, variables["params"])
    plain_shapes = jax.tree_util.tree_map(lambda a: a.shape, reference["params"])
    last = [k for k in shapes if k.startswith("stage4")][-1]
    for block in shapes:  # every other block is untouched
        if block != last:
            assert shapes[block] == plain_shapes[block]
    if last_block_width:
        last_conv = "conv3" if name == "resnet50" else "conv2"
        assert shapes[last][last_conv]["kernel"][-1] == last_block_width
        assert shapes[last]["proj_conv"]["kernel"] == (
            1,
            1,
            32 * (4 if name == "resnet50" else 1),
            last_block_width,
        )
        assert shapes[last]["conv1"] == plain_shapes[last]["conv1"]


def test_last_block_width_through_the_config():
    config = simclr_cifar10.get_config("smoke")
    config.model.last_block_width = 24
    model = ssl_model.build_model(config)
    x = jnp.zeros((2, 16, 16, 3))
    variables = jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))
    features, projections = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    assert features.shape == (2, 24)  # the projector follows
    assert projections.shape == (2, config.model.projector_dim)
    config.model.backbone = "vit_tiny"
    with pytest.raises(ValueError, match="last_block_width"):
        ssl_model.make_backbone(config.model)
