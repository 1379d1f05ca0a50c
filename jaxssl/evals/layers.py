"""Per-layer statistics of parameter trees: norms, update-to-weight ratios, LARS trust ratios.

Pure functions of pytrees of arrays (params, gradients, optimizer updates), keyed by the leaf's
path with its keys joined by ``/`` (``backbone/stem_conv/kernel``); `jaxssl.evals.dynamics`
records them during training.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxssl import optim


def named_leaves(tree: Any) -> dict[str, Any]:
    """``{path: leaf}`` of a nested dict of arrays, the path's keys joined with ``/``."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "/".join(str(getattr(key, "key", getattr(key, "name", key))) for key in path): leaf
        for path, leaf in leaves
    }


def leaf_norms(tree: Any) -> dict[str, jax.Array]:
    """The L2 (Frobenius) norm of every leaf, by path (`named_leaves`)."""
    return {path: jnp.linalg.norm(leaf.ravel()) for path, leaf in named_leaves(tree).items()}


def update_ratios(updates: Any, params: Any) -> dict[str, jax.Array]:
    """``|dw| / |w|`` per leaf; NaN where ``|w| = 0`` (e.g. a zero-initialized bias).

    Args:
      updates: the optimizer's updates (what `optax.apply_updates` adds to ``params``).
      params: the parameters, the same tree structure.

    Returns:
      ``{path: ratio}``.

    References:
      Karpathy, CS231n notes, "ratio of weights:updates" (~1e-3 for a healthy learning rate).
    """
    weights = leaf_norms(params)
    return {
        path: jnp.where(weights[path] > 0, norm / weights[path], jnp.nan)
        for path, norm in leaf_norms(updates).items()
    }


def lars_trust_ratios(
    grads: Any,
    params: Any,
    trust_coefficient: float,
    weight_decay: float,
    exclude: tuple[str, ...] = (),
) -> dict[str, jax.Array]:
    """LARS's trust ratio ``eta |w| / |g + wd w|`` of the leaves it adapts (`optim.decay_mask`).

    As ``optax.scale_by_trust_ratio``: 1 where either norm is 0.

    Args:
      grads: the gradients.
      params: the parameters.
      trust_coefficient: ``eta``, ``config.optim.trust_coefficient``.
      weight_decay: ``config.optim.weight_decay`` (added before the ratio, as optax.lars).
      exclude: ``config.optim.exclude_from_adaptation``, parameters LARS does not adapt.

    Returns:
      ``{path: ratio}`` of the masked leaves only (kernels; no biases or norms).

    References:
      You, Gitman, Ginsburg, Large Batch Training of Convolutional Networks, 2017, Eq. 6.
      https://arxiv.org/abs/1708.03888
    """
    mask = named_leaves(optim.decay_mask(params, exclude))
    weights, grads = named_leaves(params), named_leaves(grads)
    ratios = {}
    for path, adapted in mask.items():
        if not adapted:
            continue
        weight_norm = jnp.linalg.norm(weights[path].ravel())
        update_norm = jnp.linalg.norm((grads[path] + weight_decay * weights[path]).ravel())
        both = (weight_norm > 0) & (update_norm > 0)
        safe = jnp.where(both, update_norm, 1.0)
        ratios[path] = jnp.where(both, trust_coefficient * weight_norm / safe, 1.0)
    return ratios


def relative_distance(tree: Any, reference: Any) -> jax.Array:
    """``|tree - reference| / |reference|`` over all leaves (0 when they are equal)."""
    difference = optax.tree.norm(jax.tree.map(jnp.subtract, tree, reference))
    return difference / jnp.maximum(optax.tree.norm(reference), 1e-30)
