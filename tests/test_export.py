"""`jaxssl export`: a run's backbone as one portable msgpack file."""

import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl import evaluate, export, saved_config, sharding
from jaxssl.configs import simclr_cifar10
from tests import helpers


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory):
    """config.json and the smoke model at init, saved on 8 devices as step 2."""
    workdir = str(tmp_path_factory.mktemp("export_smoke"))
    helpers.save_init_checkpoint(workdir, simclr_cifar10.get_config("smoke"), step=2)
    return workdir


def test_export_load_round_trip_gives_identical_features(smoke_workdir, tmp_path):
    path = export.export(smoke_workdir, str(tmp_path / "backbone.msgpack"))
    backbone, variables = export.load(path)
    config = saved_config.load(smoke_workdir)
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1}))
    model, model_variables, step = evaluate.restore_state(config, smoke_workdir, mesh, None)
    assert step == 2
    images = jnp.asarray(np.random.default_rng(9).normal(size=(4, 32, 32, 3)), jnp.float32)
    expected = model.apply(model_variables, images, method=model.embed)
    np.testing.assert_array_equal(backbone.apply(variables, images, train=False), expected)


def test_export_cli(smoke_workdir, tmp_path):
    out = str(tmp_path / "b.msgpack")
    result = helpers.run_jaxssl("export", "--workdir", smoke_workdir, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.getsize(out) > 0
