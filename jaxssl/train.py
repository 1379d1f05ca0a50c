"""Entry point: ``python -m jaxssl.train --config jaxssl/configs/X.py[:preset] --workdir DIR``.

Config overrides use ml_collections syntax (``--config.optim.base_lr=0.5``); the config is
locked, so a mistyped key is an error listing the valid ones.
"""

import importlib.util
import os
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Run config file, optionally with a preset: jaxssl/configs/X.py:cpu.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() before anything else (multi-host). Cluster settings are "
    "read from the environment (Cloud TPU, SLURM) or the --coordinator_* flags.",
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Total number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout_seconds",
    100,
    "Multi-process: a process that sends no heartbeat for this long is declared dead, and every "
    "other process then exits with an error instead of waiting for it.",
)
flags.mark_flags_as_required(["config", "workdir"])


def _add_config_root_to_path(argv: list[str]) -> None:
    """Makes ``from jaxssl.configs import base`` work in a config file loaded by path.

    Config files live in ``<repo>/configs/``; the repo root is on ``sys.path`` under
    ``python -m`` from the root but not for the ``jaxssl`` console script or other cwds.
    """
    path = _config_path(argv)
    if path:
        config_dir = os.path.dirname(os.path.abspath(path.split(":", 1)[0]))
        sys.path.insert(0, os.path.dirname(config_dir))


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def check_overrides(argv: list[str]) -> None:
    """Exits with the valid keys if a ``--config.a.b=v`` override names no existing field.

    ml_collections would raise too (the config is locked), but as a traceback deep in flag
    parsing; this names the bad key and lists what exists at that level.
    """
    path = _config_path(argv)
    overrides = [a[len("--config.") :].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    if not path or not overrides:
        return
    file, _, preset = path.partition(":")
    spec = importlib.util.spec_from_file_location("_jaxssl_run_config", file)
    if spec is None or not os.path.exists(file):
        sys.exit(f"error: config file {file!r} not found.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(preset or None)
    for override in overrides:
        node, walked = config, "config"
        for key in override.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or key not in node:
                valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                sys.exit(
                    f"error: unknown config key --config.{override}: {walked} has no field {key!r}."
                    f" Valid fields of {walked}: {', '.join(valid) or '(none: it is a value)'}."
                )
            node, walked = node[key], f"{walked}.{key}"


def main(argv: list[str]) -> None:
    del argv
    # Orbax and JAX log every save and compile at INFO; keep the console to warnings and the bar.
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from jaxssl import platform  # noqa: PLC0415

    platform.configure_xla_cpu()
    import jax  # noqa: PLC0415  (after flag parsing, so --help is fast)

    if _DISTRIBUTED.value:
        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
            heartbeat_timeout_seconds=_HEARTBEAT_TIMEOUT.value,
        )
    from jaxssl import trainer  # noqa: PLC0415

    logging.info("Config:\n%s", _CONFIG.value)
    trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


def run(argv: list[str] | None = None) -> None:
    """Parses flags from ``argv`` (default ``sys.argv``) and trains."""
    argv = list(sys.argv if argv is None else argv)
    _add_config_root_to_path(argv)
    check_overrides(argv)
    app.run(main, argv=argv)


if __name__ == "__main__":
    from jaxssl import platform

    platform.exec_with_malloc_tunables()  # only as the process's own program, never on import
    run()
