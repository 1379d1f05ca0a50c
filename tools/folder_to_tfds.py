"""Converts a folder of images into a prepared TFDS dataset that jaxssl reads by name.

  python tools/folder_to_tfds.py ROOT --name my_images --data_dir DIR [--image_size 64]
  python -m jaxssl.train --config ... --config.data.name=my_images --config.data.data_dir=DIR

Reads the layouts of `jaxssl.data.folder` (``ROOT/<split>/<class>/*``, ``ROOT/<class>/*`` as
``train``, or unlabeled ``ROOT/*``) with the same validation and decoding. Splits are every
subfolder of ROOT when ROOT has a ``train`` folder, else ``train`` alone (``--splits``
overrides). Features: ``image`` (PNG by default, so pixels are exactly those of the folder
source), ``label`` (``ClassLabel`` of the class folder names; -1 for unlabeled files) and
``file_name`` (path relative to ROOT). TFDS shuffles examples at write time
(by a hash of ``file_name``), so streaming reads are well mixed; the ``index`` of an
example therefore differs from the folder source's.
"""

import argparse
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxssl.data import folder, image_files


def _split_names(root: str) -> list[str]:
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder root {root!r} does not exist. {folder.LAYOUT}")
    if os.path.isdir(os.path.join(root, "train")):
        return sorted(
            entry.name
            for entry in os.scandir(root)
            if entry.is_dir() and not entry.name.startswith(".")
        )
    return ["train"]


def _examples(examples: folder.FolderSplit, root: str, image_size: int | None, shape):
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(examples.paths, tf.string)).map(
        lambda path: image_files.decode_image(tf.io.read_file(path), image_size),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    for path, label, image in zip(
        examples.paths, examples.labels, dataset.as_numpy_iterator(), strict=True
    ):
        if image.shape != shape:
            raise ValueError(
                f"{path} is {image.shape[1]}x{image.shape[0]}, other images are "
                f"{shape[1]}x{shape[0]}: pass --image_size S to crop and resize them all."
            )
        file_name = os.path.relpath(path, root)
        yield file_name, {"image": image, "label": int(label), "file_name": file_name}


def convert(
    root: str,
    name: str,
    data_dir: str,
    *,
    image_size: int | None = None,
    splits: list[str] | None = None,
    on_corrupt: str = "error",
    encoding: str = "png",
) -> tfds.core.DatasetBuilder:
    """Writes ``root`` as TFDS dataset ``name`` (version 1.0.0) into ``data_dir``.

    Args:
      root: the image folder.
      name: TFDS name to give the dataset; must not be a registered TFDS dataset.
      data_dir: TFDS data directory to write ``name/1.0.0/`` into.
      image_size: crop and resize every image to ``S x S`` as `image_files.decode_image`
        does; ``None`` keeps images as decoded, which then must all have one size.
      splits: split folders to convert; ``None``: every subfolder of ``root`` if it has
        a ``train`` folder, else ``["train"]``.
      on_corrupt: ``"error"`` or ``"skip"`` for files that are not decodable images.
      encoding: ``"png"`` (lossless) or ``"jpeg"``.

    Returns:
      The prepared builder; `jaxssl.data.tfds.load_split(name, split, data_dir, ...)` reads it.

    Raises:
      ValueError: ``name`` is a registered TFDS dataset or already prepared in
        ``data_dir``, images differ in size without ``image_size``, or as
        `folder.read_split`.
      FileNotFoundError: as `folder.read_split`.
    """
    try:
        tfds.builder_cls(name)
    except tfds.core.registered.DatasetNotFoundError:
        pass
    else:
        raise ValueError(f"{name!r} is a registered TFDS dataset; pick another --name.")
    if os.path.isdir(os.path.join(data_dir, name)):
        raise ValueError(f"{os.path.join(data_dir, name)} exists; remove it or pick another name.")
    splits = splits or _split_names(root)
    examples = {split: folder.read_split(root, split, on_corrupt) for split in splits}
    class_names = examples[splits[0]].class_names
    first_path = examples[splits[0]].paths[0]
    with open(first_path, "rb") as file:
        shape = image_files.decode_image(file.read(), image_size).numpy().shape
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=shape, encoding_format=encoding),
            "label": (
                tfds.features.ClassLabel(names=class_names)
                if class_names
                else tfds.features.Scalar(np.int64, doc="-1: unlabeled")
            ),
            "file_name": tfds.features.Text(),
        }
    )
    split_datasets = {
        split: _examples(examples[split], root, image_size, shape) for split in splits
    }
    return tfds.dataset_builders.store_as_tfds_dataset(
        name=name,
        version="1.0.0",
        features=features,
        split_datasets=split_datasets,
        data_dir=data_dir,
        description=f"Images of {os.path.abspath(root)}, converted by tools/folder_to_tfds.py.",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the image folder")
    parser.add_argument("--name", required=True, help="TFDS name for the dataset")
    parser.add_argument("--data_dir", required=True, help="TFDS data directory to write into")
    parser.add_argument("--image_size", type=int, default=None, help="crop+resize to S x S")
    parser.add_argument("--splits", default=None, help="comma-separated split folders")
    parser.add_argument("--on_corrupt", choices=folder.ON_CORRUPT, default="error")
    parser.add_argument("--encoding", choices=("png", "jpeg"), default="png")
    args = parser.parse_args(argv)
    builder = convert(
        args.root,
        args.name,
        args.data_dir,
        image_size=args.image_size,
        splits=args.splits.split(",") if args.splits else None,
        on_corrupt=args.on_corrupt,
        encoding=args.encoding,
    )
    sizes = {split: info.num_examples for split, info in builder.info.splits.items()}
    print(f"Wrote {args.name} to {builder.data_dir}: {sizes}")
    data_dir = os.path.abspath(args.data_dir)
    print(f"Train with --config.data.name={args.name} --config.data.data_dir={data_dir}")


if __name__ == "__main__":
    main()
