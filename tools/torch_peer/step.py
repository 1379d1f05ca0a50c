"""PyTorch reference for `tools/bench_vs_torch.py`: one SimCLR training step on CPU.

Runs only in a separate PyTorch venv; jaxssl never imports torch. The models mirror jaxssl's:

* ``resnet18``: torchvision's ResNet-18 with the CIFAR stem (3x3/1 conv, padding 1, no
  max-pool), like `jaxssl.models.resnet` with ``stem="cifar"``;
* ``vit_tiny``: `jaxssl.models.vit.ViT` (192-d, 12 pre-norm blocks, 3 heads, MLP 768, exact
  GELU, learned position embeddings, CLS token, final LayerNorm, CLS pooling);

each with jaxssl's SimCLR projector (Linear -> BatchNorm1d -> ReLU -> Linear 2048 -> 128),
both views as one batch (global BatchNorm, as jaxssl), NT-Xent, SGD with momentum. Modes:
``eager`` (float32) and ``bf16`` (``torch.autocast`` bfloat16). Prints one JSON line per mode:
the median images/s (2B images per step) of --steps timed steps after --warmup.

    python step.py --model resnet18 --batch 256 --steps 5 --warmup 2 --threads 2 \
        --mode eager,bf16
"""

import argparse
import json
import statistics
import time

import torch
import torchvision
from torch import nn


class ViT(nn.Module):
    def __init__(self, image_size, patch, dim=192, depth=12, heads=3):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2, dim))
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            4 * dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
            layer_norm_eps=1e-6,
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm(self.blocks(x))[:, 0]


def resnet18():
    backbone = torchvision.models.resnet18()
    backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    backbone.maxpool = nn.Identity()
    backbone.fc = nn.Identity()
    return backbone, 512


def ntxent(z, temperature):
    z = nn.functional.normalize(z, dim=1)
    n = z.shape[0] // 2
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return nn.functional.cross_entropy(logits.float(), labels)


def bench(mode, args):
    torch.manual_seed(0)
    if args.model == "resnet18":
        backbone, dim = resnet18()
    else:
        backbone, dim = ViT(args.image_size, args.patch), 192
    model = nn.Sequential(
        backbone,
        nn.Linear(dim, 2048, bias=False),
        nn.BatchNorm1d(2048),
        nn.ReLU(),
        nn.Linear(2048, 128),
    ).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    b, s = args.batch, args.image_size
    x = torch.randn(2 * b, 3, s, s)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            loss = ntxent(model(x), 0.2)
        loss.backward()
        opt.step()
        return float(loss.detach())

    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "model": args.model,
        "mode": mode,
        "batch_per_view": b,
        "images_per_s": 2 * b / median,
        "median_ms_per_step": median * 1e3,
        "threads": torch.get_num_threads(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=("resnet18", "vit_tiny"), default="resnet18")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", default="eager,bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for mode in args.mode.split(","):
        print(json.dumps({"result": bench(mode.strip(), args)}), flush=True)


if __name__ == "__main__":
    main()
