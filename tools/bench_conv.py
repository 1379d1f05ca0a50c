"""Forward + backward time of each ResNet convolution shape, native vs im2col lowering.

    python tools/bench_conv.py [--batch 512] [--width 32] [--sizes 20,16,12] [--dtype float32]

For a CIFAR-stem ResNet-18 at first-stage ``--width`` and each input size in ``--sizes``, times
every distinct 3x3 convolution shape (stem, first conv of each stage, the stride-1 convs) as
``jax.grad`` of a sum of squares, median of 5 calls after 2 warm-up calls, with
``jaxssl.models.conv.Conv(implementation=...)``. Prints one JSON line per shape with both times
and the lowering ``"auto"`` picks on this backend. This is the measurement behind
``conv.AUTO_IM2COL_MAX_OUTPUT``: rerun it on a new kind of host before trusting the threshold.
"""

import argparse
import json
import statistics
import time


def resnet18_conv_shapes(size: int, width: int) -> list[tuple[int, int, int, int]]:
    """Distinct ``(input_size, in_channels, out_channels, stride)`` 3x3 convs of ResNet-18."""
    shapes = [(size, 3, width, 1), (size, width, width, 1)]
    channels = width
    for _ in range(3):
        shapes.append((size, channels, 2 * channels, 2))
        size, channels = (size + 1) // 2, 2 * channels
        shapes.append((size, channels, channels, 1))
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--sizes", default="20,16,12")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    from jaxssl import platform

    platform.configure_program()  # the trainer's malloc and XLA:CPU settings
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxssl.models import conv

    def time_grad(implementation, size, cin, cout, stride):
        layer = conv.Conv(cout, (3, 3), stride, dtype=args.dtype, implementation=implementation)
        x = jnp.asarray(np.random.default_rng(0).normal(size=(args.batch, size, size, cin)))
        variables = layer.init(jax.random.key(0), x)

        def loss(variables, x):
            y = layer.apply(variables, x).astype(jnp.float32)
            return jnp.sum(y * y)

        grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
        for _ in range(2):
            jax.block_until_ready(grad_fn(variables, x))
        times = []
        for _ in range(5):
            start = time.perf_counter()
            jax.block_until_ready(grad_fn(variables, x))
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    for size in (int(s) for s in args.sizes.split(",")):
        for in_size, cin, cout, stride in resnet18_conv_shapes(size, args.width):
            out_size = conv.output_size(in_size, 3, stride)
            native = time_grad("native", in_size, cin, cout, stride)
            im2col = time_grad("im2col", in_size, cin, cout, stride)
            record = {
                "input_px": in_size,
                "output_px": out_size,
                "channels": [cin, cout],
                "stride": stride,
                "native_ms": round(native, 1),
                "im2col_ms": round(im2col, 1),
                "auto": conv.resolve_implementation("auto", (out_size, out_size)),
                "backend": jax.default_backend(),
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
