"""jaxssl/cli.py: where ``--config`` is found, the config checks, the shared flags' errors."""

import os
import re
import shutil
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


def _exit_2(capsys, call) -> str:
    """Runs ``call``, which must exit with status 2; returns what it printed to stderr."""
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_check_config_lists_the_valid_fields_of_a_mistyped_key(capsys):
    err = _exit_2(
        capsys,
        lambda: cli.check_config(["jaxssl train", "--config", SMOKE, "--config.optim.base_lrr=0"]),
    )
    assert re.search("base_lrr.*Valid fields of config.optim: .*base_lr,", err)
    err = _exit_2(
        capsys,
        lambda: cli.check_config(["jaxssl train", f"--config={SMOKE}", "--config.optim.lr.x=1"]),
    )
    assert re.search(r"config.optim.lr has no field 'x'.*\(none: it is", err)


def test_check_config_names_the_valid_presets_and_missing_files(capsys):
    err = _exit_2(capsys, lambda: cli.check_config(["jaxssl train", f"--config={SMOKE[:-1]}"]))
    assert "'smok' for simclr_cifar10; valid: default, cpu, smoke" in err
    err = _exit_2(
        capsys, lambda: cli.check_config(["jaxssl train", "--config=jaxssl/configs/nope.py"])
    )
    assert "'jaxssl/configs/nope.py' not found" in err and "vicreg_cifar10" in err


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
    assert result.returncode == 2 and error in result.stderr
    assert not os.path.exists(tmp_path / "W")


# --- --help and --print_config ---

ABSL_AND_TF_FLAGS = ("--helpfull", "--logtostderr", "--verbosity", "--only_check_args", "tf_")


@pytest.mark.parametrize(
    "command, names",
    [
        ("train", ("--config", "--workdir", "--print_config", "--distributed")),
        ("eval", ("--config", "--workdir", "--step", "--print_config")),
        ("export", ("--workdir", "--out", "--step")),
        ("compile", ("--config", "--topology", "--num_slices", "--print_config")),
    ],
)
def test_every_command_help_lists_its_own_flags_and_exits_0(command, names):
    result = _jaxssl(command, "--help")
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in names), result.stdout
    assert f"jaxssl {command} --" in result.stdout.split("examples:")[1]  # the examples
    assert not any(flag in result.stdout for flag in ABSL_AND_TF_FLAGS), result.stdout
    if command != "export":
        assert "--config" in result.stdout and "--print_config" in result.stdout
    else:
        assert "--config " not in result.stdout


def test_help_of_jaxssl_itself_names_every_command():
    result = _jaxssl("--help")
    assert result.returncode == 0
    for command in cli.COMMANDS:
        assert f"jaxssl {command} " in result.stdout and f"  {command} " in result.stdout
    assert "vicreg_cifar10" in result.stdout


def test_print_config_prints_the_resolved_preset_and_exits_0(tmp_path):
    result = _jaxssl("train", f"--config={SMOKE}", "--config.train.batch_size=32", "--print_config")
    assert result.returncode == 0, result.stderr
    expected = simclr_cifar10.get_config("smoke")
    expected.train.batch_size = 32
    num_steps = int(expected.train.num_steps)  # derived from epochs and the new batch size
    assert re.search(rf"\n  num_steps: {num_steps}(\.0)?\n", result.stdout), result.stdout
    assert "  batch_size: 32\n" in result.stdout and "name: simclr" in result.stdout


# --- User errors: one message, exit status 2, no traceback ---


def _user_error(result, *words):
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    for word in words:
        assert word in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--config.train.batch_size=abc"], ["batch_size", "abc"]),
        (["--bogus"], ["bogus"]),
        (["--config.train.batch_size=12"], ["batch size 12", "divisible", "devices"]),
        (["--config.optim.name=adamz"], ["adamz", "valid"]),
        (
            ["--config.data.name=folder", "--config.data.folder_root=no_such_dir"],
            ["no_such_dir", "does not exist"],
        ),
    ],
)
def test_train_user_errors_exit_2_without_a_traceback(tmp_path, args, words):
    env_devices = "--xla_force_host_platform_device_count=8"
    assert env_devices in os.environ.get("XLA_FLAGS", "")  # conftest: batch 12 does not split
    result = _jaxssl("train", f"--config={SMOKE}", f"--workdir={tmp_path / 'w'}", *args)
    _user_error(result, *words)


def test_corrupt_image_folder_exits_2_naming_the_files(tmp_path):
    for split in ("train", "test"):
        (tmp_path / "images" / split / "cat").mkdir(parents=True)
        (tmp_path / "images" / split / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    result = _jaxssl(
        "train",
        f"--config={SMOKE}",
        f"--workdir={tmp_path / 'w'}",
        "--config.data.name=folder",
        f"--config.data.folder_root={tmp_path / 'images'}",
    )
    _user_error(result, "broken.jpg", "not decodable", "on_corrupt=skip")


FIXTURE = os.path.join(REPO, "tests", "data", "mocov2_smoke_checkpoint")


def test_checkpoint_of_another_model_exits_2_and_is_kept(tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(FIXTURE, workdir)
    before = sorted(os.listdir(workdir / "checkpoints"))
    result = _jaxssl("train", f"--config={SMOKE}", f"--workdir={workdir}")
    _user_error(result, "checkpoint", "method")
    assert sorted(os.listdir(workdir / "checkpoints")) == before


def test_unreadable_checkpoints_exit_2_and_are_moved_aside_not_deleted(tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(FIXTURE, workdir)
    for root, _, files in os.walk(workdir / "checkpoints"):
        for name in files:
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(1)
    result = _jaxssl(
        "train", "--config=jaxssl/configs/mocov2_cifar10.py:smoke", f"--workdir={workdir}"
    )
    _user_error(result, "unreadable")
    kept = [name for _, dirs, _ in os.walk(workdir) for name in dirs]
    assert kept, "the unreadable checkpoint was deleted"


def test_eval_of_a_run_without_checkpoints_exits_2(tmp_path):
    config = simclr_cifar10.get_config("smoke")
    (tmp_path / saved_config.CONFIG_FILE).write_text(config.to_json_best_effort())
    _user_error(_jaxssl("eval", "--workdir", str(tmp_path)), "No checkpoint", "train first")


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    config = simclr_cifar10.get_config("smoke")
    (tmp_path / saved_config.CONFIG_FILE).write_text(config.to_json_best_effort())
    result = _jaxssl("eval", "--workdir", str(tmp_path), "--verbose")
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert "MissingFileError" in result.stderr


def test_missing_dataset_without_download_exits_2_with_what_to_do(tmp_path):
    result = _jaxssl(
        "train",
        f"--config={SMOKE}",
        f"--workdir={tmp_path / 'w'}",
        "--config.data.name=cifar10",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
        "--config.data.download=never",
    )
    _user_error(result, "'cifar10' is not prepared", "--config.data.download=auto")
    assert not os.path.exists(tmp_path / "w" / "checkpoints")
