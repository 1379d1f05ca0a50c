"""Fault tests: NaNs, corrupt and partial checkpoints, SIGKILL and SIGTERM, dead processes.

The in-process tests run the smoke preset on fake data; the ones that start training
processes and kill them are marked ``slow`` (``python -m pytest -m slow``).
"""

import glob
import os
import random
import shutil
import signal
import subprocess

import jax
import numpy as np
import pytest

from jaxssl import checkpoint, guards, trainer
from jaxssl.data import tfds as input_pipeline
from tests import helpers


def _poison_inputs(monkeypatch, bad_steps):
    """Training batches of the given (1-based) steps become NaN views (float: uint8 has none)."""
    original = input_pipeline.make_train_iterator

    def make_train_iterator(*args, start_step, **kwargs):
        stream = original(*args, start_step=start_step, **kwargs)
        for step, batch in enumerate(stream, start=start_step + 1):
            if step in bad_steps:
                batch = batch | {"global": np.full(batch["global"].shape, np.nan, np.float32)}
            yield batch

    monkeypatch.setattr(input_pipeline, "make_train_iterator", make_train_iterator)


# --- NaN / Inf ---


def test_nan_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    workdir = str(tmp_path)
    _poison_inputs(monkeypatch, {3})
    with pytest.raises(guards.NonFiniteLossError, match=r"at step 3 .*checkpoint: step 2"):
        trainer.train_and_evaluate(
            helpers.smoke_run_config(steps=4, checkpoint_every_steps=2), workdir
        )
    assert helpers.checkpoint_steps(workdir) == [2]
    state = helpers.restore_checkpoint(workdir, helpers.smoke_run_config())
    assert int(state.step) == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


def test_nan_skip_mode_drops_the_update_counts_it_and_goes_on(tmp_path, monkeypatch):
    workdir = str(tmp_path)
    _poison_inputs(monkeypatch, {2})
    results = trainer.train_and_evaluate(
        helpers.smoke_run_config(steps=4, on_nonfinite="skip"), workdir
    )
    assert results["train/nonfinite_steps"] == 1
    records = helpers.read_metrics(workdir)
    flags = {r["step"]: r["train/nonfinite"] for r in records if "train/loss" in r}
    assert flags == {1: 0.0, 2: 1.0, 3: 0.0, 4: 0.0}
    state = helpers.restore_checkpoint(workdir, helpers.smoke_run_config())
    assert int(state.step) == 4 and int(state.nonfinite_steps) == 1
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


@pytest.mark.slow  # the skip mode itself is in the default lane (the test above)
def test_nan_skip_mode_stops_after_too_many_in_a_row(tmp_path, monkeypatch):
    _poison_inputs(monkeypatch, {2, 3})
    config = helpers.smoke_run_config(steps=4, on_nonfinite="skip", max_consecutive_nonfinite=1)
    with pytest.raises(guards.NonFiniteLossError, match="2 consecutive steps up to 3"):
        trainer.train_and_evaluate(config, str(tmp_path))


def test_unknown_nonfinite_policy_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="'stop' or 'skip'"):
        trainer.train_and_evaluate(helpers.smoke_run_config(on_nonfinite="ignore"), str(tmp_path))


# --- Corrupt, partial and foreign checkpoints ---


@pytest.fixture(scope="module")
def _four_steps_template(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("template") / "run")
    trainer.train_and_evaluate(helpers.smoke_run_config(steps=4, checkpoint_every_steps=2), workdir)
    assert helpers.checkpoint_steps(workdir) == [2, 4]
    return workdir


@pytest.fixture
def four_steps(_four_steps_template, tmp_path):
    """A fresh copy of a finished 4-step run with checkpoints 2 and 4."""
    workdir = str(tmp_path / "run")
    shutil.copytree(_four_steps_template, workdir)
    return workdir


def _truncate_largest_file(directory):
    files = glob.glob(os.path.join(directory, "**"), recursive=True)
    largest = max((f for f in files if os.path.isfile(f)), key=os.path.getsize)
    with open(largest, "r+b") as f:
        f.truncate(16)


