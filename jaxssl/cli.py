"""The ``jaxssl`` console script: ``jaxssl train --config ... --workdir ...``."""

import sys

COMMANDS = ("train",)
USAGE = f"usage: jaxssl {{{','.join(COMMANDS)}}} --config configs/X.py[:preset] --workdir DIR"


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "train":
        from jaxssl import train  # noqa: PLC0415

        train.run([f"jaxssl {command}", *rest])
