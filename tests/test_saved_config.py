"""The config a run was trained with, read back from WORKDIR/config.json."""

import json

import ml_collections

from jaxssl import evaluate, saved_config, sharding
from jaxssl.configs import simclr_cifar10, vicreg_cifar10
from tests import helpers


def test_saved_config_restores_tuples_typed_nones_and_new_defaults(tmp_path):
    config = simclr_cifar10.get_config("smoke")
    saved = json.loads(config.to_json_best_effort())
    del saved["evals"]["linear"]  # a run trained before the field existed
    saved["data"]["augment_on_device"] = False  # ... and one with a switch since removed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = saved_config.load(str(tmp_path))
    assert loaded.data.crop_scale == tuple(config.data.crop_scale)
    assert loaded.data.name == "fake" and loaded.model.width == config.model.width
    assert loaded.evals.linear.holdout_fraction == 0.1  # from jaxssl/configs/base.py
    assert "augment_on_device" not in loaded.data
    loaded.data.data_dir = "/somewhere"  # typed str, as in base, though saved as null


def test_saved_config_of_a_non_simclr_method_restores_its_checkpoint(tmp_path):
    # The base config's method section is SimCLR's: none of it may leak into another method's,
    # or the checkpoint's stored model and method sections would not match and restore refuses.
    config = vicreg_cifar10.get_config("smoke")
    helpers.save_init_checkpoint(str(tmp_path), config, step=1)
    loaded = saved_config.load(str(tmp_path))
    assert loaded.method.to_dict() == config.method.to_dict()
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 1}))
    _, _, step = evaluate.restore_state(loaded, str(tmp_path), mesh, None)
    assert step == 1
