"""DINO on ImageNet-1k with a ViT-S/16 and multi-crop: the paper's recipe.

Batch 1024, 2 x 224 px (crop scale 0.4-1) + 10 x 96 px (0.05-0.4) views, AdamW (lr 5e-4 x
B/256, weight decay 0.04), 10 warmup epochs then cosine over 800 epochs, head 3 layers 2048
-> 256 bottleneck -> 65536 units, teacher temperature 0.04 -> 0.07 over 30 epochs, student 0.1,
centre momentum 0.9, teacher momentum 0.996 -> 1, last layer frozen for the first epoch.
Published: 77.0% linear, 74.5% kNN top-1 (Caron et al. 2021; facebookresearch/dino README,
ViT-S/16 full checkpoint).

    jaxssl train --config jaxssl/configs/dino_imagenet.py --workdir DIR  # TPU pod slice
    JAX_PLATFORMS=cpu jaxssl compile --config jaxssl/configs/dino_imagenet.py --topology v5e:16x16

Hardware and time: docs/scaling.md. Presets: ``smoke``. Differences: the paper's weight
decay follows a cosine from 0.04 to 0.4, gradients are clipped at 3.0 and stochastic depth is
0.1; here weight decay stays 0.04, with no clipping and no stochastic depth.

References:
  Caron et al., `Emerging Properties in Self-Supervised Vision Transformers
  <https://arxiv.org/abs/2104.14294>`_, ICCV 2021; https://github.com/facebookresearch/dino.
"""

import ml_collections

from jaxssl.configs import base, imagenet_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "dino_imagenet", ("default", "smoke"))
    config = base.get_base_config()
    imagenet_base.apply_imagenet(config, "vit_small", batch_size=1024, epochs=800.0)
    config.data.crop_scale = (0.4, 1.0)
    config.data.local_views = 10
    config.data.local_image_size = 96
    config.data.local_crop_scale = (0.05, 0.4)
    config.data.solarize_prob = 0.1
    config.model.patch_size = 16
    config.model.projector_layers = 3
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 256
    config.method = ml_collections.ConfigDict()
    config.method.name = "dino"
    config.method.out_dim = 65536
    config.method.norm_last_layer = True
    config.method.use_bn_in_head = False
    config.method.student_temp = 0.1
    config.method.warmup_teacher_temp = 0.04
    config.method.teacher_temp = 0.07
    config.method.warmup_teacher_temp_epochs = 30.0
    config.method.center_momentum = 0.9
    config.method.base_momentum = 0.996
    config.method.freeze_last_layer_epochs = 1.0
    config.method.warmup_teacher_temp_steps = base.epochs_to_steps(
        config, config.method.get_ref("warmup_teacher_temp_epochs")
    )
    config.method.freeze_last_layer_steps = base.epochs_to_steps(
        config, config.method.get_ref("freeze_last_layer_epochs")
    )
    config.optim.name = "adamw"
    config.optim.base_lr = 5e-4
    config.optim.weight_decay = 0.04
    config.optim.warmup_epochs = 10.0
    if preset == "smoke":
        imagenet_base.apply_smoke(config)
        config.data.local_views = 2
        config.method.out_dim = 32
    return config
