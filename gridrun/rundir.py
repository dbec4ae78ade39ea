"""Run directories: unique naming, the file layout, and the script-side recording API.

A run is one folder `runs/<UTC time>` (see docs/run-dir.md for every file in it). The active run is
found, in order, from the calling thread's context (set by in-process executors: joblib workers and
population threads) or from the environment variable GRIDRUN_RUN_DIR (set by `gridrun training-run`
for its child process, or by a user who wants a plain `python script.py` recorded). Without either,
every recording call is a cheap no-op, so a script runs the same with or without gridrun.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import enum
import math
import operator
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._io import decode_float, drop_spare, dumps, read_json, write_json, write_text_atomic
from .errors import GridrunError

ENV_RUN_DIR = "GRIDRUN_RUN_DIR"
ENV_FLAGS = "GRIDRUN_FLAGS"  # JSON object of flag overrides given to the child process

# File names inside a run directory (documented in docs/run-dir.md).
FLAGS_FILE = "flags.json"
METRICS_FILE = "metrics.json"
PROPERTIES_FILE = "properties.json"
EVALUATION_FILE = "evaluation.json"
SUMMARY_FILE = "summary.json"
OUTPUT_FILE = "output.log"
SOURCE_DIR = "source"
ARTIFACTS_DIR = "artifacts"
METADATA_DIR = "metadata"

NAME_FORMAT = "%Y-%m-%dT%H-%M-%S"


class Status(enum.StrEnum):
    """The status of a run (properties.json `status`), and of a sweep's trial (pending and lost only occur
    for trials). Defined here, with the run dir's files, so every layer uses it; known as `record.Status`."""

    PENDING = "pending"  # planned, not started (or to run again)
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C, or its process stopped before the run ended
    LOST = "lost"  # a trial's earlier attempt still running in a process this client does not own
    PRUNED = "pruned"  # stopped early by a pruner: not a failure
    PAUSED = "paused"  # a sweep's trial that reached a rung of --prune asha --promote: waits, its checkpoint kept


def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def iso(ts: _dt.datetime) -> str:
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


def run_name(ts: _dt.datetime) -> str:
    """`2026-11-27T06-44-38.123Z`: tfruns' name with milliseconds; sorts by time as plain text."""
    return ts.strftime(NAME_FORMAT) + f".{ts.microsecond // 1000:03d}Z"


def create_run_dir(runs_dir: str | os.PathLike = "runs", ts: _dt.datetime | None = None) -> Path:
    """Create and return a new, never reused run directory under `runs_dir`.

    The name is the UTC time with milliseconds. Creation is an exclusive `mkdir`, atomic on local and
    network file systems, so any number of processes or machines sharing the folder get distinct
    directories: on a clash a counter suffix (`-1`, `-2`, ...) is added, which still sorts after the
    plain name.
    """
    root = Path(runs_dir)
    if root.exists() and not root.is_dir():
        raise GridrunError(f"the runs dir {root} is not a folder (it is a file): "
                           f"move the file away, or give another folder with --runs-dir")
    root.mkdir(parents=True, exist_ok=True)
    base = run_name(ts or utc_now())
    for i in range(100000):
        candidate = root / (base if i == 0 else f"{base}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not create a unique run directory under {root}")


# --------------------------------------------------------------------------------------------------
# The active run


