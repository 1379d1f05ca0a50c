"""Offline linear probe: weight decay chosen on held-out train rows, refit, scored once."""

import jax.numpy as jnp
import numpy as np

from jaxssl.evals import linear
from tests import helpers

# One problem shape for the probe tests below, so `linear.fit` compiles once for all of them.
_PROBE = dict(weight_decays=(1e-4, 1e-2, 1.0), holdout_fraction=0.1, num_classes=4, max_steps=200)


def _probe_problem(seed, spread):
    rng = np.random.default_rng(seed)
    centres = spread * rng.normal(size=(4, 16))
    train = helpers.gaussian_clusters(rng, centres, 1000)
    return train, helpers.gaussian_clusters(rng, centres, 1000)


def test_linear_probe_separates_gaussian_clusters():
    train, test = _probe_problem(0, spread=3.0)
    metrics = linear.linear_probe(train, test, **_PROBE)
    assert metrics["linear/top1"] >= 0.99, metrics
    assert metrics["linear/top5"] == 1.0
    assert metrics["linear/weight_decay"] in _PROBE["weight_decays"]


def test_linear_probe_on_random_labels_is_at_chance():
    train, test = _probe_problem(1, spread=0.0)  # every class the same distribution
    metrics = linear.linear_probe(train, test, **_PROBE)
    assert abs(metrics["linear/top1"] - 0.25) < 0.05, metrics


def test_weight_decay_is_chosen_without_the_test_split():
    train, test = _probe_problem(2, spread=0.4)
    clean = linear.linear_probe(train, test, **_PROBE)
    # Test features full of NaN and scrambled labels: any use of them in the choice would show.
    poisoned_test = (jnp.full_like(test[0], jnp.nan), test[1][::-1], test[2])
    poisoned = linear.linear_probe(train, poisoned_test, **_PROBE)
    for key, value in clean.items():
        if key.startswith("linear/holdout") or key == "linear/weight_decay":
            assert poisoned[key] == value, key
    assert np.isnan(poisoned["linear/top1"]) or poisoned["linear/top1"] != clean["linear/top1"]
    # And the choice is exactly the one made from train arrays alone.
    chosen, _ = linear.select_weight_decay(*train, **_PROBE)
    assert chosen == clean["linear/weight_decay"]


def test_holdout_is_the_end_of_the_real_train_rows():
    mask = jnp.asarray([True] * 18 + [False, False] + [True] * 2)  # padding inside: multi-process
    fit_mask, holdout_mask = linear.holdout_split(mask, 0.1)
    np.testing.assert_array_equal(np.flatnonzero(holdout_mask), [20, 21])
    assert not np.any(fit_mask & holdout_mask)
    np.testing.assert_array_equal(fit_mask | holdout_mask, mask)


def test_flipped_copies_of_held_out_rows_stay_out_of_the_fit():
    # Pure noise with more dimensions than rows: a classifier that saw the held-out rows (here
    # as identical "flipped" copies) would memorize them; one that did not is at chance.
    rng = np.random.default_rng(3)
    features = jnp.asarray(rng.normal(size=(160, 400)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 2, 160), jnp.int32)
    _, holdout = linear.select_weight_decay(
        features,
        labels,
        jnp.ones(160, bool),
        weight_decays=(1e-6,),
        holdout_fraction=0.5,
        num_classes=2,
        max_steps=200,
        train_flip_features=features,
    )
    assert holdout[1e-6] < 0.8, holdout


def test_protocol_names_the_grid_and_the_splits():
    text = linear.protocol((1e-4, 0.01), 0.1, 50, "train", "test", flip=True)
    assert "wd in {0.0001,0.01}" in text and "last 10% of train" in text
    assert "+ flipped train images" in text and text.endswith("scored on test")
