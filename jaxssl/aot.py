"""``jaxssl compile``: the train and evaluation steps, compiled ahead of time for a TPU topology.

    JAX_PLATFORMS=cpu jaxssl compile --config jaxssl/configs/simclr_imagenet.py \
        --topology v5e:16x16 [--num_slices 2] [--config.train.batch_size=8192]

builds the train step exactly as ``jaxssl train`` does (`jaxssl.trainer.build`: the same
shardings, FSDP and donation) and the kNN embedding step, for the devices of a TPU topology
description (`jaxssl.topology`), from abstract state (``jax.eval_shape``) and abstract batches;
no array is allocated. It prints one JSON object: per-chip memory from the compiled executable
(``memory_analysis``), FLOPs and bytes per step (``cost_analysis``), the collectives in the
optimized HLO, and a roofline estimate of the step time. It exits with status 1 and a message
saying what to change when a device's memory is exceeded, so an out-of-memory recipe is caught
before a pod is booked.

The roofline (stated, not measured): a step takes

    max(FLOPs / peak bf16 FLOP/s, bytes accessed / HBM bandwidth) + collective time,

per device, with collective time = (2 x all-reduce bytes + all other collective bytes) / ICI
bandwidth (a ring all-reduce moves each byte out and back in; collectives are not overlapped
with compute, and multi-slice traffic is costed at ICI, not at the slower data-centre network).
It omits the input pipeline, host overheads and how far convolutions fall short of the
matrix units' peak, so real steps are slower: docs/scaling.md sets estimates beside published
wall times.
"""

import json
import math
import re
from typing import Any

import ml_collections

from jaxssl import errors

HLO_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_ITEMSIZE = {
    "pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "s16": 2, "u16": 2, "bf16": 2,
    "f16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%\S+ = (.+?) ([a-z][a-z0-9-]*)\(")
_ARRAY = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\]")


class MemoryExceededError(errors.UserError, RuntimeError):
    """A compiled step needs more memory per device than the chip has."""


def abstract_batch(config: ml_collections.ConfigDict, batch_size: int, mesh) -> dict[str, Any]:
    """``ShapeDtypeStruct``s of one global training batch, as the input pipeline yields it.

    Args:
      config: the run config.
      batch_size: the global batch size.
      mesh: the mesh; every array is split over its devices along the batch axis.

    Returns:
      ``{"global": [B, V, S, S, 3], "label": [B], "index": [B]}`` and, with multi-crop,
      ``"local": [B, L, s, s, 3]``: uint8 crops, as every input pipeline ships them; with
      ``data.crop_boxes`` each group's float32 crop boxes ``"global_box"`` ``[B, V, 5]``.
    """
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from jaxssl import sharding  # noqa: PLC0415

    data = config.data
    spec = sharding.batch_sharding(mesh)

    def array(shape, dtype):
        return jax.ShapeDtypeStruct(shape, np.dtype(dtype), sharding=spec)

    # The host ships uint8 crops; colour and normalization happen inside the step.
    images = {
        "global": array((batch_size, data.num_views, data.image_size, data.image_size, 3), np.uint8)
    }
    if data.local_views > 0:
        local = (batch_size, data.local_views, data.local_image_size, data.local_image_size, 3)
        images["local"] = array(local, np.uint8)
    if data.get("crop_boxes", False):  # VICRegL's locations, SIE's transformations
        for group in images.copy():
            views = images[group].shape[1]
            images[f"{group}_box"] = array((batch_size, views, 5), np.float32)
    return {
        **images,
        "label": array((batch_size,), np.int32),
        "index": array((batch_size,), np.int32),
    }