@dataclass
class RunContext:
    """What a running script needs to know about its run. One per run, owned by the executing thread."""

    run_dir: Path
    flags: dict[str, Any] = field(default_factory=dict)  # overrides from training_run / tuning_run
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # called as epoch_hook(ctx, values) after each log_metrics (a sweep's pruner listens here)
    epoch_hook: Any = field(default=None, repr=False)
    epochs: list[int] = field(default_factory=list)  # the script's label of each row of metrics.json
    # set by fit/fit_loop while they log their last epoch: a pruner's "stop" there would save nothing,
    # so the value is reported (it counts at the rung) but the trial ends completed, not pruned
    last_epoch: bool = False
    metric: str | None = None  # the sweep's ranking metric, set by the runner: checkpoints keep its best epoch
    mode: str | None = None  # the sweep's mode for `metric` (None: by the scoring rule)
    checkpoint: Any = None  # a sweep's --checkpoints policy, over the script's own checkpoint= (None: the script's)
    # a continued trial (sweep --resume): {"epoch": N, "run": the earlier attempt's run dir}; fit / fit_loop
    # start from its checkpoints/last.ckpt at epoch N (train/driver.py)
    resume_from: dict[str, Any] | None = None
    drops_pruned: bool = False  # its sweep deletes the checkpoints of a pruned or failed trial (no --keep-pruned)
    _flags_text: str | None = field(default=None, repr=False)  # what write_flags last wrote
    # while the run's own process runs it: metrics.json and properties.json, rewritten at every epoch,
    # go over their previous version's file (_io.write_reusing: a sixth of a new file's cost here);
    # record.finish ends it and deletes the spare files
    live: bool = False

    @classmethod
    def open(cls, run_dir: str | os.PathLike, flags: dict[str, Any] | None = None) -> RunContext:
        """Attach to a run dir, picking up what is already in it (properties, metrics, epoch labels)."""
        run_dir = Path(run_dir)
        ctx = cls(run_dir=run_dir, flags=dict(flags or {}))
        ctx.properties = read_json(run_dir / PROPERTIES_FILE, {}) or {}
        ctx.metrics = read_metrics_file(run_dir / METRICS_FILE)
        rows = max((len(v) for v in ctx.metrics.values()), default=0)
        labels = [x for x in ctx.properties.get(EPOCH_LABELS) or [] if isinstance(x, int)][:rows]
        while len(labels) < rows:
            labels.append(max(labels, default=0) + 1)
        ctx.epochs = labels
        return ctx

    # -- recording ------------------------------------------------------------------------------
    def log_metrics(self, epoch: int | None = None, **values: Any) -> None:
        """Record metrics of the epoch labelled `epoch` (any integer the script counts with: 0, 1, ...).

        A label seen before fills (or replaces) that epoch's values; a new one appends an epoch; None is
        the epoch after the last. Rows of metrics.json are epochs in the order first logged; labels that
        are not 1, 2, 3, ... are kept in properties.json `epoch_labels`.
        """
        clean = {name: metric_value(name, value) for name, value in values.items()}  # check all first
        label = None if epoch is None else _epoch_label(epoch)
        with self.lock:
            rows = max(len(self.epochs), max((len(v) for v in self.metrics.values()), default=0))
            while len(self.epochs) < rows:
                self.epochs.append(max(self.epochs, default=0) + 1)
            if label is None:
                label = max(self.epochs, default=0) + 1
            new = label not in self.epochs
            if new:
                self.epochs.append(label)
            row = self.epochs.index(label)
            for name, value in clean.items():
                series = self.metrics.setdefault(name, [])
                while len(series) <= row:
                    series.append(None)
                series[row] = value
            write_json(self.run_dir / METRICS_FILE, self.metrics, indent=None, reuse=self.live)
            if new and (EPOCH_LABELS in self.properties or self.epochs != list(range(1, len(self.epochs) + 1))):
                self.properties[EPOCH_LABELS] = list(self.epochs)
                write_json(self.run_dir / PROPERTIES_FILE, self.properties, reuse=self.live)
        if self.epoch_hook is not None:  # outside the lock: the hook may write properties, or raise
            self.epoch_hook(self, clean)

    def epoch_label(self, row: int) -> int:
        """The script's label of the epoch in row `row` (0-based) of metrics.json."""
        return self.epochs[row] if row < len(self.epochs) else row + 1

    def write_properties(self, **props: Any) -> None:
        with self.lock:
            self.properties.update({k: _scalar(v) for k, v in props.items()})
            write_json(self.run_dir / PROPERTIES_FILE, self.properties, reuse=self.live)

    def retire(self) -> None:
        """The run ended: its files are written plainly again, and the spares of the live writes go."""
        with self.lock:
            self.live = False
            for name in (METRICS_FILE, PROPERTIES_FILE):
                drop_spare(self.run_dir / name)

    def note_properties(self, **props: Any) -> None:
        """Set properties that the run's next properties write takes along (its end writes them at the
        latest): for what need not be on disk before then, such as why a trial was pruned."""
        with self.lock:
            self.properties.update({k: _scalar(v) for k, v in props.items()})

    def write_flags(self, flags: dict[str, Any]) -> None:
        """Write flags.json, unless this context last wrote the very same text (a sweep's trial: the
        runner writes the trial's flags, then gridrun.flags() the resolved ones, most often the same)."""
        text = dumps(flags, nonfinite=True)
        if text != self._flags_text:
            write_text_atomic(self.run_dir / FLAGS_FILE, text)
            self._flags_text = text

    def write_evaluation(self, **values: Any) -> None:
        with self.lock:
            current = read_json(self.run_dir / EVALUATION_FILE, {}) or {}
            current.update({k: _scalar(v) for k, v in values.items()})
            write_json(self.run_dir / EVALUATION_FILE, current)

    def write_run_metadata(self, type: str, data: Any) -> Path:
        folder = self.run_dir / METADATA_DIR
        folder.mkdir(exist_ok=True)
        path = folder / f"{_safe_name(type)}.json"
        write_json(path, data)
        return path

    def artifacts_dir(self) -> Path:
        path = self.run_dir / ARTIFACTS_DIR
        path.mkdir(exist_ok=True)
        return path


