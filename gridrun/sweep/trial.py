"""The worker side of a trial: a picklable task, and the function a worker runs for it.

Local executors (inprocess, local pool) get the client-made run dir and write into it directly.
Remote executors (dask, ray) cannot assume a shared file system: the worker runs the trial into a
temporary run dir and returns its files as bytes, at most `max_bytes` in all; the client writes them
into its own run dir (`unpack`). Recorded files (json, output.log, source/) always come back; the
largest artifacts are dropped first when over the limit, and named in properties `artifacts_dropped`.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import scratch, write_bytes_atomic
from ..record import adopt

MAX_REMOTE_BYTES = 50_000_000  # per trial, files returned by a remote worker


@dataclass
class TrialTask:
    script: str
    flags: dict[str, Any]
    sweep: str
    trial: int
    attempt: int = 1
    run_dir: str | None = None  # None: run into a worker-local temporary dir and return the files
    context: str = "local"
    max_bytes: int = MAX_REMOTE_BYTES
    sources: dict[str, bytes] | None = None  # remote: the script's folder, for workers that lack it
    metric: str | None = None  # the sweep's metric (None: val_loss, else loss); the trial fails when it becomes non-finite
    pruner: Any = None  # the executor channel's caller to the sweep's pruner, when the sweep prunes
    mode: str | None = None  # the sweep's mode for `metric` (checkpoints keep the best epoch by it)
    # the sweep's --checkpoints policy (None: the script's own checkpoint=), or with --checkpoint-seconds
    # {"keep": that policy or None, "seconds": S}
    checkpoint: str | dict[str, Any] | None = None
    resume_from: dict[str, Any] | None = None  # continue from the run dir's last checkpoint: {"epoch": N, "run": ...}
    paused_at: int | None = None  # a promoted trial: the rung it paused at (it trains through it, even from epoch 0)
    drops_pruned: bool = False  # the sweep deletes a pruned or failed trial's checkpoints: none is written at that epoch
    # Dask/Ray: a sweep.remote.RemoteCheckpoints (checkpoints streamed to the client, and the files of the
    # checkpoint a continued trial starts from carried to the worker)
    remote: Any = None


PAUSE = "pause"  # a pruner's decision besides True (stop) and False (go on): pause at this rung (sweep/pruners.py)


class PruneHook:
    """Runs after each `log_metrics` of a trial: reports the sweep metric's value at this epoch to the
    client's pruner and raises TrialPruned when the pruner says stop. The epoch is the number of values
    of that metric recorded so far, whatever labels the script gives its epochs."""

    def __init__(self, caller: Any, trial: int, metric: str | None, paused_at: int | None = None) -> None:
        self.caller, self.trial, self.metric, self.paused_at = caller, trial, metric, paused_at

    def __call__(self, ctx: Any, values: dict[str, Any]) -> None:
        from .. import scoring
        from ..errors import TrialPaused, TrialPruned

        name, value = scoring.score(values, self.metric)
        first = self.metric or next((n for n in scoring.FALLBACK_METRICS if n in values), None)
        if first is not None and first in values and scoring.finite(values[first]) is None:
            name, value = first, math.nan  # diverged: said as such (a pruner ignores it; PBT replaces the trial)
        if value is None or ctx.properties.get("pruned") or ctx.properties.get("paused"):
            return
        epoch = sum(v is not None for v in ctx.metrics.get(name, []))
        decision = self.caller({"trial": self.trial, "epoch": epoch, "metric": name, "value": value,
                                "rows": len(ctx.metrics.get(name, [])), "epochs": ctx.properties.get("epochs")})
        if not decision or ctx.last_epoch:
            return
        if decision == PAUSE and self.paused_at is not None and epoch <= self.paused_at:
            return  # promoted from this rung (a trial that could not continue its checkpoint trains through it)
        if decision == PAUSE:  # a promoting pruner: wait at this rung, the checkpoint of this epoch kept
            message = f"paused at epoch {epoch} ({name}={value:.4g}), until promoted"
            ctx.note_properties(paused=message, paused_epoch=epoch)  # the run's end, at once, writes them
            raise TrialPaused(message)
        message = f"pruned at epoch {epoch} ({name}={value:.4g})"
        ctx.note_properties(pruned=message, pruned_epoch=epoch)  # the run's end, at once, writes them
        raise TrialPruned(message)


@dataclass
class TrialResult:
    properties: dict[str, Any]
    files: dict[str, bytes] | None = None  # remote trials: relative path -> content
    dropped: list[str] = field(default_factory=list)
    worker: str = ""


_script_dirs: set[str] = set()  # folders of the scripts this process ran trials of
_mtimes: dict[str, float] = {}  # module file -> its mtime when a trial last used it
# modules known to lie outside every folder of `_elsewhere_for` (name -> the module object seen), so a
# trial's two calls look only at modules imported since (a process with JAX loaded holds 1,500 modules)
_elsewhere: dict[str, Any] = {}
_elsewhere_for: tuple[str, ...] = ()
_inside: dict[str, Any] = {}  # modules seen with a file in one of those folders (name -> module)
_seen: tuple[int, Any] = (-1, None)  # sys.modules' size and newest name after the last call


def forget_stale_modules(script_dir: str) -> list[str]:
    """Unload the user modules a reused worker must not keep for this trial; return their names.

    Workers keep the modules a script imports from its folder (so jitted functions in them stay
    compiled across trials). They are dropped when they come from the folder of an *earlier* script
    (two projects with a `model.py` each) or when their file changed since the last trial.
    """
    global _elsewhere_for, _seen
    dropped = []
    prefixes = tuple(sorted(d + os.sep for d in _script_dirs | {script_dir}))
    if prefixes != _elsewhere_for:
        _elsewhere.clear()
        _inside.clear()
        _elsewhere_for = prefixes
        _seen = (-1, None)  # a look at every module
    # sys.modules as the last call left it (its size and newest name: an import since adds a name at the
    # end): only the modules from the scripts' folders need a look, not the 1,500 others (1 ms a call)
    seen = (len(sys.modules), next(reversed(sys.modules), None))
    items = [(n, sys.modules.get(n)) for n in _inside] if seen == _seen else list(sys.modules.items())
    for name, module in items:
        if module is None:  # gone since
            _inside.pop(name, None)
            continue
        if _elsewhere.get(name) is module:
            continue
        path = getattr(module, "__file__", None)
        if not path or not path.startswith(prefixes):  # cheap test first: most modules are elsewhere
            _elsewhere[name] = module
            continue
        _inside[name] = module
        folder = os.path.dirname(os.path.abspath(path))
        if folder != script_dir and folder not in _script_dirs:
            continue
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = -1.0
        if folder != script_dir or _mtimes.get(path, mtime) != mtime:
            del sys.modules[name]
            _inside.pop(name, None)
            _mtimes.pop(path, None)
            dropped.append(name)
        else:
            _mtimes[path] = mtime
    _script_dirs.add(script_dir)
    _seen = (len(sys.modules), next(reversed(sys.modules), None))
    return dropped


def run_trial(task: TrialTask) -> TrialResult:
    """Run one trial (on a worker); never raises for the script's own errors."""
    return run_trials([task], _one_by_one)[0]


