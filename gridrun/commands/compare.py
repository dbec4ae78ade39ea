"""gridrun compare: two runs side by side (flags, metrics, learning curves, source and output diffs)."""

from __future__ import annotations

import argparse

from ..errors import GridrunError
from ._common import add_runs_dir

NAME = "compare"
HELP = "Compare two runs in an HTML page (default: the latest two; the older one on the left)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN", help="two run names (default: the latest two runs)")
    add_runs_dir(parser)
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the page to FILE (default: RUNS_DIR/reports/compare-A-vs-B.html)")
    parser.add_argument("--no-open", action="store_true", help="do not open the page in a browser")
    parser.add_argument("--self-contained", action="store_true",
                        help="inline plotly.js: one ~5 MB file to send (default: a small page that loads "
                             "the runs dir's shared plotly.js)")


def run(args: argparse.Namespace) -> int:
    from ..report import compare_runs

    if len(args.runs) not in (0, 2):
        raise GridrunError(f"compare takes two runs (or none for the latest two), got {len(args.runs)}")
    page = compare_runs(args.runs or None, args.runs_dir, output=args.output, open_browser=not args.no_open,
                        self_contained=args.self_contained)
    print(f"Comparison: {page}")
    return 0
