"""The founding papers' ideas: SimCLR with few negatives and noise-only views (Bordes et al.
2023), the last block's width (expand or narrow), the contrastive / non-contrastive duality."""

import json

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
from tools import plot_grid

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


def test_duality_variants_are_the_same_on_1_and_8_devices():
    """VICReg-exp/-ctr and SimCLR-abs/-sq: loss and gradients of a batch sharded over 8."""
    from jaxssl.losses import redundancy

    rng = np.random.default_rng(4)
    z = jnp.asarray(rng.normal(size=(2, 32, 8)), jnp.float32)
    ids = jnp.repeat(jnp.arange(16, dtype=jnp.int32), 2)

    def losses(z):
        return jnp.stack(
            [redundancy.vicreg_loss(z[0], z[1], variant=v)[0] for v in ("exp", "ctr")]
            + [
                contrastive.multi_positive_nt_xent(z[0], 0.2, ids=ids, negative_similarity=f)
                for f in ("abs", "square")
            ]
        )

    def value_and_grads(z):
        return losses(z), jax.jacrev(losses)(z)

    one = jax.jit(value_and_grads)(z)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    eight = jax.jit(value_and_grads)(jax.device_put(z, NamedSharding(mesh, P(None, "data"))))
    np.testing.assert_allclose(one[0], eight[0], rtol=1e-5)
    np.testing.assert_allclose(one[1], eight[1], rtol=1e-4, atol=1e-6)


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


# --- The duality of sample- and dimension-contrastive criteria ---


def test_duality_criteria_match_numpy_and_the_identity():
    from jaxssl.losses import duality

    rng = np.random.default_rng(0)
    for n, m in ((7, 5), (4, 9), (16, 16)):
        z = rng.normal(size=(n, m)).astype(np.float32)
        gram, cov = z.astype(np.float64) @ z.T, z.T.astype(np.float64) @ z
        l_c = np.sum(gram**2) - np.sum(np.diag(gram) ** 2)
        l_nc = np.sum(cov**2) - np.sum(np.diag(cov) ** 2)
        np.testing.assert_allclose(duality.sample_contrastive(z), l_c, rtol=1e-5)
        np.testing.assert_allclose(duality.dimension_contrastive(z), l_nc, rtol=1e-5)
        # Theorem 3.3: L_nc + sum_j |column j|^4 = L_c + sum_i |row i|^4.
        rows4 = np.sum(np.sum(z.astype(np.float64) ** 2, 1) ** 2)
        cols4 = np.sum(np.sum(z.astype(np.float64) ** 2, 0) ** 2)
        np.testing.assert_allclose(l_nc + cols4, l_c + rows4, rtol=1e-10)
        np.testing.assert_allclose(
            duality.dimension_contrastive(z),
            duality.sample_contrastive(z) + duality.duality_gap(z),
            rtol=1e-4,
        )
    # Square, with unit rows and unit columns (an orthogonal matrix): both criteria vanish.
    q = np.linalg.qr(rng.normal(size=(8, 8)))[0].astype(np.float32)
    np.testing.assert_allclose(duality.sample_contrastive(q), 0.0, atol=1e-5)
    np.testing.assert_allclose(duality.dimension_contrastive(q), 0.0, atol=1e-5)


def test_logsumexp_covariance_matches_numpy():
    from jaxssl.losses import duality

    rng = np.random.default_rng(1)
    z = rng.normal(size=(12, 6)).astype(np.float32)
    c = np.cov(z.astype(np.float64), rowvar=False)  # [D, D], unbiased
    expected = np.mean(
        [np.log(np.sum(np.exp(np.delete(c[i], i) / 0.2))) for i in range(c.shape[0])]
    )
    np.testing.assert_allclose(duality.logsumexp_covariance(z, 0.2), expected, rtol=1e-5)
    # The transposed form: a LogSumExp over the other samples' covariance.
    cs = np.cov(z.astype(np.float64), rowvar=True)  # [N, N]
    expected = np.mean([np.log(np.sum(np.exp(np.delete(cs[i], i) / 0.2))) for i in range(12)])
    np.testing.assert_allclose(duality.logsumexp_covariance(z.T, 0.2), expected, rtol=1e-5)


