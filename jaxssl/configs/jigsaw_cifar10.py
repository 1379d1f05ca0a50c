"""Jigsaw puzzles on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/jigsaw_cifar10.py:NAME``):

* default: Noroozi & Favaro's recipe carried to 32 px images: one view per image (crop and
  flip, no colour augmentation), a 3x3 grid of 10 px cells on the top-left 30 px, 8 px tiles
  at random offsets in them (the paper: 64 px tiles in 75 px cells), each tile standardized
  alone, 1000 permutations of maximal Hamming distance (the paper's default; 100 gave its best
  transfer), a 2-layer 1024-wide head over the 9 concatenated tile features, SGD 0.01 x B/256
  with momentum, 350 epochs (the paper: 350k iterations of batch 256 on ImageNet). The paper
  reports ImageNet transfer only; no CIFAR-10 figure is published, and this preset is not run
  here (needs an accelerator).

    jaxssl train --config jaxssl/configs/jigsaw_cifar10.py --workdir /tmp/jigsaw_c10

* ``cpu``: the shared 2-core budget (quarter-width ResNet-18) for 26 minutes of training, 100
  permutations, 24 px views (8 px cells, 7 px tiles), batch 128 puzzles, LARS, kNN on 24 px
  test images. docs/training.md lists its measured row.

    jaxssl train --config jaxssl/configs/jigsaw_cifar10.py:cpu --workdir /tmp/jigsaw_cpu

* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Noroozi & Favaro, Unsupervised Learning of Visual Representations by Solving Jigsaw
  Puzzles, ECCV 2016. https://arxiv.org/abs/1603.09246
"""

import ml_collections

from jaxssl.configs import base, rotnet_cifar10


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "jigsaw_cifar10")
    config = base.get_base_config()
    rotnet_cifar10.apply_pretext_views(config)
    config.data.crop_scale = (0.6, 1.0)
    config.model.backbone = "resnet18"
    config.method = ml_collections.ConfigDict()
    config.method.name = "jigsaw"
    config.method.grid = 3
    config.method.tile_size = 8  # <= data.image_size // grid; the rest of a cell is the gap
    config.method.num_permutations = 1000
    config.method.permutation_seed = 0
    config.method.standardize_tiles = True
    config.method.head_hidden_dim = 1024
    config.method.head_layers = 2
    config.train.batch_size = 256
    config.train.epochs = 350.0
    config.optim.name = "sgd"
    config.optim.base_lr = 0.01
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-4
    config.optim.warmup_epochs = 1.0
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.every_steps = 10_000

    if preset == "cpu":
        base.apply_cpu_budget(config, image_size=24, epochs=6.0, minutes=26.0)
        config.data.crop_scale = (0.6, 1.0)
        config.data.eval_image_size = 24
        config.train.batch_size = 128
        config.method.tile_size = 7
        config.method.num_permutations = 100
        config.method.head_hidden_dim = 512
        config.optim.name = "lars"
        config.optim.base_lr = 0.4
        config.optim.trust_coefficient = 0.02
        config.optim.weight_decay = 1e-5

    if preset == "smoke":
        base.apply_smoke(config)
        config.data.image_size = 24
        config.method.tile_size = 7
        config.method.num_permutations = 24
        config.method.head_hidden_dim = 32
    return config
