"""Checkpoints written by earlier code restore with the current code, array for array."""

import hashlib
import json
import os
import shutil

import jax
import numpy as np

from jaxssl import checkpoint, sharding, trainer
from jaxssl.configs import mocov2_cifar10

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "mocov2_smoke_checkpoint")


def _fixture_config():
    # The settings of tools/make_checkpoint_fixture.py, which wrote the fixture.
    config = mocov2_cifar10.get_config("smoke")
    config.mesh.data = 1
    config.data.image_size = 16
    config.train.progress_bar = False
    return config


def test_a_checkpoint_from_before_methods_became_values_restores_identically(tmp_path):
    # Written by the code before `Method` values, teacher.py and queue.py (the state's tree
    # is meant to stay: parameters, batch statistics, the EMA teacher, the queue, optimizer).
    workdir = tmp_path / "run"
    shutil.copytree(FIXTURE, workdir)  # a restore may move a bad checkpoint aside: not ours
    config = _fixture_config()
    run = trainer.build(config, sharding.make_mesh(config.mesh))
    checkpointer = checkpoint.Checkpointer(str(workdir / "checkpoints"), config, keep=1)
    try:
        state = checkpointer.restore(run.abstract_state)
    finally:
        checkpointer.close()
    with open(os.path.join(FIXTURE, "digests.json")) as f:
        expected = json.load(f)
    flat, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(state))
    got = {}
    for path, leaf in flat:
        leaf = np.asarray(leaf)
        digest = hashlib.sha256(np.ascontiguousarray(leaf).tobytes()).hexdigest()
        got[jax.tree_util.keystr(path)] = [list(leaf.shape), str(leaf.dtype), digest]
    assert set(got) == set(expected)
    assert got == expected
    assert int(state.step) == 2 and "queue" in state.method_state
