"""DINO on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/dino_cifar10.py:NAME``):

* default: solo-learn's CIFAR recipe (``scripts/pretrain/cifar/dino.yaml`` and the DINO
  method defaults): ResNet-18 CIFAR stem, 2 global 32 px views and no local views, batch 256,
  LARS (lr 0.3 x B/256, weight decay 1e-6, eta 0.02, biases and norms excluded), 10 warmup
  epochs + cosine, DINO head 2048 -> 2048 -> 256 (no BN) -> 4096 weight-normalized units
  with the scale fixed (``norm_last_layer``), student temperature 0.1, teacher temperature
  0.04 -> 0.07 over 50 epochs, center momentum 0.9, EMA momentum 0.9995 -> 1 on a cosine,
  last layer frozen for the first epoch, 1000 epochs. Expected: ~89.5% linear top-1 on the
  CIFAR-10 test split (solo-learn's README reports 89.52% online linear top-1 for DINO
  ResNet-18, 1000 epochs). Differences: our augmentations are symmetric (solo-learn solarizes
  one of the two views with p=0.2) and our LARS has no ``clip_lr``. Needs an accelerator;
  not run here.

    python -m jaxssl.train --config jaxssl/configs/dino_cifar10.py --workdir /tmp/dino_c10

* ``cpu``: the shared CPU budget (``base.apply_cpu_budget``: quarter-width ResNet-18) with
  16 px global crops of scale (0.4, 1) and DINO's multi-crop: 2 local views of 8 px per image
  (``batch["local"]``, the 2:1 size ratio of DINO's 224/96 px crops) from scale
  (0.05, 0.4); a 1024-wide head MLP like the other ``cpu`` presets (bottleneck 256, 4096
  units); a constant teacher temperature 0.04 (DINO's default), EMA momentum from 0.99 and
  the last layer frozen for a quarter epoch, since the default preset's schedules are longer
  than the whole run; 3.5 epochs. Each step runs the student on 4 views and the teacher on 2,
  so a step costs ~1.7x SimCLR's at the same crop size. Before the ``auto`` convolution
  lowering, the local views' 2x2 last-stage maps made the step 2.8x SimCLR's; the
  20 px / 12 px version of this preset took 6.7 s per step on a 2-core AVX2 host, 3.5 s with
  ``auto``, and this one 2.1 s (``tools/benchmark.py --config jaxssl/configs/dino_cifar10.py:cpu``).
  Measured (``tools/method_zoo.py --methods dino``): kNN top-1 0.386 (k=20: 0.406) in 24 min
  53 s at ~558 views/s on a 2-core AVX-512 host; loss 8.06 -> 7.06, teacher entropy 7.83 ->
  6.34 (log 4096 = 8.32): the teacher sharpens, but 3.5 epochs are early days for DINO.

    python -m jaxssl.train --config jaxssl/configs/dino_cifar10.py:cpu --workdir /tmp/dino_cpu

* ``smoke``: tiny model, 32 output units, fake data, 4 steps, no local views (the schedules
  shortened so the frozen and trained last layer and the temperature warm-up all occur).
  Used by tests.

    python -m jaxssl.train --config jaxssl/configs/dino_cifar10.py:smoke --workdir /tmp/smoke

References:
  Caron et al., Emerging Properties in Self-Supervised Vision Transformers (DINO), ICCV 2021.
  https://arxiv.org/abs/2104.14294
  da Costa et al., solo-learn, JMLR 2022. https://github.com/vturrisi/solo-learn
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "dino_cifar10")
    config = base.get_base_config()
    base.apply_long_cifar_recipe(config, "lars", base_lr=0.3, weight_decay=1e-6)
    config.data.saturation = 0.2  # solo-learn's CIFAR colour jitter
    # The DINO head's MLP: projector_layers linear layers to a projector_dim bottleneck.
    config.model.projector_layers = 3
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 256
    config.method = ml_collections.ConfigDict()
    config.method.name = "dino"
    # Output units K (DINO: 65536 on ImageNet; solo-learn: 4096 on CIFAR).
    config.method.out_dim = 4096
    config.method.norm_last_layer = True  # weight-norm scale fixed to 1
    config.method.use_bn_in_head = False
    config.method.student_temp = 0.1
    config.method.warmup_teacher_temp = 0.04
    config.method.teacher_temp = 0.07
    config.method.warmup_teacher_temp_epochs = 50.0
    config.method.center_momentum = 0.9
    config.method.koleo_weight = 0.0  # > 0: DINOv2's KoLeo on backbone features (0.1 there)
    # DINOv2's other additions (dinov2_cifar10.py turns them on): iBOT's masked-patch loss
    # (> 0; needs a ViT with model.mask_token), its masks, and the teacher's centering.
    config.method.ibot_weight = 0.0
    config.method.mask_probability = 0.5  # share of images masked (DINOv2: 0.5)
    config.method.mask_ratio = (0.1, 0.5)  # masked share of a masked image's patches
    config.method.centering = "center"  # center (DINO) | sinkhorn (DINOv2's SK, 3 iters)
    # EMA momentum of the teacher: cosine from base_momentum at step 0 to 1 at the last step.
    config.method.base_momentum = 0.9995  # solo-learn's CIFAR value (DINO's ImageNet: 0.996)
    config.method.freeze_last_layer_epochs = 1.0
    # Schedules in epochs, with their step counts derived here (loss_fn sees config.method only).
    config.method.warmup_teacher_temp_steps = base.epochs_to_steps(
        config, config.method.get_ref("warmup_teacher_temp_epochs")
    )
    config.method.freeze_last_layer_steps = base.epochs_to_steps(
        config, config.method.get_ref("freeze_last_layer_epochs")
    )

    if preset == "cpu":
        base.apply_cpu_budget(config, image_size=16, epochs=3.5)
        config.data.crop_scale = (0.4, 1.0)
        config.data.local_views = 2
        config.data.local_image_size = 8
        config.data.local_crop_scale = (0.05, 0.4)
        config.model.projector_hidden_dim = 1024
        config.method.teacher_temp = 0.04
        config.method.warmup_teacher_temp_epochs = 0.0
        config.method.base_momentum = 0.99
        config.method.freeze_last_layer_epochs = 0.25

    if preset == "smoke":
        base.apply_smoke(config)  # projector 32 -> 16 bottleneck
        config.data.local_views = 0  # tests/test_step.py feeds global views only
        config.method.out_dim = 32
        config.method.warmup_teacher_temp_epochs = 0.125  # 2 of the 4 steps
        config.method.freeze_last_layer_epochs = 0.0625  # the first step
    return config
