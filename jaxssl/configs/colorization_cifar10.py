"""Colorization on CIFAR-10 with a ResNet-18 encoder (CIFAR stem).

Presets (``--config jaxssl/configs/colorization_cifar10.py:NAME``):

* default: Zhang et al.'s classification loss over the in-gamut ab bins with soft targets and
  class rebalancing (lambda 1/2), the lightness alone as input, one view per image with crop
  and flip, a 3-stage up-convolution decoder, AdamW lr 1e-3 x B/256, 100 epochs. The paper
  trains on ImageNet (VGG-style net, 450k iterations of 40 images) and reports transfer; no
  CIFAR-10 figure is published, and this preset is not run here.

    jaxssl train --config jaxssl/configs/colorization_cifar10.py --workdir /tmp/color_c10

* ``cpu``: the shared 2-core budget (quarter-width ResNet-18) at 16 px crops for 26 minutes of
  training, kNN on 24 px test images.
* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Zhang, Isola & Efros, Colorful Image Colorization, ECCV 2016.
  https://arxiv.org/abs/1603.08511
"""

import ml_collections

from jaxssl.configs import base, dae_cifar10


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "colorization_cifar10")
    config = base.get_base_config()
    dae_cifar10.apply_autoencoder(config, "drop_pixels")
    config.method = ml_collections.ConfigDict()
    config.method.name = "colorization"
    config.method.target = "classification"  # classification | regression
    config.method.rebalance_mix = 0.5  # lambda
    config.method.distribution_momentum = 0.99  # running ab-bin frequencies
    config.method.decoder_channels = (256, 128, 64)
    if preset == "cpu":
        dae_cifar10.apply_cpu(config)
    if preset == "smoke":
        base.apply_smoke(config)
        config.optim.base_lr = 0.01  # moves a width-4 net visibly in the tests' few steps
        config.method.decoder_channels = (8, 8, 8)
    return config
