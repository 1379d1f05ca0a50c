"""XLA:CPU's YNNPACK fusions change no result: every method's SSL loss and gradients agree with
YNNPACK fully off.

jaxssl runs XLA:CPU with YNNPACK fusions on (all but individual convolutions,
`jaxssl.platform.CPU_XLA_FLAGS`). YNNPACK is a young library: jaxlib 0.11 miscompiles a
dot+multiply+reduce fusion with it. Each side runs in its own process (XLA reads its flags
once), over every registered method, and dumps its optimized HLO, so the test also checks that
the default side did use YNNPACK (else the comparison would be vacuous).
"""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxssl import methods, platform

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
PROBE = """
import sys
import jax
import numpy as np
from jaxssl import methods
from tests import helpers

arrays = {}
for name in sorted(methods.METHODS):
    _, _, _, loss, grads, _ = helpers.method_loss_and_grads(name, 1)
    arrays[f"{name}/loss"] = np.asarray(loss)
    for i, leaf in enumerate(jax.tree.leaves(grads)):
        arrays[f"{name}/grad{i}"] = np.asarray(leaf)
np.savez(sys.argv[1], **arrays)
"""


def _probe(tmp_path, name: str, ynn_flag: str) -> tuple[dict, str]:
    dump = tmp_path / f"{name}_hlo"
    flags = f"{ynn_flag} --xla_dump_to={dump} --xla_dump_hlo_pass_re=^$"
    out = tmp_path / f"{name}.npz"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    hlo = "".join(open(path).read() for path in glob.glob(str(dump / "*after_optimizations.txt")))
    return dict(np.load(out)), hlo


@pytest.mark.slow
def test_every_method_is_the_same_with_ynnpack_off(tmp_path):
    [jaxssl_flag] = [f for f in platform.CPU_XLA_FLAGS if f.startswith(YNN_FLAG)]
    default, default_hlo = _probe(tmp_path, "default", jaxssl_flag)
    off, off_hlo = _probe(tmp_path, "off", f"{YNN_FLAG}=")
    assert "ynn" in default_hlo.lower(), "the default programs use no YNNPACK fusion"
    assert "ynn" not in off_hlo.lower()
    assert sorted(default) == sorted(off)
    assert {key.split("/")[0] for key in default} == set(methods.METHODS)
    for key in sorted(default):
        np.testing.assert_allclose(default[key], off[key], rtol=1e-4, atol=1e-5, err_msg=key)
