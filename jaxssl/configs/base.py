"""Shared defaults for every run config, the preset parser and the epochs-to-steps rule.

Sections: data, model, optim, train, evals, mesh. There is no method section: each run config
defines ``config.method`` wholly, so no default of another method leaks into it. Derived
values (learning rate from batch size, steps from epochs) are ``FieldReference`` expressions,
so overriding ``--config.train.batch_size`` on the command line updates them and the printed
config stays the truth.
"""

import ml_collections

# Every run config accepts these (``--config jaxssl/configs/X.py:NAME``; no NAME: default).
PRESETS = ("default", "cpu", "smoke")


def parse_arg(arg: str | None, config_name: str, presets: tuple[str, ...] = PRESETS) -> str:
    """The preset a config's ``get_config(arg)`` was asked for.

    Args:
      arg: the text after ``:`` in ``--config FILE.py:ARG``; ``None`` or empty for ``default``.
      config_name: the config file's name, for the error message.
      presets: the presets the config defines.

    Returns:
      The preset name, one of ``presets``.

    Raises:
      ValueError: ``arg`` names no preset; the message lists the valid ones.
    """
    preset = arg or "default"
    if preset not in presets:
        raise ValueError(
            f"Unknown preset {preset!r} for {config_name}; valid: {', '.join(presets)}."
        )
    return preset


def epochs_to_steps(
    config: ml_collections.ConfigDict, epochs: ml_collections.FieldReference
) -> ml_collections.FieldReference:
    """A step count of ``epochs`` passes over the training split, as a lazy reference.

    ``floor(epochs * data.num_train_examples / train.batch_size)``, kept as a
    ``FieldReference`` expression so a later ``--config.train.batch_size=...`` (or epochs, or
    dataset size) override changes the step count too.

    Args:
      config: the run config (its ``data`` and ``train`` sections).
      epochs: a reference to an epochs field, e.g. ``config.train.get_ref("epochs")``.

    Returns:
      The step count, to assign to a ``*_steps`` field.
    """
    return epochs * config.data.get_ref("num_train_examples") // config.train.get_ref("batch_size")


