"""Portable backbone export: one msgpack file with the backbone's variables and its config.

    jaxssl export --workdir W --out backbone.msgpack [--step N] [--replica R]

    from jaxssl import export
    from jaxssl.data import color
    backbone, variables = export.load("backbone.msgpack")
    inputs = color.to_model_input(images, mean, std)  # uint8; the run's data.mean, data.std
    features = backbone.apply(variables, inputs, train=False)  # [B, D]

The file holds ``{"format", "step", "config" (JSON of the run config), "variables":
{"params", "batch_stats"}}`` serialized with ``flax.serialization``; loading needs jaxssl (to
rebuild the module from the config) but no checkpoint, Orbax or workdir.
"""

import json
import os

import flax.linen as nn
import flax.serialization
import jax
import ml_collections
import numpy as np

from jaxssl import errors, evaluate, methods, saved_config, sharding
from jaxssl import sweep as sweep_lib

FORMAT = "jaxssl-backbone-v1"


def export(workdir: str, out_path: str, step: int | None = None, replica: int | None = None) -> str:
    """Writes the backbone of ``workdir``'s latest (or ``step``'s) checkpoint to ``out_path``.

    Args:
      workdir: a training run's directory (``config.json`` + ``checkpoints/``).
      out_path: the msgpack file to write.
      step: the checkpoint step; default the latest.
      replica: the replica to export, for a workdir that holds a sweep (required there).

    Returns:
      ``out_path``.
    """
    config = saved_config.load(workdir)
    sweep = sweep_lib.read(workdir)
    if sweep is not None and replica is not None and 0 <= replica < sweep.size:
        config = sweep.replica_config(config, replica)  # its values, in the exported config
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 1}))
    _, variables, step = evaluate.restore_state(config, workdir, mesh, step, replica)
    variables = {
        "params": variables["params"]["backbone"],
        "batch_stats": variables["batch_stats"].get("backbone", {}),  # {}: no BatchNorm (ViT)
    }
    payload = {
        "format": FORMAT,
        "step": int(step),
        "config": config.to_json(),
        "variables": jax.tree.map(np.asarray, jax.device_get(variables)),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(flax.serialization.msgpack_serialize(payload))
    return out_path


def load(path: str) -> tuple[nn.Module, dict]:
    """Rebuilds an exported backbone.

    Args:
      path: a file written by `export`.

    Returns:
      ``(backbone, variables)``: ``backbone.apply(variables, images, train=False)`` gives the
      same ``[B, D]`` features as the run's model in inference mode.
    """
    with open(path, "rb") as f:
        payload = flax.serialization.msgpack_restore(f.read())
    if payload.get("format") != FORMAT:
        raise errors.DataError(f"{path} is not a jaxssl backbone export (format {FORMAT}).")
    config = ml_collections.ConfigDict(json.loads(payload["config"]))
    model = methods.get_method(config.method.name).build_model(config)
    backbone = model.backbone.clone(parent=None)
    return backbone, payload["variables"]
