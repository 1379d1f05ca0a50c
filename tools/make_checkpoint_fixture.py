"""Writes a small training checkpoint as a test fixture, with a digest of every array in it.

``tests/test_checkpoint.py`` restores the fixture with the current code and compares every
array with the digests, so a change to the state's tree (module names, method state keys,
optimizer state) that would strand users' checkpoints fails a test. Regenerate only on
purpose, when the checkpoint format is meant to change:

    PYTHONPATH=. python tools/make_checkpoint_fixture.py --out tests/data/mocov2_smoke_checkpoint

MoCo v2's smoke preset: its state holds every kind of field (parameters, BatchNorm
statistics, an EMA teacher, a queue and its pointer, SGD/LARS momentum, the probe).
"""

import argparse
import hashlib
import json
import os
import shutil

import jax
import numpy as np

from jaxssl import checkpoint, sharding, trainer
from jaxssl.configs import mocov2_cifar10

STEPS = 2


def config():
    """The fixture's config: MoCo v2 smoke, one device, a narrow ResNet, 16 px images."""
    config = mocov2_cifar10.get_config("smoke")
    config.mesh.data = 1
    config.data.image_size = 16
    config.train.progress_bar = False
    return config


def digests(tree) -> dict[str, list]:
    """``{path: [shape, dtype, sha256 of the bytes]}`` of every array of ``tree``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))
    out = {}
    for path, leaf in flat:
        leaf = np.asarray(leaf)
        out[jax.tree_util.keystr(path)] = [
            list(leaf.shape),
            str(leaf.dtype),
            hashlib.sha256(np.ascontiguousarray(leaf).tobytes()).hexdigest(),
        ]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to (re)create")
    args = parser.parse_args()
    run_config = config()
    mesh = sharding.make_mesh(run_config.mesh)
    run = trainer.build(run_config, mesh)
    state = run.init_state()
    b, size = run_config.train.batch_size, run_config.data.image_size
    for i in range(STEPS):
        rng = np.random.default_rng(i)
        batch = {
            "global": rng.integers(0, 256, (b, 2, size, size, 3), np.uint8),
            "label": rng.integers(0, 10, size=(b,)).astype(np.int32),
            "index": np.arange(b, dtype=np.int32),
        }
        state, _ = run.train_step(state, sharding.to_global(batch, mesh))
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    checkpointer = checkpoint.Checkpointer(
        os.path.join(args.out, "checkpoints"), run_config, keep=1
    )
    checkpointer.save(STEPS, state)
    checkpointer.wait()
    checkpointer.close()
    with open(os.path.join(args.out, "config.json"), "w") as f:
        f.write(run_config.to_json_best_effort(indent=2))
    with open(os.path.join(args.out, "digests.json"), "w") as f:
        json.dump(digests(state), f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
