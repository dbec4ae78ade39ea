"""Runs where people already look: TensorBoard event files and an MLflow tracking store.

    gridrun.export.tensorboard("tb", sweep=ID)        # gridrun export tensorboard tb --sweep ID
    gridrun.export.mlflow(tracking_uri=URI, sweep=ID)  # gridrun export mlflow --tracking-uri URI --sweep ID

Both read the run dirs (flags, per-epoch metrics, evaluation, status) and need an optional extra:
`pip install gridrun[tensorboard]` (the tensorboard package: its own event writer, no TensorFlow) or
`pip install gridrun[mlflow]` (mlflow-skinny). Both can be run again: the TensorBoard export rewrites
its own event files, and the MLflow export finds each run by its `gridrun.run` tag and updates it.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import Any

from ..errors import GridrunError

__all__ = ["mlflow", "run_dirs", "tensorboard"]


def run_dirs(runs_dir: str | os.PathLike = "runs", sweep: str | None = None) -> list[Path]:
    """The run dirs to export: every run of `runs_dir`, or the runs of one sweep, oldest first."""
    from ..runs import ls_runs

    df = ls_runs(runs_dir, sweep=sweep)
    if not len(df):
        if sweep:
            from ..report.sweepdata import find_sweep_runs

            find_sweep_runs(sweep, runs_dir)  # the one-line error naming the sweeps there
        raise GridrunError(f"no runs in runs dir '{runs_dir}' to export: check --runs-dir")
    return sorted((Path(str(p)) for p in df["run_dir"]), key=lambda p: p.name)


def need(module: str, extra: str) -> Any:
    """Import `module` of an optional extra, or a one-line error naming the pip command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise GridrunError(f"exporting to {extra} needs the {extra} extra: pip install gridrun[{extra}]") from None


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def timestamp(text: Any) -> float | None:
    """Seconds since the epoch of a run's ISO time (properties start / end), None when unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def tensorboard(logdir: str | os.PathLike, runs_dir: str | os.PathLike = "runs", sweep: str | None = None) -> Path:
    """Write TensorBoard event files for the runs into `logdir` (see gridrun/export/_tensorboard.py)."""
    from ._tensorboard import export

    return export(logdir, runs_dir, sweep)


def mlflow(tracking_uri: str | None = None, runs_dir: str | os.PathLike = "runs", sweep: str | None = None,
           experiment: str = "gridrun", artifacts: bool = True) -> dict[str, str]:
    """Log the runs to MLflow (see gridrun/export/_mlflow.py); returns {gridrun run name: MLflow run id}."""
    from ._mlflow import export

    return export(tracking_uri, runs_dir, sweep, experiment=experiment, artifacts=artifacts)