EPOCH_LABELS = "epoch_labels"  # property: the script's epoch labels, when not 1, 2, 3, ...


def read_metrics_file(path: str | os.PathLike) -> dict[str, list[Any]]:
    """metrics.json as {name: [values]}, with "NaN", "Infinity" and "-Infinity" read back as floats."""
    data = read_json(path, {}) or {}
    if not isinstance(data, dict):
        return {}
    return {str(k): [decode_float(x) for x in v] for k, v in data.items() if isinstance(v, list)}


def _epoch_label(epoch: Any) -> int:
    try:
        return operator.index(_scalar(epoch))
    except TypeError:
        raise GridrunError(f"log_metrics(epoch={epoch!r}): the epoch must be an integer (0, 1, 2, ... or 1, 2, "
                           f"3, ...), e.g. the loop's counter") from None


def metric_value(name: str, value: Any) -> Any:
    """A metric value as recorded: a Python number (bool, int or float) or None; anything else is an error."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    shape = getattr(value, "shape", None)
    if shape is not None and tuple(shape) != ():
        raise GridrunError(f"metric {name!r} must be one number per epoch, got an array of shape {tuple(shape)}: "
                           f"log a scalar, e.g. {name}=float(x.mean())")
    scalar = _scalar(value)
    if isinstance(scalar, (bool, int, float)):
        return scalar
    raise GridrunError(f"metric {name!r} must be a number, got {value!r} ({type(value).__name__}): "
                       f"log a float or an int, e.g. {name}=float(x)")


def _scalar(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
    if not keep or keep.startswith("."):
        raise ValueError(f"invalid metadata type {name!r}: use letters, digits, '-', '_' or '.'")
    return keep


_current: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("gridrun_run", default=None)
_env_context: RunContext | None = None
_env_lock = threading.Lock()


def current() -> RunContext | None:
    """The active run of this thread, or None."""
    ctx = _current.get()
    if ctx is not None:
        return ctx
    path = os.environ.get(ENV_RUN_DIR)
    if not path:
        return None
    global _env_context
    with _env_lock:
        if _env_context is None or str(_env_context.run_dir) != path:
            import json

            flags = json.loads(os.environ.get(ENV_FLAGS) or "{}")
            Path(path).mkdir(parents=True, exist_ok=True)
            _env_context = RunContext.open(path, flags)
            if _env_context.properties.get("status") != Status.RUNNING:  # no runner started it: a run by hand
                _start_by_hand(_env_context)
        return _env_context


def _start_by_hand(ctx: RunContext) -> None:
    """`GRIDRUN_RUN_DIR=runs/my-run python train.py`: record the script as an ordinary run (listed by
    ls_runs, viewable), ended when the process exits, through `record.finish` as every run is (final
    properties and summary.json): completed, or failed / interrupted with the uncaught exception."""
    import atexit
    import sys
    import traceback

    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    ctx.write_properties(script=script.name if script else None, script_path=str(script) if script else None,
                         start=iso(utc_now()), end=None, status=Status.RUNNING, completed=False, type="training",
                         context="local", hostname=hostname(), pid=os.getpid())
    failure: list[str] = []
    previous = sys.excepthook

    def hook(kind, exc, tb):  # an uncaught exception: remember it for the exit handler
        failure[:] = [f"{kind.__name__}: {exc}", "".join(traceback.format_exception(kind, exc, tb))]
        previous(kind, exc, tb)

    def end() -> None:
        # the record layer (record.py, which imports this module) finishes every run: imported only here,
        # at the end of a run recorded by hand
        from .record import finish

        interrupted = bool(failure) and failure[0].startswith("KeyboardInterrupt")
        status = Status.INTERRUPTED if interrupted else Status.FAILED if failure else Status.COMPLETED
        finish(ctx, status, (130 if interrupted else 1) if failure else 0,
               failure[0] if failure else None, failure[1] if failure else None)

    sys.excepthook = hook
    atexit.register(end)


@contextmanager
def activate(ctx: RunContext) -> Iterator[RunContext]:
    """Make `ctx` the active run for the current thread (and the code it calls) while inside."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