@pytest.mark.parametrize(
    "damage",
    [
        _truncate_largest_file,
        lambda d: os.remove(os.path.join(d, "state", "manifest.ocdbt")),
        lambda d: shutil.rmtree(os.path.join(d, "state")),
        lambda d: shutil.rmtree(os.path.join(d, "config")),
    ],
    ids=["truncated", "manifest-deleted", "state-deleted", "config-deleted"],
)
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(four_steps, damage, caplog):
    damage(os.path.join(four_steps, "checkpoints", "4"))
    assert int(helpers.restore_checkpoint(four_steps, helpers.smoke_run_config()).step) == 2
    assert "Restored step 2 instead of the unreadable 4" in caplog.text
    moved = glob.glob(os.path.join(four_steps, "checkpoints_corrupt", "4-*"))
    assert len(moved) == 1 and os.listdir(moved[0])  # kept for the user, out of the way
    assert helpers.checkpoint_steps(four_steps) == [2]


def test_run_resumes_past_a_corrupt_checkpoint_without_duplicate_records(four_steps):
    _truncate_largest_file(os.path.join(four_steps, "checkpoints", "4"))
    expected = helpers.train_losses(four_steps)[:2]  # steps 1-2: what the resumed run keeps
    trainer.train_and_evaluate(
        helpers.smoke_run_config(steps=6, checkpoint_every_steps=2), four_steps
    )
    assert helpers.checkpoint_steps(four_steps) == [2, 4, 6]
    losses = helpers.train_losses(four_steps)
    assert [s for s, _ in losses] == [1, 2, 3, 4, 5, 6]  # steps 3-4 re-run, not duplicated
    assert losses[:2] == expected


def test_only_corrupt_checkpoints_is_an_error_that_deletes_nothing(four_steps):
    workdir = four_steps
    for step in (2, 4):
        _truncate_largest_file(os.path.join(workdir, "checkpoints", str(step)))
    with pytest.raises(checkpoint.NoUsableCheckpointError, match="nothing was deleted"):
        helpers.restore_checkpoint(workdir, helpers.smoke_run_config())
    assert len(glob.glob(os.path.join(workdir, "checkpoints_corrupt", "*"))) == 2


def test_a_save_cut_short_leaves_the_previous_checkpoint_usable(four_steps):
    # A killed asynchronous save leaves only Orbax's temporary directory behind.
    workdir = four_steps
    ckpt = os.path.join(workdir, "checkpoints")
    partial = os.path.join(ckpt, "6.orbax-checkpoint-tmp-1234567")
    shutil.copytree(os.path.join(ckpt, "4"), partial)
    _truncate_largest_file(partial)
    state = helpers.restore_checkpoint(workdir, helpers.smoke_run_config())
    assert int(state.step) == 4
    assert not os.path.exists(partial)  # cleaned up on start


def test_checkpoint_of_other_shapes_is_an_error_and_untouched(four_steps):
    config = helpers.smoke_run_config(steps=6)
    config.model.projector_dim = 8
    before = sorted(glob.glob(os.path.join(four_steps, "**"), recursive=True))
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="projector_dim"):
        trainer.train_and_evaluate(config, four_steps)
    assert sorted(glob.glob(os.path.join(four_steps, "**"), recursive=True)) == before


# --- Real signals on real training processes ---


def _launch(workdir, steps):
    """A training process checkpointing every step, its output piped."""
    command = helpers.train_command(workdir, steps, "--config.train.checkpoint_every_steps=1")
    return subprocess.Popen(
        command, cwd=helpers.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope="module")
def reference_losses(tmp_path_factory):
    """Per-step losses of 24 uninterrupted steps."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    process = _launch(workdir, 24)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return helpers.train_losses(workdir)


@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_is_bitwise_identical(tmp_path, reference_losses):
    workdir = str(tmp_path)
    rng = random.Random(0)
    kills = sorted(rng.sample(range(2, 22), 3))
    for step in kills:
        process = _launch(workdir, 24)
        helpers.wait_for_step(workdir, step, [process])
        process.send_signal(signal.SIGKILL)
        process.wait()
    process = _launch(workdir, 24)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert (
        helpers.train_losses(workdir) == reference_losses
    )  # bitwise: same floats, same steps, once each


@pytest.mark.slow
def test_sigterm_checkpoints_exits_zero_and_resumes_identically(tmp_path, reference_losses):
    workdir = str(tmp_path)
    process = _launch(workdir, 24)
    helpers.wait_for_step(workdir, 5, [process])
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert "Preempted (SIGTERM)" in output and "Rerun the same command" in output
    stopped = max(s for s, _ in helpers.train_losses(workdir))
    assert stopped < 24 and stopped in helpers.checkpoint_steps(workdir)
    process = _launch(workdir, 24)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert helpers.train_losses(workdir) == reference_losses
