"""The sweep loop: run a manifest's trials on an executor, record each outcome as it comes back.

The client process is the only writer of the manifest `runs/sweeps/<id>.json` (format in
docs/tuning.md): it creates each trial's run dir, records it as running *before* submitting it, and
records its outcome as soon as it comes back, always with an atomic write (gridrun/sweep/manifest.py).
What an outcome means (retry, crash suspect, --max-failures, interrupted) is decided by SweepState
(gridrun/sweep/state.py); this module does the I/O around it.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import rundir, scoring
from .._io import write_json
from ..errors import GridrunError
from ..executors import Executor
from ..record import Status, close_run, last_metrics, read_metrics
from . import remote
from .groups import Grouper, affinity_key, expand, worker_function
from .manifest import SAVE_INTERVAL, Manifest
from .progress import Reporter, sweep_metric, sweep_objectives
from .pruners import Pruner
from .samplers import Sampler
from .state import Outcome, SweepState, Trial, as_status
from .trial import MAX_REMOTE_BYTES, TrialResult, TrialTask, ship_sources, unpack

HEARTBEAT_SECONDS = 30.0
CONTEXTS = {"inprocess": "local", "local": "worker"}  # the run's `context` property, per executor


class _Tasks:
    """The state's queue as trial tasks; an iterator that may resume after StopIteration (a generator cannot).
    With `key` (a trial's flags -> its program's affinity key, sweep/groups.py) it also offers
    `next_preferring` (executors/base.py): a worker picks the queued trial whose program it has."""

    def __init__(self, state: SweepState, make: Callable[[int], TrialTask],
                 key: Callable[[dict[str, Any]], Any] | None = None):
        self.state, self.make, self.key = state, make, key

    def __iter__(self) -> _Tasks:
        return self

    def __next__(self) -> TrialTask:
        i = self.state.next_trial()
        if i is None:  # nothing to submit now: the executor polls again after each outcome
            raise StopIteration
        return self.make(i)

    def next_preferring(self, choose: Callable[[list[Any]], int | None]) -> tuple[TrialTask, Any]:
        """(task, its affinity key) of the queued trial `choose` picks from the queued trials' keys
        (StopIteration: none now, or `choose` returned None)."""
        key = self.key
        if key is None:
            return next(self), None
        trials = self.state.trials
        i = self.state.next_trial(pick=lambda queue: choose([key(trials[j].flags) for j in queue]))
        if i is None:
            raise StopIteration
        task = self.make(i)
        return task, key(task.flags)


def run_sweep(
    manifest: Manifest,
    executor: Executor,
    runs_dir: str | os.PathLike,
    *,
    retries: int = 0,
    max_failures: int | None = None,
    quiet: bool = False,
    context: str | None = None,
    max_bytes: int = MAX_REMOTE_BYTES,
    grouper: Grouper | None = None,
    sampler: Sampler | None = None,
    pruner: Pruner | None = None,
    pbt: Any = None,
) -> SweepState:
    """Run every trial of the manifest that has not ended. Raises KeyboardInterrupt after Ctrl-C.

    With a `grouper` (population mode) trials run as group tasks, one vmapped program per group. A
    `sampler` gives each trial its values when it starts and is told each trial that ends; a `pruner`
    hears every trial's metric after each epoch (through the executor's channel) and stops bad ones.
    `pbt` (a sweep/pbt_rounds.py PBTRounds: PBT outside a population) hears them instead, pauses every
    trial at each round's end and continues them from the checkpoints its decisions pick.
    """
    runs_dir = Path(runs_dir)
    _mark_running(manifest, executor, retries, max_failures, grouper)
    promote = pbt.promote if pbt is not None else pruner.promote if pruner is not None else None
    state = SweepState(manifest.trials, retries=retries, max_failures=max_failures, slots=executor.slots,
                       promote=promote)
    metric, mode = sweep_metric(manifest)
    reporter = Reporter(state, quiet, metric=metric, mode=mode, objectives=sweep_objectives(manifest))
    handler = pbt.handle if pbt is not None else _prune_handler(pruner, mode) if pruner is not None else None
    if executor.remote:  # remote trials stream their checkpoints back through the channel (sweep/remote.py)
        handler = remote.client_handler(runs_dir, handler)
    channel = executor.channel(handler) if handler is not None else None
    heartbeat = _Heartbeat(manifest)
    make_task = _TaskMaker(manifest, state, executor, reporter, runs_dir, sampler, channel, metric, max_bytes,
                           context or ("population" if grouper is not None else CONTEXTS.get(executor.name, executor.name)),
                           prunes=pruner is not None or pbt is not None, pbt=pbt)
    check = MetricCheck(manifest, metric, pruner, reporter)
    error: GridrunError | None = None
    try:
        tasks: Any = _Tasks(state, make_task, affinity_key(manifest.data["script_path"]) if grouper is None else None)
        for task, result in executor.submit_all(worker_function(grouper), grouper.batches(tasks) if grouper else tasks):
            for trial_task, outcome in expand(task, result):
                _ended(manifest, state, executor, reporter, runs_dir, sampler, check, trial_task.trial, outcome,
                       max_bytes, pbt)
    except KeyboardInterrupt:
        state.interrupted = True
    except GridrunError as exc:  # a mistake found while running (e.g. --metric never logged): stop cleanly
        state.interrupted = True
        state.stop_reason = str(exc)
        error = exc
    finally:
        heartbeat.stop()
        reporter.close()
        if channel is not None:
            channel.close()
        _close(manifest, state, runs_dir)
    if error is not None:
        raise error
    if state.interrupted:
        raise KeyboardInterrupt
    return state


def _mark_running(manifest: Manifest, executor: Executor, retries: int, max_failures: int | None,
                  grouper: Grouper | None) -> None:
    """Record in the manifest that this process runs the sweep now, and how."""
    manifest.data["client"] = {"pid": os.getpid(), "hostname": rundir.hostname(), "heartbeat": None}
    manifest.data["status"] = "running"
    manifest.live = True  # (tuning.py `_run` retires it however the sweep ends)
    manifest.data["settings"] = {"backend": executor.name, "jobs": executor.jobs, "retries": retries,
                                 "max_failures": max_failures, "population": grouper is not None}
    manifest.save()


class _Heartbeat:
    """Saves the manifest while the sweep runs: changes soon, and a heartbeat at least every 30 s."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.event = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="gridrun-heartbeat", daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        m = self.manifest
        while not self.event.wait(SAVE_INTERVAL):
            if m.dirty or time.monotonic() - m.saved_at >= HEARTBEAT_SECONDS:
                m.save()

    def stop(self) -> None:
        self.event.set()


