"""End to end: the smoke preset trains, checkpoints, resumes and evaluates."""

import contextlib
import io
import json
import os
import shutil

import pytest
import tensorflow_datasets

from jaxssl import checkpoint, errors, guards, trainer
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _snapshot(directory):
    return {
        os.path.join(root, name): os.path.getmtime(os.path.join(root, name))
        for root, _, files in os.walk(directory)
        for name in files
    }


PRINTED = []  # what the smoke run printed to stdout


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("smoke"))
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        results = trainer.train_and_evaluate(helpers.smoke_run_config(), workdir)
    PRINTED.append(stdout.getvalue())
    return workdir, results


def test_run_prints_its_header_and_a_results_table(trained_workdir):
    workdir, results = trained_workdir
    [printed] = PRINTED
    assert printed.startswith("jaxssl: simclr, resnet18 (")
    assert "  devices  8 x cpu over 1 process(es)" in printed
    assert "  data     fake: train 512; evaluation train 512, test 256" in printed
    assert "  length   steps 0 -> 4 " in printed
    for k in (10, 20, 100, 200):
        assert f"| kNN top-1, k={k} " in printed and f"{results[f'knn/top1_k{k}']:.4f}" in printed
    assert "| RankMe (backbone)" in printed and "| wall time" in printed
    assert f"jaxssl eval --workdir {workdir}" in printed


def test_smoke_trains_and_logs(trained_workdir):
    workdir, results = trained_workdir
    records = helpers.read_metrics(workdir)
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
    trainer.train_and_evaluate(helpers.smoke_run_config(steps=6), workdir)  # two more steps
    assert [step for step, _ in helpers.train_losses(workdir)] == [1, 2, 3, 4, 5, 6]


def test_incompatible_checkpoint_is_an_error_and_untouched(trained_workdir):
    workdir, _ = trained_workdir
    before = _snapshot(workdir)
    config = helpers.smoke_run_config()
    config.model.width = 8
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="model.width"):
        trainer.train_and_evaluate(config, workdir)
    assert _snapshot(workdir) == before


def test_missing_dataset_says_how_to_fix(tmp_path):
    config = helpers.smoke_run_config()
    config.data.name = "cifar10"
    config.data.data_dir = str(tmp_path / "no_data_here")
    config.data.download = "never"
    with pytest.raises(errors.UserError, match="download=auto"):
        trainer.train_and_evaluate(config, str(tmp_path / "workdir"))
    assert not os.path.exists(tmp_path / "workdir" / "checkpoints")  # failed before writing


def test_offline_download_fails_before_writing(tmp_path, monkeypatch):
    # data.download=auto on a machine without network: TFDS's download fails (replaced here,
    # no network is touched); the run stops with the offline advice, the failure chained.
    def download_and_prepare(builder, **kwargs):
        raise ConnectionError("Failed to resolve 'www.cs.toronto.edu'")

    monkeypatch.setattr(
        tensorflow_datasets.core.DatasetBuilder, "download_and_prepare", download_and_prepare
    )
    config = helpers.smoke_run_config()
    config.data.name = "cifar10"
    config.data.data_dir = str(tmp_path / "no_data_here")
    with pytest.raises(errors.UserError, match="Could not download.*offline") as error:
        trainer.train_and_evaluate(config, str(tmp_path / "workdir"))
    assert isinstance(error.value.__cause__, ConnectionError)
    assert not os.path.exists(tmp_path / "workdir" / "checkpoints")


def test_batch_size_must_divide_devices(tmp_path):
    config = helpers.smoke_run_config()
    config.train.batch_size = 36  # 8 devices
    with pytest.raises(ValueError, match="divisible by the number of devices"):
        trainer.train_and_evaluate(config, str(tmp_path))


@pytest.fixture
def fast_clock(monkeypatch):
    """1 settling and 3 calibration steps, and a fit that sees 15 s per step and no time spent
    so far: the loop's real timing is replaced so that the fitted length is known
    (1 + 1 + 3 = 5 steps, then 60 s / 15 s = 4 more: 9)."""
    monkeypatch.setattr(guards.TimeBudget, "SETTLE_STEPS", 1)
    monkeypatch.setattr(guards.TimeBudget, "CALIBRATION_STEPS", 3)
    fit = guards.TimeBudget.fit

    def fixed_fit(self, loop_seconds, step_seconds, compile_seconds):
        assert loop_seconds > 0 and step_seconds > 0 and compile_seconds > 0
        return fit(self, loop_seconds=0.0, step_seconds=15.0, compile_seconds=0.0)

    monkeypatch.setattr(guards.TimeBudget, "fit", fixed_fit)


def test_the_loop_trains_the_time_budget_length_and_a_resume_keeps_it(tmp_path, fast_clock):
    workdir = str(tmp_path)
    config = helpers.smoke_run_config(time_budget_minutes=1.0, checkpoint_every_steps=3)
    trainer.train_and_evaluate(config, workdir)

    def budget_record():
        with open(os.path.join(workdir, guards.TIME_BUDGET_FILE)) as f:
            return json.load(f)

    def trained_steps():
        return [step for step, _ in helpers.train_losses(workdir)]

    assert budget_record()["num_steps"] == 9
    assert trained_steps() == list(range(1, 10))
    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)["train"]
    assert saved["num_steps"] == 9 and saved["epochs"] == 9 * 32 / 512
    # Lose the newest checkpoints; a rerun, even with another budget, resumes from step 3 and
    # trains to the stored length without measuring again.
    for step in ("6", "9"):
        shutil.rmtree(os.path.join(workdir, "checkpoints", step))
    before = budget_record()
    trainer.train_and_evaluate(helpers.smoke_run_config(time_budget_minutes=0.01), workdir)
    assert budget_record() == before
    assert trained_steps() == list(range(1, 10))
