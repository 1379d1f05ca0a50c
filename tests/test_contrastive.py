"""Contrastive losses: NT-Xent and its multi-positive graphs, MoCo's InfoNCE, NNCLR."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import contrastive, contrastive_blockwise


def _numpy_nt_xent(z1, z2, temperature):
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    sim = z @ z.T / temperature
    losses = []
    for a in range(2 * n):
        positive = (a + n) % (2 * n)
        others = [b for b in range(2 * n) if b != a]
        losses.append(-(sim[a, positive] - np.log(np.sum(np.exp(sim[a, others])))))
    return np.mean(losses)


nt_xent = jax.jit(contrastive.nt_xent, static_argnames="temperature")


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_numpy(temperature):
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, 6, 5)).astype(np.float32)
    np.testing.assert_allclose(
        nt_xent(z1, z2, temperature=temperature), _numpy_nt_xent(z1, z2, temperature), rtol=1e-5
    )


def test_nt_xent_hand_computed_two_pairs():
    # Two orthogonal pairs: each anchor sees its positive at cos 1 and two negatives at cos 0.
    z1 = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    expected = -np.log(np.exp(1 / 0.5) / (np.exp(1 / 0.5) + 2))
    np.testing.assert_allclose(nt_xent(z1, z1, temperature=0.5), expected, rtol=1e-6)


def test_nt_xent_invariances():
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(2, 8, 16)).astype(np.float32)
    loss = nt_xent(z1, z2, temperature=0.2)
    np.testing.assert_allclose(nt_xent(z2, z1, temperature=0.2), loss, rtol=1e-6)  # view swap
    np.testing.assert_allclose(nt_xent(3.0 * z1, 0.1 * z2, temperature=0.2), loss, rtol=1e-5)
    perm = rng.permutation(8)  # reordering the pairs changes nothing
    np.testing.assert_allclose(nt_xent(z1[perm], z2[perm], temperature=0.2), loss, rtol=1e-5)


def test_nt_xent_lowest_for_matching_orthogonal_views():
    eye = jnp.eye(8)
    best = nt_xent(eye, eye, temperature=0.2)
    rng = np.random.default_rng(2)
    for _ in range(5):
        z1, z2 = rng.normal(size=(2, 8, 8)).astype(np.float32)
        assert nt_xent(z1, z2, temperature=0.2) > best
    # The closed form: log(1 + (2N - 2) exp(-1/T)) for matching one-hot views.
    np.testing.assert_allclose(best, np.log(1 + 14 * np.exp(-1 / 0.2)), rtol=1e-5)


def test_nt_xent_finite_gradients_in_bfloat16():
    rng = np.random.default_rng(3)
    z1, z2 = rng.normal(size=(2, 8, 16))
    grads = jax.jit(jax.grad(contrastive.nt_xent, argnums=(0, 1)))(
        jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16)
    )
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_contrastive_top1():
    eye = jnp.eye(4)
    assert float(jax.jit(contrastive.contrastive_top1)(eye, eye)) == 1.0


# --- Multi-positive NT-Xent over a positive-pair graph (SupCon's L_out) ---


def _numpy_multi_positive(z, positives, temperature):
    """Independent float64 loop: SupCon's L_out, mean over anchors with positives."""
    z = np.asarray(z, np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    m = len(z)
    sim = z @ z.T / temperature
    losses = []
    for a in range(m):
        pos = [p for p in range(m) if p != a and positives[a, p]]
        if not pos:
            continue
        log_denominator = np.log(sum(np.exp(sim[a, b]) for b in range(m) if b != a))
        losses.append(-np.mean([sim[a, p] - log_denominator for p in pos]))
    return np.mean(losses)


def _random_graph(seed, m=24, d=8, num_labels=6):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, d)).astype(np.float32)
    ids = rng.integers(0, num_labels, size=m).astype(np.int32)
    ids[:2] = [100, 101]  # two anchors with no positive: excluded from the mean
    return z, ids


multi_positive = jax.jit(contrastive.multi_positive_nt_xent, static_argnames="temperature")
# The blockwise implementation, checked against the dense one on the same graphs.
blockwise = jax.jit(
    contrastive_blockwise.multi_positive_nt_xent_blockwise,
    static_argnames=("temperature", "chunk_size"),
)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_multi_positive_matches_numpy(temperature):
    z, ids = _random_graph(0)
    expected = _numpy_multi_positive(z, ids[:, None] == ids[None, :], temperature)
    for loss in (
        multi_positive(z, temperature, ids=ids),
        multi_positive(z, temperature, positives=ids[:, None] == ids[None, :]),
        blockwise(z, temperature, ids=ids, chunk_size=5),
    ):
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # An explicit, asymmetric graph (the matrix need not be a partition); diagonal ignored.
    positives = np.random.default_rng(1).random((24, 24)) < 0.2
    expected = _numpy_multi_positive(z, positives, temperature)
    np.testing.assert_allclose(
        multi_positive(z, temperature, positives=positives), expected, rtol=1e-5
    )
    np.testing.assert_allclose(
        blockwise(z, temperature, positives=positives, chunk_size=7), expected, rtol=1e-5
    )