class _TaskMaker:
    """Trial index -> its task: values asked now (recorded before it runs), run dir made, start recorded."""

    def __init__(self, manifest: Manifest, state: SweepState, executor: Executor, reporter: Reporter,
                 runs_dir: Path, sampler: Sampler | None, channel: Any, metric: str | None, max_bytes: int,
                 context: str, prunes: bool = True, pbt: Any = None) -> None:
        self.manifest, self.state, self.executor, self.reporter = manifest, state, executor, reporter
        self.runs_dir, self.sampler, self.channel, self.metric = runs_dir, sampler, channel, metric
        self.max_bytes, self.context, self.prunes, self.pbt = max_bytes, context, prunes, pbt
        self.script = manifest.data["script_path"]
        self.sources = ship_sources(Path(self.script)) if executor.remote else None

    def __call__(self, i: int) -> TrialTask:
        manifest, executor = self.manifest, self.executor
        with manifest.lock:
            t = manifest.trials[i]
            if not t.flags and self.sampler is not None:  # drawn now, recorded before the trial runs
                t.flags = self.sampler.ask(t)
            # sequential PBT: a trial's segments continue in its one run dir (as a population trial's story)
            again = (self.pbt is not None and t.run_dir is not None and t.last is not None and continuable(t.last)
                     and (self.runs_dir / t.run_dir).is_dir())
            run_dir = self.runs_dir / str(t.run_dir) if again else rundir.create_run_dir(self.runs_dir)
            if executor.remote:  # the worker writes elsewhere: make the run dir readable meanwhile
                from ..runner import start_properties

                ctx = rundir.RunContext.open(run_dir, t.flags)
                start = start_properties(Path(self.script), self.context, manifest.id, i)
                start.update(pid=None, hostname=None)  # set by the worker's copy, when it comes back
                ctx.write_properties(**start)
                if not again:  # a continued PBT trial's flags.json keeps the values it started with
                    ctx.write_flags(t.flags)
            self.state.start(i, run_dir.name, rundir.iso(rundir.utc_now()))
            manifest.touch()
            self.reporter.update()
            if self.pbt is not None:
                resume_from = self.pbt.prepare(t, run_dir)
            else:
                resume_from = continue_trial(t, self.runs_dir, run_dir, self.context)
            if resume_from is not None:
                t.attempts[-1].extra.update(resumed_from_epoch=resume_from["epoch"], resumed_from_run=resume_from["run"])
            stream = remote.for_task(self.channel, run_dir, resume_from, self.max_bytes) if executor.remote else None
            note = (remote.restart_note(t, self.runs_dir) if executor.remote and resume_from is None and self.pbt is None
                    else None)
            if note:
                t.attempts[-1].extra["restarted"] = note
                self.reporter.notice(note)
        settings = checkpoint_settings(manifest)
        policy = settings.get("policy") if settings.get("seconds") is None else \
            {"keep": settings.get("policy"), "seconds": settings["seconds"]}
        return TrialTask(script=self.script, flags=dict(t.flags), sweep=manifest.id, trial=i,
                         attempt=len(t.attempts), run_dir=None if executor.remote else str(run_dir),
                         context=self.context, max_bytes=self.max_bytes, sources=self.sources, metric=self.metric,
                         pruner=self.channel.caller if self.channel is not None and self.prunes else None,
                         mode=sweep_metric(manifest)[1], checkpoint=policy, resume_from=resume_from,
                         paused_at=paused_at(t), drops_pruned=not settings.get("keep_pruned", False), remote=stream)


