"""The runs table and run management: ls_runs, latest_run, run_info, clean, purge, copy.

Each ended run carries a `summary.json`: its row, precomputed once. `ls_runs` reads one small file per
run, so 10,000 runs list in well under a second; runs still active are summarised from their files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import rundir
from ._io import read_json, write_json
from .errors import GridrunError

ARCHIVE_DIR = "archive"
OUTPUT_TAIL = 2000  # characters of output kept in the table's `output` column

# Columns of tfruns' ls_runs(), in its order; eval_/metric_/flag_ columns go where tfruns puts them.
TRAINING_COLUMNS = ["samples", "validation_samples", "batch_size", "epochs", "epochs_completed", "metrics",
                    "model", "loss_function", "optimizer", "learning_rate"]
RUN_COLUMNS = ["script", "start", "end", "completed", "status", "output", "error_message", "error_traceback",
               "source_code", "context", "type", "sweep", "trial"]
INT_COLUMNS = ["samples", "validation_samples", "batch_size", "epochs", "epochs_completed", "trial"]
OPTIONAL_INT_COLUMNS = ["best_epoch"]  # properties gridrun.fit writes only with EarlyStopping
_KNOWN = set(TRAINING_COLUMNS) | set(RUN_COLUMNS) | {
    "script_path", "versions", "git", "hostname", "pid", "exit_code", "jax_devices", "heartbeat"}


def last_value(series: list[Any] | None) -> Any:
    """The last recorded (non-null) value of a metric's series, or None."""
    for value in reversed(series or []):
        if value is not None:
            return value
    return None


def epochs_recorded(metrics: dict[str, list[Any]]) -> int:
    """How many epochs a run recorded: the most non-null values of any metric (tfruns' rule)."""
    return max((sum(x is not None for x in v) for v in metrics.values()), default=0)


def summarize(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Build a run's row (without run_dir) from its files."""
    run_dir = Path(run_dir)
    props = read_json(run_dir / rundir.PROPERTIES_FILE, {}) or {}
    metrics = read_json(run_dir / rundir.METRICS_FILE, {}) or {}
    flags = read_json(run_dir / rundir.FLAGS_FILE, {}) or {}
    evaluation = read_json(run_dir / rundir.EVALUATION_FILE, {}) or {}
    row: dict[str, Any] = {}
    row.update({f"eval_{k}": v for k, v in evaluation.items()})
    row.update({f"metric_{k}": last_value(v) for k, v in metrics.items()})
    row.update({f"flag_{k}": v for k, v in flags.items()})
    for key in TRAINING_COLUMNS:
        row[key] = props.get(key)
    row["epochs_completed"] = epochs_recorded(metrics) or props.get("epochs_completed")
    row["metrics"] = str(run_dir / rundir.METRICS_FILE) if metrics else None
    for key in RUN_COLUMNS:
        row[key] = props.get(key)
    row["completed"] = bool(props.get("completed", False))
    try:
        with open(run_dir / rundir.OUTPUT_FILE, encoding="utf-8", errors="replace") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - OUTPUT_TAIL * 4))
            row["output"] = fh.read()[-OUTPUT_TAIL:]
    except OSError:
        row["output"] = None
    row["source_code"] = str(run_dir / rundir.SOURCE_DIR) if (run_dir / rundir.SOURCE_DIR).is_dir() else None
    for key, value in props.items():  # custom properties become columns
        if key not in _KNOWN and key not in row and not isinstance(value, (dict, list)):
            row[key] = value
    return row


def write_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    row = summarize(run_dir)
    write_json(Path(run_dir) / rundir.SUMMARY_FILE, row, indent=None)
    return row


def _row(entry: Path) -> dict[str, Any] | None:
    row = read_json(entry / rundir.SUMMARY_FILE)
    if row is None:
        if not (entry / rundir.PROPERTIES_FILE).exists():
            return None  # not a run (archive/, sweeps/, stray folders)
        row = summarize(entry)
    row["run_dir"] = str(entry)
    return row


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=["run_dir"])
    for col in ("run_dir", *TRAINING_COLUMNS, *RUN_COLUMNS):
        if col not in df.columns:
            df[col] = None
    evals = sorted(c for c in df.columns if c.startswith("eval_"))
    mets = [c for c in df.columns if c.startswith("metric_")]
    flag_cols = [c for c in df.columns if c.startswith("flag_")]
    fixed = ["run_dir", *evals, *mets, *flag_cols, *TRAINING_COLUMNS, *RUN_COLUMNS]
    custom = [c for c in df.columns if c not in fixed]
    df = df[fixed + custom].copy()
    for col in evals + mets + ["learning_rate"]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in INT_COLUMNS + [c for c in OPTIONAL_INT_COLUMNS if c in df.columns]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in flag_cols:
        df[col] = _typed(df[col], [r.get(col) for r in rows])
    for col in ("start", "end"):
        df[col] = pd.to_datetime(df[col], utc=True, errors="coerce", format="ISO8601")
    df["completed"] = df["completed"].fillna(False).astype(bool)
    return df


