"""The one command line: ``jaxssl train | eval | export | compile`` (`USAGE`), flags, set-up.

``python -m jaxssl.train ...`` is ``jaxssl train ...``. Every command reads the flags defined
here, and with ``--distributed`` calls ``jax.distributed.initialize`` here, before anything
else touches JAX. The config is locked, so a mistyped ``--config.a.b=v`` is an error that
lists the valid fields at that level. ``--config`` is a file path; a ``jaxssl/...`` path that
does not exist from the current directory names the installed package's own file, so the
documented commands work from any directory. ``jaxssl eval`` defaults to the run's own config
(``--config jaxssl/saved_config.py:DIR``).
"""

import functools
import importlib.util
import os
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Run config file, optionally with a preset: jaxssl/configs/X.py:cpu. jaxssl eval: "
    "default the run's own (WORKDIR/config.json).",
    lock_config=True,
)
WORKDIR = flags.DEFINE_string("workdir", None, "The run's directory: checkpoints, metrics, config.")
DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() before anything else (multi-host). Cluster settings are "
    "read from the environment (Cloud TPU, SLURM) or the --coordinator_address, "
    "--num_processes and --process_id flags.",
)
COORDINATOR_ADDRESS = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Total number of processes.")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
HEARTBEAT_TIMEOUT_SECONDS = flags.DEFINE_integer(
    "heartbeat_timeout_seconds",
    100,
    "Multi-process: a process that sends no heartbeat for this long is declared dead, and every "
    "other process then exits with an error instead of waiting for it.",
)
STEP = flags.DEFINE_integer("step", None, "eval, export: checkpoint step; default the latest.")
OUT = flags.DEFINE_string("out", None, "export: the .msgpack file to write.")
TOPOLOGY = flags.DEFINE_string("topology", None, "compile: TPU topology, e.g. v5e:16x16, v4:4x4x8.")
NUM_SLICES = flags.DEFINE_integer(
    "num_slices", 1, "compile: slices joined over the data-centre network."
)
COMPILE_EVAL = flags.DEFINE_bool("compile_eval", True, "compile: also the kNN embedding step.")

# The flags each command needs, and the flags only some commands read (an error elsewhere,
# rather than silently ignored).
_REQUIRED = {
    "train": ("config", "workdir"),
    "eval": ("workdir",),
    "export": ("workdir", "out"),
    "compile": ("config", "topology"),
}
_ONLY_FOR = {
    "config": ("train", "eval", "compile"),
    "workdir": ("train", "eval", "export"),
    "step": ("eval", "export"),
    "out": ("export",),
    "topology": ("compile",),
    "num_slices": ("compile",),
}
USAGE = """usage:
  jaxssl train --config jaxssl/configs/X.py[:preset] --workdir DIR [--config.a.b=v ...]
  jaxssl eval --workdir DIR [--step N] [--config.a.b=v ...]
  jaxssl export --workdir DIR --out FILE.msgpack [--step N]
  jaxssl compile --config jaxssl/configs/X.py[:preset] --topology v5e:16x16 [--num_slices N]"""


def resolve_config_path(spec: str) -> str:
    """The ``--config`` value with its file found.

    Args:
      spec: ``FILE.py`` or ``FILE.py:ARG``.

    Returns:
      ``spec`` itself if ``FILE.py`` exists (absolute, or from the current directory);
      otherwise, for a ``jaxssl/...`` path, the same path inside the installed ``jaxssl``
      package, if that file exists there; otherwise ``spec`` unchanged.
    """
    file, colon, arg = spec.partition(":")
    if os.path.exists(file) or os.path.isabs(file):
        return spec
    parts = os.path.normpath(file).split(os.sep)
    if parts[0] != "jaxssl":
        return spec
    package_dir = os.path.dirname(os.path.abspath(__file__))
    packaged = os.path.join(package_dir, *parts[1:])
    return packaged + colon + arg if os.path.exists(packaged) else spec


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name=V`` or ``--name V`` in ``argv``, before flags are parsed."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _with_config_resolved(argv: list[str]) -> list[str]:
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            argv[i] = "--config=" + resolve_config_path(arg.split("=", 1)[1])
        elif arg == "--config" and i + 1 < len(argv):
            argv[i + 1] = resolve_config_path(argv[i + 1])
    return argv