@dataclass
class PopulationTask:
    """Trials of one script sharing their static flags: trained together as one vmapped program."""

    tasks: list[TrialTask]
    max_size: int | None = None  # trials per compiled program (None: as many as device memory allows)


def run_population(ptask: PopulationTask) -> list[TrialResult]:
    """Run a group of trials (on a worker) in population mode; one result per trial, in order."""
    return run_trials(ptask.tasks, lambda plans: train_together(plans, ptask.max_size))


Plan = tuple[Path, Path, TrialTask]  # (script, run dir, task)


def _execute(plan: Plan, on_exit: Callable[[], Any] | None = None) -> dict[str, Any]:
    from ..runner import execute

    script, run, task = plan
    hook = PruneHook(task.pruner, task.trial, task.metric, task.paused_at) if task.pruner is not None else None
    return execute(script, run, task.flags, context=task.context, sweep=task.sweep, trial=task.trial,
                   capture_output=True, epoch_hook=hook, metric=task.metric, on_exit=on_exit, mode=task.mode,
                   checkpoint=task.checkpoint, resume_from=task.resume_from, drops_pruned=task.drops_pruned)


def _one_by_one(plans: list[Plan]) -> list[dict[str, Any]]:
    return [_execute(p) for p in plans]


def train_together(plans: list[Plan], config: Any) -> list[dict[str, Any]]:
    """Each trial in its own thread; their gridrun.fit calls are trained together (train/population/),
    with the sweep's `config` (a PopulationConfig, or None for the defaults)."""
    from .._scriptenv import script_environment
    from ..runner import install_output_routers

    install_output_routers()  # per-trial output capture before JAX/Flax/absl bind their log handlers
    from ..train.population import Population, trial_ending

    # runpy in many threads swaps sys.argv and __main__: the worker's own are put back once all have ended
    with script_environment(plans[0][0].parent):
        results = Population(config).run([lambda p=p: _execute(p, on_exit=trial_ending) for p in plans])
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def run_trials(tasks: list[TrialTask], run_all) -> list[TrialResult]:
    """Lay out run dirs for `tasks` (client-made, or worker-local temporary ones for remote workers),
    run them with `run_all(plans)`, and return the results (remote: with the files packed)."""
    from ..rundir import hostname

    worker = f"{hostname()}:{os.getpid()}"
    folder = os.path.dirname(os.path.abspath(tasks[0].script))
    forget_stale_modules(folder)
    tmp = Path(tempfile.mkdtemp(prefix="gridrun-trial-")) if any(t.run_dir is None for t in tasks) else None
    streams = ExitStack()  # remote trials' checkpoints go to the client as they are saved (sweep/remote.py)
    try:
        plans: list[Plan] = []
        for k, task in enumerate(tasks):
            if task.run_dir is not None:
                plans.append((Path(task.script), Path(task.run_dir), task))
                continue
            assert tmp is not None
            script = Path(task.script)
            if not script.is_file() and task.sources:  # no shared file system: run the shipped copy
                code = tmp / "code"
                if not code.is_dir():
                    code.mkdir()
                    for name, data in task.sources.items():
                        (code / Path(name).name).write_bytes(data)
                script = code / script.name
            run = tmp / f"run{k}"
            run.mkdir()
            if task.remote is not None:
                streams.enter_context(task.remote.on_worker(run))
            plans.append((script, run, task))
        with streams:
            done = run_all(plans)
        results = []
        for (_, run, task), props in zip(plans, done):
            if task.run_dir is not None:
                results.append(TrialResult(props, worker=worker))
            else:
                files, dropped = pack(run, task.max_bytes)
                results.append(TrialResult(props, files, dropped, worker))
        forget_stale_modules(folder)  # records the modules these trials imported
        return results
    finally:
        streams.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def ship_sources(script: Path) -> dict[str, bytes]:
    """The script's folder as the run snapshot sees it (top-level source files, bounded), as bytes."""
    from ..snapshot import snapshot_source

    with tempfile.TemporaryDirectory(prefix="gridrun-ship-") as tmp:
        snapshot_source(script, Path(tmp))
        return {p.name: p.read_bytes() for p in (Path(tmp) / "source").iterdir() if p.is_file()}


