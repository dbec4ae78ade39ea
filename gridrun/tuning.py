"""Tuning runs: one run per flag combination, on an executor, recorded in a resumable sweep manifest.

    gridrun.tuning_run("mnist.py", flags={"nodes1": [64, 128, 256], "lr": [0.01, 0.001]}, sample=0.5, seed=1)

Every trial is an ordinary run dir (properties `sweep` and `trial`). The client process is the only
writer of the manifest `runs/sweeps/<id>.json` (format in docs/tuning.md): it creates each trial's run
dir, records it as running *before* submitting it, and records its outcome as soon as it comes back,
always with an atomic write. After Ctrl-C, a kill -9 or a reboot, `resume` reconciles the manifest with
the run dirs (a run dir that completed counts even if the manifest missed it) and runs only what did not
complete.
"""

from __future__ import annotations

import math
import os
import random
import secrets
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import rundir
from ._io import read_json, write_json
from .errors import GridrunError
from .executors import Executor, get_executor
from .executors.task import MAX_REMOTE_BYTES, TrialResult, TrialTask, run_trial, ship_sources, unpack
from .grid import Grid, build_grid, sample_grid, sample_size

CONFIRM_ABOVE = 100  # trials; larger sweeps ask "Proceed with tuning run? [Y/n]"
MAX_TRIALS = 1_000_000  # a trial list longer than this is surely a mistake: sample instead
HEARTBEAT_SECONDS = 30.0
SAVE_INTERVAL = 0.5  # seconds between two manifest writes while trials finish quickly
STALE_SECONDS = 180.0  # a client whose heartbeat is older than this is taken as dead
SWEEPS_DIR = "sweeps"
MANIFEST_FORMAT = 1
DONE = "completed"


# --------------------------------------------------------------------------------------------------
# The manifest


def new_sweep_id() -> str:
    """`2026-11-27T06-44-38Z-ab12`: UTC start time plus 4 random hex digits."""
    return rundir.utc_now().strftime("%Y-%m-%dT%H-%M-%SZ") + "-" + secrets.token_hex(2)


def sweeps_dir(runs_dir: str | os.PathLike) -> Path:
    return Path(runs_dir) / SWEEPS_DIR


