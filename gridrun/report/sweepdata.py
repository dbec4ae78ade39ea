"""What the sweep report shows: the trials of one tuning run, read from their run dirs.

A sweep's runs are those whose properties.json has "sweep" == the sweep id (tuning-run writes it, and
"trial", the trial index). The runs are found with `gridrun.ls_runs(runs_dir, sweep=...)`; the values
shown come from the run dirs themselves (full metric histories, evaluation, errors).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import scoring
from .._io import read_json
from .rundata import RunData, load_run

DEFAULT_METRIC = scoring.DEFAULT_METRIC
SWEEPS_DIR = "sweeps"  # the sweep manifests: <runs_dir>/sweeps/<id>.json (docs/tuning.md)


@dataclass
class Trial:
    run: RunData
    index: int | None  # properties["trial"]
    value: float | None  # the metric the sweep is judged by
    report: str | None = None  # link to the run's report, relative to the sweep page

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def label(self) -> str:
        return f"trial {self.index}" if self.index is not None else self.run.name

    @property
    def failed(self) -> bool:
        return self.run.status in ("failed", "interrupted")


@dataclass
class SweepData:
    sweep: str
    metric: str
    maximize: bool
    trials: list[Trial]
    flags: list[str] = field(default_factory=list)  # union of flag names, in declaration order
    metrics: list[str] = field(default_factory=list)  # union of final metric names
    evaluation: list[str] = field(default_factory=list)  # union of evaluation names
    best: int | None = None  # index into trials
    scales: dict[str, str] = field(default_factory=dict)  # range flags: "log" or "linear" (sweep_scales)

    @property
    def varied_flags(self) -> list[str]:
        """Flags whose value differs between trials (the ones the sweep searched over)."""
        return [f for f in self.flags if len({repr(t.run.flags.get(f)) for t in self.trials}) > 1]

    @property
    def fixed_flags(self) -> dict[str, object]:
        """Flags with one value in every trial."""
        varied = set(self.varied_flags)
        return {f: self.trials[0].run.flags.get(f) for f in self.flags if f not in varied}

    @property
    def best_trial(self) -> Trial | None:
        return None if self.best is None else self.trials[self.best]

    @property
    def failures(self) -> list[Trial]:
        return [t for t in self.trials if t.failed]

    def ranked(self) -> list[tuple[int, Trial]]:
        """(index into trials, trial), best first by the metric; trials that failed or have no value
        last, in trial order."""

        def key(item: tuple[int, Trial]) -> tuple:
            i, t = item
            if t.value is None or t.failed:
                return (1, 0.0, t.index if t.index is not None else i, i)
            return (0, -t.value if self.maximize else t.value, t.index if t.index is not None else i, i)

        return sorted(enumerate(self.trials), key=key)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.trials:
            counts[t.run.status] = counts.get(t.run.status, 0) + 1
        return counts


def safe_file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or "sweep"


def find_sweep_runs(sweep: str, runs_dir: str | os.PathLike = "runs") -> list[Path]:
    """runs.find_sweep_runs, imported when called (report pages load pandas only when they need it)."""
    from ..runs import find_sweep_runs as find

    return find(sweep, runs_dir)


def latest_sweep(runs_dir: str | os.PathLike = "runs") -> str:
    """runs.latest_sweep, imported when called."""
    from ..runs import latest_sweep as latest

    return latest(runs_dir)


def sweep_metric(sweep: str, runs_dir: str | os.PathLike = "runs") -> tuple[str, str | None]:
    """The metric a sweep is judged by and its mode ("min" / "max", None when not said), from the
    sweep's manifest (keys "metric" and "mode"); val_loss when the manifest names none."""
    data = read_json(Path(runs_dir) / SWEEPS_DIR / f"{safe_file_part(sweep)}.json", {})
    data = data if isinstance(data, dict) else {}
    metric = data.get("metric")
    mode = data.get("mode")
    if isinstance(metric, list):  # a multi-objective sweep: the page ranks by its first metric
        metric, mode = metric[0] if metric else None, mode[0] if isinstance(mode, list) and mode else None
    return (metric if isinstance(metric, str) and metric else DEFAULT_METRIC,
            mode if mode in ("min", "max") else None)  # fmt: skip


def sweep_scales(sweep: str, runs_dir: str | os.PathLike = "runs") -> dict[str, str]:
    """How a sweep drew its range flags, from its manifest's grid: flag -> "log" (loguniform,
    `randint(..., log=True)`) or "linear" (uniform, randint), whether the range was given on the
    command line, in a grid file or declared in the script (`values=gridrun.loguniform(...)`). Flags
    given as lists of values are not in it; empty when the manifest is missing."""
    data = read_json(Path(runs_dir) / SWEEPS_DIR / f"{safe_file_part(sweep)}.json", {})
    grid = data.get("grid") if isinstance(data, dict) else None
    ranges = grid.get("ranges") if isinstance(grid, dict) else None
    if not isinstance(ranges, dict):
        return {}
    return {str(name): "log" if "loguniform" in r or r.get("log") is True else "linear"
            for name, r in ranges.items() if isinstance(r, dict)}  # fmt: skip


def _final(run: RunData, metric: str) -> float | None:
    value = run.final_metrics.get(metric)
    if value is None and metric.startswith("eval_"):
        value = run.evaluation.get(metric[5:])
    return scoring.finite(value)


def load_sweep(
    sweep: str,
    paths: list[Path],
    metric: str = DEFAULT_METRIC,
    maximize: bool | None = None,
) -> SweepData:
    """Read the runs of a sweep and pick the best trial by `metric` (the final value of that metric,
    or `eval_<name>` for an evaluation value). Lower is better unless the name looks like a score
    (gridrun's one scoring rule, gridrun/scoring.py) or `maximize` says otherwise. With the default metric and no trial recording
    val_loss, the sweep is judged by loss."""
    runs = [load_run(p, with_files=False) for p in paths]
    if metric == DEFAULT_METRIC:  # the default falls back to loss as scoring.score does
        metric = scoring.ranking_metric(None, lambda name: any(_final(r, name) is not None for r in runs))
    if maximize is None:
        maximize = scoring.direction(metric) == "max"
    trials = []
    for run in runs:
        index = run.properties.get("trial")
        trials.append(Trial(run, index if isinstance(index, int) else None, _final(run, metric)))
    trials.sort(key=lambda t: (t.index is None, t.index if t.index is not None else 0, t.name))
    data = SweepData(sweep=str(sweep), metric=metric, maximize=maximize, trials=trials)
    for t in trials:
        data.flags.extend(k for k in t.run.flags if k not in data.flags)
        data.metrics.extend(k for k in t.run.metrics if k not in data.metrics)
        data.evaluation.extend(k for k in t.run.evaluation if k not in data.evaluation)
    scored = [(t.value, i) for i, t in enumerate(trials) if t.value is not None and not t.failed]
    if scored:
        data.best = (max if maximize else min)(scored)[1]
    return data
