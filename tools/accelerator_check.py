"""A short check on a real accelerator (GPU or TPU): SimCLR throughput at 224 px and a CIFAR kNN.

  python tools/accelerator_check.py --cifar cifar10_jpeg.npz          # ~5 minutes on one H200
  python tools/accelerator_check.py --cifar cifar10_jpeg.npz --tiny   # CPU smoke run, ~2 min

(a) the SimCLR ResNet-50 train step of jaxssl/configs/simclr_imagenet.py (2 x 224 px views,
bfloat16, global batch ``--batch``) on synthetic data: images per second after warm-up;
(b) SimCLR ResNet-18 (CIFAR stem, jaxssl/configs/simclr_cifar10.py) trained ``--epochs`` epochs
on the CIFAR-10 subset of ``--cifar`` (written by tools/export_cifar_npz.py), then weighted kNN
top-1 (k=200, T=0.1) of the test images against the train images.
Prints one JSON line with the figures.

Needs jax, flax, optax, chex, ml_collections, numpy and Pillow, not TensorFlow: it builds the
step from `jaxssl.methods`, `jaxssl.optim`, `jaxssl.state` and `jaxssl.step` (the pieces
`jaxssl.trainer.build` compiles) and makes the CIFAR crops here, in JAX: random resized crop
(scale 0.2-1) and flip, shipped to the step as uint8 as the host pipeline ships them; the step
applies `jaxssl.data.color`'s photometric augmentation and normalization.
"""

import argparse
import io
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from jaxssl import methods, optim, sharding  # noqa: E402
from jaxssl import state as state_lib  # noqa: E402
from jaxssl import step as step_lib  # noqa: E402
from jaxssl.configs import simclr_cifar10, simclr_imagenet  # noqa: E402


def build_step(config, mesh):
    """``(init_state, jitted step, model)`` as `jaxssl.trainer.build` makes them, without TF."""
    import flax.linen as nn  # noqa: PLC0415
    import optax  # noqa: PLC0415

    method = methods.get_method(config.method.name)
    model = method.build_model(config)
    probe = nn.Dense(config.data.num_classes, name="probe")
    tx, lr_schedule = optim.make_optimizer(config.optim, int(config.train.num_steps))
    probe_tx = optax.adamw(config.evals.probe.lr, weight_decay=config.evals.probe.weight_decay)
    size = config.data.image_size
    init_fn = state_lib.make_init_fn(
        model, method, config.method, probe, tx, probe_tx, (size, size, 3)
    )
    init_key, base_key = jax.random.split(jax.random.key(config.seed))
    step_fn = step_lib.make_train_step(
        model, method, probe, tx, probe_tx, lr_schedule, config, base_key
    )
    state_sharding = sharding.state_shardings(jax.eval_shape(init_fn, init_key), mesh)
    train_step = jax.jit(
        step_fn,
        in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
        out_shardings=(state_sharding, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
    state = jax.jit(init_fn, out_shardings=state_sharding)(init_key)
    return state, train_step, model


def throughput_224(batch_size: int, steps: int, warmup: int, tiny: bool) -> dict:
    """(a): img/s (views counted as images: 2 per example) of the SimCLR ResNet-50 step."""
    config = simclr_imagenet.get_config("smoke" if tiny else None)
    config.train.batch_size = batch_size
    mesh = sharding.make_mesh(config.mesh)
    state, train_step, _ = build_step(config, mesh)
    size, views = config.data.image_size, config.data.num_views
    rng = np.random.default_rng(0)
    batch = sharding.to_global(
        {
            # uint8 crops, as the host ships them; the step applies colour and normalization.
            "global": rng.integers(0, 256, (batch_size, views, size, size, 3), np.uint8),
            "label": rng.integers(0, 10, batch_size).astype(np.int32),
            "index": np.arange(batch_size, dtype=np.int32),
        },
        mesh,
    )
    start = time.perf_counter()
    state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    for _ in range(warmup):
        state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - start) / steps
    return {
        "r50_224_backbone": config.model.backbone,
        "r50_224_batch": batch_size,
        "r50_224_dtype": config.model.dtype,
        "r50_224_compile_s": round(compile_seconds, 1),
        "r50_224_step_s": round(seconds, 4),
        "r50_224_img_per_s": round(batch_size * views / seconds, 1),
        "r50_224_loss": float(jax.device_get(metrics["train/loss"])),
    }


def load_cifar(path: str, limit_train: int | None, limit_test: int | None):
    """uint8 images and labels of the .npz written by tools/export_cifar_npz.py."""
    from PIL import Image  # noqa: PLC0415

    data = np.load(path, allow_pickle=True)

    def decode(encoded, limit):
        encoded = encoded[:limit]
        return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in encoded])

    return (
        decode(data["train_jpeg"], limit_train),
        data["train_label"][:limit_train].astype(np.int32),
        decode(data["test_jpeg"], limit_test),
        data["test_label"][:limit_test].astype(np.int32),
    )


