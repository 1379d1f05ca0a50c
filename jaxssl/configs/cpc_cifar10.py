"""CPC v2 on CIFAR-10 with a ResNet-18 patch encoder (CIFAR stem).

Presets (``--config jaxssl/configs/cpc_cifar10.py:NAME``):

* default: CPC v2's grid carried to 32 px images: 8 px patches every 4 px (a 7 x 7 grid with
  half overlap, as the paper's 64 px patches every 32 px of 224 px crops), predictions 2 to 4
  rows below from a 4-block row-causal context network, one view per image with crop and
  flip, Adam lr 1e-3 x B/256 (the paper: Adam 4e-4), 200 epochs. The paper reports ImageNet
  linear and low-label results; no CIFAR-10 figure is published, and this preset is not run
  here.

    jaxssl train --config jaxssl/configs/cpc_cifar10.py --workdir /tmp/cpc_c10

* ``cpu``: the shared 2-core budget (quarter-width ResNet-18), 24 px views (a 5 x 5 grid of
  8 px patches), batch 128, for 26 minutes of training, kNN on 24 px test images.
* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Henaff et al., Data-Efficient Image Recognition with Contrastive Predictive Coding,
  ICML 2020. https://arxiv.org/abs/1905.09272
"""

import ml_collections

from jaxssl.configs import base, rotnet_cifar10


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "cpc_cifar10")
    config = base.get_base_config()
    rotnet_cifar10.apply_pretext_views(config)
    config.data.crop_scale = (0.6, 1.0)
    config.model.backbone = "resnet18"
    config.method = ml_collections.ConfigDict()
    config.method.name = "cpc"
    config.method.patch_size = 8
    config.method.patch_stride = 4
    config.method.offsets = (2, 3, 4)  # rows below; 1 would share half its pixels
    config.method.context_width = 512
    config.method.context_depth = 4
    config.train.batch_size = 256
    config.train.epochs = 200.0
    config.optim.name = "adamw"
    config.optim.base_lr = 1e-3
    config.optim.weight_decay = 1e-5
    config.optim.warmup_epochs = 1.0
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.every_steps = 10_000

    if preset == "cpu":
        base.apply_cpu_budget(config, image_size=24, epochs=6.0, minutes=26.0)
        config.data.crop_scale = (0.6, 1.0)
        config.data.eval_image_size = 24
        config.train.batch_size = 128
        config.method.offsets = (2, 3)
        config.method.context_width = 256
        config.method.context_depth = 2
        config.optim.name = "adamw"
        config.optim.base_lr = 2e-3

    if preset == "smoke":
        base.apply_smoke(config)
        config.optim.base_lr = 0.01  # moves a width-4 net visibly in the tests' few steps
        config.data.image_size = 24
        config.method.offsets = (2, 3)
        config.method.context_width = 16
        config.method.context_depth = 1
    return config