def collectives(hlo_text: str) -> dict[str, dict[str, int]]:
    """Count and result bytes (per device) of each collective in an optimized HLO module.

    Asynchronous pairs count once, at their ``-start``; for an all-gather or collective-permute
    start, whose result also holds its operands, only the outputs count. Collectives inside a
    loop body count once, not once per iteration.

    Args:
      hlo_text: ``compiled.as_text()``.

    Returns:
      ``{op: {"count": n, "bytes": b}}`` for each op of ``HLO_COLLECTIVES``.
    """
    found = {op: {"count": 0, "bytes": 0} for op in HLO_COLLECTIVES}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        result, opcode = match.groups()
        base = opcode.removesuffix("-start")
        if base not in found or opcode.endswith(("-done", "-update")):
            continue
        arrays = [
            math.prod(int(d) for d in dims.split(",") if d) * _ITEMSIZE[dtype]
            for dtype, dims in _ARRAY.findall(result)
            if dtype in _ITEMSIZE
        ]
        if opcode.endswith("-start") and base in ("all-gather", "collective-permute"):
            arrays = arrays[len(arrays) // 2 :] if base == "all-gather" else arrays[1:2]
        found[base]["count"] += 1
        found[base]["bytes"] += sum(arrays)
    return found


def memory(compiled) -> dict[str, int]:
    """Per-device bytes of a compiled executable: arguments + temporaries + outputs - aliased."""
    stats = compiled.memory_analysis()
    parts = {
        "arguments": int(stats.argument_size_in_bytes),
        "temporaries": int(stats.temp_size_in_bytes),
        "outputs": int(stats.output_size_in_bytes),
        "aliased": int(stats.alias_size_in_bytes),
        "code": int(stats.generated_code_size_in_bytes),
    }
    total = parts["arguments"] + parts["temporaries"] + parts["outputs"] - parts["aliased"]
    return {"total": total, **parts}


def cost(compiled) -> dict[str, float]:
    """Per-device FLOPs and bytes accessed of one call (``cost_analysis``)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older jax: one dict per program
        analysis = analysis[0]
    return {
        "flops": float(analysis.get("flops", 0.0)),
        "bytes_accessed": float(analysis.get("bytes accessed", 0.0)),
    }


def roofline_seconds(
    chip, flops: float, bytes_accessed: float, comms: dict[str, dict[str, int]]
) -> dict[str, float]:
    """Per-device step time of the module docstring's roofline, and its three parts."""
    share = chip.devices_per_chip
    compute = flops / (chip.peak_bf16_flops / share)
    hbm = bytes_accessed / (chip.hbm_bandwidth / share)
    traffic = sum((2 if op == "all-reduce" else 1) * c["bytes"] for op, c in comms.items())
    ici = traffic / (chip.ici_bandwidth / share)
    return {"step": max(compute, hbm) + ici, "compute": compute, "hbm": hbm, "ici": ici}


def memory_advice(config: ml_collections.ConfigDict, need: int, capacity: int, devices: int) -> str:
    """What to change when a step needs ``need`` bytes per device of ``capacity``."""
    per_device = config.train.batch_size // devices
    return (
        f"needs {need / 2**30:.2f} GiB per device, the chip has {capacity / 2**30:.2f} GiB per "
        f"device available. Lower the batch per device (now {per_device}: "
        "--config.train.batch_size), "
        f"split micro-batches (--config.train.grad_accum_steps={2 * config.train.grad_accum_steps}"
        f"), shard parameters and optimizer state (--config.mesh.fsdp=8), or compute in bf16 "
        f"(--config.model.dtype=bfloat16; now {config.model.dtype})."
    )


def _views(data: ml_collections.ConfigDict) -> str:
    views = f"{data.num_views}x{data.image_size}"
    return views + (f"+{data.local_views}x{data.local_image_size}" if data.local_views else "")


def compile_run(
    config: ml_collections.ConfigDict,
    topology_name: str,
    num_slices: int = 1,
    evaluation: bool = True,
) -> dict[str, Any]:
    """Compiles the train step (and the kNN embedding step) of ``config`` for a TPU topology.

    Args:
      config: the run config (locked or not).
      topology_name: ``CHIP:AxB[xC]`` (`jaxssl.topology.devices`).
      num_slices: slices, for multi-slice runs.
      evaluation: also compile the evaluation (kNN embedding) step.

    Returns:
      The report (see the module docstring); ``report["fits"]`` is False when a step needs
      more memory per device than the chip has; ``report["error"]`` then says what to do and
      ``report["hbm_bytes_needed"]`` is the need per chip (0 if the compiler did not say).
    """
    import jax  # noqa: PLC0415

    from jaxssl import sharding, topology, trainer  # noqa: PLC0415
    from jaxssl.evals import features  # noqa: PLC0415

    chip, _ = topology.parse(topology_name)
    devices = topology.devices(topology_name, num_slices)
    mesh = sharding.make_mesh(config.mesh, devices=devices)
    batch_size = int(config.train.batch_size)
    sharding.check_batch_size(batch_size, mesh)
    capacity = chip.hbm_bytes // chip.devices_per_chip
    chips = len(devices) // chip.devices_per_chip
    processes = len({d.process_index for d in devices})
    report = {
        "topology": topology_name,
        "num_slices": num_slices,
        "chips": chips,
        "devices": len(devices),
        "processes": processes,
        "chips_per_host": math.prod(topology.host_bounds(chip, topology.parse(topology_name)[1])),
        "mesh": dict(mesh.shape),
        "global_batch": batch_size,
        "views": f"{config.data.num_views}x{config.data.image_size}"
        + (
            f"+{config.data.local_views}x{config.data.local_image_size}"
            if config.data.local_views
            else ""
        ),
        "backbone": config.model.backbone,
        "dtype": config.model.dtype,
        "hbm_capacity_bytes": chip.hbm_bytes,
    }

    run = trainer.build(config, mesh)
    compiled = run.train_step.lower(run.abstract_state, abstract_batch(config, batch_size, mesh))
    try:
        compiled = compiled.compile()
    except Exception as e:  # the TPU compiler refuses programs that cannot fit its HBM
        message = str(e)
        if "RESOURCE_EXHAUSTED" not in message:
            raise
        sizes = re.search(
            r"\(([0-9.]+)([GMK])\) exceeds available HBM \(([0-9.]+)([GMK])\)", message
        )
        unit = {"G": 2**30, "M": 2**20, "K": 2**10}
        need = int(float(sizes.group(1)) * unit[sizes.group(2)]) if sizes else 0
        available = int(float(sizes.group(3)) * unit[sizes.group(4)]) if sizes else capacity
        first_line = message.strip().splitlines()[0][:300]
        return report | {
            "fits": False,
            "hbm_bytes_needed": need * chip.devices_per_chip,
            "error": f"{chip.name} chip memory exceeded: the train step "
            + memory_advice(config, need, available, len(devices))
            + f" (compiler: {first_line})",
        }
    train_memory = memory(compiled)
    train_cost = cost(compiled)
    comms = collectives(compiled.as_text())
    seconds = roofline_seconds(chip, train_cost["flops"], train_cost["bytes_accessed"], comms)
    steps = int(config.train.num_steps)
    report |= {
        "hbm_bytes_per_chip": train_memory["total"] * chip.devices_per_chip,
        "hbm_bytes_per_device": train_memory,
        "flops_per_step": train_cost["flops"] * len(devices),
        "bytes_accessed_per_step": train_cost["bytes_accessed"] * len(devices),
        "collectives": comms,
        "roofline_seconds": seconds,
        "est_step_seconds": seconds["step"],
        "est_img_per_s_per_chip": batch_size / seconds["step"] / chips,
        "epochs": float(config.train.epochs),
        "num_steps": steps,
        "est_hours": steps * seconds["step"] / 3600,
        # What the input pipeline must deliver per host to keep up (source images).
        "est_img_per_s_per_host": batch_size / seconds["step"] / processes,
    }
    fits = train_memory["total"] <= capacity
    if evaluation:
        embed = features.make_embed_fn(
            run.model, mesh, config.data.mean, config.data.std, patches=config.evals.patches
        )
        variables = {
            "params": run.abstract_state.params,
            "batch_stats": run.abstract_state.batch_stats,
        }
        eval_batch = config.evals.knn.batch_size
        size = config.data.eval_image_size
        patches = config.evals.get("patches")
        if patches is not None and patches.num > 0:  # EMP-SSL: a bag of host-cut patches
            shape = (eval_batch, patches.num, patches.size, patches.size, 3)
        else:
            shape = (eval_batch, size, size, 3)
        images = jax.ShapeDtypeStruct(shape, "uint8", sharding=sharding.batch_sharding(mesh))
        eval_compiled = embed.lower(variables, images).compile()
        eval_memory = memory(eval_compiled)
        report["eval"] = {
            "batch": eval_batch,
            "hbm_bytes_per_device": eval_memory,
            "flops_per_step": cost(eval_compiled)["flops"] * len(devices),
        }
        fits = fits and eval_memory["total"] <= capacity
    report["fits"] = fits
    if not fits:
        need = max(
            train_memory["total"],
            report.get("eval", {}).get("hbm_bytes_per_device", {}).get("total", 0),
        )
        report["hbm_bytes_needed"] = need * chip.devices_per_chip
        report["error"] = f"{chip.name} chip memory exceeded: the step " + memory_advice(
            config, need, capacity, len(devices)
        )
    return report


def report(config, topology_name: str, num_slices: int, evaluation: bool) -> None:
    """``jaxssl compile``: prints the JSON report; exits non-zero if a chip's memory is exceeded."""
    from absl import logging  # noqa: PLC0415

    logging.set_verbosity(logging.WARNING)
    report = compile_run(config, topology_name, num_slices, evaluation)
    print(json.dumps(report), flush=True)
    if not report["fits"]:
        raise MemoryExceededError(report["error"])
