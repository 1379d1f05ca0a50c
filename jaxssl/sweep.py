"""Sweeps in one program: R runs of one config, differing in float hyper-parameters and seeds,
trained by one ``jax.vmap``-ped, once-compiled train step.

    jaxssl train --config C --workdir W --sweep optim.base_lr=0.3,1.0,3.0 --sweep seed=0,1

trains the product of the ``--sweep`` lists (here 6 replicas). Every replica's config is the
base config with its values set *before* references resolve, so derived fields follow (a swept
``optim.base_lr`` moves ``optim.lr``). The fields whose resolved values differ between replicas
become per-replica arrays traced into the step (`hyperparameters`, `traced_config`); the
``TrainState`` carries a leading replica axis. Only what the compiled step reads can be swept:
the run's ``seed`` and float fields of ``optim``, ``method``, ``model``, ``sigreg`` and
``evals.probe``. A
field that changes shapes or the program's structure (an int, a string, a bool, a derived step
count, a float the code branches on in Python) is refused with its name.

Data: by default every replica sees the same crops in the same order (``data`` = ``"shared"``,
a controlled comparison; the colour augmentation, drawn in the step, follows each replica's
seed); ``"independent"`` gives each replica its own input pipeline seeded by its own seed.
"""

import copy
import dataclasses
import itertools
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxssl import errors

