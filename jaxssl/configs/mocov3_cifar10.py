"""MoCo v3 on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/mocov3_cifar10.py:NAME``):

* default: solo-learn's CIFAR recipe for MoCo v3 (ResNet-18): batch 256, LARS (lr 0.3 x B/256,
  weight decay 1e-6, eta 0.02), 10 warmup epochs + cosine, projector 4096 -> 256 (3 layers, BN),
  predictor 4096 -> 256, temperature 0.2, momentum 0.99 -> 1 (cosine), 1000 epochs. No
  published figure is claimed for this exact recipe; not run here.

    python -m jaxssl.train --config jaxssl/configs/mocov3_cifar10.py --workdir /tmp/mocov3_c10

  For ViTs (the paper's setting): ``--config.model.backbone=vit_small
  --config.optim.name=adamw --config.optim.base_lr=1.5e-4 --config.optim.weight_decay=0.1``.

* ``cpu``: the shared 2-core budget (``base.apply_cpu_budget``), 3 epochs (the momentum
  encoder's forward pass makes a step dearer), projector and predictor 1024 wide. Measured
  (``tools/method_zoo.py --methods mocov3``, on a 2-core AVX2 host, ~1.6x slower than the AMX
  host of the other cpu rows): kNN top-1 0.452 (k=20: 0.476) in 29 min 44 s at ~197 img/s,
  585 steps; above raw pixels (0.442) and random init (0.308).

    python -m jaxssl.train --config jaxssl/configs/mocov3_cifar10.py:cpu --workdir /tmp/mocov3_cpu

* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Chen, Xie & He, An Empirical Study of Training Self-Supervised Vision Transformers, ICCV
  2021. https://arxiv.org/abs/2104.02057
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "mocov3_cifar10")
    config = base.get_base_config()
    base.apply_long_cifar_recipe(config, "lars", base_lr=0.3, weight_decay=1e-6)
    config.model.projector_hidden_dim = 4096
    config.model.projector_dim = 256
    config.model.projector_layers = 3
    config.method = ml_collections.ConfigDict()
    config.method.name = "mocov3"
    config.method.temperature = 0.2
    config.method.predictor_hidden_dim = 4096
    config.method.base_momentum = 0.99

    if preset == "cpu":
        base.apply_cpu_budget(config)
        # The momentum encoder's forward pass makes a step ~1.6x dearer than SimCLR's: 3
        # epochs instead of 3.6 keep the run within 30 minutes.
        config.train.epochs = 3.0
        config.model.projector_hidden_dim = 1024
        config.method.predictor_hidden_dim = 1024

    if preset == "smoke":
        base.apply_smoke(config)
        config.method.predictor_hidden_dim = 32
    return config
