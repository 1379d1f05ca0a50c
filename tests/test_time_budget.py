"""``train.time_budget_minutes``: the run's length fitted to a wall-clock budget, then kept."""

import json
import os
import shutil

import pytest

from jaxssl import trainer
from jaxssl.configs import simclr_cifar10


def _config(minutes):
    config = simclr_cifar10.get_config("smoke")
    config.train.progress_bar = False
    config.train.time_budget_minutes = minutes
    return config


def _train_steps(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [r["step"] for r in records if "train/loss" in r]


def _read(workdir, name):
    with open(os.path.join(workdir, name)) as f:
        return json.load(f)


@pytest.fixture
def fast_clock(monkeypatch):
    """1 settling and 3 calibration steps, and a fit that sees 15 s per step and no time spent
    so far: the loop's real timing is replaced so that the fitted length is known
    (1 + 1 + 3 = 5 steps, then 60 s / 15 s = 4 more: 9)."""
    monkeypatch.setattr(trainer._TimeBudget, "SETTLE_STEPS", 1)
    monkeypatch.setattr(trainer._TimeBudget, "CALIBRATION_STEPS", 3)
    fit = trainer._TimeBudget.fit

    def fixed_fit(self, loop_seconds, step_seconds, compile_seconds):
        assert loop_seconds > 0 and step_seconds > 0 and compile_seconds > 0
        return fit(self, loop_seconds=0.0, step_seconds=15.0, compile_seconds=0.0)

    monkeypatch.setattr(trainer._TimeBudget, "fit", fixed_fit)


def test_fit_spends_what_is_left_of_the_budget(tmp_path):
    config = _config(1.0)
    budget = trainer._TimeBudget(config.train, str(tmp_path), start_step=0)
    assert budget.calibrate_at == 1 + budget.SETTLE_STEPS + budget.CALIBRATION_STEPS
    assert budget.num_steps(4) == budget.calibrate_at + 1  # provisional: past the calibration
    fitted = budget.fit(loop_seconds=10.0, step_seconds=0.5, compile_seconds=5.0)
    # 60 s - 10 s of loop - 5 s for the recompile leaves 45 s: 90 steps of 0.5 s.
    assert fitted == 1 + budget.SETTLE_STEPS + budget.CALIBRATION_STEPS + 90
    record = _read(str(tmp_path), trainer.TIME_BUDGET_FILE)
    assert record["num_steps"] == fitted and record["seconds_per_step"] == 0.5
    # A later start (a resume) reads the fitted length and does not measure again.
    again = trainer._TimeBudget(config.train, str(tmp_path), start_step=50)
    assert again.calibrate_at is None and again.num_steps(4) == fitted


def test_no_budget_keeps_the_configured_length(tmp_path):
    budget = trainer._TimeBudget(_config(0.0).train, str(tmp_path), start_step=0)
    assert budget.calibrate_at is None and budget.num_steps(4) == 4


def test_an_exhausted_budget_ends_the_run_at_the_calibration(tmp_path):
    budget = trainer._TimeBudget(_config(0.5).train, str(tmp_path), start_step=7)
    assert budget.fit(loop_seconds=40.0, step_seconds=0.1, compile_seconds=5.0) == 8 + 10 + 20


def test_the_loop_trains_the_fitted_length_and_a_resume_keeps_it(tmp_path, fast_clock):
    workdir = str(tmp_path)
    config = _config(1.0)
    config.train.checkpoint_every_steps = 3
    trainer.train_and_evaluate(config, workdir)
    assert _read(workdir, trainer.TIME_BUDGET_FILE)["num_steps"] == 9
    assert _train_steps(workdir) == list(range(1, 10))
    saved = _read(workdir, "config.json")["train"]
    assert saved["num_steps"] == 9 and saved["epochs"] == 9 * 32 / 512
    # Lose the newest checkpoints; a rerun, even with another budget, resumes from step 3 and
    # trains to the stored length without measuring again.
    checkpoints = os.path.join(workdir, "checkpoints")
    for step in ("6", "9"):
        shutil.rmtree(os.path.join(checkpoints, step))
    before = _read(workdir, trainer.TIME_BUDGET_FILE)
    trainer.train_and_evaluate(_config(0.01), workdir)
    assert _read(workdir, trainer.TIME_BUDGET_FILE) == before
    assert _train_steps(workdir) == list(range(1, 10))
