"""Reporting a sweep's progress: a live bar (or plain lines) while it runs, the best trials after."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

from .manifest import DONE, Manifest


class Reporter:
    """Progress: a rich bar on a terminal, plain lines otherwise, nothing with quiet."""

    def __init__(self, total: int, done: int, quiet: bool, stream=None):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.total, self.done, self.failed, self.running = total, done, 0, 0
        self.best: tuple[float, str, dict[str, Any]] | None = None
        self.progress = None
        if not quiet and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                TextColumn("failed {task.fields[failed]}  running {task.fields[running]}"),
                TimeRemainingColumn(), TextColumn("{task.fields[best]}"),
                console=Console(file=self.stream), transient=False,
            )
            self.task = self.progress.add_task("sweep", total=total, completed=done, failed=0, running=0, best="")
            self.progress.start()

    def _best_text(self) -> str:
        if not self.best:
            return ""
        value, metric, flags = self.best
        shown = ", ".join(f"{k}={v}" for k, v in flags.items())
        return f"best {metric} {value:.4g} ({shown})"

    def update(self, trial: dict[str, Any] | None = None, attempt: dict[str, Any] | None = None) -> None:
        if trial is not None and attempt is not None:
            metric, value = _score(trial.get("metrics") or {})
            if attempt["status"] == DONE and value is not None and (self.best is None or value < self.best[0]):
                self.best = (value, metric, trial["flags"])
            if self.progress is None and not self.quiet:
                n = self.done + self.failed
                shown = f" {metric}={value:.4g}" if value is not None and attempt["status"] == DONE else ""
                err = f" ({attempt.get('error')})" if attempt["status"] != DONE and attempt.get("error") else ""
                print(f"[{n}/{self.total}] trial {trial['trial']} {attempt['status']}{shown}{err} "
                      f"run {attempt['run_dir']}", file=self.stream, flush=True)
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done + self.failed, failed=self.failed,
                                 running=self.running, best=self._best_text())

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _score(metrics: Mapping[str, Any]) -> tuple[str, float | None]:
    for name in ("val_loss", "loss"):
        v = metrics.get(name)
        if isinstance(v, (int, float)) and math.isfinite(v):
            return name, float(v)
    return "val_loss", None


def best_trials(manifest: Manifest, n: int = 5) -> list[dict[str, Any]]:
    """Completed trials with the lowest val_loss (or loss), best first."""
    scored = [(v, t) for t in manifest.trials if t["status"] == DONE
              for _, v in [_score(t.get("metrics") or {})] if v is not None]
    return [t for _, t in sorted(scored, key=lambda p: p[0])[:n]]


def print_results(manifest: Manifest, seconds: float, quiet: bool = False, stream=None) -> None:
    stream = stream or sys.stdout
    trials = manifest.trials
    done = sum(t["status"] == DONE for t in trials)
    failed = sum(t["status"] == "failed" for t in trials)
    line = f"Sweep {manifest.id}: {done} completed, {failed} failed of {len(trials)} trials in {seconds:.1f} s"
    if manifest.data.get("stop_reason"):
        line += f" (stopped: {manifest.data['stop_reason']})"
    print(line, file=stream)
    if quiet:
        return
    best = best_trials(manifest)
    if best:
        metric = _score(best[0]["metrics"])[0]
        print(f"Best trials by {metric}:", file=stream)
        for t in best:
            flags = ", ".join(f"{k}={v}" for k, v in t["flags"].items())
            print(f"  {_score(t['metrics'])[1]:.4g}  {t['run_dir']}  {flags}", file=stream)
        print(f"View a run: gridrun view {best[0]['run_dir']}   The sweep: gridrun sweep-report {manifest.id}",
              file=stream)
    if failed:
        print(f"Rerun the failed trials with: gridrun tuning-run --resume {manifest.id}", file=stream)
    stream.flush()
