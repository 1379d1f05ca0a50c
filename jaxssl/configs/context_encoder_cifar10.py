"""Context encoder (inpainting) on CIFAR-10 with a ResNet-18 encoder (CIFAR stem).

Presets (``--config jaxssl/configs/context_encoder_cifar10.py:NAME``):

* default: Pathak et al.'s central-region task carried to 32 px: the central 16 x 16 square
  (a quarter of the area) filled with the mean colour, the encoder's last feature maps through
  a channel-wise fully connected layer and a 3-stage up-convolution decoder, squared error on
  the removed region only (the paper's reconstruction loss; its adversarial loss and 10x
  weighted overlap are not implemented), AdamW lr 1e-3 x B/256, 100 epochs. The paper reports
  ImageNet-pretrained transfer (PASCAL VOC); no CIFAR-10 figure is published, and this preset
  is not run here. ``--config.method.corruption=random_block`` gives the paper's random-block
  variant.

    jaxssl train --config jaxssl/configs/context_encoder_cifar10.py --workdir /tmp/ce_c10

* ``cpu``: the shared 2-core budget (quarter-width ResNet-18) at 16 px crops for 26 minutes of
  training, kNN on 24 px test images.
* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Pathak, Krahenbuhl, Donahue, Darrell & Efros, Context Encoders: Feature Learning by
  Inpainting, CVPR 2016. https://arxiv.org/abs/1604.07379
"""

import ml_collections

from jaxssl.configs import base, dae_cifar10


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "context_encoder_cifar10")
    config = base.get_base_config()
    dae_cifar10.apply_autoencoder(config, "center_block")
    if preset == "cpu":
        dae_cifar10.apply_cpu(config)
    if preset == "smoke":
        base.apply_smoke(config)
        config.optim.base_lr = 0.01  # moves a width-4 net visibly in the tests' few steps
        config.method.decoder_channels = (8, 8, 8)
    return config
