"""Tuning runs: one run per flag combination, on an executor, recorded in a resumable sweep manifest.

    gridrun.tuning_run("mnist.py", flags={"nodes1": [64, 128, 256], "lr": [0.01, 0.001]}, sample=0.5, seed=1)

Every trial is an ordinary run dir (properties `sweep` and `trial`). The client process is the only
writer of the manifest `runs/sweeps/<id>.json` (format in docs/tuning.md): it creates each trial's run
dir, records it as running *before* submitting it, and records its outcome as soon as it comes back,
always with an atomic write. After Ctrl-C, a kill -9 or a reboot, `resume` reconciles the manifest with
the run dirs (a run dir that completed counts even if the manifest missed it) and runs only what did not
complete. The manifest itself lives in gridrun/manifest.py, the progress display in gridrun/progress.py.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import rundir
from ._io import ask_yes_no
from .errors import GridrunError
from .executors import Executor, get_executor
from .executors.task import MAX_REMOTE_BYTES, TrialResult, TrialTask, run_trial, ship_sources, unpack
from .grid import build_grid
from .manifest import (
    DONE,
    SAVE_INTERVAL,
    Manifest,
    client_alive,
    close_orphans,
    close_run,
    describe_size,
    find_sweep,
    last_metrics,
    list_sweeps,
    plan_sweep,
    reconcile,
    sweeps_dir,
)
from .progress import Reporter, best_trials, print_results

CONFIRM_ABOVE = 100  # trials; larger sweeps ask "Proceed with tuning run? [Y/n]"
HEARTBEAT_SECONDS = 30.0


# --------------------------------------------------------------------------------------------------
# Running


class _Queue:
    """Trials waiting to run; refilled with retries and closed by --max-failures while the sweep goes."""

    def __init__(self, items: list[int]):
        self.items = deque(items)
        self.closed = False
        self.solo: set[int] = set()  # trials that must run alone (suspects of a worker crash)
        self.in_flight: set[int] = set()

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        # StopIteration here means "nothing to submit now": the executor polls again after each outcome
        if self.closed or not self.items or self.solo & self.in_flight:
            raise StopIteration
        if self.items[0] in self.solo and self.in_flight:
            raise StopIteration
        i = self.items.popleft()
        self.in_flight.add(i)
        return i


class _Tasks:
    """The queue as tasks; an iterator that may resume after StopIteration (not a generator, which cannot)."""

    def __init__(self, queue: _Queue, make: Callable[[int], TrialTask]):
        self.queue, self.make = queue, make

    def __iter__(self) -> _Tasks:
        return self

    def __next__(self) -> TrialTask:
        return self.make(next(self.queue))


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
) -> None:
    """Run every trial of the manifest that has not completed. Raises KeyboardInterrupt after Ctrl-C."""
    runs_dir = Path(runs_dir)
    script = manifest.data["script_path"]
    trials = manifest.trials
    todo = [t["trial"] for t in trials if t["status"] != DONE]
    manifest.data["client"] = {"pid": os.getpid(), "hostname": rundir.hostname(), "heartbeat": None}
    manifest.data["status"] = "running"
    manifest.data["settings"] = {"backend": executor.name, "jobs": executor.jobs, "retries": retries,
                                 "max_failures": max_failures}
    manifest.save()
    sources = ship_sources(Path(script)) if executor.remote else None
    context = context or {"inprocess": "local", "local": "worker"}.get(executor.name, executor.name)
    budget = {i: 1 + max(0, retries) for i in todo}  # attempts allowed in this session
    queue = _Queue(todo)
    failures = 0
    reporter = Reporter(len(trials), sum(t["status"] == DONE for t in trials), quiet)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(SAVE_INTERVAL):
            if manifest.dirty or time.monotonic() - manifest.saved_at >= HEARTBEAT_SECONDS:
                manifest.save()

    beater = threading.Thread(target=beat, name="gridrun-heartbeat", daemon=True)
    beater.start()

    def make_task(i: int) -> TrialTask:
        with manifest.lock:
            t = trials[i]
            run_dir = rundir.create_run_dir(runs_dir)
            attempt = {"run_dir": run_dir.name, "status": "running", "start": rundir.iso(rundir.utc_now()),
                       "end": None, "error": None}
            if executor.remote:  # the worker writes elsewhere: make the run dir readable meanwhile
                from .runner import start_properties

                ctx = rundir.RunContext.open(run_dir, t["flags"])
                start = start_properties(Path(script), context, manifest.id, i)
                start.update(pid=None, hostname=None)  # set by the worker's copy, when it comes back
                ctx.write_properties(**start)
                ctx.write_flags(t["flags"])
            t["attempts"].append(attempt)
            t["status"], t["run_dir"] = "running", run_dir.name
            reporter.running += 1
            manifest.touch()
            reporter.update()
        return TrialTask(script=script, flags=dict(t["flags"]), sweep=manifest.id, trial=i,
                         attempt=len(t["attempts"]), run_dir=None if executor.remote else str(run_dir),
                         context=context, max_bytes=max_bytes, sources=sources)

    interrupted = False
    try:
        for task, outcome in executor.submit_all(run_trial, _Tasks(queue, make_task)):
            with manifest.lock:
                t = trials[task.trial]
                attempt = t["attempts"][-1]
                run_dir = runs_dir / attempt["run_dir"]
                alone = executor.slots == 1 or task.trial in queue.solo
                crash = isinstance(outcome, BaseException) and _is_worker_crash(outcome)
                if crash and not alone:
                    # a dead worker takes the whole pool down: every trial in flight gets the error. Run
                    # each of them again alone, free of charge, to find out which one killed its worker.
                    outcome = RuntimeError(f"{outcome} [a worker process died while this trial was running "
                                           f"beside others; it is run again alone]")
                props = _outcome_properties(outcome, run_dir, script, executor, max_bytes)
                reporter.running -= 1
                queue.in_flight.discard(task.trial)
                attempt["status"] = props.get("status") or "failed"
                attempt["end"] = props.get("end")
                attempt["error"] = props.get("error_message")
                t["metrics"] = last_metrics(run_dir)
                if crash:  # from now on this trial runs alone, so that it cannot take others down
                    queue.solo.add(task.trial)
                if crash and not alone and not queue.closed:
                    attempt["charged"] = False
                    queue.items.appendleft(task.trial)
                    t["status"], t["error"] = "pending", attempt["error"]
                elif attempt["status"] == DONE:
                    t["status"], t["error"] = DONE, None
                    reporter.done += 1
                elif attempt["status"] == "interrupted":  # Ctrl-C inside the trial (inprocess)
                    t["status"] = "interrupted"
                    interrupted = True
                    queue.closed = True
                else:
                    t["status"], t["error"] = "failed", attempt["error"]
                    budget[task.trial] -= 1
                    if budget[task.trial] > 0 and not queue.closed:
                        queue.items.append(task.trial)
                        t["status"] = "pending"
                    else:
                        reporter.failed += 1
                    failures += 1
                    if max_failures is not None and failures >= max_failures and not queue.closed:
                        queue.closed = True
                        manifest.data["status"] = "stopped"
                        manifest.data["stop_reason"] = f"{failures} failed trial(s) reached --max-failures {max_failures}"
                        for j in queue.items:
                            if trials[j]["status"] == "pending" and trials[j]["attempts"]:
                                trials[j]["status"] = "failed"
                                reporter.failed += 1
                manifest.touch()
                reporter.update(t, attempt)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stop.set()
        reporter.close()
        if interrupted:
            for t in trials:
                if t["status"] in ("running", "interrupted"):
                    t["status"] = "interrupted"
                    a = t["attempts"][-1]
                    if a["status"] == "running":
                        a["status"] = "interrupted"
                        a["error"] = "interrupted by the user (Ctrl-C)"
                        close_run(runs_dir / a["run_dir"], "interrupted", "interrupted by the user (Ctrl-C)")
            manifest.data["status"] = "interrupted"
        elif manifest.data["status"] == "running":
            left = [t for t in trials if t["status"] != DONE]
            manifest.data["status"] = "completed" if not left else "finished_with_failures"
        manifest.save()
        manifest.data["client"]["ended"] = rundir.iso(rundir.utc_now())
        manifest.save()
    if interrupted:
        raise KeyboardInterrupt


def _outcome_properties(
    outcome: Any, run_dir: Path, script: str, executor: Executor, max_bytes: int
) -> dict[str, Any]:
    """The final properties of one trial, whatever came back: a result, or an exception."""
    if isinstance(outcome, TrialResult):
        if outcome.files is not None:
            return unpack(outcome, run_dir, script, max_bytes)
        return outcome.properties
    if isinstance(outcome, BaseException):
        message = (
            f"the worker process running this trial died ({type(outcome).__name__}: {outcome})"
            if _is_worker_crash(outcome)
            else f"{type(outcome).__name__}: {outcome}"
        )
        tb = "".join(traceback.format_exception(outcome))
        ctx = rundir.RunContext.open(run_dir)
        if ctx.properties.get("status") in (None, "running"):
            from .runner import finish

            return finish(ctx, "failed", None, message, tb)
        return dict(ctx.properties)
    return {"status": "failed", "error_message": f"unexpected result from the executor: {outcome!r}"}


def _is_worker_crash(exc: BaseException) -> bool:
    try:
        from .executors.local import is_worker_crash

        return is_worker_crash(exc)
    except ImportError:  # pragma: no cover
        return False


# --------------------------------------------------------------------------------------------------
# The user-facing verb


def _confirm(n_total: int, n_trials: int, confirm: bool, yes: bool) -> None:
    if not confirm or yes or n_trials <= CONFIRM_ABOVE:
        return
    answer = ask_yes_no("Proceed with tuning run?", default=True)
    if answer is None:
        raise GridrunError(
            f"this sweep has {n_trials:,} trials and there is no terminal to confirm it: "
            f"add --yes (or confirm=False in Python), or draw fewer with --sample"
        )
    if not answer:
        raise GridrunError("tuning run cancelled")


def tuning_run(
    script: str | os.PathLike | None = None,
    flags: Mapping[str, Any] | None = None,
    *,
    combinations: Any = None,
    sample: float | int | None = None,
    seed: int | None = None,
    ordered: bool = False,
    runs_dir: str | os.PathLike = "runs",
    jobs: int = 1,
    backend: str | None = None,
    scheduler: str | None = None,
    retries: int = 0,
    max_failures: int | None = None,
    resume: str | bool | None = None,
    confirm: bool = False,
    yes: bool = False,
    quiet: bool = False,
    max_artifact_bytes: int = MAX_REMOTE_BYTES,
    population: bool = False,
    population_size: int | None = None,
):
    """Run `script` once per flag combination; return this sweep's runs (a DataFrame like `ls_runs`).

    `flags` maps flag -> list of values (a grid, the first flag varying fastest); `combinations` is an
    explicit table (DataFrame, list of dicts or CSV path) used as given. `sample` draws a fraction
    (0 < F <= 1, at least one) or a count (> 1) of combinations; `seed` makes the draw and the order
    reproducible (a random seed is chosen and recorded otherwise); the order is random unless `ordered`.
    `jobs` > 1 runs trials in a pool of reused worker processes; `backend` picks the executor
    (inprocess, local, dask, ray). `resume` is a sweep id, or True for the latest sweep of this script.
    `confirm` asks before a sweep of more than 100 trials (the CLI does, unless --yes); in Python the
    call itself is the confirmation, so the default is False. `population` trains trials that share
    their static flags together as one vmapped program (docs/population.md); `population_size` caps
    the trials per program.
    """
    script_path: Path | None = None
    if script is not None:
        script_path = Path(script)
        if not script_path.is_file():
            raise GridrunError(f"script {script_path} does not exist: check the path (relative to {Path.cwd()})")
        script_path = script_path.resolve()
    if jobs < 1:
        raise GridrunError(f"--jobs {jobs} must be at least 1")
    if retries < 0:
        raise GridrunError(f"--retries {retries} must be 0 or more")
    if max_failures is not None and max_failures < 1:
        raise GridrunError(f"--max-failures {max_failures} must be at least 1")

    grid = None
    if flags is not None or combinations is not None:
        if script_path is None:
            raise GridrunError("a grid needs the script it is for: give the script path")
        from .flagspec import declared_flags

        specs = declared_flags(script_path) or None
        grid = build_grid(flags, specs, combinations=combinations, script=script_path.name)

    if resume:
        sweep_id = resume if isinstance(resume, str) and resume != "latest" else find_sweep(
            runs_dir, script_path, grid, sample
        )
        manifest = Manifest.load(runs_dir, sweep_id)
        if client_alive(manifest.data.get("client")):
            c = manifest.data["client"]
            raise GridrunError(
                f"sweep {sweep_id} is still being run by process {c.get('pid')} on {c.get('hostname')}: "
                f"stop that process first, or wait for it to finish"
            )
        if not Path(manifest.data["script_path"]).is_file():
            raise GridrunError(f"the sweep's script {manifest.data['script_path']} no longer exists: restore it")
        reconcile(manifest, runs_dir)
        manifest.save()
        done = sum(t["status"] == DONE for t in manifest.trials)
        if not quiet:
            print(f"Resuming sweep {sweep_id}: {done} of {len(manifest.trials)} trials completed, "
                  f"{len(manifest.trials) - done} to run", flush=True)
    else:
        if grid is None:
            raise GridrunError("nothing to tune: give --flag NAME=V1,V2, --grid FILE.yml or --combinations FILE.csv")
        assert script_path is not None
        manifest = plan_sweep(script_path, grid, sample=sample, seed=seed, ordered=ordered, runs_dir=runs_dir)
        n = len(manifest.trials)
        if not quiet:
            print(describe_size(len(grid), n), flush=True)
        _confirm(len(grid), n, confirm, yes)
        sweeps_dir(runs_dir).mkdir(parents=True, exist_ok=True)
        manifest.save()
        if not quiet:
            print(f"Sweep {manifest.id}: {n} trials, manifest {manifest.path}", flush=True)

    executor = get_executor(backend, jobs, scheduler)
    if population_size is not None and population_size < 1:
        raise GridrunError(f"--population-size {population_size} must be at least 1")
    if population:
        from .executors.population import PopulationExecutor
        from .flagspec import declared_flags

        specs = declared_flags(manifest.data["script_path"])
        static = [name for name, spec in specs.items() if spec.is_static]
        executor = PopulationExecutor(executor, static, population_size)
    t0 = time.monotonic()
    try:
        run_sweep(manifest, executor, runs_dir, retries=retries, max_failures=max_failures, quiet=quiet,
                  max_bytes=max_artifact_bytes)
    except KeyboardInterrupt:
        print(f"\nSweep {manifest.id} interrupted; continue it with: gridrun tuning-run --resume {manifest.id}",
              file=sys.stderr, flush=True)
        raise
    finally:
        executor.close()
        close_orphans(manifest, runs_dir)
        manifest.save()
    print_results(manifest, time.monotonic() - t0, quiet=quiet)
    from .runs import ls_runs

    df = ls_runs(runs_dir, sweep=manifest.id)
    df.attrs.update(sweep=manifest.id, manifest=str(manifest.path), trials=len(manifest.trials),
                    trials_completed=sum(t["status"] == DONE for t in manifest.trials))
    return df


__all__ = ["tuning_run", "run_sweep", "list_sweeps", "Manifest", "describe_size", "best_trials", "print_results",
           "CONFIRM_ABOVE"]
