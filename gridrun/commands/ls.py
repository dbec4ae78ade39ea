"""gridrun ls: list runs as a table (terminal, CSV or JSON).

The terminal table is built without pandas, from the runs dir's index (gridrun/runindex.py), so that
`gridrun ls` answers fast even over many runs. Its default view fits the terminal: run name, status, the
column it is sorted by (or the sweep's metric, else val_loss) and the flags that differ among the rows
shown; `--wide` shows every metric and flag, `--columns` chooses, `--format csv|json` gives everything.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import shutil
import sys
from typing import Any

from ._common import add_runs_dir

NAME = "ls"
HELP = "List runs with their metrics and flags."
DEFAULT_COLUMNS = ["run_dir", "status", "metric_*", "flag_*"]  # --wide, and csv/json without --columns
GAP = "  "
MAX_FLAG_WIDTH = 24  # longer flag values are cut (with "…") in the fitted view


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runs_dir(parser)
    parser.add_argument("--order", metavar="COLUMN", help="sort by this column (default: start time)")
    parser.add_argument("--ascending", action="store_true",
                        help="smallest first (default: best first for a metric column, by gridrun's scoring "
                             "rule: lowest loss, highest accuracy; largest / newest first otherwise)")
    parser.add_argument("--descending", action="store_true", help="largest first")
    parser.add_argument("--head", type=int, metavar="N", help="show only the first N rows")
    parser.add_argument("--sweep", metavar="SWEEP_ID", help="only the runs of this tuning run")
    parser.add_argument("--script", metavar="NAME",
                        help="only the runs of this script (its file name, e.g. train.py; .py may be left out)")
    parser.add_argument("--columns", nargs="+", metavar="COL",
                        help="columns to show; '*' patterns allowed (default: run, status, the sort column or "
                             "the sweep's metric, and the flags that differ, fitted to the terminal)")
    parser.add_argument("--wide", action="store_true",
                        help="show every metric and flag column (run_dir status metric_* flag_*), unfitted")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    from ._analysis_ls import add_ls_arguments  # --importance, --pareto, --metric, --mode (issue 21)

    add_ls_arguments(parser)


def sort_decreasing(args: argparse.Namespace) -> bool:
    """--ascending / --descending when given; else best first for metric columns (the scoring rule)."""
    from ..errors import GridrunError
    from ..scoring import default_decreasing

    if args.ascending and args.descending:
        raise GridrunError("give --ascending or --descending, not both")
    if args.ascending or args.descending:
        return bool(args.descending)
    return default_decreasing(args.order)


def select_columns(columns: list[str], patterns: list[str]) -> list[str]:
    import fnmatch

    from ..errors import GridrunError

    cols: list[str] = []
    for pat in patterns:
        hits = [c for c in columns if fnmatch.fnmatchcase(c, pat)]
        if not hits and "*" not in pat:
            raise GridrunError(f"no column {pat!r}; columns: {', '.join(columns)}")
        cols += [c for c in hits if c not in cols]
    return cols


def run(args: argparse.Namespace) -> int:
    from ._analysis_ls import run_ls_analysis, wanted

    if wanted(args):
        return run_ls_analysis(args, terminal_width())
    decreasing = sort_decreasing(args)
    if args.format == "table":
        _print(table_lines(args, decreasing, terminal_width()))
        return 0
    from ..runs import ls_runs

    df = ls_runs(args.runs_dir, order=args.order, decreasing=decreasing, sweep=args.sweep,
                 script=getattr(args, "script", None))
    if args.sweep and df.empty:  # a mistyped id is an error, as in sweep-report
        from ..report.sweepdata import find_sweep_runs

        find_sweep_runs(args.sweep, args.runs_dir)
    if args.head is not None:
        df = df.head(args.head)
    df = df[select_columns(list(df.columns), args.columns or DEFAULT_COLUMNS)]
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        sys.stdout.write(df.to_json(orient="records", date_format="iso", indent=1) + "\n")
    return 0


def terminal_width() -> int:
    return max(20, shutil.get_terminal_size((100, 24)).columns)


def _print(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))


# --------------------------------------------------------------------------------------------------
# The terminal table, without pandas


class _Rows:
    """The runs of a scan, read column by column (each column once)."""

    def __init__(self, scan: Any, known: list[str]):
        self.scan = scan
        self.names = scan.names()
        self.columns = ["run_dir", *scan.keys()]
        self.columns += [c for c in known if c not in self.columns]
        self._cols: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def col(self, key: str) -> list[Any]:
        if key not in self._cols:
            self._cols[key] = self.scan.run_dirs() if key == "run_dir" else self.scan.column(key)
        return self._cols[key]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _sort_values(key: str, values: list[Any]) -> list[Any]:
    """Values to sort by, with the ordering the table's dtypes give (times by time, numbers by value)."""
    if key in ("start", "end"):
        present = [v for v in values if v is not None]
        if all(isinstance(v, str) and len(v) == 27 and v[-1] == "Z" and v[10] == "T" for v in present):
            return values  # gridrun's own UTC timestamps (rundir.iso): text order is time order
        out = []
        for v in values:
            try:
                out.append(_dt.datetime.fromisoformat(v) if isinstance(v, str) else None)
            except ValueError:
                out.append(None)
        return out
    present = [v for v in values if not _missing(v)]
    if all(isinstance(v, (int, float)) for v in present) or all(isinstance(v, str) for v in present):
        return [None if _missing(v) else v for v in values]
    return [None if _missing(v) else str(v) for v in values]


