"""SimCLR on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/simclr_cifar10.py:NAME``):

* default: the published recipe: ResNet-18 CIFAR stem, batch 512, LARS (lr 0.3 x B/256,
  weight decay 1e-6, eta 1e-3), 10 warmup epochs + cosine, temperature 0.2, projector
  2048 -> 128, 800 epochs. Expected: ~90% linear top-1 on CIFAR-10 test (SimCLR-style
  ResNet-18 runs of 800-1000 epochs reported by solo-learn and others); needs an
  accelerator (one GPU-day class). Not run on CPU.

    python -m jaxssl.train --config jaxssl/configs/simclr_cifar10.py --workdir /tmp/simclr_c10

* ``cpu``: tuned to learn as much as possible in <= 30 minutes on a 2-core CPU. Measured:
  kNN top-1 0.540 on the CIFAR-10 test split after 19 min 35 s wall (703 steps, ~350 img/s),
  vs 0.442 for raw pixels and 0.308 for the same network at random init.

    python -m jaxssl.train --config jaxssl/configs/simclr_cifar10.py:cpu --workdir /tmp/simclr_cpu

* ``cpu_noise``: the ``cpu`` preset with views made by Gaussian pixel noise alone (std 0.1 on
  the [0, 1] scale; no crop, flip or colour augmentation), Bordes et al. 2023's noise-only
  views. With ``--config.method.num_negatives=K`` (also on ``cpu``): each anchor keeps a random
  ``K`` of its negatives (1: SimCLR with one negative). docs/research.md, "The founding papers".

* ``smoke``: tiny model, fake data, a handful of steps; well under a minute. Used by tests.

    python -m jaxssl.train --config jaxssl/configs/simclr_cifar10.py:smoke --workdir /tmp/smoke
"""

import ml_collections

from jaxssl.configs import base


def apply_cpu_preset(
    config: ml_collections.ConfigDict, image_size: int = 20, epochs: float = 3.6
) -> None:
    """The ``cpu`` preset's budget and optimizer (also SupCon's): the shared CPU budget
    (``base.apply_cpu_budget`` with ``image_size`` crops for ``epochs``) and LARS with
    solo-learn's CIFAR trust coefficient for fast early progress."""
    base.apply_cpu_budget(config, image_size=image_size, epochs=epochs)
    config.optim.name = "lars"
    config.optim.base_lr = 0.4
    config.optim.trust_coefficient = 0.02
    config.optim.weight_decay = 1e-5


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "simclr_cifar10", base.PRESETS + ("cpu_noise",))
    config = base.get_base_config()
    config.model.backbone = "resnet18"
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 128
    config.method = ml_collections.ConfigDict()
    config.method.name = "simclr"
    config.method.temperature = 0.2
    # "dense": the [2B, 2B] similarities at once; "blockwise": the same loss and gradients in
    # bounded memory, loss_chunk_size columns at a time per device (global batches of ~10k+).
    config.method.loss_impl = "dense"
    config.method.loss_chunk_size = 1024
    # > 0: each anchor's denominator keeps a random subset of this many negatives, drawn per
    # step (Bordes et al. 2023); 0: all of them (NT-Xent).
    config.method.num_negatives = 0
    # "abs" | "square": SimCLR-abs / SimCLR-sq (Garrido et al. 2023): negatives pushed to be
    # orthogonal rather than opposite; "cosine": NT-Xent.
    config.method.negative_similarity = "cosine"
    config.train.batch_size = 512
    config.train.epochs = 800.0
    config.optim.name = "lars"
    config.optim.base_lr = 0.3
    config.optim.weight_decay = 1e-6
    config.optim.warmup_epochs = 10.0
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.every_steps = 10_000

    if preset in ("cpu", "cpu_noise"):
        apply_cpu_preset(config)
    if preset == "cpu_noise":
        base.apply_noise_only_views(config, std=0.1)

    if preset == "smoke":
        base.apply_smoke(config)
    return config
