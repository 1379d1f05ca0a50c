"""NPID (instance discrimination with a memory bank) on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/npid_cifar10.py:NAME``):

* default: the reference code's CIFAR script (lemniscate.pytorch ``cifar.py``): one view per
  image (random resized crop of scale >= 0.2, colour jitter 0.4, grayscale 0.2, flip), a
  linear layer to a 128-d unit embedding, temperature 0.1, bank momentum 0.5, SGD lr 0.03 at
  batch 128 with momentum 0.9 and weight decay 5e-4, 200 epochs. The script decays the lr by
  10x at epochs 120 and 160; jaxssl's schedule is warmup + cosine. It uses NCE with 4096
  noise samples; jaxssl the exact softmax (methods/npid.py). Not run here (needs an
  accelerator).

    jaxssl train --config jaxssl/configs/npid_cifar10.py --workdir /tmp/npid_c10

* ``cpu``: the shared 2-core budget (quarter-width ResNet-18) at 16 px training crops for 26
  minutes of training, LARS, kNN on 24 px test images. docs/training.md lists its measured
  row.

    jaxssl train --config jaxssl/configs/npid_cifar10.py:cpu --workdir /tmp/npid_cpu

* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Wu, Xiong, Yu & Lin, Unsupervised Feature Learning via Non-Parametric Instance
  Discrimination, CVPR 2018. https://arxiv.org/abs/1805.01978
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "npid_cifar10")
    config = base.get_base_config()
    config.data.num_views = 1
    config.data.crop_scale = (0.2, 1.0)
    config.data.hue = 0.4  # the reference's ColorJitter(0.4, 0.4, 0.4, 0.4)
    config.model.backbone = "resnet18"
    config.model.projector_layers = 1  # one linear layer
    config.model.projector_dim = 128
    config.method = ml_collections.ConfigDict()
    config.method.name = "npid"
    config.method.temperature = 0.1
    config.method.bank_momentum = 0.5
    # A row per example of data.train_split, indexed by position in it. An expression, not
    # the reference itself: overriding bank_size must not change data.num_train_examples.
    config.method.bank_size = config.data.get_ref("num_train_examples") + 0
    config.train.batch_size = 128
    config.train.epochs = 200.0
    config.optim.name = "sgd"
    config.optim.base_lr = 0.06  # 0.03 at batch 128
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-4
    config.optim.warmup_epochs = 1.0
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.every_steps = 10_000

    if preset == "cpu":
        base.apply_cpu_budget(config, image_size=16, epochs=6.0, minutes=26.0)
        config.data.eval_image_size = 24
        config.optim.name = "lars"
        config.optim.base_lr = 0.4
        config.optim.trust_coefficient = 0.02
        config.optim.weight_decay = 1e-5

    if preset == "smoke":
        base.apply_smoke(config)
    return config
