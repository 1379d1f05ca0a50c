"""BYOL on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/byol_cifar10.py:NAME``):

* default: solo-learn's CIFAR recipe: ResNet-18 CIFAR stem, batch 256, LARS (lr 1.0 x B/256,
  weight decay 1e-5, eta 0.02, biases and norms excluded), 10 warmup epochs + cosine,
  projector and predictor 4096 -> 256, EMA momentum 0.99 -> 1 on a cosine, 1000 epochs.
  Expected: ~92.6% linear top-1 on the CIFAR-10 test split (solo-learn's reported BYOL
  ResNet-18 CIFAR-10 result, 1000 epochs). Differences: our augmentations are the base
  config's symmetric pipeline (solo-learn solarizes one of the two views with p=0.2). Needs
  an accelerator; not run here.

    python -m jaxssl.train --config jaxssl/configs/byol_cifar10.py --workdir /tmp/byol_c10

* ``cpu``: the ``simclr_cifar10.py:cpu`` budget (2-core CPU, <= 30 minutes: quarter-width
  ResNet-18, 20 px training crops) with BYOL's heads and optimizer, 3 epochs (585 steps).
  Measured (``tools/method_zoo.py --methods byol``): kNN top-1 0.389 (k=20: 0.403) in 26 min
  09 s at ~218 img/s; above the random-init 0.308, below raw pixels (0.442) and SimCLR's
  0.540: BYOL's target starts as a random network and bootstraps slowly in 3 epochs.

    python -m jaxssl.train --config jaxssl/configs/byol_cifar10.py:cpu --workdir /tmp/byol_cpu

* ``smoke``: tiny model, fake data, a handful of steps; well under a minute. Used by tests.

    python -m jaxssl.train --config jaxssl/configs/byol_cifar10.py:smoke --workdir /tmp/smoke

References:
  Grill et al., Bootstrap Your Own Latent, NeurIPS 2020. https://arxiv.org/abs/2006.07733
  da Costa et al., solo-learn, JMLR 2022. https://github.com/vturrisi/solo-learn
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "byol_cifar10")
    config = base.get_base_config()
    base.apply_long_cifar_recipe(config, "lars", base_lr=1.0, weight_decay=1e-5)
    config.model.projector_hidden_dim = 4096
    config.model.projector_dim = 256
    config.method = ml_collections.ConfigDict()
    config.method.name = "byol"
    config.method.predictor_hidden_dim = 4096
    # EMA momentum of the target: cosine from base_momentum at step 0 to 1 at the last step.
    config.method.base_momentum = 0.99  # solo-learn's CIFAR value (BYOL's ImageNet: 0.996)

    if preset == "cpu":
        # The shared CPU budget; the optimizer stays the default preset's. The target
        # network's forward pass makes a step ~1.6x dearer than SimCLR's: 3 epochs, not 3.6.
        base.apply_cpu_budget(config)
        config.train.epochs = 3.0

    if preset == "smoke":
        base.apply_smoke(config)
        config.method.predictor_hidden_dim = 32
    return config
