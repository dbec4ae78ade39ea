"""What the reports show about one run: resolving a run the user named, and reading its run dir.

Everything here is plain data (no HTML): `load_run()` returns a `RunData` built from the files of
docs/run-dir.md. The pages (pages.py) and the charts (charts.py) only format it.

A run given as text (on the command line) must resolve inside the runs dir: `gridrun view ../../etc`
is refused, so a report can never read files outside the runs the user asked about.
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import read_json
from ..record import last_value
from ..rundir import (
    ARTIFACTS_DIR,
    EVALUATION_FILE,
    FLAGS_FILE,
    METRICS_FILE,
    OUTPUT_FILE,
    PROPERTIES_FILE,
    SOURCE_DIR,
    Status,
    read_metrics_file,
)

MAX_OUTPUT_CHARS = 1_000_000  # the report shows at most the last ~1 MB of output.log
MAX_SOURCE_BYTES = 1_000_000  # the runner never snapshots bigger files; be safe with hand-made dirs
MAX_IMAGE_BYTES = 5_000_000  # bigger images are listed, not embedded
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}


def resolve_run(run: Any, runs_dir: str | os.PathLike = "runs") -> Path:
    """`gridrun.runs.resolve_run`, the one resolver (a run name, a path inside `runs_dir`, a row of
    `ls_runs()`, or None for the latest run; anything outside `runs_dir` is refused), imported on first
    use so that a page that needs no table does not load pandas."""
    from ..runs import resolve_run as resolve

    return resolve(run, runs_dir)


def latest_runs(n: int, runs_dir: str | os.PathLike = "runs") -> list[Path]:
    """The `n` most recent runs, oldest first."""
    from ..runs import ls_runs

    df = ls_runs(runs_dir)  # not latest_n: it counts non-run folders (reports/) among the latest names
    return sorted((Path(str(p)) for p in df["run_dir"]), key=lambda p: p.name)[-n:] if n else []


# --------------------------------------------------------------------------------------------------
# Reading a run


@dataclass
class SourceFile:
    name: str  # path relative to source/
    text: str


@dataclass
class Artifact:
    name: str  # path relative to artifacts/
    size: int
    data_uri: str | None = None  # set for embeddable images


@dataclass
class RunData:
    name: str
    path: Path
    properties: dict[str, Any] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    output_truncated: bool = False
    sources: list[SourceFile] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)

    @property
    def applied_flags(self) -> dict[str, Any]:
        """The flags that applied to this run: a conditional flag whose condition did not hold (the
        `flags_inactive` property) is left out, as the runs table shows it NA."""
        inactive = set(self.properties.get("flags_inactive") or [])
        return {k: v for k, v in self.flags.items() if k not in inactive}

    @property
    def status(self) -> str:
        return str(self.properties.get("status") or "unknown")

    @property
    def is_running(self) -> bool:
        return self.status == Status.RUNNING

    @property
    def epochs_completed(self) -> int:
        value = self.properties.get("epochs_completed")
        n = max((len(v) for v in self.metrics.values()), default=0)
        return max(int(value), n) if isinstance(value, (int, float)) and value is not None else n

    @property
    def final_metrics(self) -> dict[str, Any]:
        """The last recorded value of each metric (what the runs table calls metric_<name>)."""
        return {name: last_value(values) for name, values in self.metrics.items()}

    def summary(self) -> list[tuple[str, Any]]:
        """(label, value) rows for the run summary table; missing values are left out."""
        p = self.properties
        rows: list[tuple[str, Any]] = [
            ("run", self.name),
            ("script", p.get("script")),
            ("status", self.status),
            ("started", format_time(p.get("start"))),
            ("ended", format_time(p.get("end"))),
            ("duration", duration(p.get("start"), p.get("end"), running=self.is_running)),
            ("exit code", p.get("exit_code")),
            ("host", p.get("hostname")),
            ("context", p.get("context")),
            ("sweep", p.get("sweep")),
            ("trial", p.get("trial")),
            ("versions", format_mapping(p.get("versions"))),
            ("JAX devices", format_value(p.get("jax_devices"))),
            ("git", format_git(p.get("git"))),
        ]
        return [(k, v) for k, v in rows if v not in (None, "")]

    def training(self) -> list[tuple[str, Any]]:
        """Optimization and training properties (loss, optimizer, learning rate, samples, epochs...)."""
        p = self.properties
        epochs = p.get("epochs")
        done = self.epochs_completed
        rows: list[tuple[str, Any]] = [
            ("loss function", p.get("loss_function")),
            ("optimizer", p.get("optimizer")),
            ("learning rate", p.get("learning_rate")),
            ("samples", p.get("samples")),
            ("validation samples", p.get("validation_samples")),
            ("epochs", f"{done} / {epochs}" if epochs is not None else (done or None)),
            ("batch size", p.get("batch_size")),
            ("checkpoints", checkpoints_text(p)),
        ]
        return [(k, format_value(v)) for k, v in rows if v not in (None, "")]

    def custom_properties(self) -> list[tuple[str, Any]]:
        """Properties written with gridrun.write_properties() that have no place of their own."""
        return [(k, format_value(v)) for k, v in self.properties.items() if k not in KNOWN_PROPERTIES]


KNOWN_PROPERTIES = {
    "script", "script_path", "start", "end", "status", "completed", "exit_code", "error_message",
    "error_traceback", "samples", "validation_samples", "batch_size", "epochs", "epochs_completed",
    "model", "loss_function", "optimizer", "learning_rate", "versions", "jax_devices", "hostname",
    "pid", "git", "context", "type", "sweep", "trial", "heartbeat",
    "checkpoint_epoch", "checkpoint_last_epoch", "checkpoint_metric", "checkpoint_bytes", "checkpoints_dropped",
}  # fmt: skip


def checkpoints_text(p: dict[str, Any]) -> str | None:
    """What the run's checkpoints/ holds (gridrun/checkpoint.py), as one line: "best: epoch 3 (val_loss),
    last: epoch 5; 1.2 MB", or why none came back from a remote worker."""
    parts = []
    if isinstance(p.get("checkpoint_epoch"), int):
        metric = f" ({p['checkpoint_metric']})" if p.get("checkpoint_metric") else ""
        parts.append(f"best: epoch {p['checkpoint_epoch']}{metric}")
    if isinstance(p.get("checkpoint_last_epoch"), int):
        parts.append(f"last: epoch {p['checkpoint_last_epoch']}")
    text = ", ".join(parts)
    if text and isinstance(p.get("checkpoint_bytes"), int):
        text += f"; {p['checkpoint_bytes'] / 1e6:.3g} MB"
    if p.get("checkpoints_dropped"):
        text = f"{text}; {p['checkpoints_dropped']}" if text else str(p["checkpoints_dropped"])
    return text or None


