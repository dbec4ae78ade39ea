"""What a run's record is, and how a run is finished: one home for both (no pandas here).

A run dir (gridrun/rundir.py) holds a run's files; this module reads them as a *record*: the table
columns and their order (tfruns' ls_runs), the last value of each metric, the epochs recorded, the
precomputed row `summary.json`, and the final properties a run ends with, whoever ends it (the script's
own process, the training-run parent after a kill, the sweep client after a worker crash, or the client
adopting a remote worker's files). The runs table (runs.py), the reports and the sweep import from here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import rundir
from ._io import decode_float, read_json, write_json
from .rundir import RunContext, Status, iso, read_metrics_file, utc_now  # Status: the runs' one vocabulary

# Columns of tfruns' ls_runs(), in its order; eval_/metric_/flag_ columns go where tfruns puts them.
TRAINING_COLUMNS = ["samples", "validation_samples", "batch_size", "epochs", "epochs_completed", "metrics",
                    "model", "loss_function", "optimizer", "learning_rate"]
RUN_COLUMNS = ["script", "start", "end", "completed", "status", "output", "error_message", "error_traceback",
               "source_code", "context", "type", "sweep", "trial"]
INT_COLUMNS = ["samples", "validation_samples", "batch_size", "epochs", "epochs_completed", "trial"]
OPTIONAL_INT_COLUMNS = ["best_epoch"]  # properties gridrun.fit writes only with EarlyStopping
# properties a run's Checkpointer writes (gridrun/checkpoint.py): the best and last epochs saved, bytes on disk
OPTIONAL_INT_COLUMNS += ["checkpoint_epoch", "checkpoint_last_epoch", "checkpoint_bytes"]
KNOWN_PROPERTIES = set(TRAINING_COLUMNS) | set(RUN_COLUMNS) | {
    "script_path", "versions", "git", "hostname", "pid", "exit_code", "jax_devices", "heartbeat",
    rundir.EPOCH_LABELS}
OUTPUT_TAIL = 2000  # characters of output kept in the table's `output` column


def script_matches(script: Any, name: str) -> bool:
    """Whether a run's `script` property (the file name, `train.py`) is the script `name`: its file name,
    with or without `.py`, or a path ending in it (`examples/train.py`)."""
    if not isinstance(script, str):
        return False
    wanted = name.replace("\\", "/").rsplit("/", 1)[-1]
    return script == wanted or script.removesuffix(".py") == wanted


def no_script_message(name: str, scripts: list[Any]) -> str:
    """The one-line error for `--script NAME` / `script=` matching no run, naming the scripts there are."""
    there = sorted({s for s in scripts if isinstance(s, str)})
    return (f"no runs of script {name!r}: scripts with runs there: {', '.join(there) or '(none)'}; "
            f"give one of those names (e.g. --script {there[0] if there else 'train.py'})")


def column_suggestion(name: str, columns: list[str]) -> str | None:
    """The column of the runs table someone naming `name` most likely means: `metric_val_loss` for
    `val_loss` (a metric, flag or evaluation named without its table prefix), else a close spelling."""
    import difflib

    for prefix in ("metric_", "flag_", "eval_"):
        if prefix + name in columns:
            return prefix + name
    short = {}  # a close spelling of a column's name, with or without its prefix
    for col in columns:
        short.setdefault(col, col)
        for prefix in ("metric_", "flag_", "eval_"):
            if col.startswith(prefix):
                short.setdefault(col[len(prefix):], col)
    close = difflib.get_close_matches(name, list(short), n=1, cutoff=0.6)
    return short[close[0]] if close else None


def order_error_message(missing: list[str], columns: list[str]) -> str:
    """The one-line error for sorting runs by columns the table lacks, with "did you mean" hints."""
    named = []
    for name in missing:
        hint = column_suggestion(name, columns)
        named.append(f"{name} (did you mean {hint}?)" if hint else name)
    cols = ", ".join(c for c in columns if c.startswith(("metric_", "flag_", "eval_"))) or "(none yet)"
    return f"cannot order runs by {', '.join(named)}: no such column. Columns to order by: {cols}"


def last_value(series: list[Any] | None) -> Any:
    """The last recorded (non-null) value of a metric's series, or None. A diverged metric's last value
    is NaN (or an infinity), not its last finite one: null means "not recorded", never "not finite"."""
    for value in reversed(series or []):
        if value is not None:
            return decode_float(value)
    return None


def read_metrics(run_dir: str | os.PathLike) -> dict[str, list[Any]]:
    """A run's metrics.json, non-finite values read back as floats (docs/run-dir.md)."""
    return read_metrics_file(Path(run_dir) / rundir.METRICS_FILE)