def pack(run_dir: Path, max_bytes: int) -> tuple[dict[str, bytes], list[str]]:
    """Read a run dir's files: everything but artifacts and checkpoints first, then the checkpoints
    (best, then last), then artifacts smallest first; checkpoints and artifacts count against `max_bytes`."""
    paths = sorted(p for p in run_dir.rglob("*") if p.is_file() and not scratch(p.name))  # (a killed write's leftovers)
    limited = ("artifacts", "checkpoints")
    recorded = [p for p in paths if p.relative_to(run_dir).parts[0] not in limited]
    checkpoints = [p for p in paths if p.relative_to(run_dir).parts[0] == "checkpoints" and p.suffix == ".ckpt"]
    artifacts = sorted((p for p in paths if p.relative_to(run_dir).parts[0] == "artifacts"), key=lambda p: p.stat().st_size)
    files: dict[str, bytes] = {}
    dropped: list[str] = []
    total = 0
    for p in recorded + checkpoints + artifacts:
        rel = p.relative_to(run_dir).as_posix()
        size = p.stat().st_size
        if total + size > max_bytes and p not in recorded:
            dropped.append(f"{rel} ({size} bytes)")
            continue
        files[rel] = p.read_bytes()
        total += size
    return files, dropped


def unpack(
    result: TrialResult, run_dir: Path, script: str, limit: int = MAX_REMOTE_BYTES
) -> dict[str, Any]:
    """Write a remote trial's files into the client's run dir; return its properties, fixed for here."""
    root = run_dir.resolve()
    for rel, data in (result.files or {}).items():
        target = (run_dir / rel).resolve()
        if root not in target.parents:  # never write outside the run dir
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data)
    extra: dict[str, Any] = {"worker": result.worker, "script_path": script}
    checkpoints = [d for d in result.dropped if d.startswith("checkpoints/")]
    artifacts = [d for d in result.dropped if d not in checkpoints]
    if artifacts:
        extra["artifacts_dropped"] = (
            f"{len(artifacts)} artifact(s) over the {limit / 1e6:g} MB per-trial limit for remote "
            f"workers were not copied back: " + ", ".join(artifacts)
        )
    if checkpoints:  # load_model names this when asked for the run's model
        extra["checkpoints_dropped"] = (
            f"the checkpoint(s) {', '.join(checkpoints)} are over the {limit / 1e6:g} MB per-trial limit for remote "
            f"workers and were not copied back: raise it with tuning_run(max_artifact_bytes=...), or keep one "
            f"(checkpoint='best')"
        )
    return adopt(run_dir, **extra)