def test_nt_xent_is_multi_positive_over_the_augmentation_graph():
    rng = np.random.default_rng(2)
    z1, z2 = rng.normal(size=(2, 8, 16)).astype(np.float32)
    # The formula nt_xent had before it called the general loss.
    logits, positives = contrastive.nt_xent_logits(z1, z2, 0.2)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    before = -jnp.mean(jnp.take_along_axis(log_probs, positives[:, None], axis=-1))
    loss = nt_xent(z1, z2, temperature=0.2)
    np.testing.assert_allclose(loss, before, rtol=1e-6)
    z = np.stack([z1, z2], axis=1).reshape(16, 16)  # batch-major, as methods/simclr.py
    ids = contrastive.augmentation_graph_ids(8, 2)
    np.testing.assert_allclose(multi_positive(z, 0.2, ids=ids), loss, rtol=1e-6)
    np.testing.assert_allclose(blockwise(z, 0.2, ids=ids, chunk_size=3), loss, rtol=1e-6)
    np.testing.assert_allclose(
        jax.jit(contrastive.multi_positive_top1)(z, ids=ids), contrastive.contrastive_top1(z1, z2)
    )


def test_label_and_union_graphs():
    rng = np.random.default_rng(3)
    b, v = 10, 3
    z = rng.normal(size=(b * v, 8)).astype(np.float32)
    image_ids = contrastive.augmentation_graph_ids(b, v)
    simclr = multi_positive(z, 0.3, ids=image_ids)
    # Unique labels (or no known label) give the augmentation graph back.
    unique = jnp.repeat(jnp.asarray(rng.permutation(b)), v)
    np.testing.assert_allclose(multi_positive(z, 0.3, ids=unique), simclr, rtol=1e-6)
    union = contrastive.union_graph_ids(image_ids, jnp.full((b * v,), -1))
    np.testing.assert_allclose(multi_positive(z, 0.3, ids=union), simclr, rtol=1e-6)
    # Partly known labels: the ids give exactly the union of the two graphs.
    labels = np.repeat(rng.integers(-1, 3, size=b), v)  # label per image, -1 = unknown
    union = contrastive.union_graph_ids(image_ids, jnp.asarray(labels))
    same_image = np.asarray(image_ids)[:, None] == np.asarray(image_ids)[None, :]
    same_label = (labels[:, None] == labels[None, :]) & (labels >= 0)[:, None]
    expected = (same_image | same_label) & ~np.eye(b * v, dtype=bool)
    np.testing.assert_array_equal(contrastive.positives_from_ids(union), expected)
    np.testing.assert_allclose(
        multi_positive(z, 0.3, ids=union), _numpy_multi_positive(z, expected, 0.3), rtol=1e-5
    )
    assert float(multi_positive(z, 0.3, ids=union)) != pytest.approx(float(simclr))


def test_multi_positive_invariances():
    z, ids = _random_graph(4)
    loss = multi_positive(z, 0.2, ids=ids)
    perm = np.random.default_rng(5).permutation(len(z))
    np.testing.assert_allclose(multi_positive(z[perm], 0.2, ids=ids[perm]), loss, rtol=1e-5)
    np.testing.assert_allclose(multi_positive(7.0 * z, 0.2, ids=ids), loss, rtol=1e-5)
    # Relabelling the groups changes nothing either.
    np.testing.assert_allclose(multi_positive(z, 0.2, ids=3 * ids + 11), loss, rtol=1e-6)
    positives = contrastive.positives_from_ids(jnp.asarray(ids))
    np.testing.assert_allclose(multi_positive(z, 0.2, positives=positives), loss, rtol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        contrastive.multi_positive_nt_xent(z, 0.2)


# --- With a momentum encoder (MoCo v2, v3) and NNCLR ---


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_cross_entropy(logits, labels):
    logits = logits - logits.max(1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -np.mean(log_probs[np.arange(len(labels)), labels])


def test_infonce_with_queue_matches_numpy():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    queue = _unit(rng.normal(size=(10, 5)))
    logits = np.concatenate(
        [np.sum(_unit(q) * _unit(k), 1, keepdims=True), _unit(q) @ queue.T], axis=1
    )
    expected = _np_cross_entropy(logits / 0.2, np.zeros(6, int))
    got = contrastive.infonce_with_queue(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), 0.2)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    # No gradient reaches keys or queue.
    grads = jax.grad(contrastive.infonce_with_queue, argnums=(1, 2))(
        jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32), jnp.asarray(queue, jnp.float32)
    )
    assert all(float(jnp.abs(g).max()) == 0.0 for g in grads)


