"""NNCLR on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/nnclr_cifar10.py:NAME``):

* default: solo-learn's CIFAR recipe: batch 256, LARS (lr 0.4 x B/256, weight decay 1e-5,
  eta 0.02), 10 warmup epochs + cosine, projector 2048 -> 256 (3 layers, BN), predictor
  4096 -> 256, temperature 0.2, support queue 65,536, 1000 epochs. No published figure is
  claimed for this recipe here; not run here.

    python -m jaxssl.train --config jaxssl/configs/nnclr_cifar10.py --workdir /tmp/nnclr_c10

* ``cpu``: the shared 2-core budget (``base.apply_cpu_budget``), support queue 8,192,
  projector and predictor 1024 wide. Measured (``tools/method_zoo.py --methods nnclr``, on a
  2-core AVX2 host, ~1.6x slower than the AMX host of the other cpu rows): kNN top-1 0.436
  (k=20: 0.447) in 27 min 43 s at ~244 img/s; above random init (0.308), just below raw
  pixels (0.442). In 3.6 epochs the queue's nearest neighbours come from a young embedding,
  so the positives are noisier than SimCLR's second view.

    python -m jaxssl.train --config jaxssl/configs/nnclr_cifar10.py:cpu --workdir /tmp/nnclr_cpu

* ``smoke``: tiny model, fake data, a support queue of 128. Used by tests.

References:
  Dwibedi et al., With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning
  of Visual Representations, ICCV 2021. https://arxiv.org/abs/2104.14548
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "nnclr_cifar10")
    config = base.get_base_config()
    base.apply_long_cifar_recipe(config, "lars", base_lr=0.4, weight_decay=1e-5)
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 256
    config.model.projector_layers = 3
    config.method = ml_collections.ConfigDict()
    config.method.name = "nnclr"
    config.method.temperature = 0.2
    config.method.predictor_hidden_dim = 4096
    config.method.queue_size = 65_536  # a multiple of batch_size

    if preset == "cpu":
        base.apply_cpu_budget(config)
        config.method.queue_size = 8192
        # 1024-wide heads: at 2048 the heads cost about half the quarter-width backbone.
        config.model.projector_hidden_dim = 1024
        config.method.predictor_hidden_dim = 1024

    if preset == "smoke":
        base.apply_smoke(config)
        config.method.predictor_hidden_dim = 32
        config.method.queue_size = 128
    return config