def _order(rows: _Rows, key: str, decreasing: bool) -> list[int]:
    """Row positions sorted as ls_runs sorts: by `key`, then run_dir, missing values last."""
    vals = _sort_values(key, rows.col(key))
    dirs = rows.col("run_dir")
    present = [i for i, v in enumerate(vals) if v is not None]
    absent = [i for i, v in enumerate(vals) if v is None]
    present.sort(key=lambda i: (vals[i], dirs[i]), reverse=decreasing)
    absent.sort(key=lambda i: dirs[i], reverse=decreasing)
    return present + absent


def sweep_metric(runs_dir: str, sweep: str | None) -> str | None:
    """The metric a sweep ranks its trials by, from its manifest (runs/sweeps/ID.json), if recorded."""
    if not sweep:
        return None
    from pathlib import Path

    from .._io import read_json

    data = read_json(Path(runs_dir) / "sweeps" / f"{sweep}.json", {})
    metric = data.get("metric") if isinstance(data, dict) else None
    if isinstance(metric, list):  # a multi-objective sweep: its first metric
        metric = metric[0] if metric else None
    return metric if isinstance(metric, str) and metric else None


def default_columns(rows: _Rows, shown: list[int], order: str | None, sweep_metric_name: str | None) -> tuple[
        list[str], list[str]]:
    """The fitted view's columns: (always shown, flags to add while they fit).

    Always: run_dir, status, the script when the rows shown come from more than one, the sort column
    (when --order), and the metric that ranks runs (the sweep's
    metric when recorded, else val_loss, else loss) unless the sort column is a metric. Flags: those with
    two or more distinct values among the rows shown (a run without the flag, e.g. of another script,
    does not count as a value); a single row shows all its flags.
    """
    from .. import scoring

    keep = ["run_dir", "status"]
    if len({str(rows.col("script")[i]) for i in shown}) > 1:  # rows of several scripts: say which is which
        keep.append("script")
    if order and order not in keep:
        keep.append(order)
    if not order or not order.startswith(("metric_", "eval_", "best_")):
        names = [sweep_metric_name] if sweep_metric_name else list(scoring.FALLBACK_METRICS)
        for name in names:
            col = name if name.startswith(("metric_", "eval_", "best_")) else f"metric_{name}"
            if col in rows.columns and any(not _missing(rows.col(col)[i]) for i in shown):
                if col not in keep:
                    keep.append(col)
                break
    flags = []
    for col in rows.columns:
        if not col.startswith("flag_") or col in keep:
            continue
        distinct = {repr(v) for v in (rows.col(col)[i] for i in shown) if not _missing(v)}
        if len(distinct) > 1 or (distinct and len(shown) == 1):
            flags.append(col)
    return keep, flags


def _cell(col: str, v: Any) -> str:
    if _missing(v):
        return ""
    if col == "run_dir":
        return str(v).rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if isinstance(v, float):
        return f"{v:.4g}"
    if col in ("start", "end") and isinstance(v, str):
        return v.replace("T", " ")[:19]
    return str(v).replace("\n", "↵")


