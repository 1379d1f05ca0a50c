"""Throughput of a config's train step and input pipeline on this host.

    python tools/benchmark.py --config jaxssl/configs/simclr_cifar10.py:cpu \
        [--config.train.batch_size=256] [--steps 5] [--pipeline_batches 20] [--out bench.json]

Prints one JSON object: train-step images/s (median of --steps timed steps after warm-up;
an "image" is one view through the backbone, so a SimCLR step of batch B counts 2B), model
FLOPs per image and achieved GFLOP/s (XLA cost analysis of the compiled step), compile time,
input-pipeline source images/s alone, the step's images/s with the real pipeline feeding it,
and peak host memory.
"""

import json
import resource
import statistics
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config[:preset].", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed train steps (after 2 warm-up steps).")
_PIPELINE_BATCHES = flags.DEFINE_integer(
    "pipeline_batches", 20, "Batches to time the input (0: time the step alone)."
)
_OUT = flags.DEFINE_string("out", None, "Also write the JSON result to this file.")
flags.mark_flag_as_required("config")


def main(argv):
    del argv
    from jaxssl import platform

    platform.configure_program()  # the trainer's malloc and XLA:CPU settings
    import jax
    import numpy as np

    from jaxssl import sharding, trainer

    config = _CONFIG.value
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    batch_size, size = config.train.batch_size, config.data.image_size
    local_views, local_size = config.data.local_views, config.data.local_image_size
    # Every view through the backbone counts, local (multi-crop) views included.
    views = config.data.num_views + local_views
    rng = np.random.default_rng(0)
    host_batch = {
        "label": rng.integers(0, config.data.num_classes, size=batch_size).astype(np.int32),
        "index": np.arange(batch_size, dtype=np.int32),
    }
    # The pipeline's uint8 crops, "global" [B, V, S, S, 3] and multi-crop "local"
    # [B, L, s, s, 3]; the step applies the colour augmentation to them.
    global_shape = (batch_size, config.data.num_views, size, size, 3)
    host_batch["global"] = rng.integers(0, 256, global_shape, np.uint8)
    if local_views:
        local_shape = (batch_size, local_views, local_size, local_size, 3)
        host_batch["local"] = rng.integers(0, 256, local_shape, np.uint8)
    state = run.init_state()
    batch = sharding.to_global(host_batch, mesh)

    # --- Compile ---
    start = time.perf_counter()
    compiled = run.train_step.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops_per_image = float(cost.get("flops", float("nan"))) / (batch_size * views)

    # --- Step alone (synthetic batch already on device) ---
    for _ in range(2):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(_STEPS.value):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    step_seconds = statistics.median(times)
    img_per_s = batch_size * views / step_seconds

    result = {
        "config": {
            "backbone": config.model.backbone,
            "width": config.model.width,
            "image_size": size,
            "dtype": config.model.dtype,
            "conv_impl": config.model.conv_impl,
            "batch_size": batch_size,
            "views": views,
            "local_views": local_views,
            "devices": mesh.devices.size,
        },
        "step_img_per_s": round(img_per_s, 1),
        "step_ms_median": round(step_seconds * 1e3, 1),
        "flops_per_image": flops_per_image,
        "achieved_gflop_per_s": round(flops_per_image * img_per_s / 1e9, 1),
        "compile_seconds": round(compile_seconds, 1),
    }
    if _PIPELINE_BATCHES.value > 0:
        result.update(_time_pipeline(config, mesh, compiled, state, views))
    result["peak_host_memory_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    print(json.dumps(result))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)


def _time_pipeline(config, mesh, compiled, state, views: int) -> dict:
    """Source images/s of the input pipeline alone, and the step's images/s fed by it."""
    import jax

    from jaxssl import sharding
    from jaxssl.data import tfds as input_pipeline

    batch_size = config.train.batch_size
    # --- Input pipeline alone ---
    iterator = input_pipeline.make_train_iterator(
        config.data,
        global_batch_size=batch_size,
        seed=0,
        start_step=0,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    for _ in range(3):
        next(iterator)
    start = time.perf_counter()
    for _ in range(_PIPELINE_BATCHES.value):
        next(iterator)
    pipeline_src_per_s = _PIPELINE_BATCHES.value * batch_size / (time.perf_counter() - start)

    # --- Step fed by the pipeline ---
    start = time.perf_counter()
    for _ in range(_STEPS.value):
        state, metrics = compiled(state, sharding.to_global(next(iterator), mesh))
    jax.block_until_ready(metrics)
    fed_img_per_s = _STEPS.value * batch_size * views / (time.perf_counter() - start)

    return {
        "pipeline_src_img_per_s": round(pipeline_src_per_s, 1),
        "fed_step_img_per_s": round(fed_img_per_s, 1),
    }


if __name__ == "__main__":
    app.run(main)
