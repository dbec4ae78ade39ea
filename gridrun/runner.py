"""Run one training script into one run directory.

`execute` runs a script in *this* process (used by the training-run child process, by reused worker
processes of a tuning run, and by population threads). `training_run` is the user-facing verb: it makes
a run dir, runs the script in a child Python process, streams its output live into output.log, and
records everything even when the script fails or is killed.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

from . import rundir
from ._io import read_json
from .errors import FlagError, GridrunError
from .rundir import RunContext, iso, utc_now
from .snapshot import git_info, snapshot_source, versions

# --------------------------------------------------------------------------------------------------
# Output capture that works per thread (population trials run as threads of one process).


class _ThreadRouter(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: each thread writes to its own sink when it has one."""

    def __init__(self, original: TextIO):
        self.original = original
        self.local = threading.local()

    def _sinks(self) -> list[TextIO]:
        return getattr(self.local, "sinks", None) or [self.original]

    def write(self, s: str) -> int:
        for sink in self._sinks():
            sink.write(s)
        return len(s)

    def flush(self) -> None:
        for sink in self._sinks():
            sink.flush()

    def isatty(self) -> bool:
        return False if getattr(self.local, "sinks", None) else self.original.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")

    def fileno(self) -> int:
        return self.original.fileno()


_router_lock = threading.Lock()


def install_output_routers() -> tuple[_ThreadRouter, _ThreadRouter]:
    """Put the per-thread routers in place of sys.stdout / sys.stderr (once), and point logging
    handlers that were bound to the original streams at import time (absl's, a `logging.basicConfig`
    handler) at the routers, so what trial threads log lands in their own output.log.

    Population mode calls this before the coordinator imports JAX, Flax or absl; handlers created
    later bind to the routers by themselves."""
    with _router_lock:
        originals = {}
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if not isinstance(current, _ThreadRouter):
                originals[id(current)] = router = _ThreadRouter(current)
                setattr(sys, name, router)
        if originals:
            _rebind_logging_streams(originals)
    out, err = sys.stdout, sys.stderr
    assert isinstance(out, _ThreadRouter) and isinstance(err, _ThreadRouter)
    return out, err


def _rebind_logging_streams(routers: dict[int, _ThreadRouter]) -> None:
    """Logging handlers whose stream is a replaced original stream now write through its router."""
    import logging

    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in list(logger.handlers):
            # absl's ABSLHandler wraps a StreamHandler (python_handler) bound to sys.stderr at import
            for h in (handler, getattr(handler, "python_handler", None), getattr(handler, "_current_handler", None)):
                if isinstance(h, logging.StreamHandler) and id(h.stream) in routers:
                    h.stream = routers[id(h.stream)]


@contextmanager
def capture_output(path: Path, echo: bool = False) -> Iterator[None]:
    """Send this thread's stdout and stderr (in order) to `path`, and to the console too when `echo`."""
    out, err = install_output_routers()
    assert isinstance(out, _ThreadRouter) and isinstance(err, _ThreadRouter)
    with open(path, "a", encoding="utf-8", buffering=1) as fh:
        out.local.sinks = [fh] + ([out.original] if echo else [])
        err.local.sinks = [fh] + ([err.original] if echo else [])
        try:
            yield
        finally:
            try:
                population = sys.modules.get("gridrun.train.population")
                if population is not None:  # a population trial that trained nothing together says so
                    population.trial_ending()
            finally:
                out.local.sinks = None
                err.local.sinks = None


_capture = capture_output  # execute() has a parameter of that name


# --------------------------------------------------------------------------------------------------
# Running a script in this process


def _nonfinite_loss(metrics: dict[str, list[Any]]) -> str | None:
    for name in ("loss", "val_loss"):
        for epoch, value in enumerate(metrics.get(name) or [], start=1):
            if isinstance(value, float) and not math.isfinite(value):
                return f"{name} became {value} at epoch {epoch}"
    return None


def start_properties(script: Path, context: str, sweep: str | None, trial: int | None) -> dict[str, Any]:
    return {
        "script": script.name,
        "script_path": str(script),
        "start": iso(utc_now()),
        "end": None,
        "status": "running",
        "completed": False,
        "type": "training",
        "context": context,
        "sweep": sweep,
        "trial": trial,
        "hostname": rundir.hostname(),
        "pid": os.getpid(),
        "versions": versions(),
        "git": git_info(script.parent),
    }