def paused_at(t: Trial) -> int | None:
    """The rung epoch a promoted trial paused at (its latest earlier attempt paused), else None."""
    earlier = t.attempts[:-1]
    for a in reversed(earlier):
        if a.status == Status.PAUSED:
            return a.extra.get("paused_epoch")
        if not continuable(a):
            return None
    return None


def checkpoint_settings(manifest: Manifest) -> dict[str, Any]:
    """The sweep's checkpoint settings: {"policy": --checkpoints (None: each script's own), "keep_pruned": bool,
    "seconds": --checkpoint-seconds (None or absent: each script's own)}."""
    return dict(manifest.data.get("checkpoints") or {})


CONTINUABLE = (Status.INTERRUPTED,)  # attempts a new attempt continues from (and crashed ones: extra["crashed"])


def continuable(attempt: Any) -> bool:
    """Did this attempt stop from outside (Ctrl-C, a killed client or worker), so that the next attempt
    continues from its last checkpoint rather than from epoch 0?"""
    return attempt.status in CONTINUABLE or bool(attempt.extra.get("crashed")) or attempt.status == Status.PAUSED


def continue_trial(t: Trial, runs_dir: Path, run_dir: Path, context: str) -> dict[str, Any] | None:
    """Prepare the new attempt's `run_dir` (just made, the last of t.attempts) to continue the latest
    earlier attempt that stopped from outside and left a `last` checkpoint: its checkpoints (hard links)
    and its metrics.json cut to the checkpoint's epoch. Returns the resume point the trial's fit /
    fit_loop starts from ({"epoch": N, "run": the earlier run dir}), or None (start from epoch 0).
    Population trials continue in a refilled program's slot (train/population/slots.py), which counts
    each slot's epochs; one that cannot share such a program (width-merged groups, nnx models, slot
    refilling off) trains again from epoch 0 over the copied epochs."""
    from .. import checkpoint as ckpt

    for a in reversed(t.attempts[:-1]):
        if not continuable(a):
            return None  # a failure of the script itself, or a completed attempt: no continuing past it
        source = runs_dir / a.run_dir
        header = ckpt.read_header(ckpt.checkpoint_path(source, "last"))
        epoch = header.get("epoch") if header else None
        if not isinstance(epoch, int) or epoch < 1:
            continue
        (run_dir / ckpt.CHECKPOINT_DIR).mkdir(exist_ok=True)
        for which in ckpt.WHICH:
            src = ckpt.checkpoint_path(source, which)
            if src.is_file():
                dst = ckpt.checkpoint_path(run_dir, which)
                try:
                    os.link(src, dst)
                except OSError:
                    import shutil

                    shutil.copy2(src, dst)
        metrics = read_metrics(source)
        write_json(run_dir / rundir.METRICS_FILE, {k: v[:epoch] for k, v in metrics.items()}, indent=None)
        return {"epoch": epoch, "run": a.run_dir}
    return None


def _ended(manifest: Manifest, state: SweepState, executor: Executor, reporter: Reporter, runs_dir: Path,
           sampler: Sampler | None, check: MetricCheck, i: int, outcome: Any, max_bytes: int, pbt: Any = None) -> None:
    """One trial's outcome came back: record it, tell the sampler, check the sweep's metric."""
    with manifest.lock:
        t = _record(manifest, state, executor, reporter, runs_dir, i, outcome, max_bytes, pbt)
        if sampler is not None and t.status not in (Status.PENDING, Status.RUNNING, Status.PAUSED):
            sampler.tell(t)
        check(t)


