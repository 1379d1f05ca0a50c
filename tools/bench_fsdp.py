"""Memory per device of a config's train step under data parallelism and FSDP.

    python tools/bench_fsdp.py --config jaxssl/configs/simclr_vit_cifar10.py \
        --config.model.backbone=vit_base --config.train.batch_size=64 [--fsdp 1,2,4,8] \
        [--out fsdp.json]

On 8 fake CPU devices, for each ``fsdp`` size (mesh ``data = 8 / fsdp``): the train state's
bytes per device (parameters, optimizer moments, EMA teachers, probe; what FSDP splits) and the
compiled train step's ``memory_analysis()`` per device: arguments (the state and the batch
shard), temporaries (activations, gathered parameters, gradients) and outputs. Nothing runs but
the compiler, so large models fit in host memory. Prints one JSON line per size.
"""

import json
import os
import time

from absl import app, flags
from ml_collections import config_flags

DEVICES = 8
_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config[:preset].", lock_config=False)
_FSDP = flags.DEFINE_list("fsdp", ["1", "2", "4", "8"], "FSDP group sizes to compile.")
_OUT = flags.DEFINE_string("out", None, "Also write the JSON lines to this file.")
flags.mark_flag_as_required("config")


def main(argv):
    del argv
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}"
    ).strip()
    from jaxssl import platform

    platform.configure_program()  # the trainer's malloc and XLA:CPU settings
    import jax
    import numpy as np

    from jaxssl import sharding, trainer

    config = _CONFIG.value
    mib = 2**20
    lines = []
    for fsdp in map(int, _FSDP.value):
        config.mesh.data, config.mesh.fsdp = DEVICES // fsdp, fsdp
        mesh = sharding.make_mesh(config.mesh)
        run = trainer.build(config, mesh)
        b, s = config.train.batch_size, config.data.image_size
        batch_sharding = sharding.batch_sharding(mesh)
        batch = {
            "global": jax.ShapeDtypeStruct(
                (b, config.data.num_views, s, s, 3), np.float32, sharding=batch_sharding
            ),
            "label": jax.ShapeDtypeStruct((b,), np.int32, sharding=batch_sharding),
            "index": jax.ShapeDtypeStruct((b,), np.int32, sharding=batch_sharding),
        }
        start = time.perf_counter()
        compiled = run.train_step.lower(run.abstract_state, batch).compile()
        compile_seconds = time.perf_counter() - start
        memory = compiled.memory_analysis()
        total, per_device = sharding.state_bytes(run.abstract_state)
        num_params = sum(x.size for x in jax.tree.leaves(run.abstract_state.params))
        line = {
            "backbone": config.model.backbone,
            "params_millions": round(num_params / 1e6, 2),
            "optimizer": config.optim.name,
            "global_batch": b,
            "image_size": s,
            "mesh": dict(mesh.shape),
            "state_mib_total": round(total / mib, 1),
            "state_mib_per_device": round(per_device / mib, 1),
            "step_mib_per_device": {
                "arguments": round(memory.argument_size_in_bytes / mib, 1),
                "temporaries": round(memory.temp_size_in_bytes / mib, 1),
                "outputs": round(memory.output_size_in_bytes / mib, 1),
            },
            "compile_s": round(compile_seconds, 1),
        }
        print(json.dumps(line), flush=True)
        lines.append(line)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            f.write("".join(json.dumps(line) + "\n" for line in lines))


if __name__ == "__main__":
    app.run(main)