def load_run(path: str | os.PathLike, *, with_files: bool = True) -> RunData:
    """Read a run directory. `with_files=False` skips output, sources and artifacts (sweep tables)."""
    path = Path(path)
    data = RunData(
        name=path.name,
        path=path,
        properties=_dict(read_json(path / PROPERTIES_FILE, {})),
        flags=_dict(read_json(path / FLAGS_FILE, {})),
        metrics=read_metrics_file(path / METRICS_FILE),
        evaluation=_dict(read_json(path / EVALUATION_FILE, {})),
    )  # fmt: skip
    if with_files:
        data.output, data.output_truncated = read_output(path / OUTPUT_FILE)
        data.sources = read_sources(path / SOURCE_DIR)
        data.artifacts = read_artifacts(path / ARTIFACTS_DIR)
    return data


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_output(path: Path, limit: int = MAX_OUTPUT_CHARS) -> tuple[str, bool]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return "", False
    text = clean_output(text)
    if len(text) > limit:
        return text[-limit:], True
    return text, False


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def clean_output(text: str) -> str:
    """Terminal output as a page shows it: colour codes dropped, progress bars (\\r) at their last state."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    return "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line else line for line in text.split("\n"))


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        (p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def read_sources(folder: Path) -> list[SourceFile]:
    out = []
    for file in _files(folder):
        if file.stat().st_size > MAX_SOURCE_BYTES:
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary file: nothing to show
        out.append(SourceFile(file.relative_to(folder).as_posix(), text))
    return out


def read_artifacts(folder: Path) -> list[Artifact]:
    out = []
    for file in _files(folder):
        size = file.stat().st_size
        mime = IMAGE_TYPES.get(file.suffix.lower())
        uri = None
        if mime and size <= MAX_IMAGE_BYTES:
            uri = f"data:{mime};base64," + base64.b64encode(file.read_bytes()).decode("ascii")
        out.append(Artifact(file.relative_to(folder).as_posix(), size, uri))
    return out


# --------------------------------------------------------------------------------------------------
# Formatting helpers (plain text; escaping is the templates' job)


def parse_time(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=_dt.UTC)


def format_time(value: Any) -> str | None:
    ts = parse_time(value)
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC") if ts else (str(value) if value else None)


def duration(start: Any, end: Any, running: bool = False) -> str | None:
    t0 = parse_time(start)
    t1 = parse_time(end) or (_dt.datetime.now(_dt.UTC) if running else None)
    if t0 is None or t1 is None:
        return None
    text = format_seconds((t1 - t0).total_seconds())
    return f"{text} so far" if running and parse_time(end) is None else text


def format_seconds(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def format_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return format_mapping(value)
    if isinstance(value, list):
        return ", ".join(str(format_value(v)) for v in value)
    return value


def format_mapping(value: Any) -> str | None:
    if not isinstance(value, dict) or not value:
        return None
    return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)


def format_git(value: Any) -> str | None:
    if not isinstance(value, dict) or not value.get("commit"):
        return None
    return str(value["commit"])[:12] + (" (dirty)" if value.get("dirty") else "")
