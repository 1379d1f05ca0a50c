"""The frame every ImageNet-1k recipe shares (not a run config itself).

`apply_imagenet` sets the data section for TFDS ``imagenet2012`` (prepared by the user: it
needs a manual download, https://www.tensorflow.org/datasets/catalog/imagenet2012) read through
the JPEG pipeline of `jaxssl.data.jpeg`: each process streams its own files, and every view is
decoded from its crop window only (``tf.image.decode_and_crop_jpeg``), so the host never decodes
whole images. The model is a ResNet with the ImageNet stem (or a ViT), computing in bfloat16.

`apply_smoke` turns a recipe into its ``smoke`` preset: fake 32 px data, a tiny net, a few
steps; ``jaxssl compile`` tests use it.
"""

import ml_collections

from jaxssl.configs import base

NUM_TRAIN_EXAMPLES = 1_281_167
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def apply_imagenet(
    config: ml_collections.ConfigDict, backbone: str, batch_size: int, epochs: float
) -> None:
    """ImageNet-1k data, a full-size backbone in bfloat16, and the recipe's batch and length.

    Args:
      config: the config to change in place (after ``base.get_base_config()``).
      backbone: ``resnet50`` or a ViT name (``vit_small``, ``vit_base``; patch 16).
      batch_size: the global batch of the published recipe.
      epochs: its epochs.
    """
    data = config.data
    data.name = "imagenet2012"
    data.train_split = "train"
    data.eval_train_split = "train"
    data.eval_test_split = "validation"
    data.num_train_examples = NUM_TRAIN_EXAMPLES
    data.num_classes = 1000
    data.image_size = 224
    data.eval_image_size = 224
    data.cache = False  # ~140 GB of JPEGs: streamed, per process
    # Views decoded from their crop windows (jaxssl/data/jpeg.py); the host ships uint8 crops.
    data.decode_crop = True
    # Evaluation images: the central crop_fraction of the shorter side, resized to
    # eval_image_size (224 / 256, the usual ImageNet centre crop).
    data.eval_crop_fraction = 0.875
    data.crop_scale = (0.08, 1.0)
    data.blur_prob = 0.5  # SimCLR's ImageNet augmentation blurs half the views
    data.mean = IMAGENET_MEAN
    data.std = IMAGENET_STD
    config.model.backbone = backbone
    config.model.stem = "imagenet"
    config.model.dtype = "bfloat16"  # parameters and optimizer state stay float32
    config.train.batch_size = batch_size
    config.train.epochs = epochs
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 5000
    config.evals.knn.batch_size = 1024
    config.evals.knn.every_steps = 0
    config.evals.patches.size = 224


def apply_smoke(config: ml_collections.ConfigDict) -> None:
    """The recipe at smoke scale: fake 32 px data (no JPEGs), a tiny backbone, 4 steps."""
    base.apply_smoke(config)
    config.data.decode_crop = False
    config.data.num_classes = 10
    config.data.image_size = 32
    config.data.eval_image_size = 32
    config.data.eval_train_split = "train"
    config.data.eval_test_split = "test"
    config.data.local_image_size = 16
    config.evals.patches.size = 32
    if config.model.backbone.startswith("vit"):
        config.model.backbone = "vit_tiny"
        config.model.patch_size = 8
    else:
        config.model.backbone = "resnet18"