def execute(
    script: str | os.PathLike,
    run_dir: str | os.PathLike,
    flags: dict[str, Any] | None = None,
    *,
    context: str = "local",
    sweep: str | None = None,
    trial: int | None = None,
    capture_output: bool = False,
    echo: bool = False,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `script` in this process, recorded into `run_dir`; return the final properties.

    Never raises for the script's own errors: an exception, a non-zero exit, a NaN loss or Ctrl-C end
    up as status failed / interrupted with the message and traceback in properties.json.
    """
    script = Path(script).resolve()
    ctx = RunContext.open(run_dir, flags)
    if ctx.properties.get("status") != "running":  # training_run's parent may have started it already
        ctx.write_properties(**start_properties(script, context, sweep, trial))
    else:
        ctx.write_properties(pid=os.getpid(), hostname=rundir.hostname())
    if properties:
        ctx.write_properties(**properties)
    if not (ctx.run_dir / rundir.FLAGS_FILE).exists():
        ctx.write_flags(ctx.flags)
    snapshot_source(script, ctx.run_dir)

    status, exit_code, message, tb = "completed", 0, None, None
    argv = sys.argv
    sys.argv = [str(script)]
    folder = str(script.parent)
    added = folder not in sys.path  # population threads share sys.path: the coordinator adds it once
    if added:
        sys.path.insert(0, folder)
    cap = _capture(ctx.run_dir / rundir.OUTPUT_FILE, echo=echo) if capture_output else nullcontext()
    try:
        with rundir.activate(ctx), cap:
            try:
                runpy.run_path(str(script), run_name="__main__")
            except SystemExit as exc:
                code = exc.code
                if code not in (None, 0):
                    exit_code = code if isinstance(code, int) else 1
                    status, message = "failed", f"script exited with status {exit_code}"
                    if not isinstance(code, int):
                        message = str(code)
                        print(code, file=sys.stderr)
            except KeyboardInterrupt:
                status, exit_code, message = "interrupted", 130, "interrupted by the user (Ctrl-C)"
                print("Interrupted.", file=sys.stderr)
            except FlagError as exc:
                status, exit_code, message = "failed", 2, str(exc)
                tb = traceback.format_exc()
                print(f"error: {exc}", file=sys.stderr)
            except BaseException as exc:  # noqa: BLE001 - the run must be recorded whatever happened
                status, exit_code = "failed", 1
                message = f"{type(exc).__name__}: {exc}"
                tb = traceback.format_exc()
                print(tb, file=sys.stderr, end="")
    finally:
        sys.argv = argv
        if added and folder in sys.path:
            sys.path.remove(folder)
    if status == "completed":
        nan = _nonfinite_loss(ctx.metrics)
        if nan:
            status, exit_code, message = "failed", 1, nan
    return finish(ctx, status, exit_code, message, tb)


def finish(
    ctx: RunContext, status: str, exit_code: int | None, message: str | None, tb: str | None
) -> dict[str, Any]:
    """Write the run's final properties and its summary.json; return the properties."""
    from .runs import epochs_recorded, write_summary

    props: dict[str, Any] = {
        "end": iso(utc_now()),
        "status": status,
        "completed": status == "completed",
        "exit_code": exit_code,
        "error_message": message,
        "error_traceback": tb,
        "epochs_completed": epochs_recorded(ctx.metrics) or ctx.properties.get("epochs_completed"),
    }
    if "jax" in sys.modules:
        try:
            props["jax_devices"] = [str(d) for d in sys.modules["jax"].devices()]
        except Exception:  # noqa: BLE001
            pass
    ctx.write_properties(**props)
    write_summary(ctx.run_dir)
    return dict(ctx.properties)


# --------------------------------------------------------------------------------------------------
# training_run: one script in a child process


def check_flags(script: Path, flags: dict[str, Any]) -> dict[str, Any]:
    """Type and name-check flag values against the script's declarations, before anything runs."""
    from .flagspec import _undeclared_message, declared_flags

    declared = declared_flags(script)
    if not declared:
        return dict(flags)
    unknown = [k for k in flags if k not in declared]
    if unknown:
        raise FlagError(_undeclared_message(unknown, list(declared)))
    return {k: declared[k].parse(v) for k, v in flags.items()}


def training_run(
    script: str | os.PathLike,
    flags: dict[str, Any] | None = None,
    runs_dir: str | os.PathLike = "runs",
    *,
    config: str | None = None,
    echo: bool = True,
    properties: dict[str, Any] | None = None,
    summary: bool = True,
):
    """Run `script` once in a new run dir (in a child Python process); return the run's row.

    The child's stdout and stderr are streamed live to the console (when `echo`) and to output.log.
    The run dir is complete and readable whatever happens: failure, kill, or Ctrl-C (status
    interrupted). Returns a one-row pandas DataFrame like `ls_runs()`; its `status` tells the outcome.
    """
    script = Path(script)
    if not script.is_file():
        raise GridrunError(f"script {script} does not exist: check the path (relative to {Path.cwd()})")
    script = script.resolve()
    overrides = check_flags(script, dict(flags or {}))
    run_dir = rundir.create_run_dir(runs_dir)
    ctx = RunContext.open(run_dir, overrides)
    ctx.write_properties(**start_properties(script, "local", None, None), **(properties or {}))
    ctx.write_flags(overrides)
    env = dict(os.environ)
    env[rundir.ENV_RUN_DIR] = str(run_dir)
    env[rundir.ENV_FLAGS] = json.dumps(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    if config:
        env["GRIDRUN_CONFIG"] = config
    cmd = [sys.executable, "-m", "gridrun._child", str(script), str(run_dir)]
    t0 = time.monotonic()
    interrupted = False
    with open(run_dir / rundir.OUTPUT_FILE, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd())
        try:
            _pump(proc, log, echo)
            code = proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            code = _stop(proc)
            _drain(proc, log, echo)
    final = _reconcile(run_dir, code, interrupted)
    from .runs import run_row

    row = run_row(run_dir)
    if summary and echo:
        _print_summary(run_dir, final, time.monotonic() - t0)
    if interrupted:
        raise KeyboardInterrupt
    return row


def _pump(proc: subprocess.Popen, log, echo: bool) -> None:
    assert proc.stdout is not None
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
        log.write(chunk)
        log.flush()
        if echo:
            if out is not None:
                out.write(chunk)
                out.flush()
            else:
                sys.stdout.write(chunk.decode("utf-8", "replace"))


def _drain(proc: subprocess.Popen, log, echo: bool) -> None:
    try:
        _pump(proc, log, echo)
    except (OSError, ValueError, KeyboardInterrupt):
        pass


def _stop(proc: subprocess.Popen) -> int:
    """After Ctrl-C: the child got SIGINT too; give it time to record itself, then insist."""
    for sig, wait in ((None, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            proc.send_signal(sig)
        elif proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            continue
    return proc.wait()


def _reconcile(run_dir: Path, code: int, interrupted: bool) -> dict[str, Any]:
    """Make sure the run ends with a final status even when the child could not write it."""
    ctx = RunContext.open(run_dir)
    props = ctx.properties
    if props.get("status") == "running" or (interrupted and props.get("status") != "interrupted"):
        if interrupted:
            return finish(ctx, "interrupted", code, "interrupted by the user (Ctrl-C)", None)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            message = f"the script's process was killed by {name}"
        else:
            message = f"the script's process ended with status {code} before recording its end"
        return finish(ctx, "failed", code, message, None)
    from .runs import write_summary

    write_summary(run_dir)  # output.log is complete only now
    return props


def _print_summary(run_dir: Path, props: dict[str, Any], seconds: float) -> None:
    from .runs import last_value

    metrics = read_json(run_dir / rundir.METRICS_FILE, {}) or {}
    last = {k: last_value(v) for k, v in metrics.items()}
    width = 60
    print("-" * width, file=sys.stderr)
    print(f"Run:      {run_dir}", file=sys.stderr)
    print(f"Status:   {props.get('status')}" + (f" ({props.get('error_message')})" if props.get("error_message") else ""),
          file=sys.stderr)
    print(f"Duration: {_dt.timedelta(seconds=round(seconds))}", file=sys.stderr)
    if last:
        shown = "  ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in last.items())
        print(f"Metrics:  {shown}", file=sys.stderr)
    print(f"View:     gridrun view {run_dir.name}", file=sys.stderr)
    print("-" * width, file=sys.stderr)