def test_vicreg_variants():
    from jaxssl.losses import duality, redundancy

    rng = np.random.default_rng(2)
    z1, z2 = rng.normal(size=(2, 16, 8)).astype(np.float32)
    plain, terms = redundancy.vicreg_loss(z1, z2)
    exp, exp_terms = redundancy.vicreg_loss(z1, z2, variant="exp", temperature=0.3)
    ctr, ctr_terms = redundancy.vicreg_loss(z1, z2, variant="ctr", temperature=0.3)
    for t in (exp_terms, ctr_terms):  # the invariance term is VICReg's in all three
        np.testing.assert_allclose(t["invariance"], terms["invariance"])
    np.testing.assert_allclose(exp_terms["variance"], terms["variance"])
    np.testing.assert_allclose(
        exp_terms["covariance"],
        duality.logsumexp_covariance(z1, 0.3) + duality.logsumexp_covariance(z2, 0.3),
        rtol=1e-6,
    )
    # ctr: variance hinge on each embedding's spread over its dimensions, LogSumExp over samples.
    std = np.sqrt(np.var(z1.T.astype(np.float64), axis=0, ddof=1) + 1e-4)
    std2 = np.sqrt(np.var(z2.T.astype(np.float64), axis=0, ddof=1) + 1e-4)
    expected_variance = np.mean(np.maximum(0, 1 - std)) / 2 + np.mean(np.maximum(0, 1 - std2)) / 2
    np.testing.assert_allclose(ctr_terms["variance"], expected_variance, rtol=1e-5)
    np.testing.assert_allclose(
        ctr_terms["covariance"],
        duality.logsumexp_covariance(z1.T, 0.3) + duality.logsumexp_covariance(z2.T, 0.3),
        rtol=1e-6,
    )
    assert len({float(plain), float(exp), float(ctr)}) == 3
    with pytest.raises(ValueError, match="variant"):
        redundancy.vicreg_loss(z1, z2, variant="nope")


@pytest.mark.parametrize("form", ["abs", "square"])
def test_simclr_abs_and_square_match_numpy(form):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(10, 4)).astype(np.float32)
    ids = np.repeat(np.arange(5), 2).astype(np.int32)
    u = z.astype(np.float64) / np.linalg.norm(z, axis=1, keepdims=True)
    sim = u @ u.T
    f = np.abs if form == "abs" else np.square
    losses = []
    for a in range(10):
        p = a ^ 1  # the other view
        logits = [sim[a, p] if b == p else f(sim[a, b]) for b in range(10) if b != a]
        losses.append(np.log(np.sum(np.exp(np.asarray(logits) / 0.5))) - sim[a, p] / 0.5)
    loss = contrastive.multi_positive_nt_xent(z, 0.5, ids=ids, negative_similarity=form)
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-5)
    with pytest.raises(ValueError, match="negative_similarity"):
        contrastive.multi_positive_nt_xent(z, 0.5, ids=ids, negative_similarity="cube")


def test_simclr_abs_treats_opposite_negatives_like_identical_ones():
    x = np.array([1.0, 0.0], np.float32)
    positive = np.array([1.0, 0.1], np.float32)
    ids = np.array([0, 0, 1, 1], np.int32)

    def loss(negative, form):
        z = np.stack([x, positive, negative, negative + [0.0, 0.01]])
        return float(contrastive.multi_positive_nt_xent(z, 0.5, ids=ids, negative_similarity=form))

    opposite, orthogonal = np.array([-1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    assert loss(opposite, "cosine") < loss(orthogonal, "cosine")  # NT-Xent: opposite is best
    assert loss(orthogonal, "abs") < loss(opposite, "abs")  # abs: orthogonal is best
    assert loss(orthogonal, "square") < loss(opposite, "square")


def _evaluated_run(root, method, batch, dim, knn):
    workdir = root / f"{method}_b{batch}_d{dim}"
    (workdir / "eval").mkdir(parents=True)
    config = {"method": {"name": method}, "train": {"batch_size": batch}}
    config["model"] = {"projector_dim": dim}
    (workdir / "config.json").write_text(json.dumps(config))
    (workdir / "eval" / "7.json").write_text(json.dumps({"metrics": {"knn/top1_k200": 0.1}}))
    (workdir / "eval" / "12.json").write_text(json.dumps({"metrics": {"knn/top1_k200": knn}}))
    return str(workdir)


def test_plot_grid_reads_each_runs_newest_evaluation(tmp_path):
    runs = [
        _evaluated_run(tmp_path, "vicreg", 64, 128, 0.4),
        _evaluated_run(tmp_path, "vicreg", 64, 1024, 0.47),
        _evaluated_run(tmp_path, "simclr", 256, 128, 0.44),
    ]
    assert plot_grid.read_run(runs[1], "knn/top1_k200") == ("vicreg", 64, 1024, 0.47)
    out = tmp_path / "grid.png"
    plot_grid.main([*runs, "--out", str(out)])
    assert out.stat().st_size > 1000
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="jaxssl eval"):
        plot_grid.read_run(str(tmp_path / "bare"), "knn/top1_k200")
