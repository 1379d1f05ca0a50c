"""Compiles the ImageNet recipes for TPU pods and writes the tables of docs/scaling.md.

  PYTHONPATH=... JAX_PLATFORMS=cpu python tools/pod_tables.py [--group recipes] [--render]

Runs ``jaxssl compile`` (`jaxssl.aot`) once per row of ``JOBS``, one at a time in a fresh
process (a ResNet-50 step for 256 chips needs a few GB of host memory to compile), and keeps
each report in docs/pod_results.json; rows already there are skipped, so an interrupted run
resumes. ``--render`` writes docs/pod_tables.md from the JSON. Needs libtpu (the ``tpu``
extra).

Groups: ``recipes`` (every recipe at its published batch on v5e-256 and v4-256), ``published``
(the hardware of a published wall time: SimCLR's 32 v3 cores, BYOL's 512), ``contrastive``
(SimCLR at 32k-128k on v5e-256 and v4-512, dense vs blockwise loss). TPU v4 slices are named by
TensorCores, v5e by chips: v4-256 is v4:4x4x8 (128 chips), v4-512 v4:4x8x8 (256 chips).
"""

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "docs", "pod_results.json")
TABLES = os.path.join(REPO, "docs", "pod_tables.md")
RECIPES = ("simclr", "byol", "mocov3", "dino", "swav", "vicreg", "barlow_twins")
# (config, topology, published hours, what was published)
PUBLISHED = (
    ("simclr", "v3:4x4", {"train.epochs": 100}, 6.0, "SimCLR README: 100 epochs ~6 h, 32 TPU v3"),
    ("byol", "v3:16x16", {}, 8.0, "BYOL README/paper: ~8 h, 512 TPU v3 cores, 1000 epochs"),
)
CONTRASTIVE_BATCHES = (32768, 65536, 131072)


def _jobs() -> list[dict]:
    jobs = []
    for recipe in RECIPES:
        for topology in ("v5e:16x16", "v4:4x4x8"):
            jobs.append(dict(group="recipes", recipe=recipe, topology=topology, overrides={}))
    for recipe, topology, overrides, hours, source in PUBLISHED:
        jobs.append(
            dict(
                group="published",
                recipe=recipe,
                topology=topology,
                overrides=overrides,
                published_hours=hours,
                source=source,
            )
        )
    for topology in ("v5e:16x16", "v4:4x8x8"):
        for loss in ("dense", "blockwise"):
            for batch in CONTRASTIVE_BATCHES:
                overrides = {"train.batch_size": batch, "method.loss_impl": loss}
                jobs.append(
                    dict(
                        group="contrastive", recipe="simclr", topology=topology, overrides=overrides
                    )
                )
    for job in jobs:
        job["key"] = "|".join(
            [job["recipe"], job["topology"], *(f"{k}={v}" for k, v in job["overrides"].items())]
        )
    return jobs


def run_job(job: dict) -> dict:
    """One ``jaxssl compile`` in a fresh process; its JSON report (also when it does not fit)."""
    command = [
        sys.executable, "-m", "jaxssl.cli", "compile",
        "--config", os.path.join(REPO, "jaxssl", "configs", f"{job['recipe']}_imagenet.py"),
        "--topology", job["topology"],
        f"--compile_eval={job['group'] == 'recipes'}",
        *(f"--config.{k}={v}" for k, v in job["overrides"].items()),
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXSSL_MALLOC_TUNING": "0"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"fits": False, "error": done.stderr.strip().splitlines()[-1][:500]}
    return json.loads(lines[-1])


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f}"


def render(results: dict) -> str:
    """The three markdown tables of docs/scaling.md."""
    jobs = {job["key"]: job for job in _jobs()}
    out = [
        "<!-- Written by tools/pod_tables.py --render from docs/pod_results.json. -->",
        "",
        "### Recipes at their published batch",
        "",
        "| recipe | backbone, views | batch | topology | chips | HBM/chip GiB (of) | "
        "TFLOP/step | est. s/step | est. img/s/chip | est. hours (epochs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, report in results.items():
        job = jobs.get(key)
        if job is None or job["group"] != "recipes":
            continue
        if not report.get("fits") and "flops_per_step" not in report:
            out.append(f"| {job['recipe']} | | | {job['topology']} | | does not fit | | | | |")
            continue
        out.append(
            f"| {job['recipe']} | {report['backbone']}, {report['views']} | "
            f"{report['global_batch']} | {report['topology']} | {report['chips']} | "
            f"{_gib(report['hbm_bytes_per_chip'])} ({_gib(report['hbm_capacity_bytes'])}) | "
            f"{report['flops_per_step'] / 1e12:.0f} | {report['est_step_seconds']:.3f} | "
            f"{report['est_img_per_s_per_chip']:.0f} | {report['est_hours']:.1f} "
            f"({report['epochs']:.0f}) |"
        )
    out += [
        "",
        "### Estimate vs published wall time",
        "",
        "| recipe | hardware | epochs | est. hours | published hours | published / est. |",
        "|---|---|---|---|---|---|",
    ]
    for key, report in results.items():
        job = jobs.get(key)
        if job is None or job["group"] != "published" or "est_hours" not in report:
            continue
        ratio = job["published_hours"] / report["est_hours"]
        out.append(
            f"| {job['recipe']} | {job['topology']} ({report['devices']} cores) | "
            f"{report['epochs']:.0f} | {report['est_hours']:.2f} | {job['published_hours']} "
            f"({job['source']}) | {ratio:.1f}x |"
        )
    out += [
        "",
        "### Pod-scale SimCLR: per-chip memory, dense vs blockwise loss",
        "",
        "| topology | loss | " + " | ".join(f"B={b // 1024}k" for b in CONTRASTIVE_BATCHES)
        + " | largest that fits |",
        "|---|---|" + "---|" * (len(CONTRASTIVE_BATCHES) + 1),
    ]  # fmt: skip
    for topology in ("v5e:16x16", "v4:4x8x8"):
        for loss in ("dense", "blockwise"):
            cells, largest = [], "none of these"
            for batch in CONTRASTIVE_BATCHES:
                key = f"simclr|{topology}|train.batch_size={batch}|method.loss_impl={loss}"
                report = results.get(key)
                if report is None:
                    cells.append("not run")
                elif report.get("fits"):
                    cells.append(f"{_gib(report['hbm_bytes_per_chip'])} GiB")
                    largest = f"{batch // 1024}k"
                elif report.get("hbm_bytes_needed"):
                    cells.append(f"OOM (needs {_gib(report['hbm_bytes_needed'])} GiB)")
                else:
                    cells.append("OOM")
            out.append(f"| {topology} | {loss} | " + " | ".join(cells) + f" | {largest} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", choices=("recipes", "published", "contrastive"), default=None)
    parser.add_argument("--only", default=None, help="run only jobs whose key contains this")
    parser.add_argument("--render", action="store_true", help="write docs/pod_tables.md")
    args = parser.parse_args(argv)
    results = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            results = json.load(f)
    if not args.render:
        for job in _jobs():
            if job["key"] in results or (args.group and job["group"] != args.group):
                continue
            if args.only and args.only not in job["key"]:
                continue
            print(f"compiling {job['key']} ...", flush=True)
            results[job["key"]] = run_job(job)
            print(json.dumps(results[job["key"]])[:400], flush=True)
            with open(RESULTS, "w") as f:
                json.dump(results, f, indent=1)
    with open(TABLES, "w") as f:
        f.write(render(results))
    print(f"Wrote {TABLES}.")


if __name__ == "__main__":
    main()
