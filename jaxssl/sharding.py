"""The device mesh, shardings of the state and the batch, and host -> global array helpers.

The mesh is 2-D, ``("data", "fsdp")``. The batch is split over both axes (every device gets
``B / num_devices`` rows). Parameters and optimizer state are replicated over ``"data"`` and,
when ``config.mesh.fsdp > 1``, split over ``"fsdp"`` (fully sharded data parallelism, ZeRO-3
style): each large array is cut along one of its axes, and XLA inserts the all-gathers before
use and the reduce-scatters of the gradients. The program is the same global-batch program in
both cases, so results equal pure data parallelism up to float summation order.
"""

import math
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils

from jaxssl import errors

REPLICA_AXIS = "replica"  # a sweep's replicas (`jaxssl.sweep`); absent in a single run
DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
# The mesh axes the batch is split over (a tuple: a valid ``axis_name`` of collectives).
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)


def make_mesh(
    config: ml_collections.ConfigDict,
    devices: Sequence[jax.Device] | None = None,
    replicas: int = 0,
) -> jax.sharding.Mesh:
    """A ``("data", "fsdp")`` mesh of ``config.data * config.fsdp`` devices.

    With ``replicas >= 1`` (a sweep), a ``("replica", "data", "fsdp")`` mesh: the devices are
    first split into ``replicas`` groups, each laid out as above (``config.data = -1`` then
    takes the devices of one group divided by ``fsdp``).

    ``config.data = -1`` takes all ``devices`` divided by ``fsdp``.
    Consecutive devices share an ``"fsdp"`` group: on a multi-host slice keep ``fsdp`` at most
    the devices of one host (or one fast-interconnect island), where its all-gathers are cheap.

    Both axes are ``AxisType.Auto``: shardings of intermediates are left to the compiler, so a
    loss written over the global batch (``z @ z.T``, BatchNorm statistics) works unchanged on
    any device count. With ``Explicit`` axes (``jax.make_mesh``'s default since JAX 0.9) every
    such product would need an ``out_sharding`` annotation inside method code.

    Args:
      config: the ``config.mesh`` section (``data``, ``fsdp``; ``fsdp`` defaults to 1).
      devices: the devices to lay out; default ``jax.devices()`` (all processes'). A TPU
        topology description's devices (`jaxssl.topology.devices`) give a mesh to compile
        for ahead of time (`jaxssl.aot`).
      replicas: the size of the ``"replica"`` axis (`jaxssl.sweep.replica_axis_size`); 0,
        a single run's mesh without that axis.

    Returns:
      The mesh.
    """
    devices = list(jax.devices() if devices is None else devices)
    fsdp = config.get("fsdp", 1)
    if replicas:
        if len(devices) % replicas:
            raise errors.ConfigError(
                f"{replicas} replica groups do not divide the {len(devices)} visible devices."
            )
        group = make_mesh(config, devices[: len(devices) // replicas])
        grid = np.asarray(devices[: replicas * group.devices.size]).reshape(
            (replicas, *group.devices.shape)
        )
        return jax.sharding.Mesh(
            grid, (REPLICA_AXIS, *BATCH_AXES), axis_types=(jax.sharding.AxisType.Auto,) * 3
        )
    available = len(devices)
    if fsdp < 1 or available % fsdp and config.data == -1:
        raise errors.ConfigError(
            f"config.mesh.fsdp={fsdp} must be >= 1 and divide the {available} visible devices."
        )
    data = available // fsdp if config.data == -1 else config.data
    if data < 1 or data * fsdp > available:
        raise errors.ConfigError(
            f"config.mesh.data={config.data} x config.mesh.fsdp={fsdp} needs {data * fsdp} "
            f"devices, but {available} are visible. Lower them or set data=-1 (all)."
        )
    devices = devices[: data * fsdp]
    axis_types = (jax.sharding.AxisType.Auto,) * 2
    slices = len({getattr(device, "slice_index", 0) for device in devices})
    if slices > 1:
        # Multi-slice: "data" spans the slices (their data-centre network carries only the
        # gradient all-reduce across them); "fsdp" groups stay inside one slice's ICI.
        if data % slices:
            raise errors.ConfigError(
                f"config.mesh.data={data} must be a multiple of the {slices} slices."
            )
        grid = mesh_utils.create_hybrid_device_mesh(
            (data // slices, fsdp), (slices, 1), devices, allow_split_physical_axes=True
        )
        return jax.sharding.Mesh(grid, BATCH_AXES, axis_types=axis_types)
    return jax.make_mesh((data, fsdp), BATCH_AXES, axis_types=axis_types, devices=devices)


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """A full copy on every device (scalars, small arrays, all state when ``fsdp == 1``)."""
    return jax.sharding.NamedSharding(mesh, jax.P())


def batch_sharding(mesh: jax.sharding.Mesh, stacked: bool = False) -> jax.sharding.NamedSharding:
    """Sharding of batch arrays: leading axis split over ``"data"`` x ``"fsdp"``.

    On a sweep's mesh the batch is whole in every replica group; ``stacked`` batches (a sweep
    with independent data, ``[R, B, ...]``) split their leading axis over ``"replica"``.
    """
    axes = tuple(axis for axis in BATCH_AXES if axis in mesh.axis_names)
    return jax.sharding.NamedSharding(mesh, jax.P(REPLICA_AXIS, axes) if stacked else jax.P(axes))


def fsdp_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> jax.P:
    """Partition spec of one state array: its largest axis divisible by ``fsdp`` on ``"fsdp"``.

    Arrays smaller than ``min_size`` elements (biases, norms, scalars) and arrays without such an
    axis stay replicated: sharding them saves little memory and costs a collective each.
    """
    if fsdp == 1 or math.prod(shape) < min_size:
        return jax.P()
    candidates = [i for i, n in enumerate(shape) if n % fsdp == 0]
    if not candidates:
        return jax.P()
    axis = max(candidates, key=lambda i: (shape[i], -i))
    return jax.P(*(FSDP_AXIS if i == axis else None for i in range(len(shape))))


def state_shardings(abstract_state: Any, mesh: jax.sharding.Mesh, min_size: int = 2**14) -> Any:
    """``NamedSharding`` of every leaf of a state (``jax.eval_shape`` tree or arrays).

    Every leaf is replicated over ``"data"``; over ``"fsdp"`` it follows ``fsdp_spec``. The
    optimizer's moments have their parameter's shape and so get the same sharding. A mesh
    without an ``"fsdp"`` axis (e.g. a user's 1-D ``("data",)`` mesh) replicates everything.
    """
    fsdp = mesh.shape.get(FSDP_AXIS, 1)
    if REPLICA_AXIS in mesh.axis_names:  # a sweep's stacked state: [R, ...] over "replica"
        return jax.tree.map(
            lambda x: jax.sharding.NamedSharding(
                mesh, jax.P(REPLICA_AXIS, *fsdp_spec(tuple(x.shape[1:]), fsdp, min_size))
            ),
            abstract_state,
        )
    return jax.tree.map(
        lambda x: jax.sharding.NamedSharding(mesh, fsdp_spec(tuple(x.shape), fsdp, min_size)),
        abstract_state,
    )


def state_bytes(abstract_state: Any) -> tuple[int, int]:
    """``(total, per_device)`` bytes of a state whose leaves carry their shardings."""
    leaves = jax.tree.leaves(abstract_state)
    itemsize = [np.dtype(x.dtype).itemsize for x in leaves]
    total = sum(math.prod(x.shape) * n for x, n in zip(leaves, itemsize, strict=True))
    per_device = sum(
        math.prod(x.sharding.shard_shape(tuple(x.shape))) * n
        for x, n in zip(leaves, itemsize, strict=True)
    )
    return int(total), int(per_device)


def check_batch_size(global_batch_size: int, mesh: jax.sharding.Mesh) -> None:
    """Raises if the global batch does not split evenly over devices and processes (over the
    devices of one replica group, on a sweep's mesh)."""
    devices = mesh.devices.size // mesh.shape.get(REPLICA_AXIS, 1)
    processes = len({device.process_index for device in mesh.devices.flat})
    if global_batch_size % devices or global_batch_size % processes:
        raise errors.ConfigError(
            f"Global batch size {global_batch_size} must be divisible by the number of devices "
            f"({devices}) and processes ({processes}): every device gets an equal "
            "slice of the batch. Change --config.train.batch_size or --config.mesh.data."
        )


def to_global(
    batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh, stacked: bool = False
) -> dict[str, jax.Array]:
    """Assembles each process's part of a batch into global arrays split over all devices.

    Args:
      batch: this process's rows of every array (leading axis = per-process batch).
      mesh: the mesh.
      stacked: the arrays are ``[R, B, ...]``, one batch per replica (see `batch_sharding`).

    Returns:
      Global arrays whose leading axis is the global batch (after ``R`` if ``stacked``).
    """
    sharding = batch_sharding(mesh, stacked)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
