"""gridrun clean: move runs to the archive (runs/archive)."""

from __future__ import annotations

import argparse

from ._common import add_runs_dir, confirm

NAME = "clean"
HELP = "Move runs to RUNS_DIR/archive (all runs, the ones named, or --failed ones)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs to archive (default: all)")
    parser.add_argument("--failed", action="store_true", help="only failed and interrupted runs")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    add_runs_dir(parser)


def run(args: argparse.Namespace) -> int:
    from ..runs import clean_runs, select_runs

    targets = select_runs(args.runs, args.runs_dir, args.failed)
    if not targets:
        print("No runs to archive.")
        return 0
    if not confirm(f"Archive {len(targets)} run(s) to {args.runs_dir}/archive?", args.yes):
        print("Nothing archived.")
        return 1
    moved = clean_runs([str(t) for t in targets], args.runs_dir)
    from ..runner import runs_dir_hint

    print(f"Archived {len(moved)} run(s) to {args.runs_dir}/archive "
          f"(delete them with `gridrun purge{runs_dir_hint(args.runs_dir)}`).")
    return 0
