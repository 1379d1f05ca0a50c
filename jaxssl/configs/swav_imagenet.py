"""SwAV on ImageNet-1k with a ResNet-50 and multi-crop: the paper's recipe.

Batch 4096, 2 x 224 px (crop scale 0.14-1) + 6 x 96 px (0.05-0.14) views, LARS (lr 4.8 =
0.3 x B/256, weight decay 1e-6, cosine to 0.0048), 10 warmup epochs, 800 epochs, temperature
0.1, 3000 prototypes, Sinkhorn epsilon 0.05 with 3 iterations, prototypes frozen for the first
epoch, no queue at this batch size, projector 2048 -> 128. Published: 75.3% linear top-1
(facebookresearch/swav README, 800 epochs, batch 4096).

    jaxssl train --config jaxssl/configs/swav_imagenet.py --workdir DIR  # TPU pod slice
    JAX_PLATFORMS=cpu jaxssl compile --config jaxssl/configs/swav_imagenet.py --topology v5e:16x16

Hardware and time: docs/scaling.md. Presets: ``smoke``.

References:
  Caron et al., `Unsupervised Learning of Visual Features by Contrasting Cluster Assignments
  <https://arxiv.org/abs/2006.09882>`_, NeurIPS 2020; https://github.com/facebookresearch/swav.
"""

import ml_collections

from jaxssl.configs import base, imagenet_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "swav_imagenet", ("default", "smoke"))
    config = base.get_base_config()
    imagenet_base.apply_imagenet(config, "resnet50", batch_size=4096, epochs=800.0)
    config.data.crop_scale = (0.14, 1.0)
    config.data.local_views = 6
    config.data.local_image_size = 96
    config.data.local_crop_scale = (0.05, 0.14)
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 128
    config.method = ml_collections.ConfigDict()
    config.method.name = "swav"
    config.method.temperature = 0.1
    config.method.num_prototypes = 3000
    config.method.epsilon = 0.05
    config.method.sinkhorn_iters = 3
    config.method.freeze_prototypes_epochs = 1.0
    config.method.queue_length = 0
    config.method.queue_start_epochs = 0.0
    config.method.freeze_prototypes_steps = base.epochs_to_steps(
        config, config.method.get_ref("freeze_prototypes_epochs")
    )
    config.method.queue_start_steps = base.epochs_to_steps(
        config, config.method.get_ref("queue_start_epochs")
    )
    config.optim.name = "lars"
    config.optim.base_lr = 0.3
    config.optim.weight_decay = 1e-6
    config.optim.warmup_epochs = 10.0
    config.optim.end_lr_factor = 0.001
    if preset == "smoke":
        imagenet_base.apply_smoke(config)
        config.data.local_views = 2
        config.method.num_prototypes = 16
    return config
