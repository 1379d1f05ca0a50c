"""DeepCluster on CIFAR-10 with a ResNet-18 (CIFAR stem).

Presets (``--config jaxssl/configs/deepcluster_cifar10.py:NAME``):

* default: DeepCluster's recipe carried to CIFAR-10: 100 clusters (10x the classes; the paper
  uses 10 000 on ImageNet), re-clustered every epoch with 20 Lloyd iterations, loss weighted
  by inverse cluster size, one view per image (random resized crop, flip, and SimCLR's colour
  jitter and grayscale in place of the paper's Sobel filter: both keep k-means from grouping by
  colour; the Sobel input is not implemented), a 2-layer 2048 -> 256 projector whose
  normalized outputs are clustered, SGD lr 0.05 x B/256 with momentum 0.9 and weight decay
  1e-5 for the network and its classifier, 200 epochs. The paper reports ImageNet transfer;
  no CIFAR-10 figure is published, and this preset is not run here.

    jaxssl train --config jaxssl/configs/deepcluster_cifar10.py --workdir /tmp/dc_c10

* ``cpu``: the shared 2-core budget (quarter-width ResNet-18) at 16 px crops for 26 minutes of
  training, LARS for the network, kNN on 24 px test images. The first epoch only fills the
  bank (methods/deepcluster.py).
* ``smoke``: tiny model, fake data, a handful of steps. Used by tests.

References:
  Caron, Bojanowski, Joulin & Douze, Deep Clustering for Unsupervised Learning of Visual
  Features, ECCV 2018. https://arxiv.org/abs/1807.05520
"""

import ml_collections

from jaxssl.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = base.parse_arg(arg, "deepcluster_cifar10")
    config = base.get_base_config()
    config.data.num_views = 1
    config.data.crop_scale = (0.2, 1.0)
    config.model.backbone = "resnet18"
    config.model.projector_hidden_dim = 2048
    config.model.projector_dim = 256
    config.method = ml_collections.ConfigDict()
    config.method.name = "deepcluster"
    config.method.num_clusters = 100
    config.method.kmeans_iters = 20
    config.method.kmeans_chunk = 2000  # bank rows per distance block; divides the bank size
    # A row per example of data.train_split (an expression: overriding it leaves
    # data.num_train_examples alone), and the clustering period, one epoch.
    config.method.bank_size = config.data.get_ref("num_train_examples") + 0
    config.method.steps_per_epoch = base.epochs_to_steps(config, ml_collections.FieldReference(1.0))
    config.method.head_lr = 0.05
    config.method.head_momentum = 0.9
    config.method.head_weight_decay = 1e-5
    config.train.batch_size = 256
    config.train.epochs = 200.0
    config.optim.name = "sgd"
    config.optim.base_lr = 0.05
    config.optim.momentum = 0.9
    config.optim.weight_decay = 1e-5
    config.optim.warmup_epochs = 1.0
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.every_steps = 10_000

    if preset == "cpu":
        base.apply_cpu_budget(config, image_size=16, epochs=6.0, minutes=26.0)
        config.data.eval_image_size = 24
        config.model.projector_hidden_dim = 1024
        config.optim.name = "lars"
        config.optim.base_lr = 0.4
        config.optim.trust_coefficient = 0.02
        config.optim.weight_decay = 1e-5
        config.optim.warmup_epochs = 1.3  # the first epoch has no loss

    if preset == "smoke":
        base.apply_smoke(config)
        config.method.num_clusters = 8
        config.method.kmeans_iters = 3
    return config
