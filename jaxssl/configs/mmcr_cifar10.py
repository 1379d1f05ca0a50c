"""MMCR (maximum manifold capacity representations) on CIFAR-10 with a ResNet-18.

Presets (``--config jaxssl/configs/mmcr_cifar10.py:NAME``):

* default: the reference's CIFAR-10 settings (ThomasYerxa/mmcr ``pretrain_cifar_stl.py`` and
  ``mmcr/cifar_stl/train.py``: 40 views of each of 32 images per batch, Adam at a constant lr
  1e-3 with weight decay 1e-6, lambda 0, projector 512 -> 128, 500 epochs) on jaxssl's
  ResNet-18 (the reference trains its own ResNet-50 variant) with AdamW (decoupled decay, the
  same 1e-6). No published CIFAR-10 figure was checked here, so none is claimed. For an
  accelerator; not run here.

    python -m jaxssl.train --config jaxssl/configs/mmcr_cifar10.py --workdir /tmp/mmcr

* ``cpu``: a 2-core CPU in about 30 minutes: the shared CPU budget with 16 px crops, 64 images
  x 8 views per batch (512 views a step, as two-view presets at batch 256), 26 minutes of
  training (time-budgeted), kNN on 24 px images.

    python -m jaxssl.train --config jaxssl/configs/mmcr_cifar10.py:cpu --workdir /tmp/mmcr_cpu

* ``smoke``: a tiny net on fake data, 4 views, a handful of steps. Used by tests.

References:
  Yerxa, Kuang, Simoncelli & Chung, Learning Efficient Coding of Natural Images with Maximum
  Manifold Capacity Representations, NeurIPS 2023. https://arxiv.org/abs/2303.03307
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "mmcr_cifar10")
    config = base.get_base_config()
    config.model.backbone = "resnet18"
    config.model.projector_hidden_dim = 512
    config.model.projector_dim = 128
    config.data.num_views = 40
    config.train.batch_size = 32
    config.train.epochs = 500.0
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.every_steps = 10_000
    config.optim.name = "adamw"
    config.optim.base_lr = 1e-3 * 256 / 32  # lr 1e-3 at the reference's batch of 32 images
    config.optim.weight_decay = 1e-6
    config.optim.warmup_epochs = 0.0
    config.optim.end_lr_factor = 1.0  # constant, as the reference
    config.method = ml_collections.ConfigDict()
    config.method.name = "mmcr"
    config.method.lmbda = 0.0  # the reference's CIFAR default

    if preset == "cpu":
        base.apply_cpu_budget(config, image_size=16, epochs=6.0, minutes=26.0)
        config.data.num_views = 8
        config.train.batch_size = 64
        config.data.eval_image_size = 24  # FixRes: see vicreg_cifar10.py:cpu
        config.optim.warmup_epochs = 0.0  # the reference's constant lr, also here

    if preset == "smoke":
        base.apply_smoke(config)
        config.data.num_views = 4
    return config