def _close(manifest: Manifest, state: SweepState, runs_dir: Path) -> None:
    """The loop ended (done, stopped or interrupted): close running trials, record how it ended."""
    if state.interrupted:
        for attempt in state.interrupt():
            close_run(runs_dir / attempt.run_dir, Status.INTERRUPTED, attempt.error or "interrupted")
    elif not state.stop_reason:  # ran out of work: trials still paused at a rung were not promoted
        keep = checkpoint_settings(manifest).get("keep_pruned", False)
        for t in state.stop_paused():
            if t.last is not None:
                _stop_paused(runs_dir / t.last.run_dir, keep)
    if state.stop_reason:
        manifest.data["stop_reason"] = state.stop_reason
    manifest.data["status"] = state.final_status()
    manifest.save()
    manifest.data["client"]["ended"] = rundir.iso(rundir.utc_now())
    manifest.save()


def _stop_paused(run_dir: Path, keep: bool) -> None:
    """A paused trial the sweep ended without promoting: its run ends pruned (its checkpoint dropped,
    unless --keep-pruned)."""
    from .. import checkpoint as ckpt
    from .._io import read_json
    from ..record import adopt

    props = read_json(run_dir / rundir.PROPERTIES_FILE, {}) or {}
    epoch = props.get("paused_epoch")
    message = f"stopped at epoch {epoch}: paused at that rung and not promoted before the sweep ended"
    adopt(run_dir, status=str(Status.PRUNED), pruned=message, pruned_epoch=epoch, error_message=message)
    if not keep:
        ckpt.drop(run_dir, ckpt.dropped_reason("pruned"))


def replay(manifest: Manifest, runs_dir: str | os.PathLike, sampler: Sampler | None, pruner: Pruner | None) -> None:
    """A resumed sweep's sampler and pruner learn every trial that ended before: each ended trial's
    per-epoch history is read from its run dir, told to the sampler, and replayed into the pruner
    (in the order the trials ended), before the first new trial reports anything."""
    metric, mode = sweep_metric(manifest)
    ended = [t for t in manifest.trials if t.status in (Status.COMPLETED, Status.PRUNED, Status.FAILED, Status.PAUSED)]
    for t in ended:
        if t.run_dir and not t.history:
            t.history = read_metrics(Path(runs_dir) / t.run_dir)
    ended.sort(key=lambda t: ((t.last.end if t.last else None) or "", t.trial))
    for t in ended:
        if sampler is not None and t.status != Status.PAUSED:  # a paused trial is told when it ends
            sampler.tell(t)
        if pruner is not None:
            name = metric or next((m for m in scoring.FALLBACK_METRICS if t.history.get(m)), scoring.DEFAULT_METRIC)
            sign = scoring.sign(name, mode)
            pruner.replay(t.trial, [(e, sign * v) for e, v in t.reports(name)])


def _prune_handler(pruner: Pruner, mode: str | None) -> Callable[[Any], bool]:
    """The client side of pruning: a trial's report -> stop it or not."""

    def handle(message: Any) -> bool:
        value = scoring.sign(str(message["metric"]), mode) * float(message["value"])
        return pruner(int(message["trial"]), int(message["epoch"]), value)

    return handle


class MetricCheck:
    """Is the sweep's metric among what the first trial logged? With a pruner or an explicit metric a
    missing one is a mistake (stop, naming what it logged and the --metric to pass); with the default
    metric and no pruner, a warning, once, repeated in the end-of-sweep summary."""

    def __init__(self, manifest: Manifest, metric: str | None, pruner: Pruner | None, reporter: Reporter) -> None:
        self.manifest, self.metric, self.pruner, self.reporter = manifest, metric, pruner, reporter
        self.checked = False
        objectives = sweep_objectives(manifest)
        self.metrics = [n for n, _ in objectives] if len(objectives) > 1 else []  # a multi-objective sweep's

    def __call__(self, t: Trial) -> None:
        if not self.checked and t.status in (Status.COMPLETED, Status.PRUNED, Status.PAUSED) and t.metrics:
            self.checked = True
            if self.metrics:
                self.first_of_several(t)
            else:
                self.first(t)
        for name in self.metrics or [self.metric]:
            _check_metric(t, name)

    def first_of_several(self, t: Trial) -> None:
        """A multi-objective sweep: every one of its metrics must be among what the first trial logged."""
        missing = [name for name in self.metrics if name not in t.metrics]
        if not missing:
            return
        logged = sorted(t.metrics)
        others = [m for m in logged if m not in self.metrics]
        hint = f"--metric {suggest_metric(others or logged)}" if logged else "--metric NAME"
        raise GridrunError(
            f"the sweep optimizes {', '.join(map(repr, self.metrics))}, but trial {t.trial} did not log "
            f"{', '.join(map(repr, missing))} (it logged: {', '.join(logged) or 'none'}): replace it with one of "
            f"those ({hint}), or log it from the script (gridrun.log_metrics({missing[0]}=...))")

    def first(self, t: Trial) -> None:
        wanted = (self.metric,) if self.metric else scoring.FALLBACK_METRICS
        if any(name in t.metrics for name in wanted):
            return
        logged = sorted(t.metrics)
        hint = f"--metric {suggest_metric(logged)} (metric={suggest_metric(logged)!r} in Python)"
        if self.metric is None and self.pruner is None:
            text = (f"the sweep ranks trials by val_loss (else loss), but trial {t.trial} logged neither (it logged: "
                    f"{', '.join(logged)}), so no trial can be called best: pass {hint}")
            self.manifest.data["metric_warning"] = text
            self.reporter.warning(text)
            return
        what = repr(self.metric) if self.metric else "val_loss (else loss)"
        judged = f"--prune {self.pruner.name} judges trials by {what}" if self.pruner is not None else \
            f"the sweep optimizes {what}"
        raise GridrunError(f"{judged}, but trial {t.trial} did not log it (it logged: {', '.join(logged)}): "
                           f"pass {hint}, or log {self.metric or 'val_loss'} from the script")


