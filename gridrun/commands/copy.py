"""gridrun copy: copy a run (or only its artifacts) somewhere else."""

from __future__ import annotations

import argparse

from ._common import add_runs_dir

NAME = "copy"
HELP = "Copy a run directory (or with --artifacts only its artifacts) to DEST."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run name as listed by `gridrun ls`")
    parser.add_argument("dest", help="destination folder")
    parser.add_argument("--artifacts", action="store_true", help="copy only the run's artifacts/")
    add_runs_dir(parser)


def run(args: argparse.Namespace) -> int:
    from ..runs import copy_run

    print(copy_run(args.run, args.dest, args.runs_dir, artifacts_only=args.artifacts))
    return 0
