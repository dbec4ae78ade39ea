"""gridrun sweep-report: a tuning run's trials, flags against its metric, the best trial and failures."""

from __future__ import annotations

import argparse

from ._common import add_runs_dir

NAME = "sweep-report"
HELP = "Write the HTML report of a tuning run's trials (default: the latest sweep)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", nargs="?", help="sweep id (the `sweep` column of `gridrun ls`; default: the latest)")
    add_runs_dir(parser)
    parser.add_argument("--metric", default=None,
                        help="metric that ranks the trials: a metric name or eval_NAME (default: the "
                             "sweep's own, else val_loss)")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--maximize", dest="maximize", action="store_true", default=None,
                           help="higher is better (default: guessed from the name, e.g. acc)")
    direction.add_argument("--minimize", dest="maximize", action="store_false", help="lower is better")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the page to FILE (default: RUNS_DIR/reports/sweep-ID.html)")
    parser.add_argument("--no-open", action="store_true", help="do not open the page in a browser")
    parser.add_argument("--self-contained", action="store_true",
                        help="inline plotly.js: one ~5 MB file to send (default: a small page that loads "
                             "the runs dir's shared plotly.js)")


def run(args: argparse.Namespace) -> int:
    from ..report import sweep_report

    page = sweep_report(args.sweep, args.runs_dir, output=args.output, open_browser=not args.no_open,
                        metric=args.metric, maximize=args.maximize,
                        self_contained=args.self_contained)
    print(f"Sweep report: {page}")
    return 0
