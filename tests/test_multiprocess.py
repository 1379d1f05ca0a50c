"""Several real processes on this machine joined by ``jax.distributed`` (CPU collectives: gloo).

2 processes x 4 CPU devices must train exactly like 1 process x 8 devices, write checkpoints
that a 1-process run resumes, checkpoint together on SIGTERM, and exit within a bounded time
when a peer dies. Each test starts several JAX processes: all are ``slow``.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from tests import helpers

HEARTBEAT_SECONDS = 10

pytestmark = pytest.mark.slow


def _env(devices):
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir, steps, num_processes, *extra):
    """Starts the run; returns the processes (output to WORKDIR/process_<i>.log)."""
    os.makedirs(workdir, exist_ok=True)
    if num_processes == 1:
        command = helpers.train_command(workdir, steps, *extra)
        log = open(os.path.join(workdir, "process_0.log"), "a")  # noqa: SIM115
        return [subprocess.Popen(command, cwd=helpers.REPO, env=_env(8), stdout=log, stderr=log)]
    port = _free_port()
    processes = []
    for i in range(num_processes):
        command = helpers.train_command(workdir, steps, *extra) + [
            "--distributed",
            f"--coordinator_address=127.0.0.1:{port}",
            f"--num_processes={num_processes}",
            f"--process_id={i}",
            f"--heartbeat_timeout_seconds={HEARTBEAT_SECONDS}",
        ]
        log = open(os.path.join(workdir, f"process_{i}.log"), "a")  # noqa: SIM115
        env = _env(8 // num_processes)
        processes.append(
            subprocess.Popen(
                command, cwd=helpers.REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )
    return processes


def _log(workdir, i=0):
    with open(os.path.join(workdir, f"process_{i}.log")) as f:
        return f.read()


def _finish(workdir, processes, timeout=600):
    for i, process in enumerate(processes):
        assert process.wait(timeout=timeout) == 0, _log(workdir, i)[-3000:]


def _losses(workdir):
    return dict(helpers.train_losses(workdir))


@pytest.fixture(scope="module")
def single_process_reference(tmp_path_factory):
    """1 process x 8 devices, 8 steps."""
    workdir = str(tmp_path_factory.mktemp("one_process"))
    _finish(workdir, _start(workdir, 8, 1))
    return _losses(workdir)


def test_two_processes_match_one_and_their_checkpoint_resumes_in_one(
    tmp_path, single_process_reference
):
    workdir = str(tmp_path)
    _finish(workdir, _start(workdir, 8, 2, "--config.train.checkpoint_every_steps=5"))
    two = _losses(workdir)
    assert sorted(two) == list(range(1, 9))
    np.testing.assert_allclose(
        [two[s] for s in range(1, 9)],
        [single_process_reference[s] for s in range(1, 9)],
        rtol=1e-5,
    )
    # The 2-process checkpoint of step 5 restores in 1 process x 8 devices and goes on as the
    # 1-process run did.
    shutil.rmtree(os.path.join(workdir, "checkpoints", "8"))
    _finish(workdir, _start(workdir, 8, 1))
    assert "at step 5" in _log(workdir).split("Resuming from")[-1]
    resumed = _losses(workdir)
    np.testing.assert_allclose(
        [resumed[s] for s in (6, 7, 8)],
        [single_process_reference[s] for s in (6, 7, 8)],
        rtol=1e-5,
    )


def test_sigterm_to_one_process_checkpoints_all_at_the_same_step(tmp_path):
    workdir = str(tmp_path)
    processes = _start(workdir, 400, 2, "--config.train.checkpoint_every_steps=1000")
    helpers.wait_for_step(workdir, 3, processes, timeout=300, output=lambda: _log(workdir))
    processes[1].send_signal(signal.SIGTERM)  # the notice reaches one host; all must stop
    _finish(workdir, processes, timeout=120)
    assert "Preempted (SIGTERM)" in _log(workdir, 0)
    saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")))
    assert len(saved) == 1 and 3 <= saved[0] < 400
    assert f"stopped after step {saved[0]}" in _log(workdir, 1)


def test_dead_peer_makes_the_others_exit_with_an_error_in_bounded_time(tmp_path):
    workdir = str(tmp_path)
    processes = _start(workdir, 400, 2, "--config.train.checkpoint_every_steps=1000")
    helpers.wait_for_step(workdir, 3, processes, timeout=300, output=lambda: _log(workdir))
    processes[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        returncode = processes[0].wait(timeout=HEARTBEAT_SECONDS + 90)
    except subprocess.TimeoutExpired:
        processes[0].kill()
        pytest.fail("process 0 still running 100 s after its peer died:\n" + _log(workdir)[-3000:])
    elapsed = time.monotonic() - killed_at
    assert returncode != 0
    log = _log(workdir)
    assert "another process died" in log or "another task died" in log, log[-3000:]
    print(f"process 0 exited {elapsed:.1f} s after its peer was killed")
