"""Denoising autoencoder on CIFAR-10 with a ResNet-18 encoder (CIFAR stem).

Presets (``--config jaxssl/configs/dae_cifar10.py:NAME``):

* default: masking noise on 25% of the pixels (Vincent et al. 2008 report their best
  features at 25% destruction), every pixel reconstructed through a 3-stage up-convolution
  decoder, one view per image with crop and flip, AdamW lr 1e-3 x B/256, 100 epochs. The
  paper's networks are stacked single-layer autoencoders on MNIST variants; no CIFAR-10 figure
  is published, and this preset is not run here.

    jaxssl train --config jaxssl/configs/dae_cifar10.py --workdir /tmp/dae_c10

* ``cpu``: the shared 2-core budget (quarter-width ResNet-18) at 16 px crops for 26 minutes of
  training, kNN on 24 px test images.
* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Vincent, Larochelle, Bengio & Manzagol, Extracting and Composing Robust Features with
  Denoising Autoencoders, ICML 2008.
"""

import ml_collections

from jaxssl.configs import base, rotnet_cifar10


def apply_autoencoder(config: ml_collections.ConfigDict, corruption: str) -> None:
    """The reconstruction tasks' shared recipe: one view with crop and flip, a ResNet-18
    encoder, a 3-stage decoder (256, 128, 64 channels at full width), AdamW, 100 epochs."""
    rotnet_cifar10.apply_pretext_views(config)
    config.data.crop_scale = (0.6, 1.0)
    config.model.backbone = "resnet18"
    config.method = ml_collections.ConfigDict()
    config.method.name = "dae" if corruption == "drop_pixels" else "context_encoder"
    config.method.corruption = corruption
    config.method.corruption_rate = 0.25
    config.method.corrupted_weight = 1.0
    config.method.block_fraction = 0.5
    config.method.decoder_channels = (256, 128, 64)
    config.train.batch_size = 256
    config.train.epochs = 100.0
    config.optim.name = "adamw"
    config.optim.base_lr = 1e-3
    config.optim.weight_decay = 0.05
    config.optim.warmup_epochs = 1.0
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.every_steps = 10_000


def apply_cpu(config: ml_collections.ConfigDict) -> None:
    """The ``cpu`` preset of the reconstruction tasks."""
    base.apply_cpu_budget(config, image_size=16, epochs=6.0, minutes=26.0)
    config.data.crop_scale = (0.6, 1.0)
    config.data.eval_image_size = 24
    config.method.decoder_channels = (128, 64, 32)
    config.optim.name = "adamw"
    config.optim.base_lr = 2e-3


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "dae_cifar10")
    config = base.get_base_config()
    apply_autoencoder(config, "drop_pixels")
    if preset == "cpu":
        apply_cpu(config)
    if preset == "smoke":
        base.apply_smoke(config)
        config.optim.base_lr = 0.01  # moves a width-4 net visibly in the tests' few steps
        config.method.decoder_channels = (8, 8, 8)
    return config