# --------------------------------------------------------------------------------------------------
# Script-side API (re-exported by gridrun/__init__.py)


def run_dir() -> str | None:
    """Path of the active run directory, or None when the script is not being recorded."""
    ctx = current()
    return str(ctx.run_dir) if ctx else None


def is_run_active() -> bool:
    return current() is not None


def is_pruned() -> bool:
    """Whether the sweep's pruner stopped this trial (`fit`/`fit_loop` then return early and the script
    goes on): a script can skip work that is worthless for a stopped trial, e.g. evaluating it on the
    test set: `if not gridrun.is_pruned(): gridrun.evaluate(history, x_test, y_test)`. True also for a
    trial paused at a rung (`--promote`): its training is not finished in this attempt."""
    ctx = current()
    return bool(ctx is not None and (ctx.properties.get("pruned") or ctx.properties.get("paused")))


def log_metrics(epoch: int | None = None, **values: Any) -> None:
    """Record one epoch of metrics (`loss=..., val_loss=...`); default: the next epoch.

    `epoch` is the script's own label (`for e in range(n): log_metrics(epoch=e, ...)` and 1-based loops
    both record every epoch): a label seen before fills or replaces that epoch, a new one appends one.
    Values must be numbers (Python, NumPy or JAX scalars); NaN and infinities are recorded as such.
    metrics.json is rewritten atomically at every call, so readers see every epoch live.
    """
    ctx = current()
    if ctx is not None:
        ctx.log_metrics(epoch, **values)


def write_properties(**props: Any) -> None:
    ctx = current()
    if ctx is not None:
        ctx.write_properties(**props)


def write_evaluation(**values: Any) -> None:
    ctx = current()
    if ctx is not None:
        ctx.write_evaluation(**values)


def write_run_metadata(type: str, data: Any) -> str | None:
    ctx = current()
    return str(ctx.write_run_metadata(type, data)) if ctx else None


def artifacts_dir() -> str | None:
    """The run's folder for user files (plots, saved models); None when no run is active."""
    ctx = current()
    return str(ctx.artifacts_dir()) if ctx else None


def hostname() -> str:
    return socket.gethostname()


# --------------------------------------------------------------------------------------------------
# Is the process behind a run or a sweep still alive? (the sweep client, the live sweep report)

STALE_SECONDS = 180.0  # a client whose heartbeat is older than this is taken as dead


def pid_alive(pid: int) -> bool:
    """Does process `pid` exist on this host (a zombie, killed but not yet reaped, does not count)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def heartbeat_age(stamp: str | None) -> float:
    if not stamp:
        return math.inf
    import datetime as _dt

    try:
        ts = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return math.inf
    return (utc_now() - ts).total_seconds()


def client_alive(client: Mapping[str, Any] | None) -> bool:
    """Is the process that ran a sweep (or a run) still alive? pid on this host, else a fresh heartbeat."""
    if not client or client.get("ended"):
        return False
    if client.get("hostname") == hostname() and client.get("pid") is not None:
        if int(client["pid"]) == os.getpid():
            return False
        return pid_alive(int(client["pid"])) and heartbeat_age(client.get("heartbeat")) < STALE_SECONDS
    return heartbeat_age(client.get("heartbeat")) < STALE_SECONDS
