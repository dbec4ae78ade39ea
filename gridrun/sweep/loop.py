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
from ..errors import GridrunError
from ..executors import Executor
from ..record import Status, close_run, last_metrics
from .groups import Grouper, expand, worker_function
from .manifest import SAVE_INTERVAL, Manifest
from .progress import Reporter, sweep_metric
from .pruners import Pruner
from .samplers import Sampler
from .state import Outcome, SweepState, Trial, as_status
from .trial import MAX_REMOTE_BYTES, TrialResult, TrialTask, ship_sources, unpack

HEARTBEAT_SECONDS = 30.0
CONTEXTS = {"inprocess": "local", "local": "worker"}  # the run's `context` property, per executor


class _Tasks:
    """The state's queue as trial tasks; an iterator that may resume after StopIteration (a generator cannot)."""

    def __init__(self, state: SweepState, make: Callable[[int], TrialTask]):
        self.state, self.make = state, make

    def __iter__(self) -> _Tasks:
        return self

    def __next__(self) -> TrialTask:
        i = self.state.next_trial()
        if i is None:  # nothing to submit now: the executor polls again after each outcome
            raise StopIteration
        return self.make(i)


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
) -> SweepState:
    """Run every trial of the manifest that has not ended. Raises KeyboardInterrupt after Ctrl-C.

    With a `grouper` (population mode) trials run as group tasks, one vmapped program per group. A
    `sampler` gives each trial its values when it starts and is told each trial that ends; a `pruner`
    hears every trial's metric after each epoch (through the executor's channel) and stops bad ones.
    """
    runs_dir = Path(runs_dir)
    script = manifest.data["script_path"]
    manifest.data["client"] = {"pid": os.getpid(), "hostname": rundir.hostname(), "heartbeat": None}
    manifest.data["status"] = "running"
    manifest.data["settings"] = {"backend": executor.name, "jobs": executor.jobs, "retries": retries,
                                 "max_failures": max_failures, "population": grouper is not None}
    manifest.save()
    sources = ship_sources(Path(script)) if executor.remote else None
    context = context or ("population" if grouper is not None else CONTEXTS.get(executor.name, executor.name))
    state = SweepState(manifest.trials, retries=retries, max_failures=max_failures, slots=executor.slots)
    metric, mode = sweep_metric(manifest)
    reporter = Reporter(state, quiet, metric=metric, mode=mode)
    channel = executor.channel(_prune_handler(pruner, mode)) if pruner is not None else None
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(SAVE_INTERVAL):
            if manifest.dirty or time.monotonic() - manifest.saved_at >= HEARTBEAT_SECONDS:
                manifest.save()

    beater = threading.Thread(target=beat, name="gridrun-heartbeat", daemon=True)
    beater.start()

    def make_task(i: int) -> TrialTask:
        with manifest.lock:
            t = manifest.trials[i]
            if not t.flags and sampler is not None:  # drawn now, recorded before the trial runs
                t.flags = sampler.ask(t)
            run_dir = rundir.create_run_dir(runs_dir)
            if executor.remote:  # the worker writes elsewhere: make the run dir readable meanwhile
                from ..runner import start_properties

                ctx = rundir.RunContext.open(run_dir, t.flags)
                start = start_properties(Path(script), context, manifest.id, i)
                start.update(pid=None, hostname=None)  # set by the worker's copy, when it comes back
                ctx.write_properties(**start)
                ctx.write_flags(t.flags)
            state.start(i, run_dir.name, rundir.iso(rundir.utc_now()))
            manifest.touch()
            reporter.update()
        return TrialTask(script=script, flags=dict(t.flags), sweep=manifest.id, trial=i,
                         attempt=len(t.attempts), run_dir=None if executor.remote else str(run_dir),
                         context=context, max_bytes=max_bytes, sources=sources, metric=metric,
                         pruner=channel.caller if channel is not None else None)

    error: GridrunError | None = None
    tasks: Any = _Tasks(state, make_task)
    if grouper is not None:
        tasks = grouper.batches(tasks)
    try:
        for task, result in executor.submit_all(worker_function(grouper), tasks):
            for trial_task, outcome in expand(task, result):
                with manifest.lock:
                    t = _record(manifest, state, executor, reporter, runs_dir, trial_task.trial, outcome, max_bytes)
                    if sampler is not None and t.status not in (Status.PENDING, Status.RUNNING):
                        sampler.tell(t)
                    _check_metric(t, metric)
    except KeyboardInterrupt:
        state.interrupted = True
    except GridrunError as exc:  # a mistake found while running (e.g. --metric never logged): stop cleanly
        state.interrupted = True
        state.stop_reason = str(exc)
        error = exc
    finally:
        stop.set()
        reporter.close()
        if channel is not None:
            channel.close()
        if state.interrupted:
            for attempt in state.interrupt():
                close_run(runs_dir / attempt.run_dir, Status.INTERRUPTED, attempt.error or "interrupted")
        if state.stop_reason:
            manifest.data["stop_reason"] = state.stop_reason
        manifest.data["status"] = state.final_status()
        manifest.save()
        manifest.data["client"]["ended"] = rundir.iso(rundir.utc_now())
        manifest.save()
    if error is not None:
        raise error
    if state.interrupted:
        raise KeyboardInterrupt
    return state


def _prune_handler(pruner: Pruner, mode: str | None) -> Callable[[Any], bool]:
    """The client side of pruning: a trial's report -> stop it or not."""

    def handle(message: Any) -> bool:
        value = scoring.sign(str(message["metric"]), mode) * float(message["value"])
        return pruner(int(message["trial"]), int(message["epoch"]), value)

    return handle


def _check_metric(t: Trial, metric: str | None) -> None:
    """A metric named for the sweep that a completed trial never logged is a mistake: stop and say so."""
    if metric and t.status == Status.COMPLETED and metric not in t.metrics:
        logged = ", ".join(sorted(t.metrics)) or "none"
        raise GridrunError(
            f"the sweep optimizes {metric!r}, but trial {t.trial} completed without logging it (it logged: "
            f"{logged}): give one of those with --metric, or log {metric!r} from the script"
        )


def _record(manifest: Manifest, state: SweepState, executor: Executor, reporter: Reporter, runs_dir: Path,
            i: int, outcome: Any, max_bytes: int) -> Trial:
    """Write one trial's outcome into its run dir, then let the state decide what it means."""
    t = manifest.trials[i]
    run_dir = runs_dir / t.attempts[-1].run_dir
    crash = isinstance(outcome, BaseException) and executor.is_crash(outcome)
    if crash and not state.alone(i):
        outcome = RuntimeError(f"{outcome} [a worker process died while this trial was running "
                               f"beside others; it is run again alone]")
    props = outcome_properties(outcome, run_dir, manifest.data["script_path"], crash, max_bytes)
    attempt = state.record(i, Outcome(
        status=as_status(props.get("status"), Status.FAILED), error=props.get("error_message"), end=props.get("end"), metrics=last_metrics(run_dir), crash=crash))
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
