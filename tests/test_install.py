"""A non-editable install runs the documented commands from outside the checkout."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(command, cwd, env):
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


@pytest.mark.slow
def test_non_editable_install_trains_evaluates_and_exports_from_anywhere(tmp_path):
    # Built from a copy, so the wheel build leaves no build/ or egg-info in the checkout.
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "build", "*.egg-info", "__pycache__", ".*_cache", ".venv", "workdirs"
        ),
    )
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site)]
    _run([*install, str(source)], cwd=tmp_path, env=dict(os.environ))

    # The dependencies come from this interpreter, jaxssl from the install alone: nothing of
    # the checkout (nor its editable install, which comes after PYTHONPATH) is importable.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    imported = _run([sys.executable, "-c", "import jaxssl; print(jaxssl.__file__)"], elsewhere, env)
    assert imported.strip() == str(site / "jaxssl" / "__init__.py")
    assert not (elsewhere / "jaxssl").exists()

    jaxssl = str(site / "bin" / "jaxssl")
    smoke = ["--config", "jaxssl/configs/simclr_cifar10.py:smoke", "--workdir", "run"]
    _run([jaxssl, "train", *smoke, "--config.train.progress_bar=false"], elsewhere, env)
    evals = '--config.evals.run=("knn", "linear")'
    _run([jaxssl, "eval", "--workdir", "run", evals], elsewhere, env)
    _run([jaxssl, "export", "--workdir", "run", "--out", "backbone.msgpack"], elsewhere, env)
    assert (elsewhere / "run" / "eval" / "4.json").exists()
    assert (elsewhere / "backbone.msgpack").stat().st_size > 0
