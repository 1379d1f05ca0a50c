"""Every method's ``cpu`` preset on real data, one run each, and the per-method results table
(docs/benchmarks.md).

    python tools/method_zoo.py --root /tmp/zoo                      # all methods, in order
    python tools/method_zoo.py --root /tmp/zoo --methods byol,vicreg
    python tools/method_zoo.py --root /tmp/zoo --collect            # table of finished runs

Each method runs as ``jaxssl train --config jaxssl/configs/<method>_cifar10.py:cpu --workdir
ROOT/<method>`` in a fresh process, one after the other (never two at once: on a 2-core host
they would slow each other and the wall times would say nothing). The tool times each run's
wall clock (start-up, compilation, training and the final kNN pass) and writes it to
``ROOT/<method>/zoo.json`` next to the run's final kNN figures. A method whose ``zoo.json``
exists is not run again, so an interrupted sweep continues where it stopped. ``--out`` gets
all records as one JSON list; the Markdown table is printed.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

from absl import app, flags

from jaxssl.evals import plots

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (method, config file, the published number its full recipe targets)
METHODS = (
    ("simclr", "simclr_cifar10.py", "90.7% linear (solo-learn, 1000 ep.)"),
    ("byol", "byol_cifar10.py", "92.6% linear (solo-learn, 1000 ep.)"),
    ("mocov2", "mocov2_cifar10.py", "~92% linear (solo-learn MoCo V2+, 1000 ep.)"),
    ("mocov3", "mocov3_cifar10.py", "no figure checked for this recipe"),
    ("nnclr", "nnclr_cifar10.py", "91.9% linear (solo-learn, 1000 ep.)"),
    ("simsiam", "simsiam_cifar10.py", "91.8% linear (SimSiam paper, 800 ep.)"),
    ("barlow_twins", "barlow_twins_cifar10.py", "92.1% linear (solo-learn, 1000 ep.)"),
    ("vicreg", "vicreg_cifar10.py", "92.1% linear (solo-learn, 1000 ep.)"),
    ("vicregl", "vicregl_cifar10.py", "no CIFAR-10 figure published"),
    ("sie", "sie_cifar10.py", "no CIFAR-10 figure published (paper: 3DIEBench)"),
    ("wmse", "wmse_cifar10.py", "88.7% linear (solo-learn, 1000 ep.)"),
    ("swav", "swav_cifar10.py", "89.2% linear (solo-learn, 1000 ep.)"),
    ("dino", "dino_cifar10.py", "89.5% linear (solo-learn, 1000 ep.)"),
    ("dinov2", "dinov2_cifar10.py", "no CIFAR-10 pretraining figure published"),
    ("lejepa", "lejepa_cifar10.py", "91.0% linear (EB-JEPA, SIGReg, 300 ep.)"),
    ("ijepa", "ijepa_cifar10.py", "no CIFAR-10 figure published (paper: ImageNet ViT-B/L/H)"),
    ("tico", "tico_cifar10.py", "no CIFAR-10 figure checked"),
    ("mmcr", "mmcr_cifar10.py", "no CIFAR-10 figure checked"),
    ("mae", "mae_cifar10.py", "89.8% fine-tuned (IcarusWizard/MAE, ViT-T/2, 2000 ep.)"),
    ("emp_ssl", "emp_ssl_cifar10.py", "85.1% linear (EMP-SSL paper, 1 ep. x 200 patches)"),
    ("dcl", "dcl_cifar10.py", "68.2% linear on ImageNet-1K (DCL paper, batch 256, 200 ep.)"),
    ("supcon", "supcon_cifar10.py", "96.0% (SupCon paper, labels, ResNet-50)"),
    ("rotnet", "rotnet_cifar10.py", "89.1% non-linear on NIN block 2 (RotNet paper, 100 ep.)"),
    ("jigsaw", "jigsaw_cifar10.py", "no CIFAR-10 figure published (paper: ImageNet)"),
    ("npid", "npid_cifar10.py", "no CIFAR-10 figure checked"),
    ("deepcluster", "deepcluster_cifar10.py", "no CIFAR-10 figure published (paper: ImageNet)"),
    ("dae", "dae_cifar10.py", "no CIFAR-10 figure published"),
    ("context_encoder", "context_encoder_cifar10.py", "no CIFAR-10 figure published"),
    ("colorization", "colorization_cifar10.py", "no CIFAR-10 figure published"),
    ("cpc", "cpc_cifar10.py", "no CIFAR-10 figure published (paper: ImageNet)"),
)

# Every row's whole command (start-up, compilation, training, final kNN) must fit this.
BUDGET_SECONDS = 30 * 60

_ROOT = flags.DEFINE_string("root", None, "Directory holding one workdir per method.")
_METHODS = flags.DEFINE_list("methods", None, "Methods to run (default: all, in table order).")
_COLLECT = flags.DEFINE_bool("collect", False, "Only print the table of finished runs.")
_RECORDS_JSON = flags.DEFINE_string(
    "records_json", None, "Also write all records as a JSON list here."
)
_EXTRA = flags.DEFINE_multi_string("override", [], "Extra --config.* flags for every run.")
flags.mark_flag_as_required("root")


def recipe(workdir: str) -> dict:
    """Training crop size, epochs and kNN image size from the run's ``config.json`` (if written).

    A time-budgeted run's ``config.json`` holds the epochs it fitted.
    """
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        return {}
    with open(config_path) as f:
        config = json.load(f)
    return {
        "crop_px": config["data"]["image_size"],
        "epochs": config["train"]["epochs"],
        "eval_px": config["data"]["eval_image_size"],
    }


def summarize(workdir: str) -> dict:
    """The final kNN figures, throughput and loss of one finished run's ``metrics.jsonl``."""
    records = plots.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    final = [r for r in records if "knn/top1" in r]
    if not final:
        raise ValueError(f"{workdir}: no final kNN record in metrics.jsonl; did the run finish?")
    last = final[-1]
    rates = [r["perf/img_per_s"] for r in records if "perf/img_per_s" in r]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    return {
        **recipe(workdir),
        "step": last["step"],
        "knn_top1_k200": last.get("knn/top1_k200", last["knn/top1"]),
        "knn_top1_k20": last.get("knn/top1_k20"),
        "knn_eval_seconds": last.get("perf/knn_eval_seconds"),
        "median_img_per_s": statistics.median(rates) if rates else None,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
    }


