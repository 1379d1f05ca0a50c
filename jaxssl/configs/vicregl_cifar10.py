"""VICRegL on CIFAR-10 with a ResNet-18 (CIFAR stem): global VICReg plus VICReg on matched
feature-map vectors.

Presets (``--config jaxssl/configs/vicregl_cifar10.py:NAME``):

* default: the VICReg CIFAR recipe of ``vicreg_cifar10.py`` (LARS, lr 0.3 x B/256, weight
  decay 1e-4, 10 warm-up epochs, expander 2048-2048-2048, 1000 epochs) with VICRegL's parts
  from the reference (facebookresearch/VICRegL ``main_vicregl.py`` defaults): 2 global 32 px
  views (4x4 last-stage maps) and 6 local 16 px views (2x2 maps) from crops of scale 0.4-1 and
  0.08-0.4, a 512-512-512 maps MLP, alpha 0.75 (its ResNet-50 setting), weights 25 / 25 / 1
  with VICRegL's conventions (variance and covariance averaged over views), all pairs matched
  in feature space and ``num_matches`` = (6, 2) by location (the reference's 20 of 49 and 4 of
  9 cells, scaled to 16 and 4). The paper reports ImageNet-1K linear probes and segmentation
  for ResNet-50 and ConvNeXt; no CIFAR-10 figure is published, so none is claimed. For an
  accelerator.

    python -m jaxssl.train --config jaxssl/configs/vicregl_cifar10.py --workdir /tmp/vicregl

* ``cpu``: the VICReg ``cpu`` preset's budget (quarter-width ResNet-18, 16 px crops, 26
  minutes, kNN at 24 px) with 2 views only: 2x2 maps, ``num_matches`` = (2, 2).

    python -m jaxssl.train --config jaxssl/configs/vicregl_cifar10.py:cpu --workdir /tmp/vicregl_cpu

* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Bardes, Ponce & LeCun, VICRegL: Self-Supervised Learning of Local Visual Features,
  NeurIPS 2022. https://arxiv.org/abs/2210.01571 (code: facebookresearch/VICRegL)
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "vicregl_cifar10")
    config = base.get_base_config()
    base.apply_long_cifar_recipe(config, "lars", base_lr=0.3, weight_decay=1e-4)
    config.data.crop_boxes = True  # the crop boxes locate every feature-map cell
    config.data.crop_scale = (0.4, 1.0)
    config.data.local_views = 6
    config.data.local_image_size = 16
    config.data.local_crop_scale = (0.08, 0.4)
    config.data.saturation = 0.2
    config.data.solarize_prob = 0.1
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 2048
    config.model.projector_layers = 3
    config.method = ml_collections.ConfigDict()
    config.method.name = "vicregl"
    config.method.alpha = 0.75  # global share of the loss (reference: 0.75 ResNet, 0.9 ConvNeXt)
    config.method.inv_coeff = 25.0
    config.method.var_coeff = 25.0
    config.method.cov_coeff = 1.0
    config.method.num_matches = (6, 2)  # location matches: view 1 -> 2, view 2 -> 1
    config.method.l2_all_matches = True  # feature-space matching of every vector
    config.method.maps_hidden_dim = 512
    config.method.maps_dim = 512
    config.method.maps_layers = 3

    if preset == "cpu":
        base.apply_cpu_budget(config, image_size=16, epochs=6.0, minutes=26.0)
        config.data.crop_scale = (0.2, 1.0)
        config.data.local_views = 0
        config.data.eval_image_size = 24
        config.model.projector_hidden_dim = 1024
        config.model.projector_dim = 1024
        config.method.num_matches = (2, 2)

    if preset == "smoke":
        base.apply_smoke(config)
        config.data.local_views = 0  # tests/test_step.py feeds global views only
        config.method.num_matches = (4, 2)
        config.method.maps_hidden_dim = 16
        config.method.maps_dim = 16
        config.optim.base_lr = 0.03  # as VICReg's smoke preset
    return config
