"""The runs table and run management: ls_runs, latest_run, run_info, clean, purge, copy.

Each ended run carries a `summary.json`: its row, precomputed once. `ls_runs` takes the rows from the
runs dir's index (gridrun/runindex.py: a cache of summaries, checked against each summary's stat) and
reads only the summaries that changed; runs still active are summarised from their files.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import rundir, runindex
from ._io import read_json
from .errors import GridrunError
from .record import (
    INT_COLUMNS,
    OPTIONAL_INT_COLUMNS,
    RUN_COLUMNS,
    TRAINING_COLUMNS,
    summarize,
)

ARCHIVE_DIR = "archive"


def _row(entry: Path) -> dict[str, Any] | None:
    row = read_json(entry / rundir.SUMMARY_FILE)
    if row is None:
        if not (entry / rundir.PROPERTIES_FILE).exists():
            return None  # not a run (archive/, sweeps/, stray folders)
        row = summarize(entry)
    row["run_dir"] = str(entry)
    return row


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The runs table of row dicts (each with its run_dir)."""
    n = len(rows)
    cols: dict[str, list[Any]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            col = cols.get(key)
            if col is None:
                col = cols[key] = [_fill(key)] * n
            col[i] = value
    return _frame_columns(cols, n)


def _fill(key: str) -> Any:
    """What a row lacking column `key` holds: None for the typed columns, NaN for the others (as pandas'
    from_records fills them, which decides their dtype: all-NaN is float64, all-None is object)."""
    if key.startswith(("eval_", "metric_", "flag_")) or key in _TYPED:
        return None
    return math.nan


def _scan_frame(scan: runindex.Scan) -> pd.DataFrame:
    """The runs table of a scan, built column by column."""
    cols = {key: scan.column(key, _fill(key)) for key in scan.keys()}
    cols["run_dir"] = scan.run_dirs()
    return _frame_columns(cols, len(cols["run_dir"]))


_TYPED = {"learning_rate", "start", "end", "completed", *INT_COLUMNS, *OPTIONAL_INT_COLUMNS}
_NUMBER_TYPES = {int, float, type(None)}
_INT_TYPES = {int, type(None)}
_BOOL_TYPES = {bool, type(None)}


def _floats(values: list[Any]) -> Any:
    if set(map(type, values)) <= _NUMBER_TYPES:
        return np.array(values, dtype="float64")  # None -> NaN
    return pd.to_numeric(pd.Series(values), errors="coerce").astype("float64")


def _ints(values: list[Any]) -> Any:
    if set(map(type, values)) <= _INT_TYPES:
        return pd.array(values, dtype="Int64")
    return pd.to_numeric(pd.Series(values), errors="coerce").astype("Int64")


def _frame_columns(cols: dict[str, list[Any]], n: int) -> pd.DataFrame:
    """Typed runs table from columns of raw values (in first-appearance order), in tfruns' column order."""
    for col in ("run_dir", *TRAINING_COLUMNS, *RUN_COLUMNS):
        if col not in cols:
            cols[col] = [None] * n
    evals = sorted(c for c in cols if c.startswith("eval_"))
    mets = [c for c in cols if c.startswith("metric_")]
    flag_cols = [c for c in cols if c.startswith("flag_")]
    fixed = ["run_dir", *evals, *mets, *flag_cols, *TRAINING_COLUMNS, *RUN_COLUMNS]
    custom = [c for c in cols if c not in fixed]
    data: dict[str, Any] = dict(cols) if n else {c: np.array([], dtype=object) for c in cols}
    for col in evals + mets + ["learning_rate"]:
        data[col] = _floats(cols[col])
    for col in INT_COLUMNS + [c for c in OPTIONAL_INT_COLUMNS if c in cols]:
        data[col] = _ints(cols[col])
    for col in flag_cols:
        data[col] = _typed(cols[col])
    for col in ("start", "end"):
        data[col] = pd.to_datetime(pd.Series(cols[col], dtype=object) if n else pd.Series([], dtype=object),
                                   utc=True, errors="coerce", format="ISO8601")
    done = cols["completed"]
    data["completed"] = (np.array([v is True for v in done], dtype=bool) if set(map(type, done)) <= _BOOL_TYPES
                         else pd.Series(done).fillna(False).astype(bool))
    df = pd.DataFrame({c: data[c] for c in fixed + custom}, index=pd.RangeIndex(n))
    return df


def _typed(raw: list[Any]) -> Any:
    """Give a flag column the dtype of its values as written (ints stay Int64 even with gaps)."""
    types = set(map(type, raw)) - {type(None)}
    if types and types <= {bool}:
        return pd.array(raw, dtype="boolean")
    if types and types <= {int}:
        return pd.array(raw, dtype="Int64")
    if types and types <= {int, float}:
        return np.array(raw, dtype="float64")
    return pd.Series(raw).astype(object)


def ls_runs(
    runs_dir: str | os.PathLike = "runs",
    order: str | list[str] | None = None,
    decreasing: bool = True,
    latest_n: int | None = None,
    sweep: str | None = None,
) -> pd.DataFrame:
    """One row per run in `runs_dir`, with tfruns' columns (run_dir, metric_*, flag_*, eval_*, ...).

    Ordered by `order` (default: start time), newest / largest first unless `decreasing=False`.
    `sweep` keeps the runs of one tuning run. Best run: `df.query("metric_val_loss == metric_val_loss.min()")`.
    Rows come from the runs dir's index where it is current (gridrun/runindex.py), else from the run dirs.
    """
    quick = latest_n is not None and order is None  # newest first: stop after latest_n runs
    scan = runindex.scan(runs_dir, sweep=sweep, newest_first=quick and decreasing,
                         limit=latest_n if quick else None)
    df = _scan_frame(scan)
    by = order or "start"
    keys = [by] if isinstance(by, str) else list(by)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        cols = ", ".join(c for c in df.columns if c.startswith(("metric_", "flag_", "eval_"))) or "(none yet)"
        raise GridrunError(f"cannot order runs by {', '.join(missing)}: no such column. Columns to order by: {cols}")
    df = df.sort_values(keys + (["run_dir"] if "run_dir" not in keys else []), ascending=not decreasing,
                        na_position="last", kind="stable")
    if latest_n is not None:
        df = df.head(latest_n)
    return df.reset_index(drop=True)


def run_row(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The one-row table of a single run."""
    row = _row(Path(run_dir))
    if row is None:
        raise GridrunError(f"{run_dir} is not a run directory (it has no properties.json)")
    return _frame([row])


# --------------------------------------------------------------------------------------------------
# Single runs


def resolve_run(run: Any = None, runs_dir: str | os.PathLike = "runs") -> Path:
    """Turn a run name, a path inside runs_dir, or a row of ls_runs into a run dir inside `runs_dir`.

    Names resolve only inside the runs dir: '../../etc' is refused. None means the latest run.
    """
    root = Path(runs_dir).resolve()
    if run is None:
        return latest_run(runs_dir)
    if isinstance(run, pd.DataFrame):
        if len(run) != 1:
            raise GridrunError(f"expected one run, got a table of {len(run)} rows: select one row")
        run = run["run_dir"].iloc[0]
    elif isinstance(run, pd.Series):
        run = run["run_dir"]
    elif isinstance(run, dict):
        run = run["run_dir"]
    text = str(run)
    candidate = Path(text)
    if not candidate.is_absolute():
        # a bare name lives in the runs dir; a longer relative path ('runs/NAME') is taken from the cwd
        candidate = root / candidate if len(candidate.parts) == 1 else Path.cwd() / candidate
    candidate = candidate.resolve()
    if root not in candidate.parents:
        raise GridrunError(
            f"run {text!r} is not inside the runs dir {root}: give a run name as listed by `gridrun ls` "
            f"(or pass --runs-dir)"
        )
    if not (candidate / rundir.PROPERTIES_FILE).is_file():
        raise GridrunError(f"no run named {text!r} in {root}: list the runs with `gridrun ls`")
    return candidate


def latest_run(runs_dir: str | os.PathLike = "runs") -> Path:
    root = Path(runs_dir)
    names = sorted(
        (e.name for e in os.scandir(root) if e.is_dir() and (Path(e.path) / rundir.PROPERTIES_FILE).exists())
        if root.is_dir() else []
    )
    if not names:
        raise GridrunError(f"no runs in {root.resolve()}: start one with `gridrun training-run script.py`")
    return (root / names[-1]).resolve()


@dataclass
class RunInfo:
    run_dir: Path
    flags: dict[str, Any]
    metrics: pd.DataFrame
    properties: dict[str, Any]
    evaluation: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


def run_info(run: Any = None, runs_dir: str | os.PathLike = "runs") -> RunInfo:
    """Everything about one run: flags, metrics (a DataFrame, one row per epoch), properties, paths."""
    path = resolve_run(run, runs_dir)
    metrics = read_json(path / rundir.METRICS_FILE, {}) or {}
    n = max((len(v) for v in metrics.values()), default=0)
    frame = pd.DataFrame({k: list(v) + [None] * (n - len(v)) for k, v in metrics.items()}, dtype="float64")
    frame.index = pd.RangeIndex(1, n + 1, name="epoch")
    paths = {name: path / f for name, f in (
        ("flags", rundir.FLAGS_FILE), ("metrics", rundir.METRICS_FILE), ("properties", rundir.PROPERTIES_FILE),
        ("evaluation", rundir.EVALUATION_FILE), ("output", rundir.OUTPUT_FILE), ("source", rundir.SOURCE_DIR),
        ("artifacts", rundir.ARTIFACTS_DIR))}
    return RunInfo(
        run_dir=path,
        flags=read_json(path / rundir.FLAGS_FILE, {}) or {},
        metrics=frame,
        properties=read_json(path / rundir.PROPERTIES_FILE, {}) or {},
        evaluation=read_json(path / rundir.EVALUATION_FILE, {}) or {},
        paths=paths,
    )


# --------------------------------------------------------------------------------------------------
# Managing runs


def select_runs(runs: list[Any] | None, runs_dir: str | os.PathLike, failed: bool) -> list[Path]:
    if runs:
        return [resolve_run(r, runs_dir) for r in runs]
    df = ls_runs(runs_dir)
    if failed:
        df = df[df["status"].isin(["failed", "interrupted"])]
    return [Path(p).resolve() for p in df["run_dir"]]


def clean_runs(runs: list[Any] | None = None, runs_dir: str | os.PathLike = "runs", failed: bool = False) -> list[Path]:
    """Move runs (default: all; `failed=True`: failed and interrupted ones) to runs_dir/archive."""
    targets = select_runs(runs, runs_dir, failed)
    archive = Path(runs_dir) / ARCHIVE_DIR
    archive.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in targets:
        dest = archive / path.name
        if dest.exists():
            raise GridrunError(f"{dest} already exists in the archive: purge it first with `gridrun purge`")
        shutil.move(str(path), dest)
        moved.append(dest)
    return moved


def purge_runs(runs_dir: str | os.PathLike = "runs") -> list[Path]:
    """Delete every archived run (runs_dir/archive)."""
    archive = Path(runs_dir) / ARCHIVE_DIR
    removed = [p for p in sorted(archive.iterdir()) if p.is_dir()] if archive.is_dir() else []
    for path in removed:
        shutil.rmtree(path)
    return removed


def copy_run(run: Any, to: str | os.PathLike, runs_dir: str | os.PathLike = "runs",
             artifacts_only: bool = False) -> Path:
    """Copy a run dir to `to` (a folder, created if needed); with `artifacts_only`, only its artifacts."""
    src = resolve_run(run, runs_dir)
    dest = Path(to)
    if artifacts_only:
        src_art = src / rundir.ARTIFACTS_DIR
        if not src_art.is_dir():
            raise GridrunError(f"run {src.name} has no artifacts/ folder to copy")
        shutil.copytree(src_art, dest, dirs_exist_ok=True)
        return dest
    target = dest / src.name
    if target.exists():
        raise GridrunError(f"{target} already exists: choose another destination or remove it")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, target)
    return target
