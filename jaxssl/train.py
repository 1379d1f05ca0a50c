"""``python -m jaxssl.train``: the same program as ``jaxssl train`` (`jaxssl.cli`).

    python -m jaxssl.train --config jaxssl/configs/X.py[:preset] --workdir DIR [--config.a.b=v ...]

Config overrides use ml_collections syntax (``--config.optim.base_lr=0.5``); the config is
locked, so a mistyped key is an error listing the valid ones.
"""

import sys

from jaxssl import cli, platform

if __name__ == "__main__":
    platform.exec_with_malloc_tunables()  # only as the process's own program, never on import
    cli.run("train", sys.argv)
