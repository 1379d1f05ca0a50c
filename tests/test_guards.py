"""The loop's policies: preemption notice, non-finite guard, time budget."""

import itertools
import json
import os
import signal

import jax.numpy as jnp
import pytest

from jaxssl import guards
from tests import helpers


def _read_budget(workdir):
    with open(os.path.join(workdir, guards.TIME_BUDGET_FILE)) as f:
        return json.load(f)


# --- Preemption ---


def test_sigterm_is_noticed_at_the_next_step_and_the_handler_restored():
    before = signal.getsignal(signal.SIGTERM)
    preemption = guards.Preemption()
    try:
        assert not preemption.reached(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.reached(2)
    finally:
        preemption.close()
    assert signal.getsignal(signal.SIGTERM) is before


# --- Non-finite guard ---


class _Checkpointer:
    """What the guard reads of a checkpointer: the last good step and where it is."""

    directory = "/run/checkpoints"

    def wait(self):
        pass

    def latest_step(self):
        return 2


def _guard(**train):
    config = helpers.smoke_run_config(**train)
    return guards.FiniteGuard(config.train, _Checkpointer())


def test_stop_raises_at_the_first_nonfinite_step_naming_the_last_checkpoint():
    guard = _guard(on_nonfinite="stop")
    guard.add(1, jnp.asarray(False))
    guard.check()
    guard.add(2, jnp.asarray(False))
    guard.add(3, jnp.asarray(True))
    with pytest.raises(guards.NonFiniteLossError, match="at step 3 .*checkpoint: step 2 in /run"):
        guard.check()


def test_skip_allows_a_bounded_run_of_nonfinite_steps():
    guard = _guard(on_nonfinite="skip", max_consecutive_nonfinite=2)
    for step, flag in enumerate([True, True, False, True, True], start=1):
        guard.add(step, jnp.asarray(flag))
    guard.check()  # never more than 2 in a row
    guard.add(6, jnp.asarray(True))
    with pytest.raises(guards.NonFiniteLossError, match="3 consecutive steps up to 6"):
        guard.check()


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="'stop' or 'skip'"):
        _guard(on_nonfinite="ignore")


# --- Time budget ---


def test_fit_spends_what_is_left_of_the_budget(tmp_path):
    config = helpers.smoke_run_config(time_budget_minutes=1.0)
    budget = guards.TimeBudget(config.train, str(tmp_path), start_step=0)
    assert budget.calibrate_at == 1 + budget.SETTLE_STEPS + budget.CALIBRATION_STEPS
    assert budget.num_steps(4) == budget.calibrate_at + 1  # provisional: past the calibration
    fitted = budget.fit(loop_seconds=10.0, step_seconds=0.5, compile_seconds=5.0)
    # 60 s - 10 s of loop - 5 s for the recompile leaves 45 s: 90 steps of 0.5 s.
    assert fitted == 1 + budget.SETTLE_STEPS + budget.CALIBRATION_STEPS + 90
    record = _read_budget(str(tmp_path))
    assert record["num_steps"] == fitted and record["seconds_per_step"] == 0.5
    # A later start (a resume) reads the fitted length and does not measure again.
    again = guards.TimeBudget(config.train, str(tmp_path), start_step=50)
    assert again.calibrate_at is None and again.num_steps(4) == fitted


def test_no_budget_keeps_the_configured_length(tmp_path):
    config = helpers.smoke_run_config(time_budget_minutes=0.0)
    budget = guards.TimeBudget(config.train, str(tmp_path), start_step=0)
    assert budget.calibrate_at is None and budget.num_steps(4) == 4
    assert budget.step_done(31, {}, loop_start=0.0, compile_seconds=1.0) is None


def test_an_exhausted_budget_ends_the_run_at_the_calibration(tmp_path):
    config = helpers.smoke_run_config(time_budget_minutes=0.5)
    budget = guards.TimeBudget(config.train, str(tmp_path), start_step=7)
    assert budget.fit(loop_seconds=40.0, step_seconds=0.1, compile_seconds=5.0) == 8 + 10 + 20


def test_step_done_times_the_calibration_steps_and_fits_after_the_last(tmp_path, monkeypatch):
    config = helpers.smoke_run_config(time_budget_minutes=1.0)
    budget = guards.TimeBudget(config.train, str(tmp_path), start_step=0)
    # The calibration starts at 100 s and ends at 105 s.
    clock = itertools.chain([100.0], itertools.repeat(105.0))
    monkeypatch.setattr(guards.time, "perf_counter", lambda: next(clock))
    for step in range(1, budget.calibrate_at):
        assert budget.step_done(step, {}, loop_start=90.0, compile_seconds=2.0) is None
    fitted = budget.step_done(budget.calibrate_at, {}, loop_start=90.0, compile_seconds=2.0)
    # 5 s over 20 steps: 0.25 s each; 60 - 15 s of loop - 2 s of compile leaves 43 s: 172 steps.
    assert fitted == 31 + 172 == _read_budget(str(tmp_path))["num_steps"]
