"""BYOL on ImageNet-1k with a ResNet-50: the paper's recipe.

Batch 4096, LARS (lr 0.2 x B/256, weight decay 1.5e-6, biases and norms excluded), 10 warmup
epochs then cosine over 1000 epochs, projector and predictor 4096 -> 256, target momentum
0.996 -> 1 (cosine), 2 x 224 px views. Published: 74.3% linear top-1 (Grill et al. 2020,
Table 1). The paper (App. A) and the README of deepmind-research/byol: about 8 hours on
512 Cloud TPU v3 cores (256 chips) for this 1000-epoch run (74.0-74.5%).

    jaxssl train --config jaxssl/configs/byol_imagenet.py --workdir DIR  # TPU pod slice
    JAX_PLATFORMS=cpu jaxssl compile --config jaxssl/configs/byol_imagenet.py --topology v3:16x16

Hardware and time: docs/scaling.md (estimate vs the published 8 hours). Presets: ``smoke``.
Differences: BYOL's augmentations are asymmetric (blur 1.0 / 0.1, solarize 0 / 0.2 for the
two views); here both views share one setting (blur 0.5, solarize 0.1).

References:
  Grill et al., `Bootstrap your own latent <https://arxiv.org/abs/2006.07733>`_, 2020;
  https://github.com/google-deepmind/deepmind-research/tree/master/byol.
"""

import ml_collections

from jaxssl.configs import base, imagenet_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "byol_imagenet", ("default", "smoke"))
    config = base.get_base_config()
    imagenet_base.apply_imagenet(config, "resnet50", batch_size=4096, epochs=1000.0)
    config.data.solarize_prob = 0.1
    config.model.projector_hidden_dim = 4096
    config.model.projector_dim = 256
    config.method = ml_collections.ConfigDict()
    config.method.name = "byol"
    config.method.predictor_hidden_dim = 4096
    config.method.base_momentum = 0.996
    config.optim.name = "lars"
    config.optim.base_lr = 0.2
    config.optim.weight_decay = 1.5e-6
    config.optim.warmup_epochs = 10.0
    if preset == "smoke":
        imagenet_base.apply_smoke(config)
        config.method.predictor_hidden_dim = 32
    return config
