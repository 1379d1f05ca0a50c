"""MoCo v3 on ImageNet-1k with a ViT-B/16: the paper's recipe.

Batch 4096, AdamW (lr 1.5e-4 x B/256, weight decay 0.1, betas 0.9 / 0.95), 40 warmup epochs
then cosine over 300 epochs, temperature 0.2, projector 3 layers 4096 -> 256, predictor
2 layers 4096, momentum encoder 0.99 -> 1 (cosine), 2 x 224 px views (crop scale 0.08-1).
Published: 76.7% linear top-1 (Chen, Xie, He 2021, Table 4; facebookresearch/moco-v3
CONFIG.md, ViT-Base 300 epochs).

    jaxssl train --config jaxssl/configs/mocov3_imagenet.py --workdir DIR  # TPU pod slice
    JAX_PLATFORMS=cpu jaxssl compile --config jaxssl/configs/mocov3_imagenet.py --topology v5e:16x16

Hardware and time: docs/scaling.md. Presets: ``smoke``. Differences: the paper freezes the
random patch projection (its stability trick) and uses a sine-cosine position embedding; here
both are trained.

References:
  Chen, Xie, He, `An Empirical Study of Training Self-Supervised Vision Transformers
  <https://arxiv.org/abs/2104.02057>`_, 2021; https://github.com/facebookresearch/moco-v3.
"""

import ml_collections

from jaxssl.configs import base, imagenet_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "mocov3_imagenet", ("default", "smoke"))
    config = base.get_base_config()
    imagenet_base.apply_imagenet(config, "vit_base", batch_size=4096, epochs=300.0)
    config.model.patch_size = 16
    config.model.projector_hidden_dim = 4096
    config.model.projector_dim = 256
    config.model.projector_layers = 3
    config.method = ml_collections.ConfigDict()
    config.method.name = "mocov3"
    config.method.temperature = 0.2
    config.method.predictor_hidden_dim = 4096
    config.method.base_momentum = 0.99
    config.optim.name = "adamw"
    config.optim.base_lr = 1.5e-4
    config.optim.weight_decay = 0.1
    config.optim.b2 = 0.95
    config.optim.warmup_epochs = 40.0
    if preset == "smoke":
        imagenet_base.apply_smoke(config)
        config.method.predictor_hidden_dim = 32
    return config
