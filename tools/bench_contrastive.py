"""Memory and time of the dense and the blockwise contrastive loss (value + gradient).

    python tools/bench_contrastive.py [--embeddings 32768] [--small 4096] [--dim 128]
        [--chunk_size 1024] [--repeats 2] [--max_run_gib 12]

On 8 fake CPU devices (the ``("data", "fsdp")`` mesh with fsdp=1, embeddings row-sharded as
in the train step), for ``M`` embeddings = ``M / 2`` image pairs of 2 views (SimCLR's
augmentation graph): ``jax.value_and_grad`` of ``contrastive.multi_positive_nt_xent``
("dense", the [M, M] similarities left to the compiler to shard) and
``multi_positive_nt_xent_blockwise``. Each case
runs in its own process, so its peak RSS is its own. Per case: the compiled executable's
``memory_analysis()`` per device (temp, arguments, outputs) and over all 8 devices, compile
time, the median wall time of ``--repeats`` calls after one warm-up, the loss, and the process's
peak RSS. A case whose compiled memory over all devices exceeds ``--max_run_gib`` is compiled
but not run. Prints one JSON line.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

DEVICES = 8
GIB = 2**30


def run_case(impl: str, num_embeddings: int, args: argparse.Namespace) -> dict:
    """Compiles (and, if it fits, times) one case in this process; JAX is imported here."""
    from jaxssl import platform

    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}"
    ).strip()
    platform.configure_program()  # the trainer's malloc and XLA:CPU settings
    import jax
    import ml_collections
    import numpy as np

    from jaxssl import sharding
    from jaxssl.losses import contrastive, contrastive_blockwise

    mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=DEVICES)))
    batch = sharding.batch_sharding(mesh)
    rng = np.random.default_rng(0)
    embeddings = jax.device_put(
        rng.normal(size=(num_embeddings, args.dim)).astype(np.float32), batch
    )
    # Batch-major pairs: rows 2i and 2i + 1 are the two views of image i.
    ids = jax.device_put(contrastive.augmentation_graph_ids(num_embeddings // 2, 2), batch)
    if impl == "dense":
        loss_fn = contrastive.multi_positive_nt_xent
    else:
        loss_fn = lambda z, t, ids: contrastive_blockwise.multi_positive_nt_xent_blockwise(  # noqa: E731
            z, t, ids=ids, chunk_size=args.chunk_size
        )
    step = jax.jit(
        jax.value_and_grad(lambda z, ids: loss_fn(z, 0.1, ids=ids)),
        in_shardings=(batch, batch),
        out_shardings=(sharding.replicated(mesh), batch),
    )

    start = time.perf_counter()
    compiled = step.lower(embeddings, ids).compile()
    compile_seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    per_device = {
        "temp": memory.temp_size_in_bytes,
        "argument": memory.argument_size_in_bytes,
        "output": memory.output_size_in_bytes,
    }
    total_gib = DEVICES * sum(per_device.values()) / GIB
    result = {
        "impl": impl,
        "embeddings": num_embeddings,
        "pairs": num_embeddings // 2,
        "per_device_mib": {k: round(v / 2**20, 1) for k, v in per_device.items()},
        "all_devices_gib": round(total_gib, 2),
        "compile_s": round(compile_seconds, 1),
        "ran": total_gib <= args.max_run_gib,
    }
    if result["ran"]:
        loss, grads = compiled(embeddings, ids)
        jax.block_until_ready(grads)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            loss, grads = compiled(embeddings, ids)
            jax.block_until_ready(grads)
            times.append(time.perf_counter() - start)
        result["seconds"] = round(statistics.median(times), 3)
        result["loss"] = float(loss)
        result["grad_norm"] = float(np.linalg.norm(np.asarray(grads)))
    result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", type=int, default=32768, help="M at the large size.")
    parser.add_argument("--small", type=int, default=4096, help="M at the small size.")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--chunk_size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2, help="Timed calls after a warm-up.")
    parser.add_argument("--max_run_gib", type=float, default=12.0)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # "impl,M": run one case, print it
    args = parser.parse_args()

    if args.case:
        impl, num_embeddings = args.case.split(",")
        print(json.dumps(run_case(impl, int(num_embeddings), args)))
        return

    cases = [
        ("blockwise", args.small),
        ("dense", args.small),
        ("blockwise", args.embeddings),
        ("dense", args.embeddings),
    ]
    results = []
    for impl, num_embeddings in cases:
        command = [sys.executable, os.path.abspath(__file__), f"--case={impl},{num_embeddings}"]
        command += [
            f"--dim={args.dim}",
            f"--chunk_size={args.chunk_size}",
            f"--repeats={args.repeats}",
            f"--max_run_gib={args.max_run_gib}",
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    print(
        json.dumps(
            {"devices": DEVICES, "dim": args.dim, "chunk_size": args.chunk_size, "cases": results}
        )
    )


if __name__ == "__main__":
    main()
