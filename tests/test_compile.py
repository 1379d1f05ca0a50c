"""Tests for ``jaxssl compile`` (jaxssl.aot) and the TPU chip table (jaxssl.topology).

Tests marked ``tpu`` compile for TPU topology descriptions on this CPU host; they need libtpu
(``pip install -e ".[test,tpu]"``) and are skipped without it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxssl import aot, sharding, topology
from jaxssl.configs import sie_cifar10, simclr_imagenet, swav_imagenet
from jaxssl.data import tfds as input_pipeline

needs_libtpu = pytest.mark.skipif(not topology.libtpu_available(), reason=topology.INSTALL_HINT)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = (
    "topology", "chips", "devices", "processes", "global_batch", "hbm_capacity_bytes",
    "hbm_bytes_per_chip", "hbm_bytes_per_device", "flops_per_step", "bytes_accessed_per_step",
    "collectives", "est_step_seconds", "est_img_per_s_per_chip", "est_hours",
)  # fmt: skip


def test_topology_names_chip_and_grid():
    chip, dims = topology.parse("v4:4x4x8")
    assert chip.name == "v4" and dims == (4, 4, 8)
    assert topology.host_bounds(topology.CHIPS["v5e"], (2, 2)) == (2, 2, 1)
    with pytest.raises(ValueError, match="v5e"):
        topology.parse("v9:2x2")


def test_collectives_count_hlo_results():
    hlo = "\n".join(
        [
            "  %ar = (f32[1024]{0}, bf16[8,8]{1,0}) all-reduce(%a, %b), channel_id=1",
            "  %ag = bf16[64,16]{1,0:T(8,128)} all-gather(%c), dimensions={0}",
            "  %ags = (f32[4]{0}, f32[16]{0}) all-gather-start(%d), dimensions={0}",
            "  %agd = f32[16]{0} all-gather-done(%ags)",
            "  ROOT %cp = s32[10]{0} collective-permute(%e), source_target_pairs={{0,1}}",
            "  %gte = f32[1024]{0} get-tuple-element(%ar), index=0",
        ]
    )
    found = aot.collectives(hlo)
    assert found["all-reduce"] == {"count": 1, "bytes": 1024 * 4 + 64 * 2}
    assert found["all-gather"] == {"count": 2, "bytes": 64 * 16 * 2 + 16 * 4}
    assert found["collective-permute"] == {"count": 1, "bytes": 40}
    assert found["reduce-scatter"]["count"] == 0


def test_roofline_takes_the_slower_of_compute_and_memory_plus_collectives():
    chip = topology.CHIPS["v3"]  # two devices per chip: each has half the chip's figures
    comms = {"all-reduce": {"count": 1, "bytes": 10}, "all-gather": {"count": 1, "bytes": 5}}
    seconds = aot.roofline_seconds(chip, flops=123e12, bytes_accessed=450e9, comms=comms)
    np.testing.assert_allclose(seconds["compute"], 2.0)
    np.testing.assert_allclose(seconds["hbm"], 1.0)
    np.testing.assert_allclose(seconds["ici"], 25 / 164e9)
    np.testing.assert_allclose(seconds["step"], 2.0 + 25 / 164e9)


@pytest.mark.parametrize("module", [simclr_imagenet, swav_imagenet, sie_cifar10])
def test_abstract_batch_matches_the_input_pipeline(module):
    config = module.get_config("smoke")
    mesh = sharding.make_mesh(config.mesh)
    abstract = aot.abstract_batch(config, 16, mesh)
    batch = next(
        input_pipeline.make_train_iterator(
            config.data,
            global_batch_size=16,
            seed=0,
            start_step=0,
            process_index=0,
            process_count=1,
        )
    )
    assert {k: (v.shape, v.dtype) for k, v in abstract.items()} == {
        k: (v.shape, v.dtype) for k, v in batch.items()
    }


def _compile_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m jaxssl.cli compile ARGS`` on the CPU platform, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "jaxssl.cli", "compile", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu", "JAXSSL_MALLOC_TUNING": "0"},
        timeout=600,
    )


@pytest.mark.tpu
@needs_libtpu
def test_compile_command_v5e():
    result = _compile_cli(
        "--config", os.path.join(REPO, "jaxssl/configs/simclr_imagenet.py:smoke"),
        "--topology", "v5e:2x2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(field in report for field in FIELDS)
    assert report["chips"] == report["devices"] == 4 and report["fits"]
    assert 0 < report["hbm_bytes_per_chip"] < report["hbm_capacity_bytes"]
    assert report["flops_per_step"] > 0 and report["est_step_seconds"] > 0
    assert report["eval"]["hbm_bytes_per_device"]["total"] > 0


@pytest.mark.tpu
@needs_libtpu
def test_compile_v4_megacore():
    report = aot.compile_run(simclr_imagenet.get_config("smoke"), "v4:2x2x1", evaluation=False)
    assert report["chips"] == report["devices"] == 4  # one megacore device per v4 chip
    assert report["fits"] and report["hbm_bytes_per_chip"] > 0 and report["flops_per_step"] > 0
    assert report["collectives"]["all-reduce"]["count"] > 0  # gradients and BN statistics


@pytest.mark.tpu
@needs_libtpu
def test_compile_multislice():
    report = aot.compile_run(
        simclr_imagenet.get_config("smoke"), "v5e:2x2", num_slices=2, evaluation=False
    )
    assert report["devices"] == 8 and report["processes"] == 2 and report["fits"]


@pytest.mark.tpu
@needs_libtpu
def test_oversized_batch_fails_with_what_to_change():
    overrides = ["data.image_size=224", "model.width=64", "train.batch_size=16384"]
    result = _compile_cli(
        "--topology", "v5e:2x2",
        "--config", os.path.join(REPO, "jaxssl/configs/simclr_imagenet.py:smoke"),
        "--nocompile_eval", *(f"--config.{o}" for o in overrides),
    )  # fmt: skip
    # A user error: the report, then one message and exit status 2, no traceback.
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["fits"] and report["hbm_bytes_needed"] > report["hbm_capacity_bytes"]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and error[len("error: ") :] == report["error"]
    for words in ("v5e chip memory exceeded", "GiB per device", "batch_size", "mesh.fsdp"):
        assert words in report["error"]
