"""Token masks and the ViT at token level: masks, gathers, kept-token encoding, registers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.models import masking, vit


def test_random_masking_is_a_fixed_shape_permutation_per_key():
    keep, masked = masking.random_masking(jax.random.key(3), 5, 64, 0.75)
    assert keep.shape == (5, 16) and masked.shape == (5, 48)
    assert keep.dtype == jnp.int32
    both = np.sort(np.concatenate([keep, masked], axis=1), axis=1)
    np.testing.assert_array_equal(both, np.broadcast_to(np.arange(64), (5, 64)))
    again = masking.random_masking(jax.random.key(3), 5, 64, 0.75)
    np.testing.assert_array_equal(again[0], keep)
    other = masking.random_masking(jax.random.fold_in(jax.random.key(3), 1), 5, 64, 0.75)
    assert not np.array_equal(other[0], keep)
    # Rows are drawn independently, and every token is kept about (1 - ratio) of the time.
    assert len({tuple(np.sort(row)) for row in np.asarray(keep)}) == 5
    many, _ = masking.random_masking(jax.random.key(0), 4000, 64, 0.75)
    frequency = np.bincount(np.asarray(many).ravel(), minlength=64) / 4000
    np.testing.assert_allclose(frequency, 0.25, atol=0.03)


@pytest.mark.parametrize("ratio", [0.0, 1.0, 0.999])
def test_a_mask_must_keep_and_hide_at_least_one_token(ratio):
    with pytest.raises(ValueError, match="mask_ratio"):
        masking.num_kept(64, ratio)


def test_patchify_orders_patches_row_major_with_pixels_row_column_channel():
    images = np.arange(2 * 8 * 4 * 3, dtype=np.float32).reshape(2, 8, 4, 3)
    patches = np.asarray(vit.patchify(jnp.asarray(images), 2))
    assert patches.shape == (2, 8, 12)
    # Patch 3 is grid row 1, column 1: pixel rows 2-3, columns 2-3.
    np.testing.assert_array_equal(patches[1, 3], images[1, 2:4, 2:4].reshape(-1))


def test_sincos_table_matches_the_mae_formula():
    table = np.asarray(vit.sincos_2d(3, 8))
    omega = 1.0 / 10000 ** (np.arange(2) / 2.0)
    # Token 5 is row 1, column 2; the column's half comes first, as in MAE's code.
    col, row = 2 * omega, 1 * omega
    expected = np.concatenate([np.sin(col), np.cos(col), np.sin(row), np.cos(row)])
    np.testing.assert_allclose(table[5], expected, rtol=1e-6)


def _tiny(**kwargs):
    model = vit.ViT(embed_dim=16, depth=2, num_heads=2, patch_size=4, image_size=16, **kwargs)
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 3)).astype(np.float32)
    return model, model.init(jax.random.key(0), x), x


@pytest.mark.parametrize("position", ["learned", "sincos"])
def test_kept_tokens_are_the_encoder_on_those_patches_alone(position):
    model, variables, x = _tiny(position=position)
    keep = jnp.asarray([[0, 5, 7], [15, 1, 2], [3, 3, 9]], jnp.int32)
    cls, patches = model.apply(variables, x, keep=keep, output="tokens")
    assert cls.shape == (3, 16) and patches.shape == (3, 3, 16)
    # Independently: a forward pass on the embedded tokens, gathered by hand.
    _, captured = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    embedded = captured["intermediates"]["patch_embedding"]["__call__"][0]  # [B, N, D]
    params = variables["params"]
    table = params["position_embedding"] if position == "learned" else vit.sincos_2d(4, 16)
    tokens = embedded + table[None]
    tokens = np.take_along_axis(np.asarray(tokens), np.asarray(keep)[..., None], axis=1)
    tokens = jnp.concatenate([jnp.broadcast_to(params["cls_token"], (3, 1, 16)), tokens], 1)
    for i in (1, 2):
        tokens = vit.EncoderBlock(2).apply({"params": params[f"block{i}"]}, tokens)
    tokens = jax.nn.standardize(tokens, epsilon=1e-6) * params["norm"]["scale"]
    tokens = tokens + params["norm"]["bias"]
    np.testing.assert_allclose(cls, tokens[:, 0], atol=1e-4)
    np.testing.assert_allclose(patches, tokens[:, 1:], atol=1e-4)
    # Mean pooling reads the kept tokens; the order of the kept tokens does not matter.
    mean_model = model.clone(pooling="mean")
    pooled = mean_model.apply(variables, x, keep=keep)
    np.testing.assert_allclose(pooled, np.mean(patches, axis=1), atol=1e-5)
    np.testing.assert_allclose(
        mean_model.apply(variables, x, keep=keep[:, ::-1]), pooled, atol=1e-5
    )


def test_registers_attend_but_are_not_read_out():
    model, variables, x = _tiny(num_registers=2)
    assert variables["params"]["registers"].shape == (1, 2, 16)
    cls, patches = model.apply(variables, x, output="tokens")
    assert patches.shape == (3, 16, 16)
    # They change the outputs (they are attended to) ...
    zeroed = jax.tree.map(lambda a: a, variables)
    zeroed["params"]["registers"] = 10.0 + zeroed["params"]["registers"]
    assert not np.allclose(model.apply(zeroed, x), model.apply(variables, x), atol=1e-4)
    # ... and the model without registers has the same other parameters.
    plain, plain_variables, _ = _tiny()
    assert set(plain_variables["params"]) == set(variables["params"]) - {"registers"}
    np.testing.assert_allclose(model.apply(variables, x), cls, atol=1e-6)


def test_patch_masks_counts_ratios_and_determinism():
    key = jax.random.key(4)
    masks = np.asarray(masking.patch_masks(key, 4000, 64, 0.5, (0.1, 0.5)))
    assert masks.shape == (4000, 64) and masks.dtype == bool
    counts = masks.sum(1)
    masked = counts > 0
    assert 0.45 < masked.mean() < 0.55
    assert counts[masked].min() >= 6 and counts[masked].max() <= 32  # floor(0.1*64), 0.5*64
    assert abs(counts[masked].mean() - 0.3 * 64) < 1.0  # uniform ratios: mean 0.3
    # Positions uniform: every token masked about equally often.
    per_token = masks[masked].mean(0)
    assert per_token.min() > 0.22 and per_token.max() < 0.38
    np.testing.assert_array_equal(masks, masking.patch_masks(key, 4000, 64, 0.5, (0.1, 0.5)))
    assert not np.array_equal(masks, masking.patch_masks(jax.random.key(5), 4000, 64))
    assert not masking.patch_masks(key, 8, 64, 0.0).any()
    with pytest.raises(ValueError, match="ratio range"):
        masking.patch_masks(key, 8, 64, 0.5, (0.6, 0.5))


def test_the_mask_token_replaces_masked_patch_embeddings_only():
    model, variables, x = _tiny(mask_token=True)
    assert variables["params"]["mask_token"].shape == (1, 1, 16)
    none = np.zeros((3, 16), bool)
    np.testing.assert_allclose(model.apply(variables, x, mask=none), model.apply(variables, x))
    mask = none.copy()
    mask[0, [1, 6]] = True
    # A masked patch's pixels no longer matter; an unmasked image is unchanged.
    changed = x.copy()
    changed[0, 0:4, 4:8] += 5.0  # patch 1 (row 0, column 1)
    first = model.apply(variables, x, mask=mask, output="tokens")
    second = model.apply(variables, changed, mask=mask, output="tokens")
    np.testing.assert_allclose(first[1], second[1], atol=1e-6)
    np.testing.assert_allclose(first[1][1:], model.apply(variables, x, output="tokens")[1][1:])
    assert not np.allclose(first[1][0], model.apply(variables, x, output="tokens")[1][0])
    # The token is learned: changing it changes masked images only.
    moved = jax.tree.map(lambda a: a, variables)
    moved["params"]["mask_token"] = moved["params"]["mask_token"] + 1.0
    third = model.apply(moved, x, mask=mask, output="tokens")
    assert not np.allclose(third[1][0], first[1][0])
    np.testing.assert_allclose(third[1][1:], first[1][1:])
    plain, plain_variables, _ = _tiny()
    with pytest.raises(ValueError, match="mask_token=True"):
        plain.apply(plain_variables, x, mask=mask)
