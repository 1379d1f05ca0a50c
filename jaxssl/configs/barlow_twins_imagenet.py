"""Barlow Twins on ImageNet-1k with a ResNet-50: the paper's recipe.

Batch 2048, LARS (lr 0.2 x B/256 for weights, weight decay 1.5e-6, biases and norms
excluded), 10 warmup epochs then cosine over 1000 epochs, projector 8192-8192-8192,
lambda 0.0051, 2 x 224 px views. Published: 73.2% linear top-1 (Zbontar et al. 2021,
Table 1).

    jaxssl train --config jaxssl/configs/barlow_twins_imagenet.py --workdir DIR  # TPU slice
    JAX_PLATFORMS=cpu jaxssl compile --config jaxssl/configs/barlow_twins_imagenet.py \
        --topology v5e:16x16

Hardware and time: docs/scaling.md. Presets: ``smoke``. Differences: the paper's biases get
lr 0.0048 x B/256 (here the weights' rate); symmetric colour augmentation.

References:
  Zbontar et al., `Barlow Twins <https://arxiv.org/abs/2103.03230>`_, ICML 2021;
  https://github.com/facebookresearch/barlowtwins.
"""

import ml_collections

from jaxssl.configs import base, imagenet_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "barlow_twins_imagenet", ("default", "smoke"))
    config = base.get_base_config()
    imagenet_base.apply_imagenet(config, "resnet50", batch_size=2048, epochs=1000.0)
    config.data.solarize_prob = 0.1
    config.model.projector_hidden_dim = 8192
    config.model.projector_dim = 8192
    config.model.projector_layers = 3
    config.method = ml_collections.ConfigDict()
    config.method.name = "barlow_twins"
    config.method.lambd = 0.0051
    config.method.loss_scale = 1.0
    config.optim.name = "lars"
    config.optim.base_lr = 0.2
    config.optim.weight_decay = 1.5e-6
    config.optim.warmup_epochs = 10.0
    if preset == "smoke":
        imagenet_base.apply_smoke(config)
    return config
