"""VICReg on ImageNet-1k with a ResNet-50: the paper's recipe.

Batch 2048, LARS (lr 0.2 x B/256, weight decay 1e-6, biases and norms excluded), 10 warmup
epochs then cosine over 1000 epochs, expander 8192-8192-8192, coefficients 25 / 25 / 1
(invariance / variance / covariance; `jaxssl.losses.redundancy.vicreg_loss` averages the two
views' variance terms as the official code does), 2 x 224 px views. Published: 73.2% linear
top-1 (Bardes, Ponce, LeCun 2022, Table 1).

    jaxssl train --config jaxssl/configs/vicreg_imagenet.py --workdir DIR  # TPU pod slice
    JAX_PLATFORMS=cpu jaxssl compile --config jaxssl/configs/vicreg_imagenet.py --topology v5e:16x16

Hardware and time: docs/scaling.md. Presets: ``smoke``. Differences: symmetric colour
augmentation (blur 0.5, solarize 0.1 on both views; the paper: 1.0 / 0.1 and 0 / 0.2).

References:
  Bardes, Ponce, LeCun, `VICReg <https://arxiv.org/abs/2105.04906>`_, ICLR 2022;
  https://github.com/facebookresearch/vicreg.
"""

import ml_collections

from jaxssl.configs import base, imagenet_base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "vicreg_imagenet", ("default", "smoke"))
    config = base.get_base_config()
    imagenet_base.apply_imagenet(config, "resnet50", batch_size=2048, epochs=1000.0)
    config.data.solarize_prob = 0.1
    config.model.projector_hidden_dim = 8192
    config.model.projector_dim = 8192
    config.model.projector_layers = 3
    config.method = ml_collections.ConfigDict()
    config.method.name = "vicreg"
    config.method.sim_coeff = 25.0
    config.method.std_coeff = 25.0
    config.method.cov_coeff = 1.0
    config.optim.name = "lars"
    config.optim.base_lr = 0.2
    config.optim.weight_decay = 1e-6
    config.optim.warmup_epochs = 10.0
    if preset == "smoke":
        imagenet_base.apply_smoke(config)
        config.optim.base_lr = 0.03
    return config
