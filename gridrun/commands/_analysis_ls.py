"""`gridrun ls --importance` and `gridrun ls --pareto`: the options, and what they print.

Kept out of ls.py (and free of heavy imports at module level) so that `gridrun ls` starts as fast as
before; the work is done by gridrun.analysis.
"""

from __future__ import annotations

import argparse
import sys


def add_ls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--importance", action="store_true",
                        help="print which flags matter for the metric (optuna's PED-ANOVA, with a spread over "
                             "bootstraps): with --sweep, else the latest sweep")
    parser.add_argument("--pareto", action="store_true",
                        help="only the runs on the Pareto front of two or more --metric (no other run better "
                             "on every one)")
    parser.add_argument("--metric", action="append", metavar="NAME",
                        help="metric for --importance (default: the sweep's), or for --pareto (repeat: "
                             "--metric val_loss --metric n_params)")
    parser.add_argument("--mode", metavar="MIN,MAX",
                        help="min or max per --metric, comma-separated (default: loss-like min, accuracy-like max)")


def wanted(args: argparse.Namespace) -> bool:
    """Does this `gridrun ls` call ask for --importance or --pareto?"""
    from ..errors import GridrunError

    if getattr(args, "importance", False) and getattr(args, "pareto", False):
        raise GridrunError("give --importance or --pareto, not both")
    if not (getattr(args, "importance", False) or getattr(args, "pareto", False)) and (getattr(args, "metric", None) or getattr(args, "mode", None)):
        raise GridrunError("--metric and --mode go with --importance or --pareto (to sort by a metric: "
                           "--order metric_NAME)")
    return bool(getattr(args, "importance", False) or getattr(args, "pareto", False))


def run_ls_analysis(args: argparse.Namespace, width: int = 100) -> int:
    from .. import analysis
    from ..errors import GridrunError

    modes = [m.strip() or None for m in args.mode.split(",")] if args.mode else None
    if args.importance:
        if args.metric and len(args.metric) > 1:
            raise GridrunError("--importance takes one --metric")
        if modes and len(modes) > 1:
            raise GridrunError("--importance takes one --mode (min or max)")
        table = analysis.importance(args.sweep, metric=(args.metric or [None])[0], mode=(modes or [None])[0],
                                    runs_dir=args.runs_dir)
        if args.format == "table":
            sys.stdout.write("".join(line + "\n" for line in analysis.importance_lines(table, width)))
        elif args.format == "csv":
            table.to_csv(sys.stdout, index=False)
        else:
            sys.stdout.write(table.to_json(orient="records", indent=1) + "\n")
        return 0
    from ..runs import ls_runs

    df = ls_runs(args.runs_dir, sweep=args.sweep)
    if args.sweep and df.empty:
        from ..report.sweepdata import find_sweep_runs

        find_sweep_runs(args.sweep, args.runs_dir)
    if df.empty:
        print("No runs.")
        return 0
    front = analysis.pareto(df, metrics=args.metric, modes=modes, runs_dir=args.runs_dir)
    cols = [analysis.metric_column(df, m) for m in front.attrs["metrics"]]
    flags = [c for c in front.columns if c.startswith("flag_") and front[c].astype(str).nunique() > 1]
    out = front[["run_dir", "status", *cols, *flags]].copy()
    if args.head is not None:
        out = out.head(args.head)
    if args.format == "csv":
        out.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        sys.stdout.write(out.to_json(orient="records", indent=1) + "\n")
    else:
        out["run_dir"] = out["run_dir"].map(lambda p: str(p).rsplit("/", 1)[-1])
        out = out.rename(columns=lambda c: "run" if c == "run_dir" else c.removeprefix("metric_").removeprefix("flag_"))
        modes_txt = ", ".join(f"{m} {md}" for m, md in zip(front.attrs["metrics"], front.attrs["modes"]))
        print(f"Pareto front ({modes_txt}): {len(front)} of {len(df)} runs")
        print(out.to_string(index=False) if len(out) else "No run has every metric.")
    return 0