SWEEP_FILE = "sweep.json"
DATA_MODES = ("shared", "independent")
# How the one program holds the replicas: "vmap" batches them (one grouped convolution per
# layer: fast on GPU/TPU, ~3x slower than R separate convolutions on XLA:CPU); "unroll" traces
# each replica's step once into the same program (R copies of the graph, R times the compile
# time; on CPU faster than R runs in a row). "auto": unroll on CPU, vmap elsewhere.
MODES = ("auto", "vmap", "unroll")
# Config paths the compiled step reads: a float under one of these can be a traced array.
SWEEPABLE_PREFIXES = ("optim.", "method.", "model.", "evals.probe.", "sigreg.")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The replicas of a sweep: the swept fields and each replica's values.

    Attributes:
      fields: dotted config paths, in ``--sweep`` order.
      values: one tuple of values (in ``fields`` order) per replica: the Cartesian product of
        the ``--sweep`` lists, the last field varying fastest.
      data: ``"shared"`` (one input pipeline for all replicas) or ``"independent"``.
      mode: ``"auto"``, ``"vmap"`` or ``"unroll"`` (`MODES`): how the program holds the
        replicas; results are the same, so it is not recorded in the workdir.
    """

    fields: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    data: str = "shared"
    mode: str = dataclasses.field(default="auto", compare=False)

    def resolved_mode(self) -> str:
        """``mode``, with ``"auto"`` decided by the default backend."""
        if self.mode != "auto":
            return self.mode
        return "unroll" if jax.default_backend() == "cpu" else "vmap"

    @property
    def size(self) -> int:
        return len(self.values)

    def assignment(self, replica: int) -> dict[str, Any]:
        """``{field: value}`` of one replica."""
        return dict(zip(self.fields, self.values[replica], strict=True))

    def replica_config(
        self, config: ml_collections.ConfigDict, replica: int
    ) -> ml_collections.ConfigDict:
        """``config`` with ``replica``'s values set (references kept, so derived fields follow)."""
        config = copy.deepcopy(config)
        with config.unlocked():
            _set_fields(config, self.assignment(replica))
        return config

    def label(self, replica: int) -> str:
        """E.g. ``"optim.base_lr=0.3 seed=1"``."""
        return " ".join(f"{k}={v}" for k, v in self.assignment(replica).items())

    def to_json(self) -> str:
        return json.dumps(
            {
                "fields": list(self.fields),
                "values": [list(v) for v in self.values],
                "data": self.data,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "Sweep":
        record = json.loads(text)
        return cls(
            tuple(record["fields"]), tuple(tuple(v) for v in record["values"]), record["data"]
        )


def _section(tree, path: str) -> tuple[Any, str]:
    """``(section, name)`` of the dotted ``path`` in a ConfigDict or nested dict."""
    *parents, name = path.split(".")
    for parent in parents:
        tree = tree[parent]
    return tree, name


def _set_fields(tree, values: dict[str, Any]) -> None:
    for path, value in values.items():
        section, name = _section(tree, path)
        section[name] = value


def get_field(config: ml_collections.ConfigDict, path: str) -> Any:
    """The value of the dotted ``path`` in ``config``; a ConfigError naming it if absent."""
    try:
        section, name = _section(config, path)
        return section[name]
    except (KeyError, AttributeError, TypeError):
        raise errors.ConfigError(
            f"--sweep {path}: the config has no field {path!r}; --print_config lists them."
        ) from None


def parse(
    specs: Sequence[str],
    config: ml_collections.ConfigDict,
    data: str = "shared",
    mode: str = "auto",
) -> Sweep:
    """The sweep of ``--sweep FIELD=V1,V2,...`` flags (one per field).

    Args:
      specs: the flags' values, e.g. ``["optim.base_lr=0.3,1.0", "seed=0,1"]``.
      config: the base config (each value is converted to its field's type).
      data: ``"shared"`` or ``"independent"`` (``--sweep_data``).
      mode: ``"auto"``, ``"vmap"`` or ``"unroll"`` (``--sweep_mode``, `MODES`).

    Returns:
      The sweep over the product of the lists.

    Raises:
      errors.ConfigError: a malformed flag, an unknown or unsweepable field, a repeated field.
    """
    if data not in DATA_MODES:
        raise errors.ConfigError(f"--sweep_data={data!r}: use one of {', '.join(DATA_MODES)}.")
    if mode not in MODES:
        raise errors.ConfigError(f"--sweep_mode={mode!r}: use one of {', '.join(MODES)}.")
    fields, lists = [], []
    for spec in specs:
        path, sep, values = spec.partition("=")
        path = path.strip()
        if not sep or not values.strip():
            raise errors.ConfigError(f"--sweep {spec!r}: write FIELD=V1,V2,... e.g. seed=0,1,2.")
        if path in fields:
            raise errors.ConfigError(f"--sweep {path} is given twice; give one list per field.")
        current = get_field(config, path)
        if path != "seed" and (
            not path.startswith(SWEEPABLE_PREFIXES) or not isinstance(current, float)
        ):
            raise errors.ConfigError(_unsweepable([path]))
        kind = int if path == "seed" else float
        try:
            lists.append([kind(v) for v in values.split(",")])
        except ValueError:
            raise errors.ConfigError(
                f"--sweep {spec!r}: {path} takes {kind.__name__} values."
            ) from None
        fields.append(path)
    return Sweep(tuple(fields), tuple(itertools.product(*lists)), data, mode)


def _unsweepable(paths: Sequence[str]) -> str:
    return (
        f"Cannot sweep {', '.join(sorted(paths))} in one program: only `seed` and float fields "
        f"of {', '.join(p.rstrip('.') for p in SWEEPABLE_PREFIXES)} that the compiled step reads "
        "as numbers can differ between replicas. Fields that change shapes or the program "
        "(widths, batch size, number of prototypes, step counts, names, flags) or that the host "
        "reads (input pipeline, loop, evaluation) need separate runs."
    )


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def hyperparameters(
    configs: Sequence[ml_collections.ConfigDict],
) -> tuple[dict, dict[str, np.ndarray]]:
    """The replicas' shared resolved config and their differing fields as arrays.

    Args:
      configs: the replicas' configs (`Sweep.replica_config`).

    Returns:
      ``(base, values)``: ``base``, the first replica's resolved config as a nested dict, and
      ``values = {path: [R] array}`` of every field whose resolved value differs (float32, or
      int32 for ``seed``).

    Raises:
      errors.ConfigError: a differing field that cannot be traced (it changes shapes or the
        program), e.g. ``optim.warmup_steps`` moved by a swept ``optim.warmup_epochs``.
    """
    resolved = [c.copy_and_resolve_references().to_dict() for c in configs]
    flat = [_flatten(r) for r in resolved]
    differing = sorted(k for k in flat[0] if any(f[k] != flat[0][k] for f in flat[1:]))
    refused = [
        k
        for k in differing
        if k != "seed"
        and not (k.startswith(SWEEPABLE_PREFIXES) and all(isinstance(f[k], float) for f in flat))
    ]
    if refused:
        raise errors.ConfigError(_unsweepable(refused))
    values = {
        k: np.asarray([f[k] for f in flat], np.int32 if k == "seed" else np.float32)
        for k in differing
    }
    return resolved[0], values


def traced_config(base: dict, values: dict[str, Any]) -> ml_collections.ConfigDict:
    """``base`` with ``values`` (traced scalars of one replica) set, as a ConfigDict.

    Not type-safe: a float field holds a tracer. Any Python use of a swept value (``int()``,
    ``if``) fails while tracing; `describe_trace_error` turns that into a message naming it.
    """
    tree = copy.deepcopy(base)
    _set_fields(tree, values)
    return ml_collections.ConfigDict(tree, type_safe=False)


def describe_trace_error(sweep: Sweep, error: Exception) -> str:
    """The message for a swept value that the step used as a Python number while tracing."""
    return (
        f"{_unsweepable(sweep.fields)}\nHere one of them is used as a Python value while the "
        f"step is traced ({type(error).__name__}: {str(error).splitlines()[0][:200]})."
    )


def replica_axis_size(replicas: int, devices: int, per_replica_batch: int) -> int:
    """How many devices the replica axis spans: the largest divisor ``d`` of both ``replicas``
    and ``devices`` whose remaining ``devices / d`` still split the batch evenly."""
    for size in range(min(replicas, devices), 0, -1):
        if (
            replicas % size == 0
            and devices % size == 0
            and per_replica_batch % (devices // size) == 0
        ):
            return size
    return 1


def read(workdir: str) -> Sweep | None:
    """The sweep recorded in ``workdir`` (``sweep.json``), or None for a single run."""
    path = os.path.join(workdir, SWEEP_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return Sweep.from_json(f.read())


def resolve(workdir: str, sweep: Sweep | None) -> Sweep | None:
    """The run's sweep: ``sweep``, checked against the one ``workdir`` records, or the recorded
    one when ``sweep`` is None (a resumed sweep may omit its ``--sweep`` flags).

    Raises:
      errors.ConfigError: ``workdir`` holds a different sweep, or a single run's checkpoints.
    """
    recorded = read(workdir)
    if sweep is None:
        return recorded
    if recorded is not None and recorded != sweep:
        raise errors.ConfigError(
            f"{workdir} holds another sweep ({recorded.to_json()}); use a new --workdir, or "
            "rerun with the same --sweep flags (or none) to resume it."
        )
    if recorded is None and os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise errors.ConfigError(
            f"{workdir} holds a single run's checkpoints; a sweep needs a new --workdir."
        )
    return sweep


def write(workdir: str, sweep: Sweep | None) -> None:
    """Records ``sweep`` as ``workdir/sweep.json`` (process 0; nothing for a single run)."""
    if sweep is not None and jax.process_index() == 0:
        with open(os.path.join(workdir, SWEEP_FILE), "w") as f:
            f.write(sweep.to_json() + "\n")