class Manifest:
    """The sweep's record, kept in memory and rewritten atomically (by this client only) on change."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self.lock = threading.RLock()  # held by whoever reads or changes `data` while the sweep runs
        self.dirty = False
        self.saved_at = 0.0

    @classmethod
    def load(cls, runs_dir: str | os.PathLike, sweep_id: str) -> Manifest:
        path = sweeps_dir(runs_dir) / f"{sweep_id}.json"
        data = read_json(path)
        if not isinstance(data, dict) or "trials" not in data:
            known = ", ".join(p.stem for p in list_sweeps(runs_dir)[-5:]) or "(none)"
            raise GridrunError(f"no sweep '{sweep_id}' in {sweeps_dir(runs_dir)} (latest: {known}): check the id")
        return cls(path, data)

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def trials(self) -> list[dict[str, Any]]:
        return self.data["trials"]

    def touch(self) -> None:
        """Save soon: at once when the last write is older than SAVE_INTERVAL, else by the heartbeat thread.

        Deferring is safe: every run dir records its sweep, trial and status itself, and a resume
        reconciles the manifest with them, so a write lost to a kill costs nothing.
        """
        if time.monotonic() - self.saved_at >= SAVE_INTERVAL:
            self.save()
        else:
            self.dirty = True

    def save(self) -> None:
        with self.lock:
            self.dirty = False
            self.saved_at = time.monotonic()
            now = rundir.iso(rundir.utc_now())
            self.data["updated"] = now
            client = self.data.get("client") or {}
            if client.get("pid") == os.getpid() and not client.get("ended"):
                client["heartbeat"] = now
            counts = {s: 0 for s in ("pending", "running", "completed", "failed", "interrupted")}
            for t in self.trials:
                counts[t["status"]] = counts.get(t["status"], 0) + 1
            self.data["counts"] = counts
            write_json(self.path, self.data, indent=None if len(self.trials) > 200 else 1)


def list_sweeps(runs_dir: str | os.PathLike = "runs") -> list[Path]:
    """Manifest files, oldest first (ids sort by time)."""
    folder = sweeps_dir(runs_dir)
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _pid_alive(pid: int) -> bool:
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


def _age_seconds(stamp: str | None) -> float:
    if not stamp:
        return math.inf
    import datetime as _dt

    try:
        ts = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return math.inf
    return (rundir.utc_now() - ts).total_seconds()


def client_alive(client: Mapping[str, Any] | None) -> bool:
    """Is the process that ran a sweep (or a run) still alive? pid on this host, else a fresh heartbeat."""
    if not client or client.get("ended"):
        return False
    if client.get("hostname") == rundir.hostname() and client.get("pid") is not None:
        if int(client["pid"]) == os.getpid():
            return False
        return _pid_alive(int(client["pid"])) and _age_seconds(client.get("heartbeat")) < STALE_SECONDS
    return _age_seconds(client.get("heartbeat")) < STALE_SECONDS


# --------------------------------------------------------------------------------------------------
# Creating and resuming sweeps


def plan_sweep(
    script: Path,
    grid: Grid,
    *,
    sample: float | int | None,
    seed: int | None,
    ordered: bool,
    runs_dir: str | os.PathLike,
) -> Manifest:
    """A new manifest with its trial list (sampled, ordered), not yet written."""
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    n = sample_size(len(grid), sample)
    if n > MAX_TRIALS:  # checked before drawing: the draw would hold n indices in memory
        raise GridrunError(
            f"{describe_size(len(grid), n)}: more trials than gridrun runs in one sweep ({MAX_TRIALS:,}); "
            f"draw a random subset with --sample (e.g. --sample 1000)"
        )
    indices = sample_grid(grid, sample, seed=seed, ordered=ordered)
    sweep_id = new_sweep_id()
    path = sweeps_dir(runs_dir) / f"{sweep_id}.json"
    while path.exists():
        sweep_id = new_sweep_id()
        path = sweeps_dir(runs_dir) / f"{sweep_id}.json"
    data: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "id": sweep_id,
        "script": script.name,
        "script_path": str(script),
        "created": rundir.iso(rundir.utc_now()),
        "updated": None,
        "status": "pending",
        "grid": grid.describe(),
        "total_combinations": len(grid),
        "sample": sample,
        "seed": seed,
        "ordered": ordered,
        "settings": {},
        "client": None,
        "counts": {},
        "trials": [
            {
                "trial": i,
                "combination": int(c),
                "flags": grid[c],
                "status": "pending",
                "run_dir": None,
                "attempts": [],
                "error": None,
                "metrics": {},
            }
            for i, c in enumerate(indices)
        ],
    }
    return Manifest(path, data)


def find_sweep(runs_dir: str | os.PathLike, script: Path | None, grid: Grid | None, sample: Any) -> str:
    """The latest sweep of `script` (with the same grid and sample, when given)."""
    for path in reversed(list_sweeps(runs_dir)):
        data = read_json(path, {}) or {}
        if script is not None and data.get("script_path") != str(script):
            continue
        if grid is not None and (data.get("grid") != _jsonish(grid.describe()) or data.get("sample") != sample):
            continue
        return data.get("id") or path.stem
    what = f"script {script}" if script else "any script"
    raise GridrunError(
        f"no earlier sweep of {what} with this grid in {sweeps_dir(runs_dir)} to resume: "
        f"drop --resume to start a new sweep, or give a sweep id (ls {sweeps_dir(runs_dir)})"
    )


def _jsonish(value: Any) -> Any:
    import json

    from ._io import dumps

    return json.loads(dumps(value))


def reconcile(manifest: Manifest, runs_dir: str | os.PathLike) -> None:
    """Bring the manifest up to date with the run dirs after a client died or was stopped.

    A trial with any completed run dir counts as completed. Run dirs left `running` by a dead process
    are closed as interrupted. Every trial that did not complete goes back to pending.
    """
    by_trial: dict[int, list[Path]] = {}
    for t in manifest.trials:
        for a in t["attempts"]:
            if a.get("run_dir"):
                by_trial.setdefault(t["trial"], []).append(Path(runs_dir) / a["run_dir"])
    # run dirs the manifest may have missed (client killed between mkdir and the manifest write)
    since = (manifest.data.get("created") or "")[:19].replace(":", "-")
    root = Path(runs_dir)
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not d.is_dir() or d.name == SWEEPS_DIR or d.name[:19] < since:
            continue
        props = read_json(d / rundir.PROPERTIES_FILE, {}) or {}
        if props.get("sweep") == manifest.id and isinstance(props.get("trial"), int):
            paths = by_trial.setdefault(props["trial"], [])
            if d not in paths:
                paths.append(d)
    for t in manifest.trials:
        if t["status"] == DONE:
            continue
        known = {a.get("run_dir"): a for a in t["attempts"]}
        for d in by_trial.get(t["trial"], []):
            props = read_json(d / rundir.PROPERTIES_FILE, {}) or {}
            status = props.get("status")
            if status == "running":
                if _run_alive(props):  # an orphaned worker still at it: leave it, run the trial again
                    status = "lost"
                else:
                    _close_run(d, "interrupted", "the sweep's client process stopped before this trial ended")
                    status = "interrupted"
            attempt = known.get(d.name)
            if attempt is None:
                attempt = {"run_dir": d.name, "start": props.get("start"), "lost": True}
                t["attempts"].append(attempt)
            if attempt.get("status") in (None, "running"):
                attempt["status"] = status or "interrupted"
                attempt["end"] = props.get("end")
                attempt.setdefault("error", props.get("error_message"))
            if status == DONE:
                t["status"], t["run_dir"], t["error"] = DONE, d.name, None
                t["metrics"] = _last_metrics(d)
        if t["status"] != DONE:
            t["status"] = "pending" if t["status"] in ("running", "interrupted", "pending") else t["status"]


def close_orphans(manifest: Manifest, runs_dir: str | os.PathLike) -> None:
    """Recheck attempts found still running on resume (an orphaned worker): close them if it died since."""
    for t in manifest.trials:
        for a in t["attempts"]:
            if a.get("status") != "lost":
                continue
            d = Path(runs_dir) / a["run_dir"]
            props = read_json(d / rundir.PROPERTIES_FILE, {}) or {}
            if props.get("status") == "running" and not _run_alive(props):
                _close_run(d, "interrupted", "the sweep's client process stopped before this trial ended")
                props = read_json(d / rundir.PROPERTIES_FILE, {}) or {}
            if props.get("status") != "running":
                a["status"] = props.get("status")


def _run_alive(props: Mapping[str, Any]) -> bool:
    """Is the process executing a run still alive (its pid on this host, or a fresh heartbeat)?"""
    if props.get("hostname") == rundir.hostname() and props.get("pid"):
        return int(props["pid"]) != os.getpid() and _pid_alive(int(props["pid"]))
    return _age_seconds(props.get("heartbeat")) < STALE_SECONDS


def _close_run(run_dir: Path, status: str, message: str, tb: str | None = None) -> None:
    """Give a run dir that its executing process could not finish a final status."""
    from .runner import finish

    ctx = rundir.RunContext.open(run_dir)
    if ctx.properties.get("status") in (None, "running"):
        finish(ctx, status, None, message, tb)


def _last_metrics(run_dir: Path) -> dict[str, Any]:
    metrics = read_json(run_dir / rundir.METRICS_FILE, {}) or {}
    out = {}
    for name, series in metrics.items():
        last = next((v for v in reversed(series or []) if v is not None), None)
        if isinstance(last, (int, float)):
            out[name] = last
    return out


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


class _Reporter:
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
    reporter = _Reporter(len(trials), sum(t["status"] == DONE for t in trials), quiet)
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
                t["metrics"] = _last_metrics(run_dir)
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
                        _close_run(runs_dir / a["run_dir"], "interrupted", "interrupted by the user (Ctrl-C)")
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
    if not sys.stdin or not sys.stdin.isatty():
        raise GridrunError(
            f"this sweep has {n_trials:,} trials and there is no terminal to confirm it: "
            f"add --yes (or confirm=False in Python), or draw fewer with --sample"
        )
    answer = input("Proceed with tuning run? [Y/n]: ").strip().lower()
    if answer not in ("", "y", "yes"):
        raise GridrunError("tuning run cancelled")


def describe_size(n_total: int, n_trials: int) -> str:
    """tfruns' line: `2,916 total combinations of flags (sampled to 146 combinations)`."""
    text = f"{n_total:,} total combinations of flags"
    if n_trials != n_total:
        text += f" (sampled to {n_trials:,} combinations)"
    return text


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


__all__ = ["tuning_run", "list_sweeps", "Manifest", "describe_size", "CONFIRM_ABOVE"]
