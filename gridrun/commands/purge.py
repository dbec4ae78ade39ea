"""gridrun purge: delete archived runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_runs_dir, confirm

NAME = "purge"
HELP = "Delete the runs archived by `gridrun clean` (RUNS_DIR/archive)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add_runs_dir(parser)


def run(args: argparse.Namespace) -> int:
    from ..runs import ARCHIVE_DIR, purge_runs

    archive = Path(args.runs_dir) / ARCHIVE_DIR
    count = sum(1 for p in archive.iterdir() if p.is_dir()) if archive.is_dir() else 0
    if not count:
        print("The archive is empty.")
        return 0
    if not confirm(f"Delete {count} archived run(s) in {archive} for good?", args.yes):
        print("Nothing deleted.")
        return 1
    print(f"Deleted {len(purge_runs(args.runs_dir))} archived run(s).")
    return 0
