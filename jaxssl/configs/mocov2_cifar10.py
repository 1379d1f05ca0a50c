"""MoCo v2 (symmetric, as solo-learn's MoCo v2+) on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/mocov2_cifar10.py:NAME``):

* default: solo-learn's CIFAR recipe for MoCo v2+: batch 256, SGD (lr 0.3 x B/256, momentum
  0.9, weight decay 1e-4), 10 warmup epochs + cosine, projector 2048 -> 256, temperature 0.2,
  queue 32,768 keys, key-encoder momentum 0.99 -> 1 (cosine), 1000 epochs. solo-learn reports
  about 92-93% linear top-1 for this recipe; not run here, and not re-checked.

    python -m jaxssl.train --config jaxssl/configs/mocov2_cifar10.py --workdir /tmp/mocov2_c10

* ``cpu``: the shared 2-core budget (``base.apply_cpu_budget``), queue 4,096 keys (8 steps),
  3 epochs (585 steps). Measured (``tools/method_zoo.py --methods mocov2``): kNN top-1 0.447
  (k=20: 0.471) in 26 min 08 s at ~218 img/s, just above raw pixels (0.442).

    python -m jaxssl.train --config jaxssl/configs/mocov2_cifar10.py:cpu --workdir /tmp/mocov2_cpu

* ``smoke``: tiny model, fake data, a queue of 128 keys. Used by tests.

References:
  Chen et al., Improved Baselines with Momentum Contrastive Learning, 2020.
  https://arxiv.org/abs/2003.04297
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "mocov2_cifar10")
    config = base.get_base_config()
    base.apply_long_cifar_recipe(config, "sgd", base_lr=0.3, weight_decay=1e-4)
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 256
    config.method = ml_collections.ConfigDict()
    config.method.name = "mocov2"
    config.method.temperature = 0.2
    config.method.queue_size = 32_768  # a multiple of 2 x batch_size
    config.method.base_momentum = 0.99  # key encoder EMA, cosine to 1

    if preset == "cpu":
        base.apply_cpu_budget(config)
        # The momentum encoder's forward pass makes a step ~1.6x dearer than SimCLR's: 3
        # epochs instead of 3.6 keep the run within 30 minutes.
        config.train.epochs = 3.0
        config.method.queue_size = 4096

    if preset == "smoke":
        base.apply_smoke(config)
        config.method.queue_size = 128
    return config
