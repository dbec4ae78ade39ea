"""gridrun training-run: run a script once in a new run directory."""

from __future__ import annotations

import argparse

from ._common import add_runs_dir, parse_flag_assignments

NAME = "training-run"
HELP = "Run a training script once, recorded in a new run directory."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script", help="the training script (Python file)")
    parser.add_argument("--flag", action="append", metavar="NAME=VALUE", help="set a flag (repeatable)")
    parser.add_argument("--config", metavar="PROFILE", help="profile of the script's flags.yml to use")
    add_runs_dir(parser)
    parser.add_argument("--quiet", action="store_true", help="do not echo the script's output")


def run(args: argparse.Namespace) -> int:
    from ..runner import training_run

    row = training_run(args.script, parse_flag_assignments(args.flag), args.runs_dir, config=args.config,
                       echo=not args.quiet)
    if args.quiet:
        print(row["run_dir"].iloc[0])
    code = row["status"].iloc[0]
    if code == "completed":
        return 0
    from pathlib import Path

    from .._io import read_json

    exit_code = (read_json(Path(row["run_dir"].iloc[0]) / "properties.json", {}) or {}).get("exit_code")
    return exit_code if isinstance(exit_code, int) and 0 < exit_code < 256 else 1