def _header(col: str, cols: list[str]) -> str:
    if col == "run_dir":
        return "run"
    short = col.removeprefix("metric_").removeprefix("flag_")
    same = [c for c in cols if c.removeprefix("metric_").removeprefix("flag_") == short]
    return short if len(same) == 1 else col


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table_lines(args: argparse.Namespace, decreasing: bool, width: int) -> list[str]:
    """The lines `gridrun ls` prints on a terminal `width` characters wide."""
    from ..errors import GridrunError
    from ..record import RUN_COLUMNS, TRAINING_COLUMNS, no_script_message, order_error_message, script_matches
    from ..runindex import HEAVY, scan

    wanted = args.columns or (DEFAULT_COLUMNS if args.wide else [])
    import fnmatch

    heavy = any(fnmatch.fnmatchcase(h, p) for h in HEAVY for p in wanted) or (args.order in HEAVY)
    rows = _Rows(scan(args.runs_dir, sweep=args.sweep, heavy=heavy), [*TRAINING_COLUMNS, *RUN_COLUMNS])
    by = args.order or "start"
    if by not in rows.columns:
        raise GridrunError(order_error_message([by], rows.columns))
    if not len(rows):
        if args.sweep:  # a mistyped sweep id is an error, as in sweep-report
            from ..report.sweepdata import find_sweep_runs

            find_sweep_runs(args.sweep, args.runs_dir)
        return ["No runs."]
    shown = _order(rows, by, decreasing)
    script = getattr(args, "script", None)
    if script is not None:
        scripts = rows.col("script")
        shown = [i for i in shown if script_matches(scripts[i], script)]
        if not shown:
            raise GridrunError(no_script_message(script, scripts))
    if args.head is not None:
        shown = shown[: max(args.head, 0)]
    if not shown:
        return ["No runs."]
    if wanted:
        cols = select_columns(rows.columns, wanted)
        if not args.columns:  # --wide: leave out columns empty in every row shown
            cols = [c for c in cols if c in ("run_dir", "status") or any(not _missing(rows.col(c)[i]) for i in shown)]
        return _render(rows, shown, cols, [], width=None)
    keep, flags = default_columns(rows, shown, args.order, sweep_metric(args.runs_dir, args.sweep))
    return _render(rows, shown, keep, flags, width=width)


def _render(rows: _Rows, shown: list[int], keep: list[str], extra: list[str], width: int | None) -> list[str]:
    """Columns `keep` whole, then as many of `extra` as fit in `width` (None: all), as text lines."""
    all_cols = keep + extra
    cells = {c: [_cell(c, rows.col(c)[i]) for i in shown] for c in all_cols}
    if width is not None:
        for c in extra:
            cells[c] = [_cut(v, MAX_FLAG_WIDTH) for v in cells[c]]
    heads = {c: _header(c, all_cols) for c in all_cols}
    widths = {c: max([len(heads[c]), *map(len, cells[c])]) for c in all_cols}
    numeric = {c: all(isinstance(rows.col(c)[i], (int, float)) or _missing(rows.col(c)[i]) for i in shown)
               and c != "run_dir" for c in all_cols}
    cols = list(keep)
    used = sum(widths[c] for c in cols) + len(GAP) * (len(cols) - 1)
    dropped = []
    for c in extra:
        if width is None or used + len(GAP) + widths[c] <= width:
            cols.append(c)
            used += len(GAP) + widths[c]
        else:
            dropped.append(c)

    def line(values: dict[str, str]) -> str:
        parts = [values[c].rjust(widths[c]) if numeric[c] else values[c].ljust(widths[c]) for c in cols]
        return GAP.join(parts).rstrip()

    out = [line(heads), GAP.join("-" * widths[c] for c in cols)]
    out += [line({c: cells[c][k] for c in cols}) for k in range(len(shown))]
    if dropped:
        names = ", ".join(_header(c, all_cols) for c in dropped)
        note = f"({len(dropped)} more flag{'s' if len(dropped) > 1 else ''} with --wide or --columns: {names})"
        out.append(_cut(note, width) if width else note)
    return out
