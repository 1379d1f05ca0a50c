"""End to end: the smoke preset trains, checkpoints, resumes and evaluates."""

import json
import os

import pytest

from jaxssl import checkpoint, trainer
from jaxssl.configs import simclr_cifar10


def _read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _snapshot(directory):
    return {
        os.path.join(root, name): os.path.getmtime(os.path.join(root, name))
        for root, _, files in os.walk(directory)
        for name in files
    }


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("smoke"))
    config = simclr_cifar10.get_config("smoke")
    config.train.progress_bar = False
    results = trainer.train_and_evaluate(config, workdir)
    return workdir, results


def test_smoke_trains_and_logs(trained_workdir):
    workdir, results = trained_workdir
    records = _read_metrics(workdir)
    train_records = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4]
    for key in (
        "train/loss",
        "train/lr",
        "probe/top1",
        "probe/loss",
        "perf/img_per_s",
        "train/contrastive_top1",
    ):
        assert key in train_records[-1], key
    knn_records = [r for r in records if "knn/top1" in r]
    assert knn_records and knn_records[-1]["step"] == 4
    assert 1.0 <= knn_records[-1]["rankme/backbone"] <= 32  # width-4 ResNet: 32-d features
    assert 0.0 <= results["knn/top1"] <= 1.0
    # The fake classes are colour-coded: even 4 steps of a tiny net separate them far above
    # chance (0.1), so a broken feature path or kNN would show here.
    assert results["knn/top1"] > 0.5
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int)[-1] == "4"
    assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_rerun_resumes_at_saved_step(trained_workdir, tmp_path):
    workdir, _ = trained_workdir
    config = simclr_cifar10.get_config("smoke")
    config.train.progress_bar = False
    config.train.epochs = 0.375  # 6 steps: two more than the first run
    trainer.train_and_evaluate(config, workdir)
    steps = [r["step"] for r in _read_metrics(workdir) if "train/loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_incompatible_checkpoint_is_an_error_and_untouched(trained_workdir):
    workdir, _ = trained_workdir
    before = _snapshot(workdir)
    config = simclr_cifar10.get_config("smoke")
    config.model.width = 8
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="model.width"):
        trainer.train_and_evaluate(config, workdir)
    assert _snapshot(workdir) == before


def test_missing_dataset_says_how_to_fix(tmp_path):
    config = simclr_cifar10.get_config("smoke")
    config.data.name = "cifar10"
    config.data.data_dir = str(tmp_path / "no_data_here")
    with pytest.raises(FileNotFoundError, match="TFDS_DATA_DIR"):
        trainer.train_and_evaluate(config, str(tmp_path / "workdir"))
    assert not os.path.exists(tmp_path / "workdir" / "checkpoints")  # failed before writing


def test_batch_size_must_divide_devices(tmp_path):
    config = simclr_cifar10.get_config("smoke")
    config.train.batch_size = 36  # 8 devices
    with pytest.raises(ValueError, match="divisible by the number of devices"):
        trainer.train_and_evaluate(config, str(tmp_path))
