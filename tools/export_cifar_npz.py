"""Exports a CIFAR-10 subset from TFDS to one compact .npz of JPEG bytes (for hosts without TF).

  TFDS_DATA_DIR=... python tools/export_cifar_npz.py --out cifar10_jpeg.npz \
      [--train 25000] [--test 10000] [--quality 90]

Writes ``train_jpeg`` / ``test_jpeg`` (object arrays of JPEG bytes, first N examples of each
split in TFDS order), ``train_label`` / ``test_label`` (uint8) and ``quality``;
tools/accelerator_check.py reads it with Pillow. 25 000 train + 10 000 test images at quality
90 take about 40 MB (the whole train split would be ~57 MB, raw uint8 pixels 184 MB).
"""

import argparse
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image


def encode_split(split: str, count: int, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` examples of a CIFAR-10 split as JPEG bytes and uint8 labels."""
    dataset = tfds.load("cifar10", split=f"{split}[:{count}]", download=False)
    encoded, labels = [], []
    for example in tfds.as_numpy(dataset):
        buffer = io.BytesIO()
        Image.fromarray(example["image"]).save(buffer, format="JPEG", quality=quality)
        encoded.append(buffer.getvalue())
        labels.append(example["label"])
    return np.array(encoded, dtype=object), np.array(labels, np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--train", type=int, default=25_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args(argv)
    train_jpeg, train_label = encode_split("train", args.train, args.quality)
    test_jpeg, test_label = encode_split("test", args.test, args.quality)
    np.savez(
        args.out,
        train_jpeg=train_jpeg,
        train_label=train_label,
        test_jpeg=test_jpeg,
        test_label=test_label,
        quality=np.int32(args.quality),
    )
    size = sum(len(b) for b in train_jpeg) + sum(len(b) for b in test_jpeg)
    print(
        f"Wrote {args.out}: {len(train_jpeg)} train + {len(test_jpeg)} test, {size / 1e6:.1f} MB."
    )


if __name__ == "__main__":
    main()
