"""Entry point: ``python -m jaxssl.train --config configs/X.py[:preset] --workdir DIR``.

Config overrides use ml_collections syntax (``--config.optim.base_lr=0.5``); the config is
locked, so a mistyped key is an error listing the valid ones.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Run config file, optionally with a preset: configs/X.py:cpu.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Call jax.distributed.initialize() before anything else (multi-host). Cluster settings are "
    "read from the environment (Cloud TPU, SLURM) or the --coordinator_* flags.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Total number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def _add_config_root_to_path(argv: list[str]) -> None:
  """Makes ``from configs import base`` work in a config file loaded by path.

  Config files live in ``<repo>/configs/``; the repo root is on ``sys.path`` under
  ``python -m`` from the root but not for the ``jaxssl`` console script or other cwds.
  """
  for i, arg in enumerate(argv):
    path = None
    if arg.startswith("--config="):
      path = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
    if path:
      config_dir = os.path.dirname(os.path.abspath(path.split(":", 1)[0]))
      sys.path.insert(0, os.path.dirname(config_dir))


def main(argv: list[str]) -> None:
  del argv
  import jax  # noqa: PLC0415  (after flag parsing, so --help is fast)

  if _DISTRIBUTED.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  from jaxssl import trainer  # noqa: PLC0415

  logging.info("Config:\n%s", _CONFIG.value)
  trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


def run(argv: list[str] | None = None) -> None:
  """Parses flags from ``argv`` (default ``sys.argv``) and trains."""
  argv = list(sys.argv if argv is None else argv)
  _add_config_root_to_path(argv)
  app.run(main, argv=argv)


if __name__ == "__main__":
  run()
