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
import textwrap
import traceback

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxssl import errors

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
PRINT_CONFIG = flags.DEFINE_bool(
    "print_config",
    False,
    "Print the resolved config (presets, overrides and derived values such as steps from "
    "epochs applied) and exit.",
)
SWEEP = flags.DEFINE_multi_string(
    "sweep",
    None,
    "train: FIELD=V1,V2,... (repeatable): train the product of the lists as replicas of one "
    "compiled program; FIELD is seed or a float of optim, method, model or evals.probe",
)
SWEEP_DATA = flags.DEFINE_enum(
    "sweep_data",
    "shared",
    ["shared", "independent"],
    "train: 'shared': every replica sees the same crops in the same order; 'independent': "
    "each its own data order, from its seed.",
)
SWEEP_MODE = flags.DEFINE_enum(
    "sweep_mode",
    "auto",
    ["auto", "vmap", "unroll"],
    "train: how one program holds the replicas: 'vmap' batches them (GPU/TPU), 'unroll' traces "
    "each replica's step (CPU, where batched convolutions are slow); 'auto' picks by backend.",
)
REPLICA = flags.DEFINE_integer(
    "replica", None, "eval, export: one replica of a sweep; eval default: every replica."
)
VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Log at INFO and show the traceback of an error (or JAXSSL_DEBUG=1)."
)

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
    "print_config": ("train", "eval", "compile"),
    "workdir": ("train", "eval", "export"),
    "step": ("eval", "export"),
    "replica": ("eval", "export"),
    "sweep": ("train",),
    "sweep_data": ("train",),
    "sweep_mode": ("train",),
    "out": ("export",),
    "topology": ("compile",),
    "num_slices": ("compile",),
}
USAGE = """usage:
  jaxssl train --config jaxssl/configs/X.py[:preset] --workdir DIR [--config.a.b=v ...]
               [--sweep FIELD=V1,V2,... ...]
  jaxssl eval --workdir DIR [--step N] [--replica R] [--config.a.b=v ...]
  jaxssl export --workdir DIR --out FILE.msgpack [--step N] [--replica R]
  jaxssl compile --config jaxssl/configs/X.py[:preset] --topology v5e:16x16 [--num_slices N]

Each command lists its flags with --help, e.g. jaxssl train --help."""

_MULTI_HOST = (
    "distributed",
    "coordinator_address",
    "num_processes",
    "process_id",
    "heartbeat_timeout_seconds",
)
_SUMMARY = {
    "train": "pre-train with a self-supervised method, evaluating as it goes",
    "eval": "kNN, linear probe and RankMe of a run's checkpoint",
    "export": "a checkpoint's backbone as one .msgpack file",
    "compile": "compile the train step for a TPU topology: memory, FLOPs, estimate",
}
# Per command: what it does, its flags (in the order shown), two examples.
_HELP = {
    "train": (
        "Pre-train a backbone with a self-supervised method, evaluate it as it goes (kNN, "
        "RankMe, an online linear probe) and at the end. Rerunning the same command resumes "
        "from the newest checkpoint in --workdir.",
        (
            "config",
            "workdir",
            "sweep",
            "sweep_data",
            "sweep_mode",
            "print_config",
            "verbose",
            *_MULTI_HOST,
        ),
        (
            "jaxssl train --config jaxssl/configs/vicreg_cifar10.py:cpu --workdir runs/vicreg",
            "jaxssl train --config jaxssl/configs/simclr_cifar10.py:smoke --workdir runs/sweep "
            "--sweep optim.base_lr=0.3,1.0 --sweep seed=0,1",
        ),
    ),
    "eval": (
        "Evaluate a run's checkpoint with kNN, a linear probe and RankMe; print a table and "
        "write WORKDIR/eval/STEP.* (JSON, PNGs). The config defaults to the run's own.",
        ("workdir", "step", "replica", "config", "print_config", "verbose", *_MULTI_HOST),
        (
            "jaxssl eval --workdir runs/vicreg",
            "jaxssl eval --workdir runs/vicreg --step 1000 --config.evals.knn.k=20",
        ),
    ),
    "export": (
        "Write a checkpoint's backbone (parameters and batch statistics) to one .msgpack file, "
        "with the config it needs to be rebuilt.",
        ("workdir", "out", "step", "replica", "verbose"),
        (
            "jaxssl export --workdir runs/vicreg --out vicreg_backbone.msgpack",
            "jaxssl export --workdir runs/vicreg --out vicreg_1000.msgpack --step 1000",
        ),
    ),
    "compile": (
        "Compile the train step (and the kNN embedding step) for a TPU topology on this "
        "machine, without TPUs, and print per-chip memory, FLOPs, collectives and a roofline "
        "estimate as JSON; exits 2 if a chip's memory is exceeded. Needs libtpu "
        '(pip install -e ".[tpu]").',
        ("config", "topology", "num_slices", "compile_eval", "print_config", "verbose"),
        (
            "jaxssl compile --config jaxssl/configs/simclr_imagenet.py --topology v5e:16x16",
            "jaxssl compile --config jaxssl/configs/dino_imagenet.py --topology v4:4x4x8 "
            "--num_slices 2",
        ),
    ),
}
_FLAG_ARGS = {
    "config": "FILE.py[:preset]",
    "workdir": "DIR",
    "out": "FILE.msgpack",
    "step": "N",
    "replica": "R",
    "sweep": "FIELD=V1,V2,...",
    "sweep_data": "shared|independent",
    "sweep_mode": "auto|vmap|unroll",
    "topology": "CHIP:AxB[xC]",
    "num_slices": "N",
    "coordinator_address": "HOST:PORT",
    "num_processes": "N",
    "process_id": "I",
    "heartbeat_timeout_seconds": "S",
}
_PRESETS = "jaxssl/configs/NAME.py; presets :smoke, :cpu (CIFAR-10), none: the published recipe"
_HELP_ARGS = ("--help", "-h", "-?", "--helpshort")


