"""Shared set-ups of the tests that train: smoke runs in this process or in subprocesses, and
reading back what a run wrote (metrics, checkpoints)."""

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import checkpoint, methods, platform, sharding, trainer
from jaxssl.configs import simclr_cifar10

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE_PRESET = os.path.join(REPO, "jaxssl/configs/simclr_cifar10.py:smoke")
# The smoke preset's fake train split has 512 examples and its batch is 32.
SMOKE_STEPS_PER_EPOCH = 16


def smoke_run_config(steps: int = 4, **train) -> ml_collections.ConfigDict:
    """The SimCLR smoke preset, ``steps`` long, without a progress bar, ``config.train`` updated
    with ``train``."""
    config = simclr_cifar10.get_config("smoke")
    config.train.progress_bar = False
    config.train.epochs = steps / SMOKE_STEPS_PER_EPOCH
    config.train.update(train)
    return config


def read_metrics(workdir: str) -> list[dict]:
    """Every record of ``WORKDIR/metrics.jsonl``, in file order (complete lines only)."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def train_losses(workdir: str) -> list[tuple[int, float]]:
    """``(step, train/loss)`` of every training record, in file order (repeats would show)."""
    return [(r["step"], r["train/loss"]) for r in read_metrics(workdir) if "train/loss" in r]


def checkpoint_steps(workdir: str) -> list[int]:
    """The steps of the checkpoints in ``WORKDIR/checkpoints``, ascending."""
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    return sorted(int(name) for name in names if name.isdigit())


def restore_checkpoint(workdir: str, config: ml_collections.ConfigDict):
    """The newest usable ``TrainState`` in ``workdir`` (None if there is none), as a resume would
    read it on ``config.mesh``."""
    run = trainer.build(config, sharding.make_mesh(config.mesh))
    checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config, keep=3)
    try:
        return checkpointer.restore_latest_usable(run.abstract_state)
    finally:
        checkpointer.close()


def save_init_checkpoint(
    workdir: str, config: ml_collections.ConfigDict, step: int, edit=None
) -> None:
    """A workdir as ``jaxssl train`` leaves it, without the training: ``config.json`` and the
    initial state saved on all devices as step ``step`` (changed by ``edit(state)`` first, if
    given)."""
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = run.init_state().replace(step=jnp.asarray(step, jnp.int32))
    if edit is not None:
        state = edit(state)
    checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config, keep=1)
    checkpointer.save(step, state)
    checkpointer.wait()
    checkpointer.close()
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))


def train_steps(config: ml_collections.ConfigDict, num_steps: int, image_size: int = 32):
    """Runs the compiled train step ``num_steps`` times from a fresh state on random batches.

    Batch ``i`` holds two views per example drawn from ``np.random.default_rng(i)``, so runs
    with different configs (precision, mesh, accumulation) see the same data.

    Returns:
      ``(run, state, history)``: the `trainer.Training`, the final state and every step's
      metrics on the host.
    """
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = run.init_state()
    b = config.train.batch_size
    history = []
    for i in range(num_steps):
        rng = np.random.default_rng(i)
        batch = {
            "global": rng.normal(size=(b, 2, image_size, image_size, 3)).astype(np.float32),
            "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
            "index": np.arange(b, dtype=np.int32),
        }
        state, metrics = run.train_step(state, sharding.to_global(batch, mesh))
        history.append(jax.device_get(metrics))
    return run, state, history


def train_command(workdir: str, steps: int, *extra: str) -> list[str]:
    """``python -m jaxssl.train`` of the SimCLR smoke preset, ``steps`` long, in ``workdir``."""
    return [
        sys.executable,
        "-m",
        "jaxssl.train",
        "--config",
        SMOKE_PRESET,
        "--workdir",
        workdir,
        "--config.train.progress_bar=false",
        f"--config.train.epochs={steps / SMOKE_STEPS_PER_EPOCH}",
        *extra,
    ]


def wait_for_step(
    workdir: str,
    step: int,
    processes: Sequence[subprocess.Popen],
    timeout: float = 180,
    output: Callable[[], str] = str,
) -> None:
    """Polls ``metrics.jsonl`` until it records ``step``; fails if a process ends first.

    Args:
      workdir: the run's directory.
      step: the step to wait for.
      processes: the run's processes; all must still be running until ``step`` is logged.
      timeout: seconds to wait; the processes are killed after that.
      output: returns the processes' output, shown in a failure.
    """
    deadline = time.monotonic() + timeout
    path = os.path.join(workdir, "metrics.jsonl")
    while time.monotonic() < deadline:
        if (
            os.path.exists(path)
            and max((r["step"] for r in read_metrics(workdir)), default=0) >= step
        ):
            return
        if any(p.poll() is not None for p in processes):
            pytest.fail(f"a process ended before step {step}:\n{output()[-3000:]}")
        time.sleep(0.02)
    for process in processes:
        process.kill()
    pytest.fail(f"training did not reach step {step} within {timeout} s")


def method_smoke_config(method_name: str) -> ml_collections.ConfigDict:
    """``jaxssl/configs/<method>_cifar10.py:smoke`` (every method has one)."""
    return importlib.import_module(f"jaxssl.configs.{method_name}_cifar10").get_config("smoke")


def random_views_batch(config: ml_collections.ConfigDict, seed: int = 0) -> dict:
    """A batch of two random 32 px float views per example, labels and indices (and random
    crop boxes of a 32 px source with ``data.crop_boxes``, as VICRegL reads them, and random
    view parameters with ``data.view_transforms``, as SIE reads them)."""
    rng = np.random.default_rng(seed)
    b = config.train.batch_size
    batch = {
        "global": rng.normal(size=(b, 2, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
        "index": np.arange(b, dtype=np.int32),
    }
    if config.data.get("crop_boxes", False):
        size = rng.integers(8, 33, size=(b, 2, 2)).astype(np.float32)  # height, width
        corner = np.floor(rng.random((b, 2, 2)) * (33 - size))
        flipped = (rng.random((b, 2, 1)) < 0.5).astype(np.float32)
        batch["global_box"] = np.concatenate([corner, size, flipped], -1).astype(np.float32)
    if config.data.get("view_transforms", False):  # SIE: recorded view parameters [b, 2, 11]
        angle = rng.uniform(-0.5, 0.5, size=(b, 2, 1))
        factors = rng.uniform(0.6, 1.4, size=(b, 2, 3))
        hue = rng.uniform(-0.1, 0.1, size=(b, 2, 1))
        gray = (rng.random((b, 2, 1)) < 0.2).astype(np.float32)
        parts = [angle, batch["global_box"], factors, hue, gray]
        batch["transform"] = np.concatenate(parts, -1).astype(np.float32)
    return batch


def smoke_run(config: ml_collections.ConfigDict, num_devices: int = 2):
    """A smoke ``config`` made to move on step 1 (SGD, no warm-up) on ``num_devices``: its
    ``(config, mesh, run, fresh state)``, the step built by ``trainer.build``."""
    config.optim.name = "sgd"  # LARS+warmup starts at lr 0; SGD moves params on step 1
    config.optim.warmup_epochs = 0.0
    config.mesh.data = num_devices
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = jax.jit(run.init_fn, out_shardings=sharding.replicated(mesh))(run.init_key)
    return config, mesh, run, state


def method_loss_and_grads(method_name: str, num_devices: int = 1):
    """A method's smoke model, SGD without warm-up, on ``num_devices``: its fresh state, the
    SSL loss and gradients of the first random batch, and the jitted train step.

    Returns:
      ``(config, mesh, state, loss, grads, train_step)``; loss and grads on the host.
    """
    config = method_smoke_config(method_name)
    config.optim.name = "sgd"  # LARS+warmup starts at lr 0; SGD moves params on step 1
    config.optim.warmup_epochs = 0.0
    config.mesh.data = num_devices
    mesh = sharding.make_mesh(config.mesh)
    run = trainer.build(config, mesh)
    state = jax.jit(run.init_fn, out_shardings=sharding.replicated(mesh))(run.init_key)
    if config.method.name == "deepcluster":
        # Its first epoch only fills the feature bank (loss 0): start at the first
        # re-clustering, so the loss, gradients and k-means are compared.
        step = jnp.asarray(int(config.method.steps_per_epoch), jnp.int32)
        state = state.replace(step=jax.device_put(step, state.step.sharding))
    method = methods.get_method(config.method.name)
    batch = sharding.to_global(random_views_batch(config), mesh)
    assert len(batch["global"].sharding.device_set) == num_devices

    def ssl_loss(params, batch_stats, batch):
        variables = {"params": params, "batch_stats": batch_stats}
        loss, _ = method.loss_fn(
            run.model,
            variables,
            batch,
            state.method_state,
            config.method,
            jax.random.key(0),
            state.step,
        )
        return loss

    loss, grads = jax.jit(jax.value_and_grad(ssl_loss))(state.params, state.batch_stats, batch)
    return config, mesh, state, jax.device_get(loss), jax.device_get(grads), run.train_step


def run_jaxssl(*args: str, devices: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs the ``jaxssl`` console script on ``devices`` CPU devices, from ``/`` (outside the
    checkout), and returns its completed process (output captured as text)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(
        [f"--xla_force_host_platform_device_count={devices}", *platform.CPU_XLA_FLAGS]
    )
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "jaxssl"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd="/",
    )


def gaussian_clusters(rng: np.random.Generator, centres: np.ndarray, n: int):
    """``n`` points around ``centres`` ``[C, D]`` (unit noise) as an eval split: ``(features
    [n, D], labels [n], mask [n])``, every row real."""
    labels = rng.integers(0, len(centres), n)
    points = centres[labels] + rng.normal(size=(n, centres.shape[1]))
    return (
        jnp.asarray(points, jnp.float32),
        jnp.asarray(labels, jnp.int32),
        jnp.ones(n, bool),
    )


# --- numpy references shared by the loss test and its method's test ---


def numpy_sinkhorn(scores, epsilon=0.05, num_iters=3):
    """The reference algorithm in float64, written sample-major ([N, K]) with explicit masses."""
    n, k = scores.shape
    p = np.exp(np.asarray(scores, np.float64) / epsilon)
    p /= p.sum()
    for _ in range(num_iters):
        p *= (1.0 / k) / p.sum(axis=0, keepdims=True)  # each prototype's mass over samples: 1/K
        p *= (1.0 / n) / p.sum(axis=1, keepdims=True)  # each sample's mass: 1/N
    return p * n


def numpy_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def numpy_swav_loss(scores, codes, temperature):
    """The reference's loop: per code view, the sum over the other views / (V - 1); mean."""
    scores, codes = np.asarray(scores, np.float64), np.asarray(codes, np.float64)
    num_views, num_code_views = scores.shape[1], codes.shape[1]
    loss = 0.0
    for c in range(num_code_views):
        subloss = 0.0
        for v in np.delete(np.arange(num_views), c):
            log_p = numpy_log_softmax(scores[:, v] / temperature)
            subloss -= np.mean(np.sum(codes[:, c] * log_p, axis=1))
        loss += subloss / (num_views - 1)
    return loss / num_code_views
