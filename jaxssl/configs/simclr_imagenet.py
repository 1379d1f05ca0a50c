"""SimCLR on ImageNet-1k with a ResNet-50: the paper's recipe.

Batch 4096, LARS (lr 0.3 x B/256 = 4.8, weight decay 1e-6, eta 1e-3, biases and norms
excluded), 10 warmup epochs then cosine, temperature 0.1, projector 2048 -> 128, 2 x 224 px
views, 1000 epochs. Published: 69.3% linear top-1 (Chen et al. 2020, Table 6; ResNet-50 1x,
1000 epochs). The README of google-research/simclr: batch 4096 "requires at least 32 TPUs",
100 epochs take "around 6 hours with 32 TPU v3s".

    jaxssl train --config jaxssl/configs/simclr_imagenet.py --workdir DIR  # TPU pod slice
    JAX_PLATFORMS=cpu jaxssl compile --config jaxssl/configs/simclr_imagenet.py --topology v5e:16x16

Hardware and time: compiled for v5e-256, v4-256 and the README's 32 v3 cores, with roofline
estimates beside the published time, in docs/scaling.md. Presets: ``smoke`` (fake data, tiny
net, 4 steps). Differences: the colour stage is symmetric (blur on half the views of both
branches); SimCLR v1 blurs every view with probability 0.5 too.

References:
  Chen et al., `A Simple Framework for Contrastive Learning of Visual Representations
  <https://arxiv.org/abs/2002.05709>`_, 2020; https://github.com/google-research/simclr.
"""

import ml_collections

from jaxssl.configs import base, imagenet_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "simclr_imagenet", ("default", "smoke"))
    config = base.get_base_config()
    imagenet_base.apply_imagenet(config, "resnet50", batch_size=4096, epochs=1000.0)
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 128
    config.method = ml_collections.ConfigDict()
    config.method.name = "simclr"
    config.method.temperature = 0.1
    # "blockwise" keeps the [2B, 2B] similarities out of memory (docs/scaling.md: from 32k).
    config.method.loss_impl = "dense"
    config.method.loss_chunk_size = 1024
    config.optim.name = "lars"
    config.optim.base_lr = 0.3
    config.optim.weight_decay = 1e-6
    config.optim.warmup_epochs = 10.0
    if preset == "smoke":
        imagenet_base.apply_smoke(config)
    return config
