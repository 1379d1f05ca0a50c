"""Measures the training input pipeline's throughput in source images per second.

  TFDS_DATA_DIR=... python tools/bench_input.py --batch 512 --batches 50 [--color]

Prints one JSON line. The host pipeline cuts ``num_views`` uint8 crops of each source image
(`jaxssl.data.crops`); the figure counts source images, after a warm-up that covers loading,
decoding and XLA compilation.

``--color`` also times the photometric half of the augmentation (`jaxssl.data.color`,
which the train step applies to the crops) alone, jitted on JAX's default device (here the
CPU, one device) on a batch of crops already there.
"""

import argparse
import json
import os
import time

import ml_collections

from jaxssl import platform
from jaxssl.configs import base
from jaxssl.data import tfds


def measure_input_throughput(
    data_config: ml_collections.ConfigDict,
    global_batch_size: int,
    num_batches: int,
    warmup_batches: int = 5,
) -> float:
    """Source images per second of `tfds.make_train_iterator` on one process.

    Args:
      data_config: the ``config.data`` ConfigDict.
      global_batch_size: batch size.
      num_batches: batches timed after the warm-up.
      warmup_batches: batches drawn first and not timed.

    Returns:
      Source images per second.
    """
    iterator = tfds.make_train_iterator(
        data_config,
        global_batch_size=global_batch_size,
        seed=0,
        start_step=0,
        process_index=0,
        process_count=1,
    )
    for _ in range(warmup_batches):
        next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    return num_batches * global_batch_size / (time.perf_counter() - start)


def measure_color_throughput(
    data_config: ml_collections.ConfigDict,
    global_batch_size: int,
    num_batches: int,
    warmup_batches: int = 2,
) -> float:
    """Source images per second of `color.augment_batch` alone, as the train step runs it.

    Args:
      data_config: the ``config.data`` ConfigDict.
      global_batch_size: batch size.
      num_batches: steps timed after the warm-up (the first compiles).
      warmup_batches: steps run first and not timed.

    Returns:
      Source images per second (the views of each get their colours).
    """
    # Imported here: the host-only measurement above never starts JAX.
    platform.configure_program()  # the trainer's malloc and XLA:CPU settings
    import jax

    from jaxssl.data import color

    iterator = tfds.make_train_iterator(
        data_config,
        global_batch_size=global_batch_size,
        seed=0,
        start_step=0,
        process_index=0,
        process_count=1,
    )
    crops = next(iterator)
    batch = jax.device_put({group: crops[group] for group in ("global", "local") if group in crops})
    base_key = jax.random.key(0)
    augment_fn = jax.jit(
        lambda step, batch: color.augment_batch(
            jax.random.fold_in(base_key, step), batch, data_config
        )
    )
    for step in range(warmup_batches):
        jax.block_until_ready(augment_fn(step, batch))
    start = time.perf_counter()
    for step in range(num_batches):
        views = augment_fn(warmup_batches + step, batch)
    jax.block_until_ready(views)
    return num_batches * global_batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="cifar10", help='TFDS name, or "fake"')
    parser.add_argument("--data-dir", default=None, help="default: TFDS's ($TFDS_DATA_DIR)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument(
        "--color",
        action="store_true",
        help="also time the JAX colour augmentation (jaxssl.data.color) alone",
    )
    args = parser.parse_args()
    data_config = base.get_base_config().data
    data_config.update(
        name=args.name,
        data_dir=args.data_dir,
        num_views=args.views,
        image_size=args.size,
        cache=not args.no_cache,
    )
    start = time.perf_counter()
    images_per_second = measure_input_throughput(data_config, args.batch, args.batches, args.warmup)
    result = {
        "source_images_per_s": round(images_per_second, 1),
        "views_per_s": round(images_per_second * args.views, 1),
        "batch": args.batch,
        "batches": args.batches,
        "views": args.views,
        "image_size": args.size,
        "cache": not args.no_cache,
        "dataset": args.name,
        "cpu_count": os.cpu_count(),
    }
    if args.color:
        color_per_second = measure_color_throughput(data_config, args.batch, args.batches)
        result.update(
            {
                "color_source_images_per_s": round(color_per_second, 1),
                "color_views_per_s": round(color_per_second * args.views, 1),
            }
        )
    result["total_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
