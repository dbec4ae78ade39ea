"""The `gridrun` command line: one verb per module in gridrun/commands/.

Each command module defines NAME, HELP, `add_arguments(parser)` and `run(args) -> int`. Adding a verb
means adding a module and its name to COMMANDS; no other command changes.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from pathlib import Path

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
    except BrokenPipeError:  # `gridrun ls | head`: the reader left; not an error of gridrun's files
        raise
    except OSError as exc:  # gridrun's own file handling (the script's errors are recorded in its run)
        print(f"gridrun: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gridrun: interrupted", file=sys.stderr)
        return 130


def os_error_message(exc: OSError) -> str:
    """One line naming the path, the cause and the fix, for an OSError from gridrun's file handling."""
    path = exc.filename
    cause = exc.strerror or str(exc)
    if path is None:
        return f"{cause}"
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        for p in (Path(path), *Path(path).parents):
            if p.exists() and not p.is_dir():
                return f"{p} is not a folder (it is a file): move the file away, or give another --runs-dir"
    fixes = {
        errno.EROFS: "the file system is read-only: give a writable folder with --runs-dir",
        errno.EACCES: "check the permissions of the path (and of its folders)",
        errno.EPERM: "check the permissions of the path (and of its folders)",
        errno.ENOSPC: "free some space, or give a folder on another disk with --runs-dir",
        errno.EDQUOT: "free some space, or give a folder on another disk with --runs-dir",
    }
    fix = fixes.get(exc.errno or 0, "check the path")
    return f"{path}: {cause} ({fix})"


if __name__ == "__main__":
    sys.exit(main())
