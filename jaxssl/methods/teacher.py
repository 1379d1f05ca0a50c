"""The EMA teacher (BYOL's target, MoCo's key encoder, DINO's and I-JEPA's teacher).

The teacher is a copy of the online backbone and projector (not the predictor), kept in the
method state as ``{"target": {"params": ..., "batch_stats": ...}}``, a variables dict for
``model.project``; after every optimizer update it moves towards the new online weights with
BYOL's cosine momentum schedule (`jaxssl.schedules.cosine_momentum`, ``config.base_momentum``
at step 0 to 1 at the end of the run), or I-JEPA's linear one (``config.momentum_schedule``).

References:
  Grill et al., Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning,
  NeurIPS 2020, Sec. 3.1-3.2. https://arxiv.org/abs/2006.07733
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl import schedules

# config.method.momentum_schedule -> (step, num_steps, base) -> momentum.
MOMENTUM_SCHEDULES = {
    "cosine": schedules.cosine_momentum,  # BYOL, MoCo, DINO
    "linear": schedules.linear_momentum,  # I-JEPA
}

# The submodules of SSLModel that the teacher copies (not the predictor).
TARGET_MODULES = ("backbone", "projector")


def target_part(tree):
    """The backbone and projector entries of a ``params`` / ``batch_stats`` tree."""
    return {name: tree[name] for name in TARGET_MODULES if name in tree}


def init_state(model: nn.Module, variables, config: ml_collections.ConfigDict, key: jax.Array):
    """The teacher starts as a copy of the online backbone + projector.

    Returns:
      ``{"target": {"params": ..., "batch_stats": ...}}``.
    """
    del model, config, key
    # jnp.copy: the target must not share buffers with the online params (the state is donated).
    return {
        "target": {
            "params": jax.tree.map(jnp.copy, target_part(variables["params"])),
            "batch_stats": jax.tree.map(jnp.copy, target_part(variables.get("batch_stats", {}))),
        }
    }


def update_state(
    method_state,
    params,
    batch_stats,
    step: jax.Array,
    num_steps: int,
    config: ml_collections.ConfigDict,
):
    """``target = m * target + (1 - m) * online`` with the cosine momentum of ``step``.

    The BatchNorm running averages follow the same EMA; they matter only if the teacher is ever
    run in inference mode (it runs in train mode, with batch statistics, as in BYOL).

    Args:
      method_state: a state holding ``{"target": ...}`` (other entries are kept).
      params: the new online parameters.
      batch_stats: the new online BatchNorm statistics.
      step: the step that produced them (0 for the first update).
      num_steps: the run's total number of steps (the momentum reaches 1 there).
      config: ``config.method`` (``base_momentum``).

    Returns:
      The method state with the updated target.
    """
    schedule = MOMENTUM_SCHEDULES[config.get("momentum_schedule", "cosine")]
    momentum = schedule(step, num_steps, config.base_momentum)
    online = {"params": target_part(params), "batch_stats": target_part(batch_stats)}
    target = jax.tree.map(
        lambda t, o: momentum * t + (1.0 - momentum) * o, method_state["target"], online
    )
    return {**method_state, "target": target}
