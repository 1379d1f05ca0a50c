"""jaxssl/cli.py: where ``--config`` is found, the config checks, the shared flags' errors."""

import os
import subprocess
import sys

import jax
import pytest
from absl.testing import flagsaver

from jaxssl import cli, saved_config
from jaxssl.configs import simclr_cifar10

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "jaxssl/configs/simclr_cifar10.py:smoke"


def _jaxssl(*args, cwd=REPO):
    """``jaxssl ARGS`` of this checkout (the installed console script may be another copy's)."""
    command = [sys.executable, "-c", "from jaxssl import cli; cli.main()", *args]
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_config_path_outside_the_checkout_is_the_packages_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file, _, preset = cli.resolve_config_path(SMOKE).partition(":")
    assert file == os.path.join(os.path.dirname(cli.__file__), "configs", "simclr_cifar10.py")
    assert preset == "smoke"
    assert cli.resolve_config_path("mine.py:cpu") == "mine.py:cpu"  # left to the error


def test_config_path_from_the_current_directory_comes_first(tmp_path, monkeypatch):
    (tmp_path / "jaxssl" / "configs").mkdir(parents=True)
    (tmp_path / "jaxssl" / "configs" / "simclr_cifar10.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert cli.resolve_config_path(SMOKE) == SMOKE


def test_check_config_accepts_a_valid_override():
    cli.check_config(["jaxssl train", f"--config={SMOKE}", "--config.optim.base_lr=0.1"])


def test_check_config_lists_the_valid_fields_of_a_mistyped_key():
    with pytest.raises(SystemExit, match="base_lrr.*Valid fields of config.optim: .*base_lr,"):
        cli.check_config(["jaxssl train", "--config", SMOKE, "--config.optim.base_lrr=0.1"])
    with pytest.raises(SystemExit, match=r"config.optim.lr has no field 'x'.*\(none: it is"):
        cli.check_config(["jaxssl train", f"--config={SMOKE}", "--config.optim.lr.x=1"])


def test_check_config_names_the_valid_presets_and_missing_files():
    with pytest.raises(SystemExit, match="'smok' for simclr_cifar10; valid: default, cpu, smoke"):
        cli.check_config(["jaxssl train", f"--config={SMOKE[:-1]}"])
    with pytest.raises(SystemExit, match="'jaxssl/configs/nope.py' not found"):
        cli.check_config(["jaxssl train", "--config=jaxssl/configs/nope.py"])


def test_distributed_initialize_gets_every_flag(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    flags = dict(coordinator_address="10.0.0.1:1234", num_processes="4", process_id="3")
    with flagsaver.as_parsed(distributed="true", heartbeat_timeout_seconds="7", **flags):
        cli.initialize_distributed()
    with flagsaver.as_parsed(distributed="false"):
        cli.initialize_distributed()
    assert calls == [
        dict(
            coordinator_address="10.0.0.1:1234",
            num_processes=4,
            process_id=3,
            heartbeat_timeout_seconds=7,
        )
    ]


def test_console_script_without_a_command_prints_the_usage(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["jaxssl"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert "jaxssl train --config" in capsys.readouterr().err


def test_train_rejects_unknown_config_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jaxssl.train", "--config", SMOKE, "--config.optim.base_lrr=0.1"]
        + ["--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "base_lrr" in result.stderr and "base_lr" in result.stderr.split("Valid fields")[1]
    assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))


def test_eval_checks_overrides_against_the_runs_config(tmp_path):
    config = simclr_cifar10.get_config("smoke")
    (tmp_path / saved_config.CONFIG_FILE).write_text(config.to_json_best_effort())
    result = _jaxssl("eval", "--workdir", str(tmp_path), "--config.evals.knn.kk=5")
    assert result.returncode != 0
    assert "Valid fields of config.evals.knn: batch_size, every_steps, k, ks," in result.stderr


def test_eval_of_a_directory_without_a_run_says_so(tmp_path):
    result = _jaxssl("eval", "--workdir", str(tmp_path))
    assert result.returncode != 0 and "config.json not found" in result.stderr


@pytest.mark.parametrize(
    "args, error",
    [
        (["train", f"--config={SMOKE}", "--workdir=W", "--out=F"], "--out is a flag of jaxssl"),
        (["export", f"--config={SMOKE}", "--workdir=W", "--out=F"], "--config is a flag of"),
        (["export", "--workdir=W"], "jaxssl export needs --out"),
        (["train", f"--config={SMOKE}"], "jaxssl train needs --workdir"),
        (["train", f"--config={SMOKE}", "--workdir=W", "stray"], "unexpected arguments: stray"),
    ],
)
def test_flags_a_command_does_not_take_are_errors(tmp_path, args, error):
    result = _jaxssl(*args, cwd=tmp_path)
    assert result.returncode != 0 and error in result.stderr
    assert not os.path.exists(tmp_path / "W")
