"""tools/method_zoo.py: every method has a measurable ``cpu`` preset, and runs are summarized."""

import importlib
import json
import os

import pytest

from jaxssl import methods
from tools import method_zoo


def test_every_registered_method_has_a_cpu_preset_on_real_data():
    listed = {name for name, _, _ in method_zoo.METHODS}
    assert listed == set(methods.METHODS), "the zoo table must list every registered method"
    for name, config_file, _ in method_zoo.METHODS:
        module = importlib.import_module(f"jaxssl.configs.{config_file.removesuffix('.py')}")
        config = module.get_config("cpu")
        assert config.method.name == name
        assert config.data.name == "cifar10"
        assert config.evals.knn.k == 200  # the table's protocol


def _write_run(workdir, records):
    os.makedirs(workdir)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_summarize_reads_the_final_knn_record(tmp_path):
    workdir = str(tmp_path / "byol")
    _write_run(
        workdir,
        [
            {"step": 10, "train/loss": 3.0, "perf/img_per_s": 100.0},
            {"step": 20, "train/loss": 2.0, "perf/img_per_s": 300.0},
            {"step": 30, "train/loss": 1.5, "perf/img_per_s": 200.0},
            {"step": 30, "knn/top1": 0.41, "knn/top1_k200": 0.41, "knn/top1_k20": 0.43},
        ],
    )
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({"data": {"image_size": 16, "eval_image_size": 32}, "train": {"epochs": 6.0}}, f)
    summary = method_zoo.summarize(workdir)
    assert (summary["crop_px"], summary["epochs"], summary["eval_px"]) == (16, 6.0, 32)
    assert summary["step"] == 30
    assert summary["knn_top1_k200"] == 0.41 and summary["knn_top1_k20"] == 0.43
    assert summary["median_img_per_s"] == 200.0
    assert (summary["first_loss"], summary["last_loss"]) == (3.0, 1.5)
    record = {"method": "byol", "wall_seconds": 1625.4, "host": "AMD EPYC, 2 cores, AVX2"}
    row = method_zoo.table([{**record, **summary}])
    assert (
        "| byol | `byol_cifar10.py:cpu` | 16 px, 6 | 27 min 05 s | 30 | 200 | "
        "AMD EPYC, 2 cores, AVX2 | **0.410** | 0.430 |" in row
    )
    over = method_zoo.table([{**record, **summary, "wall_seconds": 1834.0}])
    assert "| 30 min 34 s (over budget) |" in over
    # A time-budgeted run fits fractional epochs; kNN at another size than 32 px is named.
    budgeted = method_zoo.table([{**record, **summary, "epochs": 7.6544, "eval_px": 24}])
    assert "| 16 px, 7.65 (kNN at 24 px) |" in budgeted


def test_host_names_the_cpu_and_its_cores():
    host = method_zoo.host_cpu()
    assert f"{os.cpu_count()} cores" in host


def test_summarize_refuses_an_unfinished_run(tmp_path):
    workdir = str(tmp_path / "vicreg")
    _write_run(workdir, [{"step": 10, "train/loss": 3.0}])
    with pytest.raises(ValueError, match="no final kNN record"):
        method_zoo.summarize(workdir)
