"""Training views decoded from their crop windows: the input pipeline for JPEG datasets (ImageNet).

A config with ``data.decode_crop = True`` (the ImageNet recipes, `jaxssl.configs.imagenet_base`)
reads its TFDS dataset here. Images keep their own sizes on disk; for each view the host reads
the JPEG header for the image's shape, samples a random-resized-crop window on it (Inception
crop: area in ``crop_scale`` of the image, aspect ratio in ``crop_ratio``, 10 tries, else the
whole image) and decodes only that window (``tf.image.decode_and_crop_jpeg``, which skips the
entropy decoding of blocks outside it), then resizes it and flips it. This is the fused
decode-and-crop of BYOL's and big_vision's input pipelines: a 2 x 224 + 10 x 96 multi-crop
step decodes roughly the pixels of its crops, not twelve whole images. The host ships uint8
crops; colour augmentation and normalization run in the train step.

Every view is a pure function of (seed, example index, epoch, view), keyed like
`jaxssl.data.crops`. Each process streams its own contiguous part of the split
(``tfds.even_splits``) in the dataset's file order, shuffled per epoch in a seeded buffer;
resuming at step ``k`` reads and drops (without decoding) the examples before it in its epoch.

Evaluation images are the central ``eval_crop_fraction`` of the shorter side (224 / 256 by
default), decoded from that window and resized to ``eval_image_size``.

References:
  Szegedy et al., `Going deeper with convolutions <https://arxiv.org/abs/1409.4842>`_, 2015
  (the Inception crop); Grill et al., `Bootstrap your own latent
  <https://arxiv.org/abs/2006.07733>`_, 2020 (its input pipeline).
"""

from collections.abc import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxssl.data import crops

_SHUFFLE_BUFFER = 16_384
_CROP_TRIES = 10


