"""gridrun sweep-report: a tuning run's trials, flags against its metric, which flags matter, the best
trial and failures; `--live` serves a page that follows a running sweep."""

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
    parser.add_argument("--pareto", action="append", metavar="METRIC",
                        help="draw the Pareto front of two metrics (repeat: --pareto val_loss --pareto n_params; "
                             "default: the sweep's metrics when it has several)")
    parser.add_argument("--live", action="store_true",
                        help="serve the page on 127.0.0.1 while the sweep runs, refreshing as trials report "
                             "(Ctrl-C to stop; the static page is written when it ends)")
    parser.add_argument("--port", type=int, default=0, help="port of the --live server (default: a free one)")


LINGER_S = 10.0  # a live server keeps answering this long after the sweep ended, then exits


def run(args: argparse.Namespace) -> int:
    from ..errors import GridrunError
    from ..report import sweep_report

    if args.pareto is not None and len(args.pareto) != 2:
        raise GridrunError(f"--pareto takes two metrics (got {len(args.pareto)}): --pareto val_loss --pareto n_params")
    if args.live:
        return _serve(args)
    page = sweep_report(args.sweep, args.runs_dir, output=args.output, open_browser=not args.no_open,
                        metric=args.metric, maximize=args.maximize,
                        self_contained=args.self_contained, pareto=args.pareto)
    print(f"Sweep report: {page}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ..errors import GridrunError
    from ..report import sweep_report
    from ..report.live import serve_sweep

    server = serve_sweep(args.sweep, args.runs_dir, port=args.port, open_browser=not args.no_open,
                         metric=args.metric, maximize=args.maximize, pareto=args.pareto)
    print(f"Live report of sweep {server.sweep}: {server.url}  (Ctrl-C to stop)", flush=True)
    server.serve_until(lambda: server.state()[1], LINGER_S)
    try:
        page = sweep_report(server.sweep, args.runs_dir, output=args.output, open_browser=False, metric=args.metric,
                            maximize=args.maximize, self_contained=args.self_contained, pareto=args.pareto)
    except GridrunError as exc:  # stopped before any trial ran
        print(f"Live server stopped ({exc}).")
        return 0
    print(f"Live server stopped. Sweep report: {page}")
    return 0