def epochs_recorded(metrics: Mapping[str, list[Any]]) -> int:
    """How many epochs a run recorded: the most non-null values of any metric (tfruns' rule)."""
    return max((sum(x is not None for x in v) for v in metrics.values()), default=0)


def last_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The last value of each numeric metric of a run."""
    metrics = read_metrics(run_dir)
    out = {}
    for name, series in metrics.items():
        last = last_value(series)
        if isinstance(last, (int, float)) and not isinstance(last, bool):
            out[name] = last
    return out


def summarize(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Build a run's row (without run_dir) from its files."""
    run_dir = Path(run_dir)
    props = read_json(run_dir / rundir.PROPERTIES_FILE, {}) or {}
    metrics = read_metrics(run_dir)
    flags = read_json(run_dir / rundir.FLAGS_FILE, {}) or {}
    evaluation = read_json(run_dir / rundir.EVALUATION_FILE, {}) or {}
    row: dict[str, Any] = {}
    row.update({f"eval_{k}": v for k, v in evaluation.items()})
    row.update({f"metric_{k}": last_value(v) for k, v in metrics.items()})
    row.update({f"flag_{k}": v for k, v in flags.items()})
    for k in props.get("flags_inactive") or []:  # a conditional flag that did not apply: NA in the table
        row[f"flag_{k}"] = None
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
        if key not in KNOWN_PROPERTIES and key not in row and not isinstance(value, (dict, list)):
            row[key] = value
    return row


def write_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Write a run's row to its summary.json (done once, when the run ends); return it."""
    row = summarize(run_dir)
    write_json(Path(run_dir) / rundir.SUMMARY_FILE, row, indent=None)
    return row


# --------------------------------------------------------------------------------------------------
# Finishing a run


def finish(
    ctx: RunContext, status: str, exit_code: int | None, message: str | None, tb: str | None
) -> dict[str, Any]:
    """Write the run's final properties and its summary.json; return the properties."""
    props: dict[str, Any] = {
        "end": iso(utc_now()),
        "status": str(status),
        "completed": status == Status.COMPLETED,
        "exit_code": exit_code,
        "error_message": message,
        "error_traceback": tb,
        "epochs_completed": epochs_recorded(ctx.metrics) or ctx.properties.get("epochs_completed"),
    }
    if "jax" in sys.modules:
        try:
            props["jax_devices"] = [str(d) for d in sys.modules["jax"].devices()]
        except Exception:  # noqa: BLE001
            pass
    ctx.write_properties(**props)
    ctx.retire()
    write_summary(ctx.run_dir)
    return dict(ctx.properties)


def close_run(run_dir: str | os.PathLike, status: str, message: str, tb: str | None = None) -> dict[str, Any]:
    """End a run that its own process could not finish (killed, crashed); an ended run is left as it is."""
    ctx = RunContext.open(run_dir)
    if ctx.properties.get("status") in (None, Status.RUNNING):
        return finish(ctx, status, None, message, tb)
    return dict(ctx.properties)


def adopt(run_dir: str | os.PathLike, **properties: Any) -> dict[str, Any]:
    """Record files copied in from elsewhere (a remote worker's run) as this run: fix its properties
    for here (`properties`, e.g. worker and script_path) and rewrite its summary; return the properties."""
    ctx = RunContext.open(run_dir)
    ctx.write_properties(**properties)
    write_summary(run_dir)
    return dict(ctx.properties)
