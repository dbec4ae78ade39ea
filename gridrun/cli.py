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
    "export",
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
        p.set_defaults(_run=module.run, _parser=p,
                       _takes_script_args=getattr(module, "TAKES_SCRIPT_ARGS", False))
    return parser


def unrecognized_message(extra: list[str], takes_script_args: bool = False) -> str:
    """argparse's "unrecognized arguments", with the fix: `--nodes1 64` is written `--flag nodes1=64`."""
    suggestions = []
    i = 0
    while i < len(extra):
        arg = extra[i]
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            if not eq and i + 1 < len(extra) and not extra[i + 1].startswith("--"):
                value, i = extra[i + 1], i + 1
            suggestions.append(f"--flag {name.replace('-', '_')}={value or 'VALUE'}")
        i += 1
    text = f"unrecognized arguments: {' '.join(extra)}"
    if suggestions:
        text += f"; flags go as {' '.join(suggestions)}"
    if takes_script_args:
        text += f"{',' if suggestions else ';'} and the script's own arguments after -- (e.g. -- --data x.csv)"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args = None
    if "--" in argv:  # what follows `--` is passed to the script as its own arguments
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if extra:
        args._parser.error(unrecognized_message(extra, args._takes_script_args))
    if script_args is not None and not args._takes_script_args:
        args._parser.error(f"{args.command} takes no script arguments after --: remove `-- {' '.join(script_args)}`")
    args.script_args = script_args or []
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
