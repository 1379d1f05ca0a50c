"""One FIFO queue of embeddings from earlier batches: MoCo's keys, NNCLR's support set, SwAV's
queue. A ``[K, D]`` ring buffer written ``N`` rows at a time at an int32 pointer.

The queue is global: every step enqueues rows of the whole global batch, so the state, and the
run, are the same on any number of devices or processes.
"""

import jax
import jax.numpy as jnp

from jaxssl.losses import normalize


def init(key: jax.Array, size: int, dim: int) -> jax.Array:
    """``[size, dim]`` random unit vectors (the MoCo and NNCLR reference codes' first queue).

    Args:
      key: drawn from the run's seed (`jaxssl.state.make_init_fn`), so two seeds start from
        different queues.
      size: ``K`` rows.
      dim: ``D``.
    """
    return normalize.l2_normalize(jax.random.normal(key, (size, dim), jnp.float32))


def check_size(size: int, rows_per_step: int, field: str) -> None:
    """Raises unless ``size`` is a multiple of the rows one step enqueues (no wrapping inside a
    write).

    Args:
      size: the queue length ``K``.
      rows_per_step: ``N``.
      field: the config field that sets ``K``, for the message.
    """
    if size % rows_per_step:
        raise ValueError(
            f"method.{field}={size} must be a multiple of the {rows_per_step} rows a step "
            "enqueues (of a micro-batch with gradient accumulation)."
        )


def enqueue(queue: jax.Array, pointer: jax.Array, rows: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Writes ``rows`` ``[N, D]`` (L2-normalized here, no gradient) at row ``pointer``.

    ``K`` must be a multiple of ``N`` (`check_size`), so a write never wraps; the oldest ``N``
    rows are the ones overwritten.

    Returns:
      ``(queue, (pointer + N) % K)``.
    """
    rows = jax.lax.stop_gradient(normalize.l2_normalize(rows)).astype(queue.dtype)
    queue = jax.lax.dynamic_update_slice(queue, rows, (pointer, jnp.zeros((), pointer.dtype)))
    return queue, (pointer + rows.shape[0]) % queue.shape[0]