def check_config(argv: list[str]) -> None:
    """Exits with a one-line error if ``--config`` or a ``--config.a.b=v`` override is wrong.

    ml_collections would fail too, but with a traceback deep in flag parsing; this names the
    missing file, the bad preset, or the unknown key together with the fields that exist at
    that level.

    Args:
      argv: the command line, ``--config`` already resolved (`resolve_config_path`).
    """
    spec = _flag_value(argv, "config")
    if spec is None:
        return
    file, *arg = spec.split(":", 1)
    if not os.path.isfile(file):
        sys.exit(f"error: config file {file!r} not found.")
    module_spec = importlib.util.spec_from_file_location("_jaxssl_run_config", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        config = module.get_config(*arg)  # as config_flags calls it
    except ValueError as error:
        sys.exit(f"error: --config {spec}: {error}")
    overrides = [a[len("--config.") :].split("=", 1)[0] for a in argv if a.startswith("--config.")]
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


def initialize_distributed() -> None:
    """``jax.distributed.initialize`` from the flags if ``--distributed`` (the one call site)."""
    if not DISTRIBUTED.value:
        return
    import jax  # noqa: PLC0415  (after flag parsing, so --help is fast)

    jax.distributed.initialize(
        coordinator_address=COORDINATOR_ADDRESS.value,
        num_processes=NUM_PROCESSES.value,
        process_id=PROCESS_ID.value,
        heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_SECONDS.value,
    )


def _train() -> None:
    from jaxssl import trainer  # noqa: PLC0415

    logging.info("Config:\n%s", CONFIG.value)
    trainer.train_and_evaluate(CONFIG.value, WORKDIR.value)


def _evaluate() -> None:
    import jax  # noqa: PLC0415

    from jaxssl import evaluate  # noqa: PLC0415

    report = evaluate.evaluate(CONFIG.value, WORKDIR.value, STEP.value)
    if jax.process_index() == 0:
        print(evaluate.markdown_table(report))
        print(f"Wrote {os.path.join(WORKDIR.value, evaluate.EVAL_DIR)}/{report['step']}.*")


def _export() -> None:
    from jaxssl import export  # noqa: PLC0415

    path = export.export(WORKDIR.value, OUT.value, STEP.value)
    print(f"Wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB).")


def _compile() -> None:
    from jaxssl import aot  # noqa: PLC0415

    aot.report(CONFIG.value, TOPOLOGY.value, NUM_SLICES.value, COMPILE_EVAL.value)


COMMANDS = {"train": _train, "eval": _evaluate, "export": _export, "compile": _compile}


def _main(command: str, argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name, commands in _ONLY_FOR.items():
        if flags.FLAGS[name].present and command not in commands:
            raise app.UsageError(f"--{name} is a flag of jaxssl {' and '.join(commands)} only.")
    for name in _REQUIRED[command]:
        if flags.FLAGS[name].value is None:
            raise app.UsageError(f"jaxssl {command} needs --{name}.")
    # Orbax and JAX log every save and compile at INFO; keep the console to warnings and the bar.
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    initialize_distributed()
    COMMANDS[command]()


def run(command: str, argv: list[str]) -> None:
    """Runs ``command`` (a key of ``COMMANDS``) with the flags in ``argv``.

    Args:
      command: ``train``, ``eval`` or ``export``.
      argv: the program name, then its flags (as ``sys.argv``).
    """
    if command == "compile":
        # The host's own backend stays the CPU: the TPU devices are descriptions only.
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from jaxssl import platform  # noqa: PLC0415

    platform.configure_xla_cpu()
    argv = list(argv)
    workdir = _flag_value(argv, "workdir")
    if command == "eval" and workdir and _flag_value(argv, "config") is None:
        from jaxssl import saved_config  # noqa: PLC0415

        if not os.path.exists(os.path.join(workdir, saved_config.CONFIG_FILE)):
            sys.exit(
                f"error: {workdir}/{saved_config.CONFIG_FILE} not found; is it a run's workdir?"
            )
        argv.insert(1, f"--config={saved_config.__file__}:{workdir}")
    argv = _with_config_resolved(argv)
    check_config(argv)
    app.run(functools.partial(_main, command), argv=argv)


def main() -> None:
    """The ``jaxssl`` console script: ``jaxssl {train,eval,export,compile} FLAGS``."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    from jaxssl import platform  # noqa: PLC0415

    platform.exec_with_malloc_tunables()  # the console script is the process's own program
    command = sys.argv[1]
    run(command, [f"jaxssl {command}", *sys.argv[2:]])


if __name__ == "__main__":
    main()