def _wrap(text: str, indent: int) -> str:
    return textwrap.fill(text, 96, initial_indent=" " * indent, subsequent_indent=" " * indent)


def _configs() -> list[str]:
    """The run configs that ship in the package (``jaxssl/configs/*.py``)."""
    configs_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
    names = [f[:-3] for f in os.listdir(configs_dir) if f.endswith(".py")]
    return sorted(n for n in names if n not in ("__init__", "base", "imagenet_base"))


def help_text(command: str | None = None) -> str:
    """``jaxssl --help`` (``command=None``) or ``jaxssl COMMAND --help``: what and how.

    Args:
      command: a key of `COMMANDS`, or None for the overview.

    Returns:
      The text, flags with their defaults and meaning, examples and where configs live.
    """
    configs = ", ".join(_configs())
    if command is None:
        lines = ["jaxssl: self-supervised representation learning in JAX.", "", USAGE, ""]
        lines += [f"  {name:<8} {summary}" for name, summary in _SUMMARY.items()]
        lines += ["", f"Configs ({_PRESETS}):"]
        return "\n".join([*lines, _wrap(configs, 2)])
    about, names, examples = _HELP[command]
    usage = next(line.strip() for line in USAGE.splitlines() if f"jaxssl {command} " in line)
    lines = [_wrap(f"jaxssl {command}: {about}", 0), "", f"usage: {usage}", "", "flags:"]
    for name in names:
        flag = flags.FLAGS[name]
        arg = f"--{name}" + (f" {_FLAG_ARGS[name]}" if name in _FLAG_ARGS else "")
        required = name in _REQUIRED[command] and not (command == "eval" and name == "config")
        value = flag.default
        shown = str(value).lower() if isinstance(value, bool) else value
        default = "required" if required else f"default: {'none' if value is None else shown}"
        lines += [f"  {arg}  ({default})", _wrap(flag.help, 6)]
    if "config" in names:
        lines += [
            "  --config.SECTION.FIELD=VALUE",
            _wrap(
                "Override one config field; an unknown field is an error that lists the valid "
                "ones. See every field with --print_config.",
                6,
            ),
        ]
    lines += ["", "examples:", *(f"  {example}" for example in examples)]
    if "config" in names:
        lines += [
            "",
            "config fields, resolved:",
            f"  jaxssl {command} --config jaxssl/configs/vicreg_cifar10.py:cpu --print_config",
            f"configs ({_PRESETS}):",
            _wrap(configs, 2),
        ]
    return "\n".join(lines)


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


def debugging() -> bool:
    """Whether errors show their traceback: ``JAXSSL_DEBUG=1`` or ``--verbose``."""
    return os.environ.get("JAXSSL_DEBUG", "0") not in ("", "0") or "--verbose" in sys.argv


def fail(message: str, command: str | None = None) -> None:
    """Prints ``error: MESSAGE`` (and where help is) to stderr and exits with status 2."""
    print(f"error: {message}", file=sys.stderr)
    if command:
        print(f"See: jaxssl {command} --help", file=sys.stderr)
    sys.exit(2)


