"""The ``jaxssl`` console script: ``jaxssl {train,eval,export,compile} ...``."""

import sys

COMMANDS = ("train", "eval", "export", "compile")
USAGE = """usage:
  jaxssl train --config jaxssl/configs/X.py[:preset] --workdir DIR [--config.a.b=v ...]
  jaxssl eval --workdir DIR [--step N] [--config.a.b=v ...]
  jaxssl export --workdir DIR --out FILE.msgpack [--step N]
  jaxssl compile --config jaxssl/configs/X.py[:preset] --topology v5e:16x16 [--num_slices N]"""


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    command, rest = sys.argv[1], sys.argv[2:]
    from jaxssl import platform  # noqa: PLC0415

    platform.exec_with_malloc_tunables()  # the console script is the process's own program
    if command == "train":
        from jaxssl import train  # noqa: PLC0415

        train.run([f"jaxssl {command}", *rest])
    elif command == "eval":
        from jaxssl import evaluate  # noqa: PLC0415

        evaluate.run([f"jaxssl {command}", *rest])
    elif command == "export":
        from jaxssl import platform  # noqa: PLC0415

        platform.configure_xla_cpu()
        from jaxssl import export  # noqa: PLC0415

        export.run(rest)
    elif command == "compile":
        from jaxssl import aot  # noqa: PLC0415

        aot.run([f"jaxssl {command}", *rest])
