"""gridrun training-run: run a script once in a new run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_runs_dir, parse_flag_assignments

NAME = "training-run"
HELP = "Run a training script once, recorded in a new run directory."
TAKES_SCRIPT_ARGS = True  # `gridrun training-run train.py --flag n=1 -- ARGS...`: ARGS go to the script


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s script [--flag NAME=VALUE ...] [options] [-- SCRIPT_ARGS ...]"
    parser.epilog = ("Flags go as --flag NAME=VALUE (e.g. --flag nodes1=64); arguments after -- are passed "
                     "to the script (sys.argv after its name) and are not parsed as flags.")
    parser.add_argument("script", help="the training script (Python file)")
    parser.add_argument("--flag", action="append", metavar="NAME=VALUE", help="set a flag (repeatable)")
    parser.add_argument("--flags-file", metavar="FILE.yml",
                        help="flag values from a YAML file (a mapping, or profiles chosen with --config); "
                             "--flag values win over it")
    parser.add_argument("--copy-new-files", action="store_true",
                        help="copy files the script creates or changes in the working directory (saved plots, "
                             "models) into the run's artifacts/ when it ends")
    parser.add_argument("--config", metavar="PROFILE", help="profile of the script's flags.yml to use")
    parser.add_argument("--schedule", metavar="RUN_DIR",
                        help="replay a PBT trial's schedule: start at that run's flags and train each epoch with "
                             "its recorded hp_<flag> values (docs/population.md)")
    add_runs_dir(parser)
    parser.add_argument("--quiet", action="store_true", help="do not echo the script's output")


def run(args: argparse.Namespace) -> int:
    from ..runner import training_run

    flags: dict = {}
    if args.flags_file:
        from ..flagspec import read_flags_file

        flags.update(read_flags_file(Path(args.flags_file), args.config, required=True))
    flags.update(parse_flag_assignments(args.flag))
    config = None if args.flags_file else args.config  # with --flags-file, --config chose its profile
    row = training_run(args.script, flags, args.runs_dir, config=config, echo=not args.quiet,
                       args=getattr(args, "script_args", None), copy_new_files=args.copy_new_files,
                       schedule=args.schedule)
    if args.quiet:
        print(row["run_dir"].iloc[0])
    code = row["status"].iloc[0]
    if code == "completed":
        return 0
    from .._io import read_json

    exit_code = (read_json(Path(row["run_dir"].iloc[0]) / "properties.json", {}) or {}).get("exit_code")
    return exit_code if isinstance(exit_code, int) and 0 < exit_code < 256 else 1
