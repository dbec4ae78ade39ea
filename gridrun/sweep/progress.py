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
    """The one metric and mode that judge a sweep's trials one at a time (the pruner, the progress
    bar's best, a trial that diverges): the recorded ones (None, None: the default rule); for a
    multi-objective sweep, the pruner's metric (--prune-metric) when it has one, else the first."""
    metric, mode = manifest.data.get("metric"), manifest.data.get("mode")
    if not isinstance(metric, list):
        return metric, mode
    pairs = scoring.objectives(metric, mode)
    chosen = (manifest.data.get("pruner") or {}).get("metric")
    return next(((n, m) for n, m in pairs if n == chosen), pairs[0] if pairs else (None, None))


def sweep_objectives(manifest: Manifest) -> list[tuple[str, str]]:
    """Every (metric, mode) a sweep optimizes: [] with the default rule, one pair, or several (a
    multi-objective sweep, whose manifest records `metric` and `mode` as lists)."""
    return list(scoring.objectives(manifest.data.get("metric"), manifest.data.get("mode")))


class Reporter:
    """Progress: a rich bar on a terminal, plain lines otherwise, nothing with quiet."""

    def __init__(self, state: SweepState, quiet: bool, stream=None, metric: str | None = None,
                 mode: str | None = None, objectives: list[tuple[str, str]] | None = None):
        self.state = state
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.metric, self.mode = metric, mode
        self.best: tuple[float, str, dict[str, Any]] | None = None
        # a multi-objective sweep: its metrics, and the front so far (each point minimized, with its trial)
        self.objectives = list(objectives or []) if objectives and len(objectives) > 1 else []
        self.front: list[tuple[list[float], int]] = []
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

    def _add_to_front(self, trial: Trial) -> None:
        """Keep the Pareto front of the completed trials so far (a point per trial, every metric minimized)."""
        values = [scoring.finite(trial.metrics.get(name)) for name, _ in self.objectives]
        if any(v is None for v in values):
            return
        point = [scoring.sign(name, mode) * v for (name, mode), v in zip(self.objectives, values)]  # type: ignore[operator]

        def dominates(a: list[float], b: list[float]) -> bool:
            return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

        if any(dominates(p, point) for p, _ in self.front):
            return
        self.front = [(p, i) for p, i in self.front if not dominates(point, p) and i != trial.trial]
        self.front.append((point, trial.trial))

    def _best_text(self) -> str:
        if self.objectives:
            return f"Pareto front: {len(self.front)} trial(s)" if self.front else ""
        if not self.best:
            return ""
        value, metric, flags = self.best
        shown = ", ".join(f"{k}={v}" for k, v in flags.items())
        return f"best {metric} {value:.4g} ({shown})"

    def notice(self, text: str) -> None:
        """Say something once (e.g. why population mode could not batch a script's trials)."""
        self._once("note", "yellow", text, self.stream)

    def warning(self, text: str) -> None:
        """A warning, once, on stderr (through the progress bar's console when there is one)."""
        self._once("warning", "bold yellow", text, sys.stderr)

    def _once(self, label: str, style: str, text: str, stream: Any) -> None:
        if text in self.notices:
            return
        self.notices.append(text)
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(f"[{style}]{label}:[/] {text}")
        else:
            print(f"{label}: {text}", file=stream, flush=True)

    def update(self, trial: Trial | None = None, attempt: Attempt | None = None) -> None:
        state = self.state
        if trial is not None and attempt is not None:
            metric, value = scoring.score(trial.metrics, self.metric)
            ok = attempt.status in FINAL
            if ok and value is not None and (
                    self.best is None or scoring.is_better(value, self.best[0], metric, self.mode)):
                self.best = (value, metric, trial.flags)
            if self.objectives and attempt.status == Status.COMPLETED:
                self._add_to_front(trial)
            if self.progress is None and not self.quiet:
                n = state.done + state.failed
                shown = f" {metric}={value:.4g}" if value is not None and ok else ""
                if self.objectives and ok:
                    shown = "".join(f" {name}={_value(trial.metrics[name])}" for name, _ in self.objectives
                                    if scoring.finite(trial.metrics.get(name)) is not None)
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


