"""Reporting a sweep's progress: a live bar (or plain lines) while it runs, the best trials after.

Trials are ranked by the sweep's metric (default: val_loss, else loss) in the direction of gridrun's
one scoring rule (gridrun/scoring.py), or the mode the sweep was given.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import scoring
from ..record import Status
from .manifest import Manifest
from .state import FINAL, Attempt, SweepState, Trial


def sweep_metric(manifest: Manifest) -> tuple[str | None, str | None]:
    """The metric and mode recorded for a sweep (None, None: the default rule)."""
    return manifest.data.get("metric"), manifest.data.get("mode")


class Reporter:
    """Progress: a rich bar on a terminal, plain lines otherwise, nothing with quiet."""

    def __init__(self, state: SweepState, quiet: bool, stream=None, metric: str | None = None,
                 mode: str | None = None):
        self.state = state
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.metric, self.mode = metric, mode
        self.best: tuple[float, str, dict[str, Any]] | None = None
        self.notices: list[str] = []
        self.progress = None
        if not quiet and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                TextColumn("failed {task.fields[failed]}  pruned {task.fields[pruned]}  "
                           "running {task.fields[running]}"),
                TimeRemainingColumn(), TextColumn("{task.fields[best]}"),
                console=Console(file=self.stream), transient=False,
            )
            self.task = self.progress.add_task("sweep", total=state.total, completed=state.done, failed=0,
                                               pruned=state.pruned, running=0, best="")
            self.progress.start()

    def _best_text(self) -> str:
        if not self.best:
            return ""
        value, metric, flags = self.best
        shown = ", ".join(f"{k}={v}" for k, v in flags.items())
        return f"best {metric} {value:.4g} ({shown})"

    def notice(self, text: str) -> None:
        """Say something once (e.g. why population mode could not batch a script's trials)."""
        if text in self.notices:
            return
        self.notices.append(text)
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(f"[yellow]note:[/] {text}")
        else:
            print(f"note: {text}", file=self.stream, flush=True)

    def warning(self, text: str) -> None:
        """A warning, once, on stderr (through the progress bar's console when there is one)."""
        if text in self.notices:
            return
        self.notices.append(text)
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(f"[bold yellow]warning:[/] {text}")
        else:
            print(f"warning: {text}", file=sys.stderr, flush=True)

    def update(self, trial: Trial | None = None, attempt: Attempt | None = None) -> None:
        state = self.state
        if trial is not None and attempt is not None:
            metric, value = scoring.score(trial.metrics, self.metric)
            ok = attempt.status in FINAL
            if ok and value is not None and (
                    self.best is None or scoring.is_better(value, self.best[0], metric, self.mode)):
                self.best = (value, metric, trial.flags)
            if self.progress is None and not self.quiet:
                n = state.done + state.failed
                shown = f" {metric}={value:.4g}" if value is not None and ok else ""
                err = f" ({attempt.error})" if attempt.status != Status.COMPLETED and attempt.error else ""
                print(f"[{n}/{state.total}] trial {trial.trial} {attempt.status}{shown}{err} "
                      f"run {attempt.run_dir}", file=self.stream, flush=True)
        if self.progress is not None:
            self.progress.update(self.task, completed=state.done + state.failed, failed=state.failed,
                                 pruned=state.pruned, running=state.running, best=self._best_text())

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def best_trials(manifest: Manifest, n: int = 5) -> list[Trial]:
    """Completed trials, best first by the sweep's metric (default val_loss, else loss)."""
    metric, mode = sweep_metric(manifest)
    scored = []
    for t in manifest.trials:
        if t.status != Status.COMPLETED:
            continue
        name, value = scoring.score(t.metrics, metric)
        if value is not None:
            scored.append((scoring.rank_key(value, name, mode), t.trial, t))
    return [t for _, _, t in sorted(scored, key=lambda p: (p[0], p[1]))[:n]]


def ranked_trials(manifest: Manifest, n: int = 5) -> list[tuple[Trial, str, float]]:
    """Completed and pruned trials, best first by the value of the sweep's metric each reached (a
    pruned trial's at the epoch it stopped): (trial, metric, value)."""
    metric, mode = sweep_metric(manifest)
    scored = []
    for t in manifest.trials:
        if t.status not in (Status.COMPLETED, Status.PRUNED):
            continue
        name, value = scoring.score(t.metrics, metric)
        if value is not None:
            scored.append((scoring.rank_key(value, name, mode), t.trial, t, name, value))
    return [(t, name, value) for _, _, t, name, value in sorted(scored, key=lambda p: (p[0], p[1]))[:n]]


def _stopped_at(t: Trial, metric: str) -> str:
    """`pruned at epoch 3` (the epoch is the number of values of the metric it reported), or the status."""
    if t.status != Status.PRUNED:
        return str(t.status)
    epochs = len(t.reports(metric))
    return f"pruned at epoch {epochs}" if epochs else "pruned"


def _print_best(manifest: Manifest, stream: Any) -> None:
    """The best trials: completed ones; with pruned ones among the best, every one with its status, and
    a word when a pruned trial's value at the epoch it stopped beat the best completed trial's."""
    metric_given, mode = sweep_metric(manifest)
    ranked = ranked_trials(manifest)
    if not any(t.status == Status.PRUNED for t, _, _ in ranked):
        best = best_trials(manifest)
        metric = scoring.score(best[0].metrics, metric_given)[0]
        print(f"Best trials by {metric}:", file=stream)
        for t in best:
            flags = ", ".join(f"{k}={v}" for k, v in t.flags.items())
            print(f"  {scoring.score(t.metrics, metric)[1]:.4g}  {t.run_dir}  {flags}", file=stream)
        return
    metric = ranked[0][1]
    print(f"Best trials by {metric} (the value each reached; a pruned trial's at the epoch it stopped):", file=stream)
    for t, _, value in ranked:
        flags = ", ".join(f"{k}={v}" for k, v in t.flags.items())
        print(f"  {value:.4g}  {_stopped_at(t, metric):<18}  {t.run_dir}  {flags}", file=stream)
    top, _, top_value = ranked[0]
    completed = best_trials(manifest, 1)
    if top.status == Status.PRUNED:
        if completed:
            c = completed[0]
            than = f"than the best completed trial's {scoring.score(c.metrics, metric)[1]:.4g} (trial {c.trial})"
        else:
            than = "and no trial completed"
        print(f"note: pruned trial {top.trial} reached {metric} {top_value:.4g} when it stopped "
              f"({_stopped_at(top, metric)}), better {than}: the pruner may have stopped the winner early. Judge "
              f"later (--prune-grace E) or train it to the end: gridrun training-run {manifest.data.get('script')} "
              + " ".join(f"--flag {k}={v}" for k, v in top.flags.items()), file=stream)


def print_results(manifest: Manifest, seconds: float, quiet: bool = False, stream=None,
                  hint_args: str = "") -> None:
    """The end-of-sweep summary: counts, the best trials, and what to run next (`hint_args` is
    appended to the gridrun commands shown, e.g. ' --runs-dir DIR')."""
    stream = stream or sys.stdout
    trials = manifest.trials
    done = sum(t.status == Status.COMPLETED for t in trials)
    failed = sum(t.status == Status.FAILED for t in trials)
    pruned = sum(t.status == Status.PRUNED for t in trials)
    line = f"Sweep {manifest.id}: {done} completed, "
    line += f"{pruned} pruned, " if pruned else ""
    line += f"{failed} failed of {len(trials)} trials in {seconds:.1f} s"
    if manifest.data.get("stop_reason"):
        line += f" (stopped: {manifest.data['stop_reason']})"
    print(line, file=stream)
    if quiet:
        return
    if manifest.data.get("metric_warning"):
        print(f"warning: {manifest.data['metric_warning']}", file=stream)
    ranked = ranked_trials(manifest)
    if ranked:
        _print_best(manifest, stream)
        first = best_trials(manifest, 1) or [ranked[0][0]]
        metric = ranked[0][1]
        print(f"View a run: gridrun view {first[0].run_dir}{hint_args}   "
              f"The sweep: gridrun sweep-report {manifest.id}{hint_args}", file=stream)
        print(f"All trials, best first: gridrun ls --sweep {manifest.id} --order metric_{metric}{hint_args}",
              file=stream)
    if failed:
        print(f"Rerun the failed trials with: gridrun tuning-run --resume {manifest.id}{hint_args}", file=stream)
    stream.flush()
