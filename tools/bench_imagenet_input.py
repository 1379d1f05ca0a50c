"""Source images/s of the 224 px JPEG pipeline per host CPU core, beside what a pod needs.

  PYTHONPATH=. python tools/bench_imagenet_input.py --data_dir DIR [--make 2000] \
      [--batches 20] [--report docs/pod_results.json]

Times `jaxssl.data.jpeg` (decode-and-crop, resize, flip; uint8 crops) for SimCLR's 2 x 224 px
and DINO's 2 x 224 + 10 x 96 px views on a TFDS dataset of variable-size JPEGs
(``--make N`` first writes N of them with tools/make_jpeg_tfds.py), and divides by the host's
CPU cores (tf.data uses them all). With ``--report`` it sets each figure beside the source
images/s per host that a compiled recipe's roofline estimate needs (``est_img_per_s_per_host``
of `jaxssl compile`, which assumes the topology's chips per host: 8 on v5e, 4 on v4), so one
sees whether host-side cropping keeps up or how many cores a host would need. Prints one JSON
line.
"""

import argparse
import json
import os
import time

from jaxssl.configs import dino_imagenet, simclr_imagenet
from jaxssl.data import jpeg
from tools import make_jpeg_tfds


def images_per_second(data_config, batch_size: int, batches: int, warmup: int = 3) -> float:
    """Source images per second of `jpeg.make_train_iterator` on this host (one process)."""
    stream = jpeg.make_train_iterator(
        data_config, global_batch_size=batch_size, seed=0, start_step=0, process_index=0,
        process_count=1,
    )  # fmt: skip
    for _ in range(warmup):
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--name", default="jpeg_images")
    parser.add_argument("--make", type=int, default=0, help="first write this many JPEGs")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--report", default=None, help="pod_results.json to compare with")
    args = parser.parse_args(argv)
    if args.make:
        make_jpeg_tfds.write_dataset(args.name, args.data_dir, {"train": args.make, "test": 16})
    cores = os.cpu_count()
    result = {"cpu_cores": cores}
    for label, module in (("simclr_2x224", simclr_imagenet), ("dino_2x224+10x96", dino_imagenet)):
        config = module.get_config()
        config.data.name, config.data.data_dir = args.name, args.data_dir
        rate = images_per_second(config.data, args.batch, args.batches)
        result[label] = {"img_per_s": round(rate, 1), "img_per_s_per_core": round(rate / cores, 1)}
    if args.report and os.path.exists(args.report):
        with open(args.report) as f:
            reports = json.load(f)
        needs = {
            key: report["est_img_per_s_per_host"]
            for key, report in reports.items()
            if "est_img_per_s_per_host" in report
        }
        result["needed_img_per_s_per_host"] = {k: round(v) for k, v in needs.items()}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
