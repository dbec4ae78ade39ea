"""gridrun view: write a run's HTML report and open it; `--live` serves a running run's live report."""

from __future__ import annotations

import argparse

from ._common import add_runs_dir

NAME = "view"
HELP = "Write a run's HTML report (default: the latest run) and open it in the browser."
LINGER_S = 10.0  # a live server keeps answering this long after the run ended, then exits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", help="run name or path inside the runs dir (default: the latest run)")
    add_runs_dir(parser)
    parser.add_argument("-o", "--output", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--no-open", action="store_true", help="do not open the report in a browser")
    parser.add_argument("--self-contained", action="store_true",
                        help="inline plotly.js: one ~5 MB file to send (default: a small page that loads "
                             "the runs dir's shared plotly.js)")
    parser.add_argument("--live", action="store_true",
                        help="for a running run: serve a report that updates as epochs complete "
                             "(local server on 127.0.0.1; Ctrl-C to stop)")
    parser.add_argument("--port", type=int, default=0, help="port of the --live server (default: a free one)")


def run(args: argparse.Namespace) -> int:
    from ..report import serve_run, view_run
    from ..report.rundata import load_run, resolve_run

    if args.live:
        path = resolve_run(args.run, args.runs_dir)
        if load_run(path, with_files=False).is_running:
            return _serve(serve_run(path, args.runs_dir, port=args.port, open_browser=not args.no_open),
                          path, args)
        print(f"Run {path.name} is not running: writing its static report instead of serving a live one.")
    report = view_run(args.run, args.runs_dir, output=args.output, open_browser=not args.no_open,
                      self_contained=args.self_contained)
    print(f"Report: {report}")
    path = resolve_run(args.run, args.runs_dir)
    if not args.live and load_run(path, with_files=False).is_running:
        from ..runner import runs_dir_hint

        print(f"The run is still running: this report is a snapshot. "
              f"`gridrun view --live {path.name}{runs_dir_hint(args.runs_dir)}` follows it.")
    return 0


def _serve(server, path, args: argparse.Namespace) -> int:
    from ..report import view_run
    from ..report.rundata import load_run

    print(f"Live report of run {path.name}: {server.url}  (Ctrl-C to stop)", flush=True)
    server.serve_until(lambda: not load_run(path, with_files=False).is_running, LINGER_S)
    report = view_run(path, args.runs_dir, output=args.output, open_browser=False,
                      self_contained=args.self_contained)
    print(f"Live server stopped. Report: {report}")
    return 0