def open_part(
    data_config: ml_collections.ConfigDict, split: str, process_index: int, process_count: int
) -> tuple[tf.data.Dataset, int, int]:
    """This process's part of a TFDS split with the images still encoded.

    Args:
      data_config: the ``config.data`` ConfigDict (``name``, ``data_dir``).
      split: split name or TFDS sub-split spec.
      process_index: this process's index.
      process_count: number of processes.

    Returns:
      ``(dataset, n, max_n)``: elements ``{"image": string (encoded), "label": int32, "index":
      int64}`` in the split's order, ``index`` the example's position in the whole split; ``n``
      the examples in this part, ``max_n`` in the largest part.

    Raises:
      jaxssl.data.tfds.DatasetNotPreparedError: the dataset is not prepared in ``data_dir``.
    """
    name = data_config.name
    try:
        builder = tfds.builder(name, data_dir=data_config.data_dir)
        prepared = builder.is_prepared()
    except tfds.core.registered.DatasetNotFoundError:
        prepared = False
    if not prepared:
        # Imported here: jaxssl.data.tfds imports this module.
        from jaxssl.data import tfds as input_pipeline  # noqa: PLC0415

        raise input_pipeline.DatasetNotPreparedError(
            f"TFDS dataset {name!r} is not prepared in data_dir {data_config.data_dir} (None: "
            f"$TFDS_DATA_DIR). ImageNet needs a manual download: "
            f"https://www.tensorflow.org/datasets/catalog/imagenet2012, then "
            f"`tfds build {name} --manual_dir=DIR`, or put the files in "
            f"DATA_DIR/downloads/manual and run with --config.data.download=auto."
        )
    parts = tfds.even_splits(split, n=process_count)
    sizes = [builder.info.splits[part].num_examples for part in parts]
    dataset = builder.as_dataset(
        split=parts[process_index],
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(interleave_cycle_length=1, try_autocache=False),
    )
    dataset = dataset.enumerate(start=sum(sizes[:process_index])).map(
        lambda index, example: {
            "image": example["image"],
            "label": tf.cast(example["label"], tf.int32),
            "index": index,
        },
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset, sizes[process_index], max(sizes)


def _image_shape(encoded: tf.Tensor) -> tf.Tensor:
    """``[H, W, C]`` of an encoded image: from the JPEG header, else by decoding (PNG, ...)."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.extract_jpeg_shape(encoded),
        lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False)),
    )


def decode_window(encoded: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Decodes only ``window`` = ``[top, left, height, width]`` of an encoded image, uint8 RGB."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.decode_and_crop_jpeg(encoded, window, channels=3),
        lambda: tf.image.crop_to_bounding_box(
            tf.io.decode_image(encoded, channels=3, expand_animations=False), *tf.unstack(window)
        ),
    )


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
    resized = tf.image.resize(image, (size, size), method="bicubic", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def crop_window(shape: tf.Tensor, seed: tf.Tensor, scale, ratio) -> tf.Tensor:
    """A random-resized-crop window ``[top, left, height, width]`` on an image of ``shape``.

    Args:
      shape: ``[H, W, C]`` of the image.
      seed: ``[2]`` int32, the stateless seed of this view.
      scale: (min, max) area of the window as a fraction of the image's.
      ratio: (min, max) aspect ratio width / height.

    Returns:
      The window; the whole image if no try fits.
    """
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=tuple(ratio),
        area_range=tuple(scale),
        max_attempts=_CROP_TRIES,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def random_view(
    encoded: tf.Tensor, key: tf.Tensor, size: int, scale, ratio, flip_prob: float
) -> tf.Tensor:
    """One view of an encoded image: a random window decoded, resized to ``size``, maybe flipped.

    Args:
      encoded: the encoded image (a scalar string).
      key: uint32 scalar, the view's key (`jaxssl.data.crops.example_keys`).
      size: output side in pixels.
      scale: crop area range.
      ratio: crop aspect-ratio range.
      flip_prob: probability of a horizontal flip.

    Returns:
      uint8 ``[size, size, 3]``.
    """
    seed = tf.stack([tf.bitcast(key, tf.int32), tf.constant(0x6A70, tf.int32)])
    window = crop_window(_image_shape(encoded), seed, scale, ratio)
    view = _resize(decode_window(encoded, window), size)
    flip_seed = tf.stack([tf.bitcast(key, tf.int32), tf.constant(0x666C, tf.int32)])
    flip = tf.random.stateless_uniform([], flip_seed) < flip_prob
    return tf.cond(flip, lambda: tf.image.flip_left_right(view), lambda: view)


def centre_view(encoded: tf.Tensor, size: int, crop_fraction: float) -> tf.Tensor:
    """The central ``crop_fraction`` of the shorter side, decoded from that window, resized."""
    shape = _image_shape(encoded)
    side = tf.cast(crop_fraction * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    window = tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])
    return _resize(decode_window(encoded, window), size)


def make_views(
    example: dict[str, tf.Tensor], seed: int, data_config: ml_collections.ConfigDict
) -> dict[str, tf.Tensor]:
    """The view groups of one example: ``"global"`` [V, S, S, 3] and, with multi-crop,
    ``"local"`` [L, s, s, 3], uint8; views keyed by (seed, index, epoch, view number)."""
    groups = [("global", data_config.num_views, data_config.image_size, data_config.crop_scale)]
    if data_config.local_views > 0:
        groups.append(
            (
                "local",
                data_config.local_views,
                data_config.local_image_size,
                data_config.local_crop_scale,
            )
        )
    out, first_view = {}, 0
    for group, count, size, scale in groups:
        views = []
        for view in range(first_view, first_view + count):
            key = crops.example_keys(seed, example["index"][None], example["epoch"], view)[0]
            views.append(
                random_view(
                    example["image"],
                    key,
                    size,
                    scale,
                    data_config.crop_ratio,
                    data_config.flip_prob,
                )
            )
        out[group] = tf.stack(views)
        first_view += count
    return out


def make_train_iterator(
    data_config: ml_collections.ConfigDict,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int,
    process_index: int,
    process_count: int,
) -> Iterator[dict[str, np.ndarray]]:
    """Infinite stream of this process's training batches of uint8 crops, from ``start_step``.

    Args: as `jaxssl.data.tfds.make_train_iterator`.

    Returns:
      An iterator of ``{"global": uint8 [b, V, S, S, 3], "label": int32 [b], "index": int32
      [b]}`` (and ``"local": uint8 [b, L, s, s, 3]`` with multi-crop), ``b = global_batch_size
      // process_count``.
    """
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by process_count="
            f"{process_count}."
        )
    batch_size = global_batch_size // process_count
    dataset, num_examples, _ = open_part(
        data_config, data_config.train_split, process_index, process_count
    )
    if num_examples == 0:
        raise ValueError(f"Process {process_index} has no examples of {data_config.train_split}.")
    start_epoch, skip = divmod(start_step * batch_size, num_examples)

    def epoch_stream(epoch):
        return dataset.shuffle(
            min(num_examples, _SHUFFLE_BUFFER),
            seed=seed * 1_000_003 + epoch,
            reshuffle_each_iteration=False,
        ).map(lambda example: example | {"epoch": epoch})

    def views(example):
        return make_views(example, seed, data_config) | {
            "label": example["label"],
            "index": tf.cast(example["index"], tf.int32),
        }

    options = tf.data.Options()
    options.deterministic = True
    stream = (
        tf.data.Dataset.counter(start_epoch)
        .flat_map(epoch_stream)
        .skip(skip)  # before decoding: a resume reads these records but decodes none
        .map(views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )
    return stream.as_numpy_iterator()


def open_eval_part(
    data_config: ml_collections.ConfigDict, split: str, process_index: int, process_count: int
) -> tuple[tf.data.Dataset, int, int]:
    """``open_part`` with every image replaced by its centre view (uint8 ``[S, S, 3]``).

    The evaluation pipeline (`jaxssl.data.tfds.make_eval_iterator`) then batches, normalizes
    and pads these fixed-size images as it does a decoded dataset's.
    """
    dataset, num_examples, max_part = open_part(data_config, split, process_index, process_count)
    size, fraction = int(data_config.eval_image_size), float(data_config.eval_crop_fraction)
    dataset = dataset.map(
        lambda example: example | {"image": centre_view(example["image"], size, fraction)},
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset, num_examples, max_part