def crop_and_flip(key, images, size: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
    """Random resized crops (bilinear) and horizontal flips of ``[N, H, W, 3]`` float images."""
    num, height, width = images.shape[0], images.shape[1], images.shape[2]
    k_area, k_ratio, k_y, k_x, k_flip = jax.random.split(key, 5)
    area = jax.random.uniform(k_area, (num,), minval=scale[0], maxval=scale[1])
    log_ratio = jax.random.uniform(
        k_ratio, (num,), minval=np.log(ratio[0]), maxval=np.log(ratio[1])
    )
    aspect = jnp.exp(log_ratio)
    crop_w = jnp.clip(jnp.sqrt(area * aspect) * width, 1.0, width)
    crop_h = jnp.clip(jnp.sqrt(area / aspect) * height, 1.0, height)
    top = jax.random.uniform(k_y, (num,)) * (height - crop_h)
    left = jax.random.uniform(k_x, (num,)) * (width - crop_w)
    grid = (jnp.arange(size) + 0.5) / size  # [S]
    rows = top[:, None] + grid[None] * crop_h[:, None] - 0.5  # [N, S]
    cols = left[:, None] + grid[None] * crop_w[:, None] - 0.5

    def sample(image, r, c):
        r0 = jnp.clip(jnp.floor(r), 0, height - 1).astype(jnp.int32)
        c0 = jnp.clip(jnp.floor(c), 0, width - 1).astype(jnp.int32)
        r1, c1 = jnp.minimum(r0 + 1, height - 1), jnp.minimum(c0 + 1, width - 1)
        wr = jnp.clip(r - r0, 0.0, 1.0)[:, None, None]
        wc = jnp.clip(c - c0, 0.0, 1.0)[None, :, None]
        top_row = image[r0][:, c0] * (1 - wc) + image[r0][:, c1] * wc
        bottom_row = image[r1][:, c0] * (1 - wc) + image[r1][:, c1] * wc
        return top_row * (1 - wr) + bottom_row * wr

    crops = jax.vmap(sample)(images, rows, cols)
    flip = jax.random.uniform(k_flip, (num,)) < 0.5
    return jnp.where(flip[:, None, None, None], crops[:, :, ::-1], crops)


def make_views_fn(num_views: int, size: int):
    """Jitted ``(key, uint8 [N, H, W, 3]) -> uint8 [N, V, S, S, 3]`` crops, as the host ships
    them (`jaxssl.data.crops` is TensorFlow, absent where this runs); the train step then
    applies `jaxssl.data.color`'s photometric augmentation and normalization."""

    def views_fn(key, images):
        images = images.astype(jnp.float32)
        out = [
            crop_and_flip(jax.random.fold_in(key, view), images, size) for view in range(num_views)
        ]
        return jnp.clip(jnp.round(jnp.stack(out, axis=1)), 0, 255).astype(jnp.uint8)

    return jax.jit(views_fn)


def knn_top1(train_features, train_labels, test_features, test_labels, k=200, temperature=0.1):
    """Weighted kNN top-1 (Wu et al. 2018): cosine neighbours vote ``exp(sim / T)``."""

    def normalize(x):
        return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    bank, bank_labels = normalize(train_features), jnp.asarray(train_labels)

    @jax.jit
    def predict(queries):
        similarity = normalize(queries) @ bank.T  # [Q, N]
        top, index = jax.lax.top_k(similarity, k)
        votes = jax.nn.one_hot(bank_labels[index], 10) * jnp.exp(top / temperature)[..., None]
        return jnp.argmax(votes.sum(1), -1)

    correct = 0
    for start in range(0, len(test_features), 1000):
        predictions = predict(test_features[start : start + 1000])
        correct += int((np.asarray(predictions) == test_labels[start : start + 1000]).sum())
    return correct / len(test_features)


def cifar_knn(path: str, epochs: float, batch_size: int, tiny: bool) -> dict:
    """(b): SimCLR ResNet-18 on the CIFAR-10 subset for ``epochs``, then kNN top-1."""
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = load_cifar(
        path, 2048 if tiny else None, 512 if tiny else None
    )
    load_seconds = time.perf_counter() - start
    config = simclr_cifar10.get_config("smoke" if tiny else None)
    config.data.num_train_examples = len(train_x)
    config.train.batch_size = batch_size
    config.train.epochs = epochs
    config.optim.warmup_epochs = min(0.5, epochs / 4)
    if not tiny:
        config.model.dtype = "bfloat16"
    mesh = sharding.make_mesh(config.mesh)
    state, train_step, model = build_step(config, mesh)
    views_fn = make_views_fn(config.data.num_views, config.data.image_size)
    num_steps = int(config.train.num_steps)
    steps_per_epoch = len(train_x) // batch_size
    rng = np.random.default_rng(0)
    key = jax.random.key(1)
    train_start = time.perf_counter()
    for step in range(num_steps):
        if step % steps_per_epoch == 0:
            order = rng.permutation(len(train_x))
        rows = order[
            (step % steps_per_epoch) * batch_size : (step % steps_per_epoch + 1) * batch_size
        ]
        views = views_fn(jax.random.fold_in(key, step), jnp.asarray(train_x[rows]))
        batch = sharding.to_global(
            {
                "global": np.asarray(views),
                "label": train_y[rows],
                "index": rows.astype(np.int32),
            },
            mesh,
        )
        state, metrics = train_step(state, batch)
    loss = float(jax.device_get(metrics["train/loss"]))
    train_seconds = time.perf_counter() - train_start

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    embed = jax.jit(lambda v, x: model.apply(v, x, method=model.embed))
    mean, std = np.asarray(config.data.mean), np.asarray(config.data.std)

    def features(images):
        out = []
        for s in range(0, len(images), 1000):
            x = (images[s : s + 1000].astype(np.float32) / 255.0 - mean) / std
            out.append(np.asarray(embed(variables, jnp.asarray(x, jnp.float32)), np.float32))
        return np.concatenate(out)

    eval_start = time.perf_counter()
    top1 = knn_top1(features(train_x), train_y, features(test_x), test_y)
    return {
        "cifar_train_images": len(train_x),
        "cifar_test_images": len(test_x),
        "cifar_epochs": epochs,
        "cifar_steps": num_steps,
        "cifar_batch": batch_size,
        "cifar_load_s": round(load_seconds, 1),
        "cifar_train_s": round(train_seconds, 1),
        "cifar_knn_s": round(time.perf_counter() - eval_start, 1),
        "cifar_final_loss": round(loss, 4),
        "cifar_knn_top1": round(top1, 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", required=True, help=".npz from tools/export_cifar_npz.py")
    parser.add_argument("--batch", type=int, default=256, help="(a) global batch")
    parser.add_argument("--steps", type=int, default=20, help="(a) timed steps")
    parser.add_argument("--epochs", type=float, default=2.0, help="(b) CIFAR epochs")
    parser.add_argument("--cifar_batch", type=int, default=512)
    parser.add_argument("--tiny", action="store_true", help="smoke sizes, for a CPU test")
    args = parser.parse_args(argv)
    report = {
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "jax": jax.__version__,
    }
    start = time.perf_counter()
    report |= throughput_224(args.batch, args.steps, warmup=3, tiny=args.tiny)
    report |= cifar_knn(args.cifar, args.epochs, args.cifar_batch, args.tiny)
    report["total_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