def suggest_metric(logged: list[str]) -> str:
    """The logged metric a sweep most likely means: a held-out loss first, then any loss, then the first."""
    for test in (lambda m: "loss" in m and m.startswith(("val", "test", "valid", "eval")), lambda m: "loss" in m):
        for name in logged:
            if test(name):
                return name
    return logged[0] if logged else "NAME"


def _check_metric(t: Trial, metric: str | None) -> None:
    """A metric named for the sweep that a completed trial never logged is a mistake: stop and say so."""
    if metric and t.status == Status.COMPLETED and metric not in t.metrics:
        logged = ", ".join(sorted(t.metrics)) or "none"
        raise GridrunError(
            f"the sweep optimizes {metric!r}, but trial {t.trial} completed without logging it (it logged: "
            f"{logged}): give one of those with --metric, or log {metric!r} from the script"
        )


def _record(manifest: Manifest, state: SweepState, executor: Executor, reporter: Reporter, runs_dir: Path,
            i: int, outcome: Any, max_bytes: int, pbt: Any = None) -> Trial:
    """Write one trial's outcome into its run dir, then let the state decide what it means."""
    t = manifest.trials[i]
    run_dir = runs_dir / t.attempts[-1].run_dir
    crash = isinstance(outcome, BaseException) and executor.is_crash(outcome)
    if crash and not state.alone(i):
        outcome = RuntimeError(f"{outcome} [a worker process died while this trial was running "
                               f"beside others; it is run again alone]")
    props = outcome_properties(outcome, run_dir, manifest.data["script_path"], crash, max_bytes)
    if pbt is not None:  # sequential PBT: hp_<flag> per epoch, the lineage and settings (sweep/pbt_rounds.py)
        pbt.after_attempt(t, run_dir)
    keep = checkpoint_settings(manifest).get("keep_pruned", False)
    if props.get("status") in (Status.PRUNED, Status.FAILED) and not crash and not keep:
        from .. import checkpoint as ckpt

        what = "pruned" if props.get("status") == Status.PRUNED else "failed"
        ckpt.drop(run_dir, ckpt.dropped_reason(what))
    attempt = state.record(i, Outcome(
        status=as_status(props.get("status"), Status.FAILED), error=props.get("error_message"), end=props.get("end"),
        metrics=last_metrics(run_dir), crash=crash, history=read_metrics(run_dir), paused_epoch=props.get("paused_epoch")))
    notice = props.get("population_notice")
    if notice:
        reporter.notice(str(notice))
    manifest.touch()
    reporter.update(t, attempt)
    return t


def outcome_properties(outcome: Any, run_dir: Path, script: str, crash: bool = False,
                       max_bytes: int = MAX_REMOTE_BYTES) -> dict[str, Any]:
    """The final properties of one trial, whatever came back: a result, or an exception."""
    if isinstance(outcome, TrialResult):
        if outcome.files is not None:
            return unpack(outcome, run_dir, script, max_bytes)
        return outcome.properties
    if isinstance(outcome, BaseException):
        message = (f"the worker process running this trial died ({type(outcome).__name__}: {outcome})" if crash
                   else f"{type(outcome).__name__}: {outcome}")
        tb = "".join(traceback.format_exception(outcome))
        return close_run(run_dir, Status.FAILED, message, tb)
    return close_run(run_dir, Status.FAILED, f"unexpected result from the executor: {outcome!r}")
