import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import contrastive


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
