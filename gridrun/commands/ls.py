"""gridrun ls: list runs as a table (terminal, CSV or JSON)."""

from __future__ import annotations

import argparse
import sys

from ._common import add_runs_dir

NAME = "ls"
HELP = "List runs with their metrics and flags."
DEFAULT_COLUMNS = ["run_dir", "status", "metric_*", "flag_*"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runs_dir(parser)
    parser.add_argument("--order", metavar="COLUMN", help="sort by this column (default: start time)")
    parser.add_argument("--ascending", action="store_true",
                        help="smallest first (default: best first for a metric column, by gridrun's scoring "
                             "rule: lowest loss, highest accuracy; largest / newest first otherwise)")
    parser.add_argument("--descending", action="store_true", help="largest first")
    parser.add_argument("--head", type=int, metavar="N", help="show only the first N rows")
    parser.add_argument("--sweep", metavar="SWEEP_ID", help="only the runs of this tuning run")
    parser.add_argument("--columns", nargs="+", metavar="COL",
                        help="columns to show; '*' patterns allowed (default: run_dir status metric_* flag_*)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")


def sort_decreasing(args: argparse.Namespace) -> bool:
    """--ascending / --descending when given; else best first for metric columns (the scoring rule)."""
    from .. import scoring
    from ..errors import GridrunError

    if args.ascending and args.descending:
        raise GridrunError("give --ascending or --descending, not both")
    if args.ascending or args.descending:
        return bool(args.descending)
    if args.order and args.order.startswith(("metric_", "eval_", "best_")):
        return scoring.direction(args.order) == "max"
    return True


def select_columns(df, patterns: list[str]) -> list[str]:
    import fnmatch

    from ..errors import GridrunError

    cols: list[str] = []
    for pat in patterns:
        hits = [c for c in df.columns if fnmatch.fnmatchcase(c, pat)]
        if not hits and "*" not in pat:
            raise GridrunError(f"no column {pat!r}; columns: {', '.join(df.columns)}")
        cols += [c for c in hits if c not in cols]
    return cols


def run(args: argparse.Namespace) -> int:
    from ..runs import ls_runs

    df = ls_runs(args.runs_dir, order=args.order, decreasing=sort_decreasing(args), sweep=args.sweep)
    if args.sweep and df.empty:  # a mistyped id is an error, as in sweep-report
        from ..report.sweepdata import find_sweep_runs

        find_sweep_runs(args.sweep, args.runs_dir)
    if args.head is not None:
        df = df.head(args.head)
    df = df[select_columns(df, args.columns or DEFAULT_COLUMNS)]
    if "run_dir" in df.columns and args.format == "table":
        df = df.assign(run_dir=[p.rsplit("/", 1)[-1] for p in df["run_dir"]])
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso", indent=1) + "\n")
    else:
        _table(df)
    return 0


def _table(df) -> None:
    if df.empty:
        print("No runs.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    short = [c.removeprefix("metric_").removeprefix("flag_") for c in df.columns]
    for col, name in zip(df.columns, short):
        header = "run" if col == "run_dir" else name if short.count(name) == 1 else col
        table.add_column(header,
                         justify="right" if df[col].dtype.kind in "if" else "left", no_wrap=col == "run_dir")
    for _, row in df.iterrows():
        table.add_row(*[_fmt(v) for v in row])
    Console(width=max(120, Console().width)).print(table)


def _fmt(v) -> str:
    import pandas as pd

    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
