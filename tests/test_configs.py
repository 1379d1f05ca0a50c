"""jaxssl/configs: the presets of every run config, the preset parser, epochs to steps."""

import importlib
import json
import os

import ml_collections
import pytest

from jaxssl import saved_config
from jaxssl.configs import base, dino_cifar10

CONFIG_DIR = os.path.dirname(base.__file__)
PRESETS = ("default", "cpu", "smoke")

# (train.num_steps, optim.warmup_steps) of the default, cpu and smoke presets, as computed by
# each config before the epochs-to-steps rule became one function.
STEPS = {
    "barlow_twins_cifar10": ((195312, 1953), (703, 58), (4, 1)),
    "byol_cifar10": ((195312, 1953), (585, 58), (4, 1)),
    "colorization_cifar10": ((19531, 195), (1171, 58), (4, 1)),
    "context_encoder_cifar10": ((19531, 195), (1171, 58), (4, 1)),
    "cpc_cifar10": ((39062, 195), (2343, 117), (4, 1)),
    "dae_cifar10": ((19531, 195), (1171, 58), (4, 1)),
    "deepcluster_cifar10": ((39062, 195), (1171, 253), (4, 1)),
    "dcl_cifar10": ((97656, 1953), (1171, 58), (4, 1)),
    "dino_cifar10": ((195312, 1953), (683, 58), (4, 1)),
    "dinov2_cifar10": ((29296, 976), (781, 58), (4, 1)),
    "emp_ssl_cifar10": ((500, 0), (781, 0), (4, 0)),
    "ijepa_cifar10": ((29296, 3906), (781, 58), (4, 1)),
    "jigsaw_cifar10": ((68359, 195), (2343, 117), (4, 1)),
    "lejepa_cifar10": ((58593, 1953), (1171, 58), (4, 1)),
    "mae_cifar10": ((24414, 2441), (1953, 97), (4, 1)),
    "mmcr_cifar10": ((781250, 0), (4687, 0), (4, 1)),
    "mocov2_cifar10": ((195312, 1953), (585, 58), (4, 1)),
    "mocov3_cifar10": ((195312, 1953), (585, 58), (4, 1)),
    "nnclr_cifar10": ((195312, 1953), (703, 58), (4, 1)),
    "npid_cifar10": ((78125, 390), (1171, 58), (4, 1)),
    "rotnet_cifar10": ((39062, 390), (2343, 117), (4, 1)),
    "simclr_cifar10": ((78125, 976), (703, 58), (4, 1)),
    "simclr_vit_cifar10": ((78125, 976), (683, 58), (4, 1)),
    "sie_cifar10": ((195312, 1953), (1171, 58), (4, 1)),
    "simsiam_cifar10": ((195312, 1953), (703, 58), (4, 1)),
    "supcon_cifar10": ((48828, 488), (976, 58), (4, 1)),
    "swav_cifar10": ((195312, 1953), (703, 58), (4, 1)),
    "tico_cifar10": ((195312, 1953), (1171, 58), (4, 1)),
    "vicreg_cifar10": ((195312, 1953), (1171, 58), (4, 1)),
    "vicregl_cifar10": ((195312, 1953), (1171, 58), (4, 1)),
    "wmse_cifar10": ((195312, 390), (1171, 58), (4, 1)),
}
# The method sections' step counts (default, cpu, smoke), likewise.
METHOD_STEPS = {
    "dino_cifar10": {
        "warmup_teacher_temp_steps": (9765, 0, 2),
        "freeze_last_layer_steps": (195, 48, 1),
    },
    "dinov2_cifar10": {
        "warmup_teacher_temp_steps": (2929, 0, 2),
        "freeze_last_layer_steps": (97, 48, 1),
    },
    "swav_cifar10": {
        "freeze_prototypes_steps": (390, 48, 1),
        "queue_start_steps": (9765, 9765, 0),
    },
}


def _get_config(name, arg):
    return importlib.import_module(f"jaxssl.configs.{name}").get_config(arg)


def test_every_config_file_is_covered():
    files = {f[: -len(".py")] for f in os.listdir(CONFIG_DIR) if f.endswith("_cifar10.py")}
    assert files == set(STEPS)


@pytest.mark.parametrize("name", sorted(STEPS))
def test_step_counts_are_unchanged(name):
    for preset, (num_steps, warmup_steps) in zip(PRESETS, STEPS[name], strict=True):
        config = _get_config(name, preset)
        assert (config.train.num_steps, config.optim.warmup_steps) == (num_steps, warmup_steps)
        for field, values in METHOD_STEPS.get(name, {}).items():
            assert config.method[field] == values[PRESETS.index(preset)], (preset, field)


@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_preset_defines_its_own_method_section(name):
    for preset in PRESETS:
        config = _get_config(name, preset)
        assert isinstance(config.method, ml_collections.ConfigDict) and config.method.name
    assert "method" not in base.get_base_config()


@pytest.mark.parametrize("name", sorted(STEPS))
def test_unknown_preset_names_the_config_and_the_valid_presets(name):
    with pytest.raises(ValueError, match=f"'bogus' for {name}; valid: default, cpu, smoke"):
        _get_config(name, "bogus")


def test_parse_arg_defaults_to_default():
    assert base.parse_arg(None, "x") == base.parse_arg("", "x") == "default"
    assert base.parse_arg("fast", "x", presets=("default", "fast")) == "fast"


def test_step_counts_follow_batch_size_overrides():
    config = dino_cifar10.get_config()
    config.lock()  # as config_flags hands it to --config.train.batch_size=512
    config.train.batch_size = 512
    assert config.train.num_steps == 1000 * 50_000 // 512
    assert config.optim.warmup_steps == 10 * 50_000 // 512
    assert config.method.warmup_teacher_temp_steps == 50 * 50_000 // 512
    assert config.method.freeze_last_layer_steps == 50_000 // 512


def test_epochs_to_steps_floors_the_step_count():
    config = base.get_base_config()
    config.data.num_train_examples = 100
    config.train.batch_size = 30
    config.train.epochs = 2.0
    assert config.train.num_steps == 6  # 200 / 30 = 6.67
    assert base.epochs_to_steps(config, ml_collections.FieldReference(0.5)).get() == 1


def test_saved_config_keeps_the_method_section_as_saved(tmp_path):
    config = _get_config("simclr_cifar10", "smoke").to_dict()
    del config["method"]["temperature"]
    del config["evals"]["plots"]  # a section added after the run was trained
    (tmp_path / saved_config.CONFIG_FILE).write_text(json.dumps(config))
    loaded = saved_config.load(str(tmp_path))
    assert "temperature" not in loaded.method  # no default of another method fills it
    assert loaded.evals.plots == base.get_base_config().evals.plots