def _value(v: float) -> str:
    """A metric value in the summary: whole numbers (a parameter count) as integers, others to 4 digits."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.4g}"


def pareto_trials(manifest: Manifest) -> list[Trial]:
    """A multi-objective sweep's Pareto front: the completed trials with a finite value of every metric
    that no other such trial beats on every metric (better or equal on all, strictly better on one),
    sorted by the first metric, best first. Pruned trials stopped early and are not on it."""
    objectives = sweep_objectives(manifest)
    scored = []
    for t in manifest.trials:
        if t.status != Status.COMPLETED:
            continue
        values = [scoring.finite(t.metrics.get(name)) for name, _ in objectives]
        if all(v is not None for v in values):
            scored.append((t, [scoring.sign(name, mode) * v for (name, mode), v in zip(objectives, values)]))
    if not scored:
        return []
    mask = scoring.non_dominated([v for _, v in scored])
    front = [(v, t.trial, t) for (t, v), on in zip(scored, mask) if on]
    return [t for _, _, t in sorted(front, key=lambda p: (p[0][0], p[1]))]


def _print_front(manifest: Manifest, stream: Any, show: int = 10) -> None:
    """The end-of-sweep summary of a multi-objective sweep: its Pareto front, with each metric's value."""
    objectives = sweep_objectives(manifest)
    front = pareto_trials(manifest)
    completed = sum(t.status == Status.COMPLETED for t in manifest.trials)
    what = " and ".join(f"{name} ({mode})" for name, mode in objectives)
    pruned = sum(t.status == Status.PRUNED for t in manifest.trials)
    more = "; pruned trials stopped early and are not on it" if pruned else ""
    print(f"Pareto front of {what}: {len(front)} of {completed} completed trials (no other trial better on "
          f"every metric){more}:", file=stream)
    names = [name for name, _ in objectives]
    cells = [[_value(t.metrics[n]) for n in names] for t in front[:show]]
    widths = [max([len(n), *(len(c[i]) for c in cells)]) for i, n in enumerate(names)]
    print("  " + "  ".join(n.ljust(w) for n, w in zip(names, widths)) + "  run", file=stream)
    for t, row in zip(front, cells):
        flags = ", ".join(f"{k}={v}" for k, v in t.flags.items())
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + f"  {t.run_dir}  {flags}", file=stream)
    if len(front) > show:
        print(f"  ... and {len(front) - show} more: gridrun ls --sweep {manifest.id} --pareto", file=stream)


def _one_line(error: str | None) -> str:
    """A trial's error as one line: its last non-empty line (a traceback's closing message)."""
    lines = [line.strip() for line in str(error or "unknown error").splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


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
    if quiet:  # quiet, but a failed trial still says why, in one line
        for t in trials:
            if t.status == Status.FAILED:
                print(f"trial {t.trial} failed: {_one_line(t.error)} (run {t.run_dir})", file=stream)
        stream.flush()
        return
    if manifest.data.get("metric_warning"):
        print(f"warning: {manifest.data['metric_warning']}", file=stream)
    if len(sweep_objectives(manifest)) > 1:  # several metrics: the front instead of "best trials"
        front = pareto_trials(manifest)
        if front:
            _print_front(manifest, stream)
            print(f"View a run: gridrun view {front[0].run_dir}{hint_args}   "
                  f"The sweep: gridrun sweep-report {manifest.id}{hint_args}", file=stream)
            print(f"The front as a table: gridrun ls --sweep {manifest.id} --pareto{hint_args}", file=stream)
        if failed:
            print(f"Rerun the failed trials with: gridrun tuning-run --resume {manifest.id}{hint_args}", file=stream)
        stream.flush()
        return
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
