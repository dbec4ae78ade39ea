"""The runs table and run management: ls_runs, latest_run, run_info, clean, purge, copy.

Each ended run carries a `summary.json`: its row, precomputed once. `ls_runs` takes the rows from the
runs dir's index (gridrun/runindex.py: a cache of summaries, checked against each summary's stat) and
reads only the summaries that changed; runs still active are summarised from their files.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import rundir, runindex, scoring
from ._io import decode_float, read_json
from .errors import GridrunError
from .record import (
    INT_COLUMNS,
    OPTIONAL_INT_COLUMNS,
    RUN_COLUMNS,
    TRAINING_COLUMNS,
    Status,
    no_script_message,
    order_error_message,
    script_matches,
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
    raw = [decode_float(v) for v in raw]  # a NaN flag value is recorded as "NaN"
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
    decreasing: bool | None = None,
    latest_n: int | None = None,
    sweep: str | None = None,
    subset: str | Any = None,
    script: str | None = None,
) -> pd.DataFrame:
    """One row per run in `runs_dir`, with tfruns' columns (run_dir, metric_*, flag_*, eval_*, ...).

    Ordered by `order` (default: start time), newest / largest first; a metric column (`metric_*`,
    `eval_*`, `best_*`) sorts best first by gridrun's scoring rule (losses smallest, accuracies largest:
    `ls_runs(order="metric_val_loss").iloc[0]` is the best run), as `gridrun ls --order` does;
    `decreasing=True` / `False` forces largest / smallest first.
    `sweep` keeps the runs of one tuning run, `script` those of one script (`"train.py"` or `"train"`;
    a name no run has is an error naming the scripts there are). `subset` keeps the rows it selects, before `latest_n`
    (tfruns' `subset`): a `DataFrame.query` expression such as `"metric_val_acc > 0.98"`, or a function
    of the table returning a boolean mask. Best run: `df.query("metric_val_loss == metric_val_loss.min()")`.
    Rows come from the runs dir's index where it is current (gridrun/runindex.py), else from the run dirs.
    """
    if decreasing is None:
        decreasing = scoring.default_decreasing(order)
    quick = latest_n is not None and order is None and subset is None and script is None  # stop after latest_n
    scan = runindex.scan(runs_dir, sweep=sweep, newest_first=quick and decreasing,
                         limit=latest_n if quick else None)
    df = _scan_frame(scan)
    if script is not None:
        mask = [script_matches(s, script) for s in df["script"]]
        if len(df) and not any(mask):
            raise GridrunError(no_script_message(script, list(df["script"])))
        df = df[np.array(mask, dtype=bool)].reset_index(drop=True)
    by = order or "start"
    keys = [by] if isinstance(by, str) else list(by)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise GridrunError(order_error_message(missing, list(df.columns)))
    df = df.sort_values(keys + (["run_dir"] if "run_dir" not in keys else []), ascending=not decreasing,
                        na_position="last", kind="stable")
    if subset is not None:
        df = _subset(df, subset)
    if latest_n is not None:
        df = df.head(latest_n)
    return df.reset_index(drop=True)


def _subset(df: pd.DataFrame, subset: Any) -> pd.DataFrame:
    """The rows of `df` that `subset` selects (a query string, or a function of df giving a mask)."""
    try:
        mask = df.eval(subset) if isinstance(subset, str) else subset(df) if callable(subset) else subset
        if isinstance(mask, pd.Series) and mask.dtype != bool:
            mask = mask.astype("boolean").fillna(False).astype(bool)
        return df[mask]
    except Exception as exc:  # noqa: BLE001 - pandas raises many kinds for a bad expression
        cols = ", ".join(c for c in df.columns if c.startswith(("metric_", "flag_", "eval_"))) or "(none yet)"
        raise GridrunError(
            f"subset {subset!r} could not select runs ({type(exc).__name__}: {exc}): write a condition on the "
            f"table's columns, e.g. subset=\"metric_val_acc > 0.98\". Columns: {cols}"
        ) from None


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

    Names resolve only inside the runs dir: '../../etc' is refused (so a report never reads files outside
    the runs asked about). None means the latest run. The one resolver: the reports use it too.
    """
    root = Path(runs_dir).resolve()
    if run is None:
        return latest_run(runs_dir)
    if not isinstance(run, (str, os.PathLike)) and not hasattr(run, "__getitem__"):
        raise GridrunError(
            f"cannot use {type(run).__name__} as a run: give a run name, a path inside the runs dir "
            "or a row of gridrun.ls_runs()"
        )
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
        if candidate.parent == root:
            return _by_prefix(root, candidate.name, text)
        raise GridrunError(f"no run named {text!r} in {root}: list the runs with `gridrun ls`")
    return candidate


def _by_prefix(root: Path, name: str, text: str) -> Path:
    """A run named by the start of its name: tfruns' `2026-11-27T06-44-38Z` (no milliseconds), or any
    unambiguous prefix such as `2026-11-27T06-44`."""
    prefix = name[:-1] if _TFRUNS_NAME.fullmatch(name) else name  # drop tfruns' trailing Z
    hits = sorted(e.name for e in os.scandir(root) if e.name.startswith(prefix) and e.is_dir()
                  and (Path(e.path) / rundir.PROPERTIES_FILE).is_file()) if prefix and root.is_dir() else []
    if len(hits) == 1:
        return root / hits[0]
    if hits:
        shown = ", ".join(hits[:5]) + (f" and {len(hits) - 5} more" if len(hits) > 5 else "")
        raise GridrunError(f"run name {text!r} is ambiguous in {root}: it matches {shown}; give more of the name")
    raise GridrunError(f"no run named {text!r} in {root}: list the runs with `gridrun ls`")


_TFRUNS_NAME = re.compile(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ")
_RUN_NAME = re.compile(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(\.\d{3})?Z(-\d+)?")


class RunPath(type(Path())):  # type: ignore[misc]  # PosixPath / WindowsPath: subclassable on Python 3.11
    """The path of a run dir that also gives the run's record, as tfruns' `latest_run()` does:
    `run.flags`, `run.metrics`, `run.properties`, `run.evaluation`, `run.info` (a RunInfo, read once,
    when first asked for) and `run["flags"]`. It is a `pathlib.Path` in every other way (`os.fspath`,
    `==`, `/`), so code that took the path keeps working."""

    _info: RunInfo | None = None

    @property
    def info(self) -> RunInfo:
        if self._info is None:
            self._info = run_info(Path(self), runs_dir=Path(self).parent)
        return self._info

    @property
    def run_dir(self) -> Path:
        return Path(self)

    @property
    def flags(self) -> dict[str, Any]:
        return self.info.flags

    @property
    def metrics(self) -> pd.DataFrame:
        return self.info.metrics

    @property
    def properties(self) -> dict[str, Any]:
        return self.info.properties

    @property
    def evaluation(self) -> dict[str, Any]:
        return self.info.evaluation

    def __getitem__(self, key: str) -> Any:
        return getattr(self.info, key)


def latest_run(runs_dir: str | os.PathLike = "runs") -> RunPath:
    """The newest run of `runs_dir` (by start time): its path, which also gives its record (see RunPath:
    `latest_run().flags`, `.metrics`, `.properties`, `.evaluation`, `.info`)."""
    root = Path(runs_dir)
    names = sorted(
        (e.name for e in os.scandir(root) if e.is_dir() and (Path(e.path) / rundir.PROPERTIES_FILE).exists())
        if root.is_dir() else []
    )
    if not names:
        raise GridrunError(f"no runs in {root.resolve()}: start one with `gridrun training-run script.py`")
    timed = [n for n in names if _RUN_NAME.fullmatch(n)]
    best, best_key = (timed[-1], timed[-1]) if timed else (names[-1], "")
    for name in names:  # runs named by hand (GRIDRUN_RUN_DIR=runs/my-run): compare their start times
        if not _RUN_NAME.fullmatch(name):
            start = (read_json(root / name / rundir.PROPERTIES_FILE, {}) or {}).get("start")
            key = str(start or "").replace(":", "-")  # 2026-11-27T06:44:38.1Z sorts like a run name
            if key > best_key:
                best, best_key = name, key
    return RunPath((root / best).resolve())


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
    metrics = rundir.read_metrics_file(path / rundir.METRICS_FILE)  # "NaN"/"Infinity" read back as floats
    n = max((len(v) for v in metrics.values()), default=0)
    frame = pd.DataFrame({k: list(v) + [None] * (n - len(v)) for k, v in metrics.items()}, dtype="float64")
    labels = rundir.RunContext.open(path).epochs if n else []  # the script's epoch labels (0-based loops)
    frame.index = pd.Index(labels, name="epoch") if len(labels) == n else pd.RangeIndex(1, n + 1, name="epoch")
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


def _as_run_list(runs: Any) -> list[Any] | None:
    """A run, a list of runs, or a table of runs (ls_runs rows, as tfruns takes) -> a list of runs."""
    if runs is None:
        return None
    if isinstance(runs, pd.DataFrame):
        if "run_dir" not in runs.columns:
            raise GridrunError("the table of runs has no run_dir column: pass rows of gridrun.ls_runs()")
        return list(runs["run_dir"])
    if isinstance(runs, (str, os.PathLike, pd.Series, dict)):
        return [runs]
    return list(runs)


def _resolve_all(runs: Any, runs_dir: str | os.PathLike) -> list[Path]:
    """Resolve a list or table of runs: names inside `runs_dir`; the rows of a table (ls_runs of any
    runs dir) inside their own runs dir."""
    if isinstance(runs, pd.DataFrame):
        listed = _as_run_list(runs) or []
        return [resolve_run(p, Path(str(p)).resolve().parent) for p in listed]
    return [resolve_run(r, runs_dir) for r in _as_run_list(runs) or []]


def select_runs(runs: Any, runs_dir: str | os.PathLike, failed: bool) -> list[Path]:
    """The runs to act on: `runs` (names, paths, or a table of ls_runs rows), else all (or the failed)."""
    if isinstance(runs, pd.DataFrame):
        return _resolve_all(runs, runs_dir)  # an empty table selects no run (not every run)
    listed = _as_run_list(runs)
    if listed:
        return [resolve_run(r, runs_dir) for r in listed]
    df = ls_runs(runs_dir)
    if failed:
        df = df[df["status"].isin([Status.FAILED, Status.INTERRUPTED])]
    return [Path(p).resolve() for p in df["run_dir"]]


def clean_runs(runs: Any = None, runs_dir: str | os.PathLike = "runs", failed: bool = False) -> list[Path]:
    """Move runs to runs_dir/archive: `runs` (names, paths, or a table such as
    `ls_runs(subset="metric_val_acc < 0.9")`), by default all runs, or with `failed=True` the failed and
    interrupted ones. Returns the archived paths."""
    targets = select_runs(runs, runs_dir, failed)
    moved = []
    for path in targets:
        archive = path.parent / ARCHIVE_DIR  # the runs dir's archive (a table's rows: their own runs dir)
        archive.mkdir(parents=True, exist_ok=True)
        dest = archive / path.name
        if dest.exists():
            raise GridrunError(f"{dest} already exists in the archive: purge it first with `gridrun purge`")
        shutil.move(str(path), dest)
        moved.append(dest)
    return moved


def purge_runs(runs_dir: Any = "runs", runs: Any = None) -> list[Path]:
    """Delete archived runs (runs_dir/archive): all of them, or only `runs` (names in the archive, or a
    table of `ls_runs("runs/archive")` rows, which may also come first, as in tfruns:
    `purge_runs(ls_runs("runs/archive").head(3))`). A run that is not archived is refused: clean it first."""
    if isinstance(runs_dir, (pd.DataFrame, list)) and runs is None:
        runs, runs_dir = runs_dir, "runs"
    archive = Path(runs_dir) / ARCHIVE_DIR
    if runs is None:
        removed = [p for p in sorted(archive.iterdir()) if p.is_dir()] if archive.is_dir() else []
    else:
        removed = _resolve_all(runs, archive)
        live = [p for p in removed if p.parent.name != ARCHIVE_DIR]
        if live:
            raise GridrunError(f"run {live[0].name} is not in an archive: archive it first with clean_runs() "
                               f"(purge deletes only archived runs)")
    for path in removed:
        shutil.rmtree(path)
    return removed


def copy_run(run: Any, to: str | os.PathLike, runs_dir: str | os.PathLike = "runs",
             artifacts_only: bool = False, rename: str | None = None) -> Path | list[Path]:
    """Copy a run dir into the folder `to` (created if needed); with `artifacts_only`, only its artifacts;
    `rename` names the copy (one run only). `run` may be a name, a path, or a table of ls_runs rows
    (tfruns' `copy_run(ls_runs(...), to)`): a table of several rows, or a list, copies each run and
    returns the list of copies; one run returns its copy's path."""
    runs = _as_run_list(run)
    assert runs is not None
    several = isinstance(run, list) or (isinstance(run, pd.DataFrame) and len(run) != 1)
    if several:
        if rename is not None:
            raise GridrunError("rename= names the copy of one run: give one run, or leave rename out")
        if artifacts_only:
            raise GridrunError("artifacts_only copies one run's artifacts into `to`: give one run")
        srcs = _resolve_all(run, runs_dir)
        clash = [Path(to) / s.name for s in srcs if (Path(to) / s.name).exists()]
        if clash:
            raise GridrunError(f"{clash[0]} already exists: choose another destination or remove it")
        return [_copy_one(s, Path(to), None) for s in srcs]
    src = _resolve_all(run, runs_dir)[0] if isinstance(run, pd.DataFrame) else resolve_run(runs[0], runs_dir)
    dest = Path(to)
    if artifacts_only:
        src_art = src / rundir.ARTIFACTS_DIR
        if not src_art.is_dir():
            raise GridrunError(f"run {src.name} has no artifacts/ folder to copy")
        shutil.copytree(src_art, dest, dirs_exist_ok=True)
        return dest
    target = dest / (rename or src.name)
    if target.exists():
        raise GridrunError(f"{target} already exists: choose another destination or remove it")
    return _copy_one(src, dest, rename)


def _copy_one(src: Path, dest: Path, rename: str | None) -> Path:
    target = dest / (rename or src.name)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, target)
    return target


# --------------------------------------------------------------------------------------------------
# Sweeps in the runs table (reports, analysis)


def find_sweep_runs(sweep: str, runs_dir: str | os.PathLike = "runs") -> list[Path]:
    """Run dirs of the sweep, in run-name (start time) order."""
    df = ls_runs(runs_dir, sweep=str(sweep))
    if not len(df):
        known = latest_sweeps(runs_dir)
        hint = f"sweeps there: {', '.join(known)}" if known else "it has no sweeps yet"
        raise GridrunError(
            f"no runs of sweep '{sweep}' in runs dir '{runs_dir}' ({hint}); "
            "list them with `gridrun ls --columns run_dir sweep trial`"
        )
    return sorted((Path(str(p)) for p in df["run_dir"]), key=lambda p: p.name)


def latest_sweeps(runs_dir: str | os.PathLike = "runs") -> list[str]:
    """Sweep ids in the runs dir, most recent first."""
    df = ls_runs(runs_dir)  # newest first
    out: list[str] = []
    for value in df["sweep"]:
        if isinstance(value, str) and value and value not in out:
            out.append(value)
    return out


def latest_sweep(runs_dir: str | os.PathLike = "runs") -> str:
    known = latest_sweeps(runs_dir)
    if not known:
        raise GridrunError(
            f"no sweep found in runs dir '{runs_dir}': start one with `gridrun tuning-run SCRIPT`, "
            "or pass the sweep id (the `sweep` column of `gridrun ls`)"
        )
    return known[0]
