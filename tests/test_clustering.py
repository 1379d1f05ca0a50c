"""SwAV's Sinkhorn-Knopp codes and swapped-prediction loss against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import clustering
from tests import helpers


@pytest.mark.parametrize("scale", [1.0, 5.0])  # 5: exp(S / eps) overflows float32 unshifted
def test_sinkhorn_matches_numpy(scale):
    scores = scale * _cosines((12, 7), 0)
    got = jax.jit(clustering.sinkhorn_knopp)(scores)
    np.testing.assert_allclose(got, helpers.numpy_sinkhorn(scores), rtol=2e-5, atol=1e-7)
    assert got.dtype == jnp.float32
    bf16 = jax.jit(clustering.sinkhorn_knopp)(jnp.bfloat16(scores))
    assert bf16.dtype == jnp.float32
    sinkhorn = jax.jit(clustering.sinkhorn_knopp, static_argnums=(1, 2))
    np.testing.assert_allclose(
        sinkhorn(scores, 0.1, 5), helpers.numpy_sinkhorn(scores, 0.1, 5), rtol=2e-5, atol=1e-7
    )


def test_sinkhorn_marginals_and_invariances():
    scores = _cosines((40, 8), 1)
    sinkhorn = jax.jit(clustering.sinkhorn_knopp, static_argnums=(1, 2))
    codes = np.asarray(sinkhorn(scores, 0.05, 3))
    assert (codes >= 0).all()
    np.testing.assert_allclose(codes.sum(1), 1.0, rtol=1e-5)  # each sample: a distribution
    # Prototypes: each should get N/K of the mass. Each iteration balances them better than
    # the last (from a per-sample softmax, 0 iterations), and exactly in the limit.
    target = 40 / 8
    imbalance = lambda q: np.abs(np.asarray(q).sum(0) - target).sum()  # noqa: E731
    imbalances = [imbalance(jax.nn.softmax(scores / 0.05, axis=1))]
    imbalances += [imbalance(sinkhorn(scores, 0.05, n)) for n in (1, 2, 3, 10, 30)]
    assert all(a > b for a, b in zip(imbalances[:-1], imbalances[1:], strict=True)), imbalances
    np.testing.assert_allclose(np.asarray(sinkhorn(scores, 0.05, 200)).sum(0), target, rtol=1e-4)
    # Equal scores: uniform codes. A constant shift changes nothing. Samples permute along.
    np.testing.assert_allclose(sinkhorn(np.zeros((6, 4), np.float32), 0.05, 3), 0.25, rtol=1e-6)
    np.testing.assert_allclose(sinkhorn(scores + 0.7, 0.05, 3), codes, rtol=1e-5, atol=1e-7)
    order = np.random.default_rng(2).permutation(40)
    np.testing.assert_allclose(sinkhorn(scores[order], 0.05, 3), codes[order], rtol=1e-5)
    # Targets: no gradient reaches the scores.
    grad = jax.grad(lambda s: jnp.sum(clustering.sinkhorn_knopp(s) * jnp.arange(8.0)))(scores)
    np.testing.assert_array_equal(grad, 0.0)


def test_codes_with_a_queue_are_the_batch_rows_of_sinkhorn_over_queue_and_batch():
    scores = _cosines((6, 2, 5), 3)  # [B, C, K]
    queue_scores = _cosines((2, 12, 5), 4)  # [C, L, K]
    with_queue = jax.jit(clustering.swav_codes)(scores, queue_scores)
    without = jax.jit(clustering.swav_codes)(scores)
    for c in range(2):
        expected = helpers.numpy_sinkhorn(np.concatenate([queue_scores[c], scores[:, c]]))[-6:]
        np.testing.assert_allclose(with_queue[:, c], expected, rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(without[:, c], helpers.numpy_sinkhorn(scores[:, c]), rtol=2e-5)
    # Only the batch rows: they still sum to 1, and the queue changed them.
    np.testing.assert_allclose(np.asarray(with_queue).sum(-1), 1.0, rtol=1e-5)
    assert np.abs(np.asarray(with_queue) - np.asarray(without)).max() > 1e-3


@pytest.mark.parametrize("num_views", [2, 5])  # 2 global views, or 2 global + 3 local
def test_swapped_prediction_loss_matches_numpy(num_views):
    scores = _cosines((8, num_views, 6), 5)
    codes = np.asarray(jax.nn.softmax(3 * _cosines((8, 2, 6), 6)))
    loss_fn = jax.jit(clustering.swapped_prediction_loss, static_argnums=2)
    loss = loss_fn(scores, codes, 0.1)
    np.testing.assert_allclose(loss, helpers.numpy_swav_loss(scores, codes, 0.1), rtol=1e-5)
    if num_views == 2:  # the symmetric two-view form
        h = lambda q, s: -np.mean(np.sum(q * helpers.numpy_log_softmax(s / 0.1), 1))  # noqa: E731
        expected = 0.5 * (h(codes[:, 0], scores[:, 1]) + h(codes[:, 1], scores[:, 0]))
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(
        loss_fn(scores, codes, 0.5), helpers.numpy_swav_loss(scores, codes, 0.5), rtol=1e-5
    )
    grad_scores, grad_codes = jax.grad(clustering.swapped_prediction_loss, argnums=(0, 1))(
        scores, codes
    )
    np.testing.assert_array_equal(grad_codes, 0.0)  # codes are targets
    assert np.abs(grad_scores).max() > 1e-4


def test_loss_needs_two_views():
    with pytest.raises(ValueError, match="V >= 2"):
        clustering.swapped_prediction_loss(jnp.zeros((4, 1, 3)), jnp.zeros((4, 1, 3)))


def _cosines(shape, seed):
    """Scores in [-1, 1] like SwAV's cosine similarities."""
    return np.tanh(np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def test_sinkhorn_over_valid_samples_is_sinkhorn_of_those_rows():
    # DINOv2 balances the masked patch tokens only: the fixed-shape form with `valid`.
    scores = 3.0 * _cosines((20, 6), 2)
    valid = np.random.default_rng(3).random(20) < 0.5
    got = np.asarray(clustering.sinkhorn_knopp(scores, 0.07, 3, valid=jnp.asarray(valid)))
    np.testing.assert_allclose(
        got[valid], helpers.numpy_sinkhorn(scores[valid], 0.07, 3), rtol=2e-5, atol=1e-7
    )
    assert np.all(got[~valid] == 0)
    none = clustering.sinkhorn_knopp(scores, 0.07, 3, valid=jnp.zeros(20, bool))
    assert np.all(np.asarray(none) == 0)
