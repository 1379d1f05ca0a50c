"""Checkpoints written by earlier code restore with the current code, array for array."""

import hashlib
import json
import os
import shutil

import jax
import numpy as np

from jaxssl import checkpoint, sharding, trainer
from jaxssl.configs import dino_cifar10, mae_cifar10, mocov2_cifar10

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


def test_fields_added_later_compare_equal_to_the_behaviour_before_them():
    # A DINO run saved before DINOv2's options, a ViT run before registers and the mask token.
    for config, model_keys, method_keys in (
        (
            dino_cifar10.get_config("smoke"),
            (),
            ("koleo_weight", "ibot_weight", "mask_probability", "mask_ratio", "centering"),
        ),
        (mae_cifar10.get_config("smoke"), ("num_registers", "mask_token", "vit_depth"), ()),
    ):
        current = json.loads(config.to_json())
        old = json.loads(config.to_json())
        for key in model_keys:
            del old["model"][key]
        for key in method_keys:
            del old["method"][key]
        assert checkpoint._defining(old) == checkpoint._defining(current)
        if method_keys:
            current["method"]["ibot_weight"] = 1.0  # a real change still shows
        else:
            current["model"]["num_registers"] = 4
        assert checkpoint._defining(old) != checkpoint._defining(current)


def test_pooling_is_a_readout_and_depth_defines_the_state():
    # The same parameters read out by CLS or by mean patch token: evaluating either is allowed.
    config = json.loads(mae_cifar10.get_config("smoke").to_json())
    mean = json.loads(json.dumps(config))
    mean["model"]["pooling"] = "cls" if config["model"]["pooling"] == "mean" else "mean"
    assert checkpoint._defining(mean) == checkpoint._defining(config)
    deeper = json.loads(json.dumps(config))
    deeper["model"]["vit_depth"] = 6
    assert checkpoint._defining(deeper) != checkpoint._defining(config)
