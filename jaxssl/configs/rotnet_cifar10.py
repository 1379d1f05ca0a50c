"""RotNet (rotation prediction) on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/rotnet_cifar10.py:NAME``):

* default: Gidaris et al.'s CIFAR-10 recipe as far as it carries to a ResNet-18: one view per
  image (random crop and flip, no colour augmentation), all four rotations in the batch, SGD
  with momentum 0.9 and weight decay 5e-4 at lr 0.1 per 128 images, 100 epochs. The paper
  decays the lr by 5x at epochs 30, 60 and 80; jaxssl's schedule is warmup + cosine. The paper
  reports 89.06% on CIFAR-10 for a non-linear classifier on the second conv block of a
  4-block NIN (91.16% with a conv classifier); not verified here (needs an accelerator).

    jaxssl train --config jaxssl/configs/rotnet_cifar10.py --workdir /tmp/rotnet_c10

* ``cpu``: the shared 2-core budget (``base.apply_cpu_budget``: quarter-width ResNet-18) at
  16 px training crops for 26 minutes of training, batch 128 images (512 rotated), kNN on
  24 px test images. docs/training.md lists its measured row.

    jaxssl train --config jaxssl/configs/rotnet_cifar10.py:cpu --workdir /tmp/rotnet_cpu

* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Gidaris, Singh & Komodakis, Unsupervised Representation Learning by Predicting Image
  Rotations, ICLR 2018. https://arxiv.org/abs/1803.07728
"""

import ml_collections

from jaxssl.configs import base


def apply_pretext_views(config: ml_collections.ConfigDict) -> None:
    """One view per image, crop and flip only: the pretext tasks' augmentation (no colour
    jitter, grayscale, blur or solarization; the task itself is the signal)."""
    config.data.num_views = 1
    config.data.color_jitter_prob = 0.0
    config.data.grayscale_prob = 0.0
    config.data.blur_prob = 0.0
    config.data.solarize_prob = 0.0


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "rotnet_cifar10")
    config = base.get_base_config()
    apply_pretext_views(config)
    # A pad-4 random crop of a 32 px image keeps ~77-100% of it; scale (0.6, 1) is close.
    config.data.crop_scale = (0.6, 1.0)
    config.model.backbone = "resnet18"
    config.method = ml_collections.ConfigDict()
    config.method.name = "rotnet"
    # The rotation classifier on the pooled features: an MLP (BN + ReLU on hidden layers).
    config.method.head_hidden_dim = 1024
    config.method.head_layers = 2
    config.train.batch_size = 128
    config.train.epochs = 100.0
    config.optim.name = "sgd"
    config.optim.base_lr = 0.2  # 0.1 at batch 128
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-4
    config.optim.warmup_epochs = 1.0
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.every_steps = 10_000

    if preset == "cpu":
        base.apply_cpu_budget(config, image_size=16, epochs=6.0, minutes=26.0)
        config.data.crop_scale = (0.6, 1.0)
        config.data.eval_image_size = 24
        config.train.batch_size = 128
        config.method.head_hidden_dim = 512

    if preset == "smoke":
        base.apply_smoke(config)
        config.method.head_hidden_dim = 32
    return config