def _typed(col: pd.Series, raw: list[Any]) -> pd.Series:
    """Give a flag column the dtype of its values as written (ints stay Int64 even with gaps)."""
    values = [v for v in raw if v is not None]
    if values and all(isinstance(v, bool) for v in values):
        return col.astype("boolean")
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return col.astype("Int64")
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return col.astype("float64")
    return col.astype(object)


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
    """
    root = Path(runs_dir)
    rows: list[dict[str, Any]] = []
    if root.is_dir():
        with os.scandir(root) as it:
            names = sorted(e.name for e in it if e.is_dir() and e.name not in (ARCHIVE_DIR, "sweeps"))
        quick = latest_n is not None and order is None  # newest first: stop after latest_n runs
        for name in (reversed(names) if quick and decreasing else names):
            row = _row(root / name)
            if row is not None and (sweep is None or row.get("sweep") == sweep):
                rows.append(row)
                if quick and len(rows) >= latest_n:
                    break
    df = _frame(rows)
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

    def _summary(self) -> list[tuple[str, list[tuple[str, Any]]]]:
        """(section, [(label, value)]) for the readable forms: the run, its flags, final metrics, evaluation."""
        p = self.properties
        finals = {c: self.metrics[c].dropna() for c in self.metrics.columns}
        epochs = f"{len(self.metrics)}" + (f" / {p['epochs']}" if p.get("epochs") is not None else "")
        run = [("status", p.get("status")), ("script", p.get("script")), ("started", p.get("start")),
               ("epochs", epochs), ("sweep", p.get("sweep")), ("trial", p.get("trial")),
               ("error", p.get("error_message"))]  # fmt: skip
        return [
            ("run", [(k, v) for k, v in run if v not in (None, "")]),
            ("flags", list(self.flags.items())),
            ("final metrics", [(k, float(v.iloc[-1])) for k, v in finals.items() if len(v)]),
            ("evaluation", list(self.evaluation.items())),
        ]

    def __repr__(self) -> str:
        def fmt(v: Any) -> str:
            return f"{v:.6g}" if isinstance(v, float) else str(v)

        lines = [f"RunInfo {self.run_dir.name} ({self.run_dir})"]
        for section, rows in self._summary():
            if rows:
                lines.append(f"  {section}: " + ", ".join(f"{k}={fmt(v)}" for k, v in rows))
        lines.append("  (fields: run_dir, flags, metrics [DataFrame, one row per epoch], properties, evaluation, paths)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        def fmt(v: Any) -> str:
            return escape(f"{v:.6g}" if isinstance(v, float) else str(v))

        parts = [f"<div class=\"gridrun-run-info\"><strong>Run {escape(self.run_dir.name)}</strong> "
                 f"<code>{escape(str(self.run_dir))}</code>"]
        for section, rows in self._summary():
            if rows:
                body = "".join(f"<tr><th style=\"text-align:left\">{escape(str(k))}</th><td style=\"text-align:left\">"
                               f"{fmt(v)}</td></tr>" for k, v in rows)  # fmt: skip
                parts.append(f"<p style=\"margin:6px 0 2px\"><em>{escape(section)}</em></p><table>{body}</table>")
        if len(self.metrics):
            parts.append("<p style=\"margin:6px 0 2px\"><em>metrics by epoch</em></p>" + self.metrics.tail(10).to_html(
                float_format=lambda v: f"{v:.6g}", na_rep=""))  # fmt: skip
        return "".join(parts) + "</div>"


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


def _select(runs: list[Any] | None, runs_dir: str | os.PathLike, failed: bool) -> list[Path]:
    if runs:
        return [resolve_run(r, runs_dir) for r in runs]
    df = ls_runs(runs_dir)
    if failed:
        df = df[df["status"].isin(["failed", "interrupted"])]
    return [Path(p).resolve() for p in df["run_dir"]]


def clean_runs(runs: list[Any] | None = None, runs_dir: str | os.PathLike = "runs", failed: bool = False) -> list[Path]:
    """Move runs (default: all; `failed=True`: failed and interrupted ones) to runs_dir/archive."""
    targets = _select(runs, runs_dir, failed)
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
