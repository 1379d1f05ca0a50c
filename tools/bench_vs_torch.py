"""jaxssl's SimCLR train step against PyTorch on the same CPU, measured back to back.

    python tools/bench_vs_torch.py --torch_python TORCH_VENV/bin/python \
        [--peer_script peer_step_bench.py] [--models resnet18,vit_tiny] [--rounds 1] \
        [--steps 5] [--precisions fp32,bf16] [--out vs_torch.json]

PyTorch runs in its own venv (``pip install torch torchvision``; jaxssl never imports it),
given by --torch_python. Per round and model, alternating so that machine noise hits both
sides alike: jaxssl float32, PyTorch eager float32 (as it starts, and again with jaxssl's
glibc malloc tunables, `jaxssl/platform.py`, which jaxssl's entry points set for themselves),
jaxssl bfloat16 (fp32 parameters and accumulation), PyTorch bf16 ``torch.autocast``. The
PyTorch models are `tools/torch_peer/step.py`'s copies of jaxssl's (ResNet-18 CIFAR stem /
ViT-Tiny/4, SimCLR projector, both views in one batch, SGD); with --peer_script, the
project-independent reference script (torchvision ResNet-18 as solo-learn builds it, eager
and torch.compile) also runs. Same global batch on both sides: B=256 per view, 2 views, 32 px. Each
configuration runs in a fresh process (the step alone, synthetic batch; see
`tools/benchmark.py`). Prints and writes the medians and jaxssl / PyTorch ratios.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from jaxssl import platform  # only the malloc settings; no JAX import

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# model -> (jaxssl config overrides, tools/torch_peer/step.py arguments)
MODELS = {
    "resnet18": (
        [
            "--config=jaxssl/configs/simclr_cifar10.py",
            "--config.model.width=64",
            "--config.data.image_size=32",
            "--config.model.conv_impl={conv_impl}",
        ],
        ["--model", "resnet18"],
    ),
    "vit_tiny": (
        ["--config=jaxssl/configs/simclr_vit_cifar10.py", "--config.data.image_size=32"],
        ["--model", "vit_tiny", "--image_size", "32", "--patch", "4"],
    ),
}


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def run_jaxssl(model: str, dtype: str, args) -> float:
    overrides, _ = MODELS[model]
    command = [
        sys.executable,
        os.path.join(HERE, "benchmark.py"),
        *(o.format(conv_impl=args.conv_impl) for o in overrides),
        "--config.train.batch_size=256",
        "--config.model.projector_hidden_dim=2048",
        "--config.model.projector_dim=128",
        "--config.model.projector_layers=2",
        "--config.optim.name=sgd",
        f"--config.model.dtype={dtype}",
        f"--steps={args.steps}",
        "--pipeline_batches=0",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = _json_lines(done.stdout)
    if done.returncode or not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return lines[-1]["step_img_per_s"]


def run_torch(model: str, mode: str, args, malloc_tunables: bool = False) -> float:
    _, torch_args = MODELS[model]
    command = [
        args.torch_python,
        os.path.join(HERE, "torch_peer", "step.py"),
        *torch_args,
        "--batch=256",
        f"--steps={args.steps}",
        "--warmup=2",
        f"--threads={args.threads}",
        f"--mode={mode}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if malloc_tunables:
        env["GLIBC_TUNABLES"] = platform.MALLOC_TUNABLES
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    lines = _json_lines(done.stdout)
    if done.returncode or not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return lines[-1]["result"]["images_per_s"]


def run_peer(args) -> dict[str, float]:
    command = [
        args.torch_python,
        args.peer_script,
        "--batch=256",
        f"--steps={args.steps}",
        f"--threads={args.threads}",
        "--mode=eager,compile",
        "--no-flops",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    results = [line["result"] for line in _json_lines(done.stdout) if "result" in line]
    return {r["mode"]: r["images_per_s"] for r in results if "images_per_s" in r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch_python", required=True, help="python of a venv with torch")
    parser.add_argument("--peer_script", help="the reference peer_step_bench.py, optional")
    parser.add_argument("--models", default="resnet18,vit_tiny")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--conv_impl", default="native", help="jaxssl ResNet convolutions")
    parser.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16")
    parser.add_argument("--out")
    args = parser.parse_args()

    samples: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for model in args.models.split(","):
            runs = {
                "fp32": (
                    (f"{model}/jaxssl_fp32", lambda m=model: run_jaxssl(m, "float32", args)),
                    (f"{model}/torch_eager_fp32", lambda m=model: run_torch(m, "eager", args)),
                    (
                        f"{model}/torch_eager_fp32_malloc_tunables",
                        lambda m=model: run_torch(m, "eager", args, malloc_tunables=True),
                    ),
                ),
                "bf16": (
                    (f"{model}/jaxssl_bf16", lambda m=model: run_jaxssl(m, "bfloat16", args)),
                    (f"{model}/torch_autocast_bf16", lambda m=model: run_torch(m, "bf16", args)),
                ),
            }
            for name, measure in (r for p in args.precisions.split(",") for r in runs[p]):
                samples.setdefault(name, []).append(measure())
                print(f"{name}: {samples[name][-1]:.1f} img/s", file=sys.stderr, flush=True)
        if args.peer_script:
            for mode, value in run_peer(args).items():
                samples.setdefault(f"resnet18/peer_script_{mode}", []).append(value)
                print(f"resnet18/peer_script_{mode}: {value:.1f} img/s", file=sys.stderr)

    medians = {name: round(statistics.median(v), 1) for name, v in samples.items()}
    ratios = {}
    for model in args.models.split(","):
        for precision, ours, theirs in (
            ("fp32", "jaxssl_fp32", "torch_eager_fp32"),
            ("fp32_both_malloc_tunables", "jaxssl_fp32", "torch_eager_fp32_malloc_tunables"),
            ("bf16", "jaxssl_bf16", "torch_autocast_bf16"),
        ):
            if f"{model}/{ours}" in medians and f"{model}/{theirs}" in medians:
                ratio = medians[f"{model}/{ours}"] / medians[f"{model}/{theirs}"]
                ratios[f"{model}/{precision}"] = round(ratio, 2)
    result = {
        "img_per_s": medians,
        "jaxssl_over_torch": ratios,
        "rounds": args.rounds,
        "conv_impl": args.conv_impl,
        "images_per_step": 512,
    }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