def check_config(argv: list[str]) -> None:
    """Exits (status 2) with one line if ``--config`` or a ``--config.a.b=v`` override is wrong.

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
        fail(f"config file {file!r} not found. The shipped configs: {', '.join(_configs())}.")
    module_spec = importlib.util.spec_from_file_location("_jaxssl_run_config", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        config = module.get_config(*arg)  # as config_flags calls it
    except ValueError as error:
        fail(f"--config {spec}: {error}")
    overrides = [a[len("--config.") :].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    for override in overrides:
        node, walked = config, "config"
        for key in override.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or key not in node:
                valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                fail(
                    f"unknown config key --config.{override}: {walked} has no field {key!r}."
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
    from jaxssl import (
        sweep,  # noqa: PLC0415
        trainer,  # noqa: PLC0415
    )

    logging.info("Config:\n%s", CONFIG.value)
    replicas = None
    if SWEEP.value:
        replicas = sweep.parse(SWEEP.value, CONFIG.value, SWEEP_DATA.value, SWEEP_MODE.value)
    trainer.train_and_evaluate(CONFIG.value, WORKDIR.value, replicas)


def _evaluate() -> None:
    import jax  # noqa: PLC0415

    from jaxssl import evaluate  # noqa: PLC0415

    for report in evaluate.evaluate_replicas(
        CONFIG.value, WORKDIR.value, STEP.value, REPLICA.value
    ):
        if jax.process_index() == 0:
            print(evaluate.markdown_table(report))
            prefix = report.get("out_prefix", report["step"])
            print(f"Wrote {os.path.join(WORKDIR.value, evaluate.EVAL_DIR)}/{prefix}.*")


def _export() -> None:
    from jaxssl import export  # noqa: PLC0415

    path = export.export(WORKDIR.value, OUT.value, STEP.value, REPLICA.value)
    print(f"Wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB).")


def _compile() -> None:
    from jaxssl import aot  # noqa: PLC0415

    aot.report(CONFIG.value, TOPOLOGY.value, NUM_SLICES.value, COMPILE_EVAL.value)


COMMANDS = {"train": _train, "eval": _evaluate, "export": _export, "compile": _compile}


def _parse_flags(command: str, argv: list[str]) -> list[str]:
    """absl's flag parsing, with a wrong flag or value an error of exit status 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(str(error), command)


def _main(command: str, argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}", command)
    for name, commands in _ONLY_FOR.items():
        if flags.FLAGS[name].present and command not in commands:
            fail(f"--{name} is a flag of jaxssl {' and '.join(commands)} only.", command)
    if PRINT_CONFIG.value:
        print(CONFIG.value.copy_and_resolve_references())
        if CONFIG.value.train.get("time_budget_minutes"):
            print("# train.num_steps is fitted to train.time_budget_minutes after compiling.")
        return
    for name in _REQUIRED[command]:
        if flags.FLAGS[name].value is None:
            fail(f"jaxssl {command} needs --{name}.", command)
    # Orbax and JAX log every save and compile at INFO; keep the console to warnings and the bar.
    if VERBOSE.value:
        logging.set_verbosity(logging.INFO)
    elif not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if command in ("train", "eval") and not debugging():
        from jaxssl import platform  # noqa: PLC0415

        platform.import_tensorflow_quietly()
    try:
        initialize_distributed()
        COMMANDS[command]()
    except errors.UserError as error:
        if debugging():
            traceback.print_exc()
        fail(str(error))


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
    platform.quiet_startup()
    argv = list(argv)
    if any(arg in _HELP_ARGS for arg in argv[1:]):
        print(help_text(command))
        sys.exit(0)
    workdir = _flag_value(argv, "workdir")
    if command == "eval" and workdir and _flag_value(argv, "config") is None:
        from jaxssl import saved_config  # noqa: PLC0415

        if not os.path.exists(os.path.join(workdir, saved_config.CONFIG_FILE)):
            fail(f"{workdir}/{saved_config.CONFIG_FILE} not found; is {workdir} a run's workdir?")
        argv.insert(1, f"--config={saved_config.__file__}:{workdir}")
    argv = _with_config_resolved(argv)
    check_config(argv)
    app.run(
        functools.partial(_main, command),
        argv=argv,
        flags_parser=functools.partial(_parse_flags, command),
    )


def main() -> None:
    """The ``jaxssl`` console script: ``jaxssl {train,eval,export,compile} FLAGS``."""
    if len(sys.argv) >= 2 and sys.argv[1] in (*_HELP_ARGS, "help"):
        topic = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] in COMMANDS else None
        print(help_text(topic))
        sys.exit(0)
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        if len(sys.argv) >= 2:
            print(f"error: unknown command {sys.argv[1]!r}.", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    from jaxssl import platform  # noqa: PLC0415

    platform.exec_with_malloc_tunables()  # the console script is the process's own program
    command = sys.argv[1]
    run(command, [f"jaxssl {command}", *sys.argv[2:]])


if __name__ == "__main__":
    main()
