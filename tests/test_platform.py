"""Process-level settings: the malloc tunables restart of the command-line entry points."""

import os
import subprocess
import sys

import pytest

from jaxssl import platform

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Restarts itself once, then reports what the restarted process sees.
PROBE = (
    "import os, sys; from jaxssl import platform; platform.exec_with_malloc_tunables(); "
    "print(os.environ.get('GLIBC_TUNABLES'), sys.argv[1:], os.getpid())"
)


def _probe(env_changes):
    env = {
        k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAXSSL_MALLOC_TUNING")
    }
    env.update(env_changes)
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE, "a", "--b=c"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    return out.split("\n")[0], process.pid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables: Linux only")
def test_restart_sets_the_tunables_and_keeps_argv_and_pid():
    line, pid = _probe({})
    assert line == f"{platform.MALLOC_TUNABLES} ['a', '--b=c'] {pid}"


def test_user_settings_and_opt_out_are_left_alone():
    assert _probe({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})[0].startswith(
        "glibc.malloc.arena_max=2 ['a', '--b=c']"
    )
    assert _probe({platform.MALLOC_OPT_OUT: "0"})[0].startswith("None ['a', '--b=c']")