def get_base_config() -> ml_collections.ConfigDict:
    """The shared defaults: every section but ``method``, which the run config adds."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    # --- Data: TFDS name (or "folder") + split; augmentation parameters are plain fields. ---
    config.data = ml_collections.ConfigDict(
        dict(
            name="cifar10",
            data_dir=ml_collections.FieldReference(None, field_type=str),  # None: $TFDS_DATA_DIR
            # A TFDS dataset (at its version) missing from data_dir (folder and fake data are
            # not TFDS: never downloaded), jaxssl/data/tfds.py `prepare`:
            #   auto:   a single-process run downloads and prepares it with TFDS's
            #           download_and_prepare before building the pipeline; multi-process runs
            #           never download: they stop, saying how to prepare it once;
            #   never:  no download; a missing dataset is an error that says what to do;
            #   always: single-process runs call download_and_prepare even if the dataset is
            #           there (TFDS skips the work); multi-process runs refuse.
            download="auto",  # auto | never | always
            train_split="train",
            eval_train_split="train",
            eval_test_split="test",
            # Non-empty: keep only these labels, in the training split (train_classes; set
            # num_train_examples to what remains) and in both evaluation splits
            # (eval_classes): pre-train on some classes, evaluate transfer to the others.
            train_classes=(),
            eval_classes=(),
            num_train_examples=50_000,
            num_classes=10,
            image_size=32,
            eval_image_size=32,
            num_views=2,
            # Multi-crop (SwAV, DINO): local_views small views per image of local_image_size
            # px, from crops of local_crop_scale, as batch["local"] [B, L, s, s, 3].
            local_views=0,
            local_image_size=16,
            local_crop_scale=(0.05, 0.4),
            cache=True,
            crop_scale=(0.08, 1.0),
            crop_ratio=(3 / 4, 4 / 3),
            flip_prob=0.5,
            # Also pass each view's crop box (top, left, height, width, flipped; source pixels)
            # as batch["global_box"] / ["local_box"] [B, V, 5]: VICRegL's location matching.
            crop_boxes=False,
            color_jitter_prob=0.8,
            brightness=0.4,
            contrast=0.4,
            saturation=0.4,
            hue=0.1,
            grayscale_prob=0.2,
            blur_prob=0.0,
            solarize_prob=0.0,
            # > 0: every view gets N(0, std^2) pixel noise (on the [0, 1] scale) after the
            # colour ops; apply_noise_only_views turns everything else off.
            gaussian_noise_std=0.0,
            # > 0: every view is rotated by an angle uniform in [-deg, deg] (on device, before
            # the colour ops; bilinear, zeros outside). SIE's transformation to predict.
            rotation_degrees=0.0,
            # Also pass each global view's known transformation (rotation, crop box, colour
            # factors) as batch["transform"] [B, V, 11] (needs crop_boxes): SIE's conditioning.
            view_transforms=False,
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
            fake_train_examples=512,
            fake_test_examples=256,
            # name="folder": image files under folder_root instead of TFDS (docs/training.md, "Image
            # folders"); each is center-cropped and resized to folder_image_size at load.
            folder_root=ml_collections.FieldReference(None, field_type=str),
            # None: max(image_size, eval_image_size).
            folder_image_size=ml_collections.FieldReference(None, field_type=int),
            on_corrupt="error",  # folder files that are not decodable images: error | skip
        )
    )

    # --- Model ---
    config.model = ml_collections.ConfigDict(
        dict(
            backbone="resnet18",
            width=64,
            stem="cifar",
            projector_hidden_dim=2048,
            projector_dim=128,
            projector_layers=2,
            projector_init_scale=1.0,  # factor on the projector's last initial kernel
            dtype="float32",  # computation dtype; parameters and optimizer state stay float32
            conv_impl="auto",  # native; im2col for <= 2x2 output maps on CPU (models/conv.py)
            bn_momentum=0.9,
            # ResNet only: > 0 sets the output width of the last block of the last stage (the
            # feature dimension; the projector follows): Bordes et al.'s "expand or narrow".
            last_block_width=0,
            # ViT backbones (vit_tiny | vit_small | vit_base) only:
            vit_depth=0,  # number of blocks; 0: the size's (12 for all three)
            patch_size=16,
            image_size=config.data.get_ref("image_size"),  # position-embedding grid size
            pooling="cls",  # cls | mean
            position="learned",  # learned | sincos (MAE's fixed 2-D table)
            num_registers=0,  # register tokens (Darcet et al. 2024), never read out
            mask_token=False,  # a learned mask token for iBOT's masked patches (DINOv2)
        )
    )

    # --- Training length and batch (optim refers to these) ---
    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 512  # global, over all devices and processes
    # Gradients of k micro-batches of batch_size / k, computed one after the other and
    # averaged into one update (less activation memory). BatchNorm statistics and contrastive
    # negatives are then per micro-batch: see jaxssl/step.py.
    config.train.grad_accum_steps = 1
    config.train.epochs = 100.0
    config.train.num_steps = epochs_to_steps(config, config.train.get_ref("epochs"))
    # > 0: train for as many steps as fit in this many minutes of the training loop (final
    # evaluation not included) instead of for `epochs`. The step time is measured over the
    # first steps, the step count fitted once and stored in WORKDIR/time_budget.json, which
    # a resumed run then follows: see jaxssl/guards.py, TimeBudget.
    config.train.time_budget_minutes = 0.0
    config.train.log_every_steps = 50
    config.train.checkpoint_every_steps = 1000
    config.train.keep_checkpoints = 3
    # A NaN/Inf loss or gradient is never applied; "stop" ends the run naming the step and the
    # last good checkpoint, "skip" drops the update, counts it (train/nonfinite_steps) and goes
    # on, unless more than max_consecutive_nonfinite steps in a row are bad.
    config.train.on_nonfinite = "stop"
    config.train.max_consecutive_nonfinite = 10
    config.train.progress_bar = True
    # Also log the scalar metrics to Weights & Biases (process 0; the run resumes with the
    # workdir). wandb is not a dependency of jaxssl: `pip install wandb` to turn this on.
    config.train.wandb = False
    config.train.wandb_project = "jaxssl"

    # --- Optimizer ---
    config.optim = ml_collections.ConfigDict()
    config.optim.name = "lars"  # lars | sgd | adamw
    config.optim.base_lr = 0.3  # at batch 256; lr = base_lr * batch_size / 256
    config.optim.lr = config.optim.get_ref("base_lr") * config.train.get_ref("batch_size") / 256
    config.optim.weight_decay = 1e-6
    config.optim.momentum = 0.9
    config.optim.trust_coefficient = 0.001  # LARS eta
    config.optim.b1 = 0.9  # adamw
    config.optim.b2 = 0.999  # adamw
    config.optim.warmup_epochs = 10.0
    config.optim.warmup_steps = epochs_to_steps(config, config.optim.get_ref("warmup_epochs"))
    config.optim.end_lr_factor = 0.0  # cosine decays to lr * end_lr_factor

    # --- Evaluators ---
    config.evals = ml_collections.ConfigDict()
    # Online linear probe on stop_gradient(backbone features) of the augmented views, trained
    # in the same step with its own optimizer; it never sends gradients to the backbone.
    config.evals.probe = ml_collections.ConfigDict(dict(lr=1e-3, weight_decay=0.0))
    config.evals.knn = ml_collections.ConfigDict(
        dict(
            every_steps=ml_collections.FieldReference(0, field_type=int),  # 0: only at the end
            k=200,
            temperature=0.1,
            batch_size=1000,  # also the feature-extraction batch of `jaxssl eval`
            ks=(10, 20, 100, 200),  # `jaxssl eval` reports all of them ...
            majority=True,  # ... and the unweighted majority vote too
            # Few-shot kNN (e.g. (1, 5, 10, 25)): n labelled images per class as the memory,
            # k = min(k, n x classes); one draw per evals.label_subset_seeds. (): off.
            shots_per_class=(),
        )
    )
    # The draws of the low-label protocols (few-shot kNN, linear probe on a label fraction):
    # class-balanced subsets fixed by a hash of the example's position and the seed
    # (jaxssl/evals/subsets.py); results are the mean and std over these seeds.
    config.evals.label_subset_seeds = (0, 1, 2)
    # Bag-of-features embedding (EMP-SSL's evaluation): num > 0 embeds every evaluated image
    # as the mean backbone feature of `num` random resized crops of `size` px (area in
    # `scale`, aspect in `ratio`), the same crops for every checkpoint (keyed by `seed`).
    # Used by kNN (in training and `jaxssl eval`), the linear probe, RankMe and the plots.
    config.evals.patches = ml_collections.ConfigDict(
        dict(num=0, size=32, scale=(0.25, 0.25), ratio=(1.0, 1.0), seed=0)
    )
    # The network every evaluation embeds with: "online" (the trained one) or "target" (the
    # EMA teacher of BYOL, MoCo, DINO, I-JEPA, ...: its backbone and projector; DINO's and
    # I-JEPA's papers evaluate it). jaxssl/evals/features.py: evaluated_variables.
    config.evals.encoder = "online"
    # Offline evaluation (`jaxssl eval`, jaxssl/evaluate.py) on features extracted once.
    config.evals.run = ("knn", "linear", "spectral", "plots")  # keys of jaxssl.evals.EVALUATORS
    config.evals.linear = ml_collections.ConfigDict(
        dict(
            weight_decays=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),  # chosen on held-out train rows
            holdout_fraction=0.1,  # the last 10% of the train split
            max_steps=1000,  # full-batch L-BFGS iterations per fit, at most ...
            tolerance=1e-4,  # ... stopping once the gradient norm is below this
            flip=False,  # add features of horizontally flipped train images as examples
            # Also the probe on a class-balanced fraction of the labels only (e.g. (0.01, 0.1)),
            # its weight decay chosen on the subset's held-out end. (): off.
            label_fractions=(),
        )
    )
    # Fine-tuning (jaxssl/evals/finetune.py, evaluator "finetune"; not in the default
    # evals.run, it trains): backbone + linear head on each fraction of the labels (the first
    # num_seeds of evals.label_subset_seeds), lr chosen from `lrs` on the subset's held-out
    # part; `steps` steps of batch_size images, whatever the subset's size.
    config.evals.finetune = ml_collections.ConfigDict(
        dict(
            label_fractions=(0.01, 0.1, 1.0),
            num_seeds=1,
            lrs=(0.02, 0.1),
            steps=300,
            batch_size=128,
            weight_decay=5e-4,
            holdout_fraction=0.1,
            seed=0,
        )
    )
    # Rotation prediction from frozen features (jaxssl/evals/rotation.py, evaluator
    # "rotation"): a label-free model-selection score beside RankMe.
    config.evals.rotation = ml_collections.ConfigDict(
        dict(num_images=5000, holdout_fraction=0.2, weight_decay=1e-4, max_steps=500)
    )
    config.evals.spectral = ml_collections.ConfigDict(
        dict(
            num_embeddings=25_600,  # RankMe and the covariance spectrum: first N train rows
            num_pairs=1024,  # alignment: pairs of augmented train views (config.data augment)
            num_uniformity=4096,  # uniformity: first N test rows (an N x N Gram matrix)
        )
    )
    # Equivariance (jaxssl/evals/equivariance.py): linear probes on the invariant and
    # equivariant parts of the backbone features (the last `equi_dim` dimensions; 0: the
    # method's `method.equi_dim`, or the whole feature only) and an MLP regression of the
    # relative transformation of `num_pairs` pairs of augmented train views (data.crop_boxes
    # and the run's augmentations; fit on the first (1 - holdout_fraction), R^2 on the rest).
    config.evals.equivariance = ml_collections.ConfigDict(
        dict(equi_dim=0, num_pairs=8192, holdout_fraction=0.25, hidden=256, steps=500, lr=1e-3)
    )
    config.evals.plots = ml_collections.ConfigDict(
        dict(num_points=5000, num_queries=8, num_neighbours=8)
    )
    # Training dynamics (jaxssl/evals/dynamics.py): every `every_steps` steps (0: off) the loop
    # measures, on `num_images` train images chosen by `seed` (the same ones every time, with
    # one fixed augmented pair each), the covariance spectrum, RankMe, collapse, alignment and
    # uniformity of backbone and projector, the loss terms, and per-layer weight and gradient
    # norms and update ratios, into WORKDIR/dynamics/*.npz. `batch_size` is the chunk each
    # loss and gradient sees (it must divide num_images and split over the devices); the
    # gradient is the mean over the chunks. The spectrum has at most num_images - 1 non-zero
    # eigenvalues (a 2048-wide projector needs more images to show all of them). Needs images
    # of one size: not with data.decode_crop. tools/plot_dynamics.py draws the files.
    config.evals.dynamics = ml_collections.ConfigDict(
        dict(every_steps=0, num_images=2048, seed=0, batch_size=256)
    )

    # --- Mesh: ("data", "fsdp"); the batch splits over both. data=-1: all devices / fsdp. ---
    # fsdp > 1 splits parameters and optimizer state over groups of fsdp devices (arrays of at
    # least fsdp_min_size elements, along their largest divisible axis): jaxssl/sharding.py.
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, fsdp_min_size=2**14))

    # --- SIGReg as a drop-in regularizer of any joint-embedding method (LeJEPA's, Balestriero
    # & LeCun 2025): the train step adds weight * mean over global views of the sliced
    # Epps-Pulley statistic of the method's projections over the global batch (jaxssl/step.py),
    # directions redrawn every step. E.g. VICReg with std_coeff=cov_coeff=0 and weight > 0 is
    # EB-JEPA's "SIGReg instead of VICReg's variance and covariance". 0: off.
    config.sigreg = ml_collections.ConfigDict(
        dict(weight=0.0, num_slices=256, t_max=3.0, num_knots=17)
    )
    return config


def apply_long_cifar_recipe(
    config: ml_collections.ConfigDict,
    optimizer: str,
    base_lr: float,
    weight_decay: float,
    warmup_epochs: float = 10.0,
) -> None:
    """The frame the long CIFAR-10 recipes share (solo-learn's): a ResNet-18 with the CIFAR
    stem, batch 256, 1000 epochs of ``warmup_epochs`` linear warmup then cosine, checkpoints
    every 5000 steps and kNN every 10 000.

    The method gives the optimizer (``lars`` | ``sgd`` | ``adamw``), its lr at batch 256 and
    its weight decay. LARS gets solo-learn's CIFAR trust coefficient 0.02 (eta; biases and
    norms are excluded from adaptation and decay, jaxssl/optim.py).
    """
    config.model.backbone = "resnet18"
    config.train.batch_size = 256
    config.train.epochs = 1000.0
    config.optim.name = optimizer
    config.optim.base_lr = base_lr
    config.optim.weight_decay = weight_decay
    if optimizer == "lars":
        config.optim.trust_coefficient = 0.02
    config.optim.warmup_epochs = warmup_epochs
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.every_steps = 10_000


def apply_cpu_budget(
    config: ml_collections.ConfigDict,
    image_size: int = 20,
    epochs: float = 3.6,
    minutes: float = 0.0,
) -> None:
    """The ``cpu`` presets' shared choices: 2 CPU cores, <= 30 minutes wall.

    Throughput decides how much is learned, so: a quarter-width ResNet-18, small training
    crops (20 px is 2.6x cheaper than 32 px, 16 px another 1.9x with the ``auto`` convolution
    lowering; kNN still evaluates full 32 px images, which RandomResizedCrop-trained nets
    handle well), gentler crops (scale >= 0.2) for a budget of a few epochs. Method configs
    add their optimizer settings on top.

    Args:
      config: the config to change in place.
      image_size: training crop size. 20 for the presets measured before the ``auto``
        lowering; 16 (last stage on 2x2 maps, which ``auto`` runs as matrix products on CPU)
        buys ~1.7x the epochs.
      epochs: training epochs, sized so the whole run fits 30 minutes on the host the preset
        was measured on.
      minutes: > 0 trains for this many minutes of training loop instead of ``epochs``
        (``train.time_budget_minutes``), as many steps as this host runs in that time; the
        final kNN (~2-3 minutes at 32 px) and start-up come on top.
    """
    config.model.width = 32
    config.data.image_size = image_size
    config.data.eval_image_size = 32
    config.data.crop_scale = (0.2, 1.0)
    config.train.batch_size = 256
    config.train.epochs = epochs
    config.train.time_budget_minutes = minutes
    config.optim.warmup_epochs = 0.3
    config.train.log_every_steps = 10
    config.train.checkpoint_every_steps = 100
    config.evals.knn.every_steps = 0


def apply_noise_only_views(config: ml_collections.ConfigDict, std: float) -> None:
    """Views made by Gaussian pixel noise alone (Bordes et al. 2023): the whole image resized to
    ``data.image_size`` (no crop, no flip), no colour augmentation, then noise of ``std``."""
    config.data.crop_scale = (1.0, 1.0)
    config.data.crop_ratio = (1.0, 1.0)
    config.data.flip_prob = 0.0
    config.data.color_jitter_prob = 0.0
    config.data.grayscale_prob = 0.0
    config.data.blur_prob = 0.0
    config.data.solarize_prob = 0.0
    config.data.gaussian_noise_std = std


def apply_smoke(config: ml_collections.ConfigDict) -> None:
    """The ``smoke`` presets' shared choices: fake data, a tiny net, 4 steps; for tests."""
    config.data.name = "fake"
    config.data.num_train_examples = config.data.fake_train_examples
    config.model.width = 4
    config.model.projector_hidden_dim = 32
    config.model.projector_dim = 16
    config.train.batch_size = 32
    config.train.epochs = 0.25  # 4 steps
    config.optim.warmup_epochs = 0.0625  # 1 step
    config.train.log_every_steps = 1
    config.train.checkpoint_every_steps = 2
    config.evals.knn.every_steps = 0
    config.evals.knn.k = 10
    config.evals.knn.batch_size = 64
