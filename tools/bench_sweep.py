"""R replicas in one program (``jaxssl train --sweep``) against R runs one after another.

    python tools/bench_sweep.py --config jaxssl/configs/vicreg_cifar10.py:cpu --replicas 1,2,4,8

For each R, a fresh subprocess builds the train step of an R-replica sweep over ``--field``
(R = 1: the plain single run), runs ``--warmup`` untimed and ``--steps`` timed steps on random
uint8 crops of the config's shape (the input pipeline is left out: a sweep with shared data
reads one pipeline for all replicas, which this does not credit), and reports the seconds per
step and the process's peak resident memory. Speed-up = R x (single run's s/step) / (sweep's
s/step): above 1, one program beats R runs in a row. Prints a Markdown table; ``--out`` also
writes JSON. Each child runs with the console script's malloc settings and XLA:CPU flags
(``jaxssl.platform.configure_program``). Run it alone on the machine.
"""

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(config_spec: str, replicas: int, field: str, warmup: int, steps: int) -> dict:
    """Times the step of one configuration in this process; returns s/step and peak RSS."""
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from jaxssl import cli, sharding, sweep, trainer  # noqa: PLC0415

    path, _, preset = cli.resolve_config_path(config_spec).partition(":")
    spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(preset or None)
    config.train.time_budget_minutes = 0.0
    parsed = None
    if replicas > 1:
        base = float(sweep.get_field(config, field))
        values = ",".join(f"{base * 2 ** (r - replicas // 2):g}" for r in range(replicas))
        parsed = sweep.parse([f"{field}={values}"], config)
        mesh = sharding.make_mesh(config.mesh, replicas=1)
    else:
        mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh, parsed)
    state = run.init_state()
    b, s = config.train.batch_size, config.data.image_size
    rng = np.random.default_rng(0)
    batch = {
        "global": rng.integers(0, 256, (b, config.data.num_views, s, s, 3), dtype=np.uint8),
        "label": rng.integers(0, 10, (b,), dtype=np.int32),
        "index": np.arange(b, dtype=np.int32),
    }
    batch = sharding.to_global(batch, mesh)
    for _ in range(warmup):
        state, metrics = run.train_step(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = run.train_step(state, batch)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"replicas": replicas, "seconds_per_step": seconds, "peak_rss_gib": peak}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="jaxssl/configs/vicreg_cifar10.py:cpu")
    parser.add_argument("--replicas", default="1,2,4,8")
    parser.add_argument("--field", default="optim.base_lr", help="the swept float field")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        # What the console script does for itself: the malloc settings (a re-exec) and the
        # XLA:CPU flags, so the times are those of a `jaxssl train` run.
        from jaxssl import platform  # noqa: PLC0415 (no JAX import)

        platform.configure_program()
        result = measure(args.config, args.child, args.field, args.warmup, args.steps)
        print("RESULT " + json.dumps(result), flush=True)
        return
    rows = []
    for replicas in [int(r) for r in args.replicas.split(",")]:
        command = [sys.executable, __file__, "--child", str(replicas), *(argv or sys.argv[1:])]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            sys.exit(f"R={replicas} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(lines[-1][len("RESULT ") :]))
        print(f"R={replicas}: {rows[-1]}", file=sys.stderr, flush=True)
    single = next((r["seconds_per_step"] for r in rows if r["replicas"] == 1), None)
    print(f"`{args.config}`, sweeping {args.field}; {args.steps} timed steps after {args.warmup}.")
    print()
    print("| replicas | s/step | speed-up vs R runs in a row | peak RSS (GiB) |")
    print("|---|---|---|---|")
    for row in rows:
        speedup = row["replicas"] * single / row["seconds_per_step"] if single else float("nan")
        row["speedup"] = speedup
        print(
            f"| {row['replicas']} | {row['seconds_per_step']:.3f} | {speedup:.2f}x | "
            f"{row['peak_rss_gib']:.2f} |"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"config": args.config, "field": args.field, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
