"""The EMA teacher: a copy of backbone + projector, moved by the cosine momentum."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl import schedules
from jaxssl.methods import teacher


def _tree(seed):
    rng = np.random.default_rng(seed)
    leaf = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return {"backbone": {"w": leaf(3, 2)}, "projector": {"w": leaf(2)}, "predictor": {"w": leaf(2)}}


def test_init_copies_backbone_and_projector_only():
    variables = {"params": _tree(0), "batch_stats": {"backbone": {"mean": jnp.ones(2)}}}
    state = teacher.init_state(None, variables, None, jax.random.key(0))
    assert set(state["target"]["params"]) == {"backbone", "projector"}
    chex.assert_trees_all_equal(state["target"]["params"], teacher.target_part(variables["params"]))
    chex.assert_trees_all_equal(state["target"]["batch_stats"], variables["batch_stats"])


def test_update_follows_the_cosine_momentum_and_keeps_other_entries():
    config = ml_collections.ConfigDict(dict(base_momentum=0.9))
    old, new = _tree(1), _tree(2)
    state = {"target": {"params": teacher.target_part(old), "batch_stats": {}}, "center": 3.0}
    for step, num_steps in [(0, 10), (5, 10), (10, 10)]:
        update = jax.jit(lambda s, p, t, n=num_steps: teacher.update_state(s, p, {}, t, n, config))
        updated = update(state, new, jnp.asarray(step))
        m = float(schedules.cosine_momentum(step, num_steps, 0.9))
        expected = jax.tree.map(lambda t, o, m=m: m * t + (1 - m) * o, old, new)
        chex.assert_trees_all_close(
            updated["target"]["params"], teacher.target_part(expected), rtol=1e-6
        )
        assert updated["center"] == 3.0
    np.testing.assert_allclose(m, 1.0)  # at the end of the run the teacher stops moving
