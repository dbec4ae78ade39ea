"""The runs table as gridrun built it before the index (one summary.json per run, pandas from_records):
the reference the indexed listing must equal, column for column and dtype for dtype."""

import os
from pathlib import Path

import pandas as pd

from gridrun import rundir
from gridrun._io import read_json
from gridrun.record import INT_COLUMNS, OPTIONAL_INT_COLUMNS, RUN_COLUMNS, TRAINING_COLUMNS, summarize


def _row(entry):
    row = read_json(entry / rundir.SUMMARY_FILE)
    if row is None:
        if not (entry / rundir.PROPERTIES_FILE).exists():
            return None
        row = summarize(entry)
    row["run_dir"] = str(entry)
    return row


def _typed(col, raw):
    values = [v for v in raw if v is not None]
    if values and all(isinstance(v, bool) for v in values):
        return col.astype("boolean")
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return col.astype("Int64")
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return col.astype("float64")
    return col.astype(object)


def old_frame(rows):
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


def old_ls_runs(root, order=None, decreasing=True, sweep=None):
    root = Path(root)
    rows = []
    if root.is_dir():
        with os.scandir(root) as it:
            names = sorted(e.name for e in it if e.is_dir() and e.name not in ("archive", "sweeps", ".index"))
        for name in names:
            row = _row(root / name)
            if row is not None and (sweep is None or row.get("sweep") == sweep):
                rows.append(row)
    df = old_frame(rows)
    keys = [order or "start"]
    df = df.sort_values(keys + ["run_dir"], ascending=not decreasing, na_position="last", kind="stable")
    return df.reset_index(drop=True)
