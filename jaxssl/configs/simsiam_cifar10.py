"""SimSiam on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/simsiam_cifar10.py:NAME``):

* default: solo-learn's CIFAR recipe: ResNet-18 CIFAR stem, batch 256, SGD (lr 0.5 x B/256,
  momentum 0.9, weight decay 1e-5), 10 warmup epochs + cosine, 3-layer BN projector
  2048 -> 2048, predictor 2048 -> 512 -> 2048, 1000 epochs. Expected: ~90.5% linear top-1 on
  the CIFAR-10 test split (solo-learn's reported SimSiam ResNet-18 CIFAR-10 result, 1000
  epochs; the SimSiam paper reports 91.8% after 800 epochs with its own recipe). Needs an
  accelerator; not run here.

    python -m jaxssl.train --config jaxssl/configs/simsiam_cifar10.py --workdir /tmp/simsiam_c10

* ``cpu``: the ``simclr_cifar10.py:cpu`` budget (2-core CPU, ~30 minutes: quarter-width
  ResNet-18, 20 px training crops, 3.6 epochs) with SimSiam's optimizer and half-width heads
  (projector 1024 -> 1024, predictor 1024 -> 256 -> 1024). Measured (``tools/method_zoo.py
  --methods simsiam``, on a 2-core AVX2 host, ~1.6x slower than the AMX host of the other
  cpu rows): kNN top-1 0.407 (k=20: 0.427) in 29 min 53 s at ~228 img/s; above random init
  (0.308), below raw pixels (0.442). The projections do not collapse (per-dimension std of
  the normalized projections ~0.030 against 1/sqrt(1024) = 0.031) and the loss falls from
  -0.01 to -0.66; like BYOL, SimSiam bootstraps from a random target and starts slowly.

    python -m jaxssl.train --config jaxssl/configs/simsiam_cifar10.py:cpu --workdir /tmp/simsiam_cpu

* ``smoke``: tiny model, fake data, a handful of steps; well under a minute. Used by tests.

    python -m jaxssl.train --config jaxssl/configs/simsiam_cifar10.py:smoke --workdir /tmp/smoke

References:
  Chen & He, Exploring Simple Siamese Representation Learning, CVPR 2021.
  https://arxiv.org/abs/2011.10566
  da Costa et al., solo-learn, JMLR 2022. https://github.com/vturrisi/solo-learn
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "simsiam_cifar10")
    config = base.get_base_config()
    base.apply_long_cifar_recipe(config, "sgd", base_lr=0.5, weight_decay=1e-5)
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 2048
    config.model.projector_layers = 3  # BN after each layer, the last one affine-free
    config.method = ml_collections.ConfigDict()
    config.method.name = "simsiam"
    config.method.predictor_hidden_dim = 512  # the bottleneck: 2048 -> 512 -> 2048
    config.optim.momentum = 0.9

    if preset == "cpu":
        # The shared CPU budget; the optimizer stays the default preset's. Half-width heads:
        # at 2048 the projector's [2048, 2048] layers cost more than the quarter-width
        # backbone at 20 px and would push the run past 30 minutes.
        base.apply_cpu_budget(config)
        config.model.projector_hidden_dim = 1024
        config.model.projector_dim = 1024
        config.method.predictor_hidden_dim = 256

    if preset == "smoke":
        base.apply_smoke(config)
        config.method.predictor_hidden_dim = 8
    return config