def test_infonce_in_batch_matches_numpy():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(8, 4)), rng.normal(size=(8, 4))
    expected = _np_cross_entropy(_unit(q) @ _unit(k).T / 0.2, np.arange(8)) * 0.4
    got = contrastive.infonce_in_batch(jnp.asarray(q), jnp.asarray(k), 0.2)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_nnclr_neighbours_and_loss_match_numpy():
    rng = np.random.default_rng(3)
    support = _unit(rng.normal(size=(16, 4)))
    z, p = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    expected_nn = support[np.argmax(_unit(z) @ support.T, axis=1)]
    got_nn = contrastive.nearest_neighbours(jnp.asarray(z), jnp.asarray(support))
    np.testing.assert_allclose(got_nn, expected_nn, rtol=1e-6)
    expected = _np_cross_entropy(_unit(expected_nn) @ _unit(p).T / 0.2, np.arange(5))
    np.testing.assert_allclose(
        float(contrastive.nnclr_loss(got_nn, jnp.asarray(p), 0.2)), expected, rtol=1e-5
    )
    # A support row equal to z is its own neighbour.
    support[7] = _unit(z[2])
    assert int(np.argmax(_unit(z[2]) @ support.T)) == 7


def _dcl_one_way_numpy(z1, z2, temperature, sigma):
    # The reference code's one-way loss (raminnakhli/Decoupled-Contrastive-Learning), in numpy.
    u = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    v = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    n = len(u)
    cross = u @ v.T
    positive = -np.diag(cross) / temperature
    if sigma:
        s = np.sum(u * v, axis=1) / sigma
        positive = positive * (2 - n * np.exp(s - s.max()) / np.exp(s - s.max()).sum())
    similarity = np.concatenate([u @ u.T, cross], axis=1) / temperature
    similarity = similarity + np.tile(np.eye(n), (1, 2)) * np.log(1e-45)
    top = similarity.max(axis=1, keepdims=True)
    negative = np.log(np.exp(similarity - top).sum(axis=1)) + top[:, 0]
    return np.mean(positive + negative)


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_decoupled_nt_xent_matches_the_reference_both_ways(sigma):
    rng = np.random.default_rng(3)
    z1, z2 = rng.normal(size=(2, 12, 6)).astype(np.float32)
    expected = 0.5 * (
        _dcl_one_way_numpy(z1, z2, 0.1, sigma) + _dcl_one_way_numpy(z2, z1, 0.1, sigma)
    )
    np.testing.assert_allclose(
        contrastive.decoupled_nt_xent(jnp.asarray(z1), jnp.asarray(z2), 0.1, sigma),
        expected,
        rtol=1e-5,
    )


def test_decoupled_nt_xent_is_nt_xent_without_the_positive_in_the_denominator():
    rng = np.random.default_rng(4)
    z1, z2 = rng.normal(size=(2, 10, 5)).astype(np.float32)
    u = np.concatenate([z1, z2]) / np.linalg.norm(np.concatenate([z1, z2]), axis=1, keepdims=True)
    logits = u @ u.T / 0.2
    n = 10
    partner = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    positive = logits[np.arange(2 * n), partner]
    excluded = np.eye(2 * n, dtype=bool)
    excluded[np.arange(2 * n), partner] = True
    negatives = np.log(np.sum(np.where(excluded, 0.0, np.exp(logits)), axis=1))
    np.testing.assert_allclose(
        contrastive.decoupled_nt_xent(jnp.asarray(z1), jnp.asarray(z2), 0.2),
        np.mean(negatives - positive),
        rtol=1e-5,
    )
    # With the positive back in the denominator it is NT-Xent, which is always the larger.
    with_positive = np.log(np.exp(negatives) + np.exp(positive))
    np.testing.assert_allclose(
        contrastive.nt_xent(jnp.asarray(z1), jnp.asarray(z2), 0.2),
        np.mean(with_positive - positive),
        rtol=1e-5,
    )
    # DCLW's weights average to 1 and favour the pairs that are far apart.
    s = np.sum(u[:n] * u[n:], axis=1) / 0.5
    weights = 2 - n * np.exp(s) / np.exp(s).sum()
    np.testing.assert_allclose(weights.mean(), 1.0, rtol=1e-6)
    assert weights[np.argmin(s)] == weights.max()
