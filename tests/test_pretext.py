"""The classic pretext tasks: RotNet, Jigsaw, NPID (jaxssl/data/pretext.py, their losses,
the memory bank and the methods end to end)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import methods
from jaxssl.configs import jigsaw_cifar10, npid_cifar10
from jaxssl.data import pretext
from jaxssl.losses import classification, contrastive
from jaxssl.methods import cpc, memory_bank
from tests import helpers


def test_quarter_turns_are_np_rot90_in_order():
    images = np.random.default_rng(0).normal(size=(3, 5, 5, 2)).astype(np.float32)
    turned = np.asarray(jax.jit(pretext.quarter_turns)(images))
    assert turned.shape == (3, 4, 5, 5, 2)
    for r in range(4):
        np.testing.assert_array_equal(turned[:, r], np.rot90(images, r, axes=(1, 2)))
    with pytest.raises(ValueError, match="square"):
        pretext.quarter_turns(jnp.zeros((1, 4, 5, 3)))


def test_hamming_permutations_are_distinct_far_apart_and_deterministic():
    perms = pretext.hamming_permutations(30, 9, 0)
    assert perms.shape == (30, 9) and perms.dtype == np.int32
    assert len({tuple(p) for p in perms}) == 30
    assert all(sorted(p) == list(range(9)) for p in perms)
    distances = (perms[:, None] != perms[None]).sum(-1)[np.triu_indices(30, 1)]
    # Greedy maximal mean distance: above random permutations' 8 of 9 on average (the mean
    # over random sets of 30 is 8.00 +- 0.02).
    random_sets = [
        np.random.default_rng(s).permuted(np.tile(np.arange(9), (30, 1)), axis=1) for s in range(20)
    ]
    random_means = [
        (p[:, None] != p[None]).sum(-1)[np.triu_indices(30, 1)].mean() for p in random_sets
    ]
    assert distances.mean() > max(random_means) + 0.1
    np.testing.assert_array_equal(perms, pretext.hamming_permutations(30, 9, 0))
    assert not np.array_equal(perms, pretext.hamming_permutations(30, 9, 1))
    # Small case, against brute force of the same greedy rule.
    small = pretext.hamming_permutations(6, 4, 3)
    candidates = np.array(list(itertools.permutations(range(4))))
    chosen = [int(np.flatnonzero((candidates == small[0]).all(1))[0])]
    for _ in range(5):
        total = sum((candidates != candidates[c]).sum(1) for c in chosen)
        total[chosen] = -1
        chosen.append(int(np.argmax(total)))
    np.testing.assert_array_equal(small, candidates[chosen])
    with pytest.raises(ValueError, match="num_permutations"):
        pretext.hamming_permutations(25, 4)


def test_tiles_come_from_their_cells_at_the_drawn_offsets():
    images = np.arange(2 * 10 * 10 * 1, dtype=np.float32).reshape(2, 10, 10, 1)
    corners = pretext.tile_grid(None, images, 3, 2, jnp.zeros((2, 9, 2), jnp.int32))
    for t in range(9):
        r, c = divmod(t, 3)
        np.testing.assert_array_equal(
            corners[:, t], images[:, 3 * r : 3 * r + 2, 3 * c : 3 * c + 2]
        )
    tiles = np.asarray(
        jax.jit(pretext.tile_grid, static_argnums=(2, 3))(jax.random.key(0), images, 3, 2)
    )
    assert tiles.shape == (2, 9, 2, 2, 1)
    for n, t in itertools.product(range(2), range(9)):
        r, c = divmod(t, 3)
        top, left = divmod(int(tiles[n, t, 0, 0, 0]) - 100 * n, 10)
        assert 3 * r <= top <= 3 * r + 1 and 3 * c <= left <= 3 * c + 1  # inside the cell
        np.testing.assert_array_equal(tiles[n, t], images[n, top : top + 2, left : left + 2])
    with pytest.raises(ValueError, match="tile_size <= 3"):
        pretext.tile_grid(jax.random.key(0), images, 3, 4)


def test_tiles_are_standardized_and_shuffled_by_their_permutation():
    tiles = np.random.default_rng(1).normal(2.0, 3.0, size=(4, 9, 5, 5, 3)).astype(np.float32)
    standardized = np.asarray(pretext.standardize_tiles(tiles))
    np.testing.assert_allclose(standardized.mean(axis=(2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(standardized.std(axis=(2, 3)), 1.0, atol=1e-4)
    perms = pretext.hamming_permutations(10, 9, 0)
    labels = np.array([0, 3, 9, 3])
    shuffled = np.asarray(pretext.shuffle_tiles(tiles, jnp.asarray(perms), jnp.asarray(labels)))
    for n in range(4):
        np.testing.assert_array_equal(shuffled[n], tiles[n, perms[labels[n]]])


def test_cross_entropy_and_top1_match_numpy():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=6)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -log_probs[np.arange(6), labels].mean()
    np.testing.assert_allclose(
        jax.jit(classification.softmax_cross_entropy)(logits, labels), expected, rtol=1e-5
    )
    np.testing.assert_allclose(
        classification.top1(logits, labels), (logits.argmax(-1) == labels).mean()
    )


def test_instance_discrimination_is_the_softmax_over_the_bank():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 8)).astype(np.float32)
    bank = rng.normal(size=(20, 8)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    index = np.array([3, 0, 19, 7])
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    logits = zn @ bank.T / 0.1
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -log_probs[np.arange(4), index].mean()
    loss_fn = jax.jit(contrastive.instance_discrimination, static_argnums=3)
    np.testing.assert_allclose(loss_fn(z, bank, index, 0.1), expected, rtol=1e-5)
    # The bank is a constant: no gradient flows into it.
    grad = jax.grad(contrastive.instance_discrimination, argnums=1)(z, bank, index, 0.1)
    assert not np.asarray(grad).any()


def test_memory_bank_update_mixes_only_the_batch_rows():
    rng = np.random.default_rng(4)
    bank = rng.normal(size=(10, 4)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    rows = rng.normal(size=(3, 4)).astype(np.float32)
    index = np.array([2, 5, 9])
    updated = np.asarray(
        jax.jit(memory_bank.momentum_update, static_argnums=3)(bank, index, rows, 0.5)
    )
    expected = bank.copy()
    mixed = 0.5 * bank[index] + 0.5 * rows / np.linalg.norm(rows, axis=1, keepdims=True)
    expected[index] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    np.testing.assert_allclose(updated, expected, rtol=1e-5, atol=1e-6)


def test_npid_bank_size_must_cover_the_split_positions_with_train_classes():
    config = npid_cifar10.get_config("smoke")
    config.data.train_classes = (0, 1)
    config.data.num_train_examples = 100
    with pytest.raises(ValueError, match="method.bank_size"):
        methods.get_method("npid").build_model(config)
    config.method.bank_size = 512
    methods.get_method("npid").build_model(config)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("jigsaw", marks=pytest.mark.slow),
        pytest.param("rotnet", marks=pytest.mark.slow),
        pytest.param("npid", marks=pytest.mark.slow),
        pytest.param("cpc", marks=pytest.mark.slow),
    ],
)
def test_pretext_losses_start_at_chance_and_move_the_backbone(name):
    config, _, state, loss, grads, _ = helpers.method_loss_and_grads(name)
    chance = {
        "rotnet": np.log(4),
        "jigsaw": np.log(config.method.get("num_permutations", 1)),
        "npid": np.log(config.method.get("bank_size", 1)),
        # every patch of the 7 x 7 grids of 32 px views is a candidate
        "cpc": np.log(config.train.batch_size * 2 * 7 * 7),
    }[name]
    # A random net's logits are small: the loss is near that of a uniform guess.
    assert abs(float(loss) - chance) < 0.5 * chance, (loss, chance)
    backbone_norm = np.sqrt(sum(np.sum(g**2) for g in jax.tree.leaves(grads["backbone"])))
    assert np.isfinite(backbone_norm) and backbone_norm > 0


def test_jigsaw_embeds_whole_images_for_evaluation():
    config = jigsaw_cifar10.get_config("smoke")
    model = methods.get_method("jigsaw").build_model(config)
    images = jnp.zeros((2, 24, 24, 3))
    variables = jax.jit(model.init, static_argnames="train")(jax.random.key(0), images, train=True)
    assert variables["params"]["head"]["dense2"]["kernel"].shape[-1] == 24  # permutations
    features, same = jax.jit(model.apply, static_argnames="train")(variables, images, train=False)
    np.testing.assert_array_equal(features, same)
    embed = jax.jit(lambda v, x: model.apply(v, x, method=model.embed))
    np.testing.assert_allclose(features, embed(variables, images), rtol=1e-6, atol=1e-6)


def test_patch_grid_cuts_overlapping_patches():
    images = np.random.default_rng(6).normal(size=(2, 12, 12, 3)).astype(np.float32)
    grid = np.asarray(pretext.patch_grid(images, 6, 3))
    assert grid.shape == (2, 3, 3, 6, 6, 3)
    for r, c in itertools.product(range(3), range(3)):
        np.testing.assert_array_equal(
            grid[:, r, c], images[:, 3 * r : 3 * r + 6, 3 * c : 3 * c + 6]
        )


def test_cpc_context_sees_only_the_rows_above():
    network = cpc.ContextNetwork(width=8, depth=3)
    z = np.random.default_rng(7).normal(size=(1, 5, 5, 4)).astype(np.float32)
    variables = network.init(jax.random.key(0), z)
    base_out = np.asarray(network.apply(variables, z))
    changed = z.copy()
    changed[:, 3] += 1.0  # row 3
    out = np.asarray(network.apply(variables, changed))
    np.testing.assert_array_equal(out[:, :3], base_out[:, :3])  # rows above: untouched
    assert not np.allclose(out[:, 3], base_out[:, 3])


def test_cpc_infonce_matches_numpy():
    rng = np.random.default_rng(8)
    b, g, d = 2, 4, 5
    predictions = rng.normal(size=(b, g, g, 2, d)).astype(np.float32)
    targets = rng.normal(size=(b, g, g, d)).astype(np.float32)
    candidates = targets.reshape(-1, d)
    expected = []
    for n, k in enumerate((1, 3)):
        terms = []
        for bb, i, j in itertools.product(range(b), range(g - k), range(g)):
            logits = candidates @ predictions[bb, i, j, n]
            positive = (bb * g + i + k) * g + j
            terms.append(np.log(np.exp(logits).sum()) - logits[positive])
        expected.append(np.mean(terms))
    loss = jax.jit(contrastive.cpc_infonce, static_argnums=2)(predictions, targets, (1, 3))
    np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-5)
    with pytest.raises(ValueError, match="offsets"):
        contrastive.cpc_infonce(predictions, targets, (1, 4))
