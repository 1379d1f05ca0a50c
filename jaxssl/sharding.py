"""The device mesh, shardings, and host -> global array helpers."""

import jax
import ml_collections
import numpy as np

DATA_AXIS = "data"


def make_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
    """A 1-D ``("data",)`` mesh over ``config.data`` devices (-1: all devices, all processes).

    The axis is ``AxisType.Auto``: shardings of intermediates are left to the compiler, so a loss
    written over the global batch (``z @ z.T``, BatchNorm statistics) works unchanged on any
    device count. With ``Explicit`` axes (``jax.make_mesh``'s default since JAX 0.9) every such
    product would need an ``out_sharding`` annotation inside method code.

    Args:
      config: the ``config.mesh`` section.

    Returns:
      The mesh.
    """
    num_devices = jax.device_count() if config.data == -1 else config.data
    if num_devices > jax.device_count():
        raise ValueError(
            f"config.mesh.data={config.data} but only {jax.device_count()} devices are visible."
        )
    return jax.make_mesh(
        (num_devices,),
        (DATA_AXIS,),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=jax.devices()[:num_devices],
    )


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Sharding of parameters and optimizer state: a full copy on every device."""
    return jax.sharding.NamedSharding(mesh, jax.P())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Sharding of batch arrays: leading axis split over ``"data"``."""
    return jax.sharding.NamedSharding(mesh, jax.P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: jax.sharding.Mesh) -> None:
    """Raises if the global batch does not split evenly over devices and processes."""
    devices = mesh.devices.size
    if global_batch_size % devices or global_batch_size % jax.process_count():
        raise ValueError(
            f"Global batch size {global_batch_size} must be divisible by the number of devices "
            f"({devices}) and processes ({jax.process_count()}): every device gets an equal "
            "slice of the batch. Change --config.train.batch_size or --config.mesh.data."
        )


def to_global(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """Assembles each process's part of a batch into global arrays sharded over ``"data"``.

    Args:
      batch: this process's rows of every array (leading axis = per-process batch).
      mesh: the mesh.

    Returns:
      Global arrays whose leading axis is the global batch.
    """
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
