"""tools/benchmark.py times every view through the backbone, multi-crop local views included."""

import json
import os
import subprocess
import sys

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_benchmark_feeds_and_counts_local_views(tmp_path):
    out = tmp_path / "bench.json"
    command = [
        sys.executable, "tools/benchmark.py", "--config=jaxssl/configs/dino_cifar10.py:smoke",
        "--config.data.local_views=2", "--config.data.local_image_size=8",
        "--steps=1", "--pipeline_batches=0", f"--out={out}",
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run(command, cwd=_REPO, env=env, check=True, capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["config"]["views"] == 4 and result["config"]["local_views"] == 2
    assert result["step_img_per_s"] > 0 and result["flops_per_image"] > 0
