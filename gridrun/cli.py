"""The `gridrun` command line: one verb per module in gridrun/commands/.

Each command module defines NAME, HELP, `add_arguments(parser)` and `run(args) -> int`. Adding a verb
means adding a module and its name to COMMANDS; no other command changes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import GridrunError

COMMANDS = (
    "training_run",
    "ls",
    "clean",
    "purge",
    "copy",
    "tuning_run",
    "view",
    "compare",
    "sweep_report",
)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="gridrun",
        description="Track, tune and compare JAX/Flax training runs (tfruns for Python).",
    )
    parser.add_argument("--version", action="version", version=f"gridrun {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except GridrunError as exc:
        print(f"gridrun: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gridrun: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