# /proc/cpuinfo flags, widest first.
_ISA = (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def host_cpu() -> str:
    """The CPU the runs time, e.g. ``"AMD EPYC, 2 cores, AVX2"``: wall times depend on it.

    Hosts of one kind differ (an AVX2-only x86 ran the SimCLR ``cpu`` step at 218 img/s where
    an AMX-capable one ran it at ~350), so every record names its host's model, core count
    and widest vector/matrix extension.
    """
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    isa = next((name for flag, name in _ISA if flag in flags), None)
    parts = [model, f"{os.cpu_count()} cores"] + ([isa] if isa else [])
    return ", ".join(parts)


def run_one(method: str, config_file: str, root: str, overrides: list[str]) -> dict:
    workdir = os.path.join(root, method)
    command = [
        sys.executable, "-m", "jaxssl.train",
        f"--config={os.path.join('jaxssl', 'configs', config_file)}:cpu",
        f"--workdir={workdir}", "--config.train.progress_bar=false", *overrides,
    ]  # fmt: skip
    print(f"[{method}] {' '.join(command[2:])}", flush=True)
    start = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "zoo_stdout.log"), "w") as log:
        code = subprocess.run(command, cwd=_REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(
            f"[{method}] exited with {code} after {wall:.0f} s; see "
            f"{os.path.join(workdir, 'zoo_stdout.log')}. Fix it, delete {workdir} and rerun."
        )
    record = {
        "method": method,
        "command": f"jaxssl train --config jaxssl/configs/{config_file}:cpu --workdir W "
        + " ".join(overrides),
        "wall_seconds": wall,
        "host": host_cpu(),
        **summarize(workdir),
    }
    with open(os.path.join(workdir, "zoo.json"), "w") as f:
        json.dump(record, f, indent=2)
    return record


def table(records: list[dict]) -> str:
    published = {m: p for m, _, p in METHODS}
    lines = [
        "| method | `cpu` preset | crops, epochs | wall time | steps | img/s | host | kNN k=200 | kNN k=20 | loss first -> last | full recipe targets |",  # noqa: E501
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        minutes, seconds = divmod(round(r["wall_seconds"]), 60)
        wall = f"{minutes} min {seconds:02d} s"
        if r["wall_seconds"] > BUDGET_SECONDS:
            wall += " (over budget)"
        k20 = f"{r['knn_top1_k20']:.3f}" if r.get("knn_top1_k20") is not None else "-"
        recipe = f"{r['crop_px']} px, {r['epochs']:.3g}" if "crop_px" in r else "-"
        if r.get("eval_px", 32) != 32:
            recipe += f" (kNN at {r['eval_px']} px)"
        lines.append(
            f"| {r['method']} | `{r['method']}_cifar10.py:cpu` | {recipe} | {wall} | "
            f"{r['step']} | {r['median_img_per_s']:.0f} | {r.get('host', '-')} | "
            f"**{r['knn_top1_k200']:.3f}** | {k20} | "
            f"{r['first_loss']:.3g} -> {r['last_loss']:.3g} | {published.get(r['method'], '-')} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    root = os.path.abspath(_ROOT.value)
    selected = _METHODS.value or [m for m, _, _ in METHODS]
    known = {m: c for m, c, _ in METHODS}
    unknown = sorted(set(selected) - set(known))
    if unknown:
        raise app.UsageError(f"Unknown methods {unknown}; valid: {sorted(known)}.")
    records = []
    for method in selected:
        done = os.path.join(root, method, "zoo.json")
        if os.path.exists(done):
            with open(done) as f:  # records written before the recipe columns lack them
                records.append({**recipe(os.path.join(root, method)), **json.load(f)})
        elif not _COLLECT.value:
            if os.path.exists(os.path.join(root, method, "metrics.jsonl")):
                raise RuntimeError(
                    f"{os.path.join(root, method)} holds an unfinished or untimed run; its wall "
                    "time would be wrong. Move it away and rerun."
                )
            records.append(run_one(method, known[method], root, _EXTRA.value))
            print(table(records[-1:]).splitlines()[-1], flush=True)
    if _RECORDS_JSON.value:
        with open(_RECORDS_JSON.value, "w") as f:
            json.dump(records, f, indent=2)
    print(table(records))


if __name__ == "__main__":
    app.run(main)
