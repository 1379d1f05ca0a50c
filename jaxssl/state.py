"""The training state: every field that a checkpoint must hold, as one pytree."""

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl import methods


@flax.struct.dataclass
class TrainState:
    """Everything the future of a run depends on, apart from the config.

    The optax transforms and the model definitions stay outside (static); the input pipeline's
    position and every random key are functions of ``step``, so they need no field.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    method_state: Any  # e.g. EMA teacher, queue, center: see jaxssl/methods/base.py
    opt_state: Any
    probe_params: Any
    probe_opt_state: Any
    nonfinite_steps: jax.Array  # steps whose update was skipped for a NaN/Inf loss or gradient


# Folded into the init key for the method's state (e.g. a queue's first rows), so that the
# model's and the probe's initial parameters stay those of `jax.random.split(key)`.
_METHOD_STREAM = 0x6D657468


def make_init_fn(
    model: nn.Module,
    method: methods.Method,
    method_config: ml_collections.ConfigDict,
    probe: nn.Module,
    tx: optax.GradientTransformation,
    probe_tx: optax.GradientTransformation,
    image_shape: tuple[int, ...],
):
    """Returns ``init_fn(key) -> TrainState``, to be jitted with the state's shardings.

    Args:
      model: the method's model.
      method: the method (its ``init_state`` gives the method state).
      method_config: ``config.method``.
      probe: the online linear probe.
      tx: optimizer of the model parameters.
      probe_tx: optimizer of the probe.
      image_shape: ``(H, W, 3)`` of the views used to initialize.
    """

    def init_fn(key: jax.Array) -> TrainState:
        model_key, probe_key = jax.random.split(key)
        variables = model.init(model_key, jnp.zeros((2, *image_shape), jnp.float32), train=True)
        features = model.apply(
            variables, jnp.zeros((1, *image_shape), jnp.float32), method=model.embed
        )
        probe_params = probe.init(probe_key, jnp.zeros_like(features))["params"]
        method_key = jax.random.fold_in(key, _METHOD_STREAM)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=variables["params"],
            batch_stats=variables.get("batch_stats", {}),  # {} for models without BatchNorm
            method_state=method.init_state(model, variables, method_config, method_key),
            opt_state=tx.init(variables["params"]),
            probe_params=probe_params,
            probe_opt_state=probe_tx.init(probe_params),
            nonfinite_steps=jnp.zeros((), jnp.int32),
        )

    return init_fn
