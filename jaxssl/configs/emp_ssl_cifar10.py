"""EMP-SSL on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/emp_ssl_cifar10.py:NAME``):

* default: the paper's one-epoch CIFAR-10 setup as its reference code runs it: 20 patches of
  32 px per image (random resized crops of 1/4 of the area, square), SimCLR colour
  augmentations, batch 100 images, LARS (lr 0.3, weight decay 1e-4), projector 4096 -> 1024,
  TCR eps 0.2, invariance weight 200, 1 epoch. The paper reports 85.1% on CIFAR-10 after one
  epoch with 200 patches (fewer with 20); it evaluates with the bag-of-features embedding
  (the mean over patches), which this config selects for every evaluator
  (``config.evals.patches``, same patches as training; ``--config.evals.patches.num=0``
  embeds the full image instead). For 200 patches: ``--config.data.num_views=200``. Not run
  here.

    python -m jaxssl.train --config jaxssl/configs/emp_ssl_cifar10.py --workdir /tmp/emp_c10

* ``cpu``: quarter-width ResNet-18, 8 patches of 16 px (from 1/4 of the area), 1 epoch.
  Measured (``tools/method_zoo.py --methods emp_ssl``): kNN top-1 0.431 (k=20: 0.446) on the
  mean embedding of 8 such patches per image, in 23 min 57 s on a 2-core AVX-512 host
  (~368 patches/s; the patch-bag kNN pass is part of the time). The patch-to-mean cosine
  stays at ~0.87 from the first steps while the coding rate rises (80.7 -> 83.7): one epoch
  of 8 small patches is far from the paper's 200 patches of 32 px.

* ``smoke``: tiny model, fake data, 4 patches. Used by tests.

References:
  Tong, Chen, Ma & LeCun, EMP-SSL: Towards Self-Supervised Learning in One Training Epoch,
  2023. https://arxiv.org/abs/2304.03977
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "emp_ssl_cifar10")
    config = base.get_base_config()
    config.data.num_views = 20  # patches per image
    config.data.crop_scale = (0.25, 0.25)
    config.data.crop_ratio = (1.0, 1.0)
    config.data.blur_prob = 0.1
    config.data.solarize_prob = 0.1
    config.model.backbone = "resnet18"
    config.model.projector_hidden_dim = 4096
    config.model.projector_dim = 1024
    config.method = ml_collections.ConfigDict()
    config.method.name = "emp_ssl"
    config.method.eps = 0.2
    config.method.invariance_weight = 200.0
    config.method.tcr_weight = 1.0
    config.train.batch_size = 100
    config.train.epochs = 1.0
    config.optim.name = "lars"
    config.optim.base_lr = 0.3 * 256 / 100  # lr 0.3 at batch 100
    config.optim.weight_decay = 1e-4
    config.optim.warmup_epochs = 0.0
    config.train.checkpoint_every_steps = 100
    # EMP-SSL's evaluation: an image's embedding is the mean over patches drawn like the
    # training patches (count, size, area and aspect follow the data fields above).
    config.evals.patches.num = config.data.get_ref("num_views")
    config.evals.patches.size = config.data.get_ref("image_size")
    config.evals.patches.scale = config.data.get_ref("crop_scale")
    config.evals.patches.ratio = config.data.get_ref("crop_ratio")
    config.mesh.data = -1

    if preset == "cpu":
        base.apply_cpu_budget(config)
        config.data.num_views = 8
        config.data.image_size = 16
        config.data.crop_scale = (0.25, 0.25)
        config.train.batch_size = 64
        config.train.epochs = 1.0
        config.optim.warmup_epochs = 0.0
        config.model.projector_hidden_dim = 2048
        config.model.projector_dim = 512

    if preset == "smoke":
        base.apply_smoke(config)
        config.data.num_views = 4
        config.optim.warmup_epochs = 0.0
        # The invariance weight (200) makes gradients ~10x SimCLR's; as for VICReg, a smaller
        # lr keeps the tests' 1-vs-8-device float differences at rounding level.
        config.optim.base_lr = 0.03
    return config
