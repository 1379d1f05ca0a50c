"""Writes a small TFDS dataset of real-looking JPEGs of varying sizes (an ImageNet stand-in).

  python tools/make_jpeg_tfds.py --data_dir DIR [--name jpeg_images] [--train 2000] [--test 200]

Each image is a smooth random colour field with a few shapes and noise, 160-400 px on a side
with random aspect ratio, stored JPEG-encoded (quality 90) like ``imagenet2012``, so
`jaxssl.data.jpeg` (``data.decode_crop``) and tools/bench_imagenet_input.py can run where
ImageNet is not available. Point a recipe at it with ``--config.data.name=NAME
--config.data.data_dir=DIR --config.data.eval_test_split=test``.
"""

import argparse

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

NUM_CLASSES = 10


def make_image(rng: np.random.Generator, min_side: int, max_side: int) -> np.ndarray:
    """One uint8 ``[H, W, 3]`` image: a blurred colour field, a few rectangles, pixel noise."""
    height, width = (int(s) for s in rng.integers(min_side, max_side + 1, size=2))
    coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.float32)
    image = tf.image.resize(coarse[None], (height, width), method="bicubic")[0].numpy()
    for _ in range(3):
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        bottom, right = top + rng.integers(8, height // 2), left + rng.integers(8, width // 2)
        image[top:bottom, left:right] = rng.uniform(0, 255, size=3)
    image += rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_dataset(
    name: str,
    data_dir: str,
    num_examples: dict[str, int],
    min_side: int = 160,
    max_side: int = 400,
    seed: int = 0,
) -> tfds.core.DatasetBuilder:
    """Writes ``name`` under ``data_dir`` with JPEG images; returns its builder.

    Args:
      name: TFDS name of the new dataset.
      data_dir: TFDS data directory.
      num_examples: examples per split, e.g. ``{"train": 64, "test": 16}``.
      min_side: smallest image side.
      max_side: largest image side.
      seed: seed of the images and labels.

    Returns:
      The prepared builder (``tfds.builder(name, data_dir=data_dir)`` finds it too).
    """
    rng = np.random.default_rng(seed)
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }
    )
    # (key, example) pairs: TFDS orders (shuffles) a split by its keys.
    splits = {
        split: [
            (
                f"{split}_{i}",
                {
                    "image": make_image(rng, min_side, max_side),
                    "label": int(rng.integers(NUM_CLASSES)),
                },
            )
            for i in range(count)
        ]
        for split, count in num_examples.items()
    }
    return tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=features, split_datasets=splits, data_dir=data_dir
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--name", default="jpeg_images")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=200)
    args = parser.parse_args(argv)
    write_dataset(args.name, args.data_dir, {"train": args.train, "test": args.test})
    print(f"Wrote {args.name} ({args.train} train, {args.test} test) under {args.data_dir}.")


if __name__ == "__main__":
    main()
