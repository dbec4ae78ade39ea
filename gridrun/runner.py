"""Run one training script into one run directory.

`execute` runs a script in *this* process (used by the training-run child process, by reused worker
processes of a tuning run, and by population threads). `training_run` is the user-facing verb: it makes
a run dir, runs the script in a child Python process, streams its output live into output.log, and
records everything even when the script fails or is killed.
"""

from __future__ import annotations

import datetime as _dt
import errno
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

from . import rundir, scoring
from ._io import read_json
from ._scriptenv import script_environment
from .errors import FlagError, GridrunError, TrialPruned
from .record import Status, finish, last_value, write_summary
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
def capture_output(path: Path, echo: bool = False, on_exit: Callable[[], Any] | None = None) -> Iterator[None]:
    """Send this thread's stdout and stderr (in order) to `path`, and to the console too when `echo`.

    `on_exit()` is called last, while the output is still captured (a population trial that trained
    nothing together prints its notice there: gridrun.train.population.trial_ending)."""
    out, err = install_output_routers()
    assert isinstance(out, _ThreadRouter) and isinstance(err, _ThreadRouter)
    with open(path, "a", encoding="utf-8", buffering=1) as fh:
        out.local.sinks = [fh] + ([out.original] if echo else [])
        err.local.sinks = [fh] + ([err.original] if echo else [])
        try:
            yield
        finally:
            try:
                if on_exit is not None:
                    on_exit()
            finally:
                out.local.sinks = None
                err.local.sinks = None


_capture = capture_output  # execute() has a parameter of that name


# --------------------------------------------------------------------------------------------------
# Running a script in this process


def _nonfinite(ctx: RunContext, metric: str | None = None) -> str | None:
    """Why a run diverged: the first non-finite value of a loss (scoring.is_loss: loss, val_loss, *_loss) or
    of `metric` (a sweep's ranking metric), as "val_loss became nan at epoch 3" (the script's epoch label);
    or None."""
    names = [n for n in ctx.metrics if scoring.is_loss(n) or n == metric]
    first: tuple[int, str] | None = None
    for name in names:
        for row, value in enumerate(ctx.metrics[name]):
            if isinstance(value, float) and not math.isfinite(value):
                if first is None or row < first[0]:
                    first = (row, f"{name} became {value} at epoch {ctx.epoch_label(row)}")
                break
    return first[1] if first else None


_GRIDRUN_DIR = str(Path(__file__).resolve().parent) + os.sep
_HIDDEN = (_GRIDRUN_DIR, runpy.__file__.removesuffix("c"))  # gridrun's own files, and runpy's


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return list(traceback.extract_tb(exc.__traceback__))


def _is_internal(filename: str) -> bool:
    return filename.startswith(_HIDDEN) or filename.startswith("<frozen ")


def user_traceback(exc: BaseException, script: Path) -> str:
    """The traceback of an exception a script raised, trimmed as pytest trims a test's: it starts at the
    script's own frame (the runner's and runpy's frames above it are left out); the frames below it (the
    user's modules, libraries, gridrun where the error came from) stay. Chained exceptions are kept."""
    tb = exc.__traceback__
    while tb is not None and _is_internal(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    if tb is None:  # not raised under the script (cannot happen for run_path): the whole traceback
        return "".join(traceback.format_exception(exc))
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _where(exc: BaseException) -> traceback.FrameSummary | None:
    """The user's frame an exception came from: the deepest frame outside gridrun, runpy and the
    installed packages (the line of the user's script or module that called gridrun)."""
    import sysconfig

    libs = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")})
    user = [f for f in _frames(exc) if not _is_internal(f.filename) and not f.filename.startswith(libs)]
    return user[-1] if user else None


def error_line(exc: GridrunError, script: Path) -> str:
    """A GridrunError raised in a script run, as one line: `train.py:12: error: MESSAGE` (the path as
    short as it is clear: relative to the working directory when inside it)."""
    frame = _where(exc)
    if frame is None:
        return f"error: {exc}"
    path = Path(frame.filename)
    try:
        shown = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = str(path)
    return f"{shown}:{frame.lineno}: error: {exc}"


def start_properties(script: Path, context: str, sweep: str | None, trial: int | None) -> dict[str, Any]:
    return {
        "script": script.name,
        "script_path": str(script),
        "start": iso(utc_now()),
        "end": None,
        "status": Status.RUNNING,
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
    epoch_hook: Any = None,
    script_args: list[str] | None = None,
    metric: str | None = None,
    on_exit: Callable[[], Any] | None = None,
    mode: str | None = None,
    checkpoint: Any = None,
    resume_from: dict[str, Any] | None = None,
    drops_pruned: bool = False,
) -> dict[str, Any]:
    """Run `script` in this process, recorded into `run_dir`; return the final properties.

    `epoch_hook(ctx, values)` is called after each `log_metrics` of the run (a sweep's pruner); it may
    raise TrialPruned, which ends the run as `pruned`. `script_args` are the script's own command-line
    arguments (sys.argv after its name); they are recorded as the `script_args` property, and
    `gridrun.flags()` does not parse them. `on_exit()` is called at the end of the captured output
    (with `capture_output`; a population trial passes gridrun.train.population.trial_ending).
    A sweep's `mode` (for `metric`) and `checkpoint` policy (its --checkpoints, over the script's own) reach
    the run's checkpoints; `resume_from` ({"epoch": N, "run": run dir}) continues a trial from its
    last checkpoint at epoch N (gridrun/sweep/loop.py prepares the run dir). `drops_pruned`: the sweep
    deletes the checkpoints of a pruned or failed trial, so the epoch it is pruned at or fails saves none.

    Never raises for the script's own errors: an exception, a non-zero exit, a non-finite loss (any
    metric named loss, val_loss or *_loss, and `metric`, a sweep's ranking metric) or Ctrl-C end up as
    status failed / interrupted with the message and traceback in properties.json.
    """
    script = Path(script).resolve()
    ctx = RunContext.open(run_dir, flags)
    ctx.live = True  # this process runs it: its per-epoch files are rewritten cheaply until it ends
    ctx.epoch_hook = epoch_hook
    ctx.metric = metric
    ctx.mode, ctx.checkpoint, ctx.resume_from = mode, checkpoint, resume_from  # a sweep's (sweep/trial.py)
    ctx.drops_pruned = drops_pruned
    args = {} if script_args is None and "script_args" in ctx.properties else {
        "script_args": [str(a) for a in script_args or []]}  # its presence tells gridrun.flags() to skip sys.argv
    if ctx.properties.get("status") != Status.RUNNING:  # training_run's parent may have started it already
        ctx.write_properties(**start_properties(script, context, sweep, trial), **args)
    else:
        ctx.write_properties(pid=os.getpid(), hostname=rundir.hostname(), **args)
    if properties:
        ctx.write_properties(**properties)
    if not (ctx.run_dir / rundir.FLAGS_FILE).exists():
        ctx.write_flags(ctx.flags)
    snapshot_source(script, ctx.run_dir)

    status, exit_code, message, tb = Status.COMPLETED, 0, None, None
    argv = [str(script), *ctx.properties.get("script_args", [])]
    # population threads share sys.path and __main__: their coordinator adds the folder and restores
    # the main module once all have ended (script_environment restores it on the main thread only)
    cap = _capture(ctx.run_dir / rundir.OUTPUT_FILE, echo=echo, on_exit=on_exit) if capture_output else nullcontext()
    with script_environment(script.parent, argv), rundir.activate(ctx), cap:
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exc:
            code = exc.code
            if code not in (None, 0):
                exit_code = code if isinstance(code, int) else 1
                status, message = Status.FAILED, f"script exited with status {exit_code}"
                if not isinstance(code, int):
                    message = str(code)
                    print(code, file=sys.stderr)
        except KeyboardInterrupt:
            status, exit_code, message = Status.INTERRUPTED, 130, "interrupted by the user (Ctrl-C)"
            print("Interrupted.", file=sys.stderr)
        except TrialPruned as exc:
            status, exit_code, message = Status.PRUNED, 0, str(exc)
        except GridrunError as exc:  # gridrun's own one-line message for a user's mistake, at the user's line
            status, exit_code = Status.FAILED, 2 if isinstance(exc, FlagError) else 1
            message = str(exc) if isinstance(exc, FlagError) else f"{type(exc).__name__}: {exc}"
            tb = user_traceback(exc, script)
            print(error_line(exc, script), file=sys.stderr)
        except BaseException as exc:  # noqa: BLE001 - the run must be recorded whatever happened
            status, exit_code = Status.FAILED, 1
            message = f"{type(exc).__name__}: {exc}"
            tb = user_traceback(exc, script)
            print(tb, file=sys.stderr, end="")
    pruned = ctx.properties.get("pruned")
    if pruned and status != Status.INTERRUPTED:  # a pruned trial stays pruned, whatever the script did after
        status, exit_code, message = Status.PRUNED, 0, str(pruned)
    paused = ctx.properties.get("paused")  # --prune asha --promote: waits at a rung, to be continued
    if paused and not pruned and status in (Status.COMPLETED, Status.PRUNED):
        status, exit_code, message = Status.PAUSED, 0, str(paused)
    if status == Status.COMPLETED:
        nan = _nonfinite(ctx, metric)
        if nan:
            status, exit_code, message = Status.FAILED, 1, nan
    return finish(ctx, status, exit_code, message, tb)


# --------------------------------------------------------------------------------------------------
# training_run: one script in a child process


def check_flags(script: Path, flags: dict[str, Any]) -> dict[str, Any]:
    """Type and name-check flag values against the script's declarations, before anything runs."""
    from .flagspec import declared_flags, undeclared_message

    declared = declared_flags(script)
    if not declared:
        if not flags:
            return {}
        raise no_flags_error(script, {k: [v] for k, v in flags.items()})
    unknown = [k for k in flags if k not in declared]
    if unknown:
        raise FlagError(undeclared_message(unknown, list(declared)))
    return {k: declared[k].parse(v) for k, v in flags.items()}


def no_flags_error(script: Path, flags: dict[str, list[Any]]) -> FlagError:
    """The error for flag values given to a script that declares no flags (they would reach it as
    untyped strings that nothing reads)."""
    given = " ".join(f"--flag {k}={','.join(map(str, v))}" for k, v in flags.items()) or "flag values"
    first = next(iter(flags), "name")
    return FlagError(
        f"{script.name} declares no flags (no gridrun.flags(...) declaration found in it), so {given} cannot be "
        f"used: declare them in the script, e.g. FLAGS = gridrun.flags({first}=...), or pass the script's own "
        f"arguments after `--`"
    )


def training_run(
    script: str | os.PathLike,
    flags: dict[str, Any] | str | os.PathLike | None = None,
    runs_dir: str | os.PathLike = "runs",
    *,
    config: str | None = None,
    echo: bool = True,
    properties: dict[str, Any] | None = None,
    summary: bool = True,
    args: list[str] | None = None,
    copy_new_files: bool = False,
    schedule: str | os.PathLike | None = None,
):
    """Run `script` once in a new run dir (in a child Python process); return the run's row.

    `flags` is a mapping of flag values, or (as in tfruns) the path of a YAML file of them (a plain
    mapping, or profiles chosen by `config`). `args` are the script's own arguments (sys.argv after
    its name; tfruns' `--args`), which gridrun.flags() leaves alone. With `copy_new_files`, files the
    script creates or changes in the working directory (e.g. a plot saved with matplotlib) are copied
    into the run's artifacts/ when it ends (tfruns' `artifacts_dir = getwd()`). `schedule` is the run
    dir of a PBT trial: the run starts at its flags and trains each epoch with the trial's recorded
    `hp_<flag>` values of that epoch (docs/population.md, "Replaying the winner's schedule").

    The child's stdout and stderr are streamed live to the console (when `echo`) and to output.log.
    The run dir is complete and readable whatever happens: failure, kill, or Ctrl-C (status
    interrupted). Returns a one-row pandas DataFrame like `ls_runs()`; its `status` tells the outcome.
    """
    script = Path(script)
    if not script.is_file():
        raise GridrunError(f"script {script} does not exist: check the path (relative to {Path.cwd()})")
    script = script.resolve()
    if isinstance(flags, (str, os.PathLike)):
        from .flagspec import read_flags_file

        flags = read_flags_file(Path(flags), config, required=True)
        config = None  # it chose the profile of that file; the script's own flags.yml is outranked anyway
    elif flags is not None and not isinstance(flags, dict):
        raise GridrunError(f"flags must be a dict of flag values or the path of a YAML file, not {type(flags).__name__}")
    if schedule is not None:  # replay a PBT trial's per-epoch hyperparameters (docs/population.md)
        from .pbt import SCHEDULE_PROPERTY, schedule_flags

        flags, replay = schedule_flags(schedule, flags)
        properties = {**(properties or {}), SCHEDULE_PROPERTY: replay}
    overrides = check_flags(script, dict(flags or {}))
    script_args = [str(a) for a in args or []]
    watch = _WorkdirWatch(Path.cwd(), exclude=[Path(runs_dir)]) if copy_new_files else None
    run_dir = rundir.create_run_dir(runs_dir)
    ctx = RunContext.open(run_dir, overrides)
    ctx.write_properties(**start_properties(script, "local", None, None), **(properties or {}),
                         script_args=script_args)
    ctx.write_flags(overrides)
    env = dict(os.environ)
    env[rundir.ENV_RUN_DIR] = str(run_dir)
    env[rundir.ENV_FLAGS] = json.dumps(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    if config:
        env["GRIDRUN_CONFIG"] = config
    # -P: gridrun is imported before the working directory goes on sys.path (gridrun._child puts it there),
    # so a folder named gridrun in it (the checkout, run from the folder above) cannot hide the package
    cmd = [sys.executable, "-P", "-m", "gridrun._child", str(script), str(run_dir)]  # script_args: in properties
    t0 = time.monotonic()
    interrupted = False
    disk_error: OSError | None = None
    with open(run_dir / rundir.OUTPUT_FILE, "ab", buffering=0) as log:  # unbuffered: nothing left to flush
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd())
        try:
            disk_error = _pump(proc, log, echo)
            if disk_error is not None:  # output.log cannot grow (disk full): stop the script, record why
                code = _terminate(proc)
            else:
                code = proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            code = _stop(proc)
            _drain(proc, log, echo)
    if disk_error is not None:
        final = _record_disk_error(run_dir, disk_error)
    else:
        final = _reconcile(run_dir, code, interrupted)
    copied = watch.copy_changed(run_dir / rundir.ARTIFACTS_DIR) if watch is not None else []
    if copied:
        RunContext.open(run_dir).write_properties(new_files=[str(p) for p in copied])
    from .runs import run_row

    row = run_row(run_dir)
    if summary and echo:
        _print_summary(run_dir, final, time.monotonic() - t0, runs_dir=runs_dir, copied=copied)
    elif summary and final.get("status") == Status.FAILED:  # quiet: the script's output was not shown
        print(failure_line(run_dir, final), file=sys.stderr)
    if interrupted:
        raise KeyboardInterrupt
    return row


def _pump(proc: subprocess.Popen, log, echo: bool) -> OSError | None:
    """Copy the child's output to output.log (and the console) until it ends; return the error that
    stopped writing output.log (a full disk), if any, at once."""
    assert proc.stdout is not None
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
        error = _write_all(log, chunk)
        if echo:
            if out is not None:
                out.write(chunk)
                out.flush()
            else:
                sys.stdout.write(chunk.decode("utf-8", "replace"))
        if error is not None:
            return error
    return None


def _write_all(log, data: bytes) -> OSError | None:
    view = memoryview(data)
    while view:
        try:
            n = log.write(view)
        except OSError as exc:
            return exc
        view = view[n if n else len(view):]
    return None


def _terminate(proc: subprocess.Popen) -> int:
    """Stop the script's process: SIGTERM, then SIGKILL if it does not end within 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _record_disk_error(run_dir: Path, error: OSError) -> dict[str, Any]:
    """End a run whose output.log could not be written: failed, with as much of the record as fits."""
    from ._io import dumps, overwrite_in_place

    cause = "no space left on device" if error.errno in (errno.ENOSPC, errno.EDQUOT) else (
        (error.strerror or str(error)).lower())
    message = f"{cause} while writing {rundir.OUTPUT_FILE}"
    print(f"gridrun: error: {message} ({run_dir}): the script was stopped and the run recorded as failed; "
          f"free some space", file=sys.stderr)
    ctx = RunContext.open(run_dir)
    try:
        return finish(ctx, Status.FAILED, 1, message, None)
    except OSError:  # no room for a temporary file: rewrite properties.json in its own blocks
        for indent in (1, None):
            try:
                overwrite_in_place(run_dir / rundir.PROPERTIES_FILE, dumps(ctx.properties, indent, True).encode())
                break
            except OSError:
                continue
        try:
            (run_dir / rundir.SUMMARY_FILE).unlink()  # a summary from before would be wrong now
        except OSError:
            pass
        return dict(ctx.properties)


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
    if props.get("status") == Status.RUNNING or (interrupted and props.get("status") != Status.INTERRUPTED):
        if interrupted:
            return finish(ctx, Status.INTERRUPTED, code, "interrupted by the user (Ctrl-C)", None)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            message = f"the script's process was killed by {name}"
        else:
            message = f"the script's process ended with status {code} before recording its end"
        return finish(ctx, Status.FAILED, code, message, None)
    write_summary(run_dir)  # output.log is complete only now
    return props


class _WorkdirWatch:
    """The files of the working directory before a run, to copy those the run creates or changes into
    the run afterwards (tfruns' `artifacts_dir = getwd()`). Skipped: the runs dir, hidden files and
    folders, caches and virtual environments; a folder of more than MAX_FILES files is not watched."""

    MAX_FILES = 20_000
    SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})

    def __init__(self, root: Path, exclude: list[Path]):
        self.root = root.resolve()
        self.exclude = {p.resolve() for p in exclude}
        self.before = self._scan()
        if self.before is None:
            print(f"gridrun: not watching {self.root} for new files: it holds more than {self.MAX_FILES:,} files "
                  f"(run the script from a smaller folder to have its new files copied)", file=sys.stderr)

    def _scan(self) -> dict[str, tuple[int, int]] | None:
        out: dict[str, tuple[int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            dirnames[:] = [n for n in dirnames if not n.startswith(".") and n not in self.SKIP_DIRS
                           and (here / n).resolve() not in self.exclude and not (here / n / "pyvenv.cfg").exists()]
            for name in filenames:
                if name.startswith("."):
                    continue
                try:
                    st = (here / name).stat()
                except OSError:
                    continue
                out[str((here / name).relative_to(self.root))] = (st.st_size, st.st_mtime_ns)
                if len(out) > self.MAX_FILES:
                    return None
        return out

    def copy_changed(self, dest: Path) -> list[Path]:
        """Copy the files created or changed since the watch began into `dest`, keeping their relative
        paths; return those paths."""
        if self.before is None:
            return []
        after = self._scan() or {}
        changed = sorted(rel for rel, sig in after.items() if self.before.get(rel) != sig)
        import shutil

        copied = []
        for rel in changed:
            target = dest / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.root / rel, target)
            except OSError as exc:
                print(f"gridrun: could not copy new file {rel} into the run: {exc}", file=sys.stderr)
                continue
            copied.append(Path(rel))
        return copied


def runs_dir_hint(runs_dir: str | os.PathLike) -> str:
    """` --runs-dir DIR` for a gridrun command printed as a hint, when DIR is not the default ('runs'
    in the current directory); '' otherwise. Quoted so that the hint works when copied into a shell."""
    if Path(runs_dir).resolve() == Path("runs").resolve():
        return ""
    import shlex

    return f" --runs-dir {shlex.quote(str(runs_dir))}"


def failure_line(run_dir: Path, props: dict[str, Any]) -> str:
    """One line saying that a run failed and why, for output that shows nothing else (--quiet)."""
    return f"gridrun: run {run_dir.name} failed: {props.get('error_message') or 'no reason recorded'}"


def _print_summary(run_dir: Path, props: dict[str, Any], seconds: float, runs_dir: str | os.PathLike = "runs",
                   copied: list[Path] | None = None) -> None:
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
    if copied:
        shown = ", ".join(str(p) for p in copied[:5]) + (f" and {len(copied) - 5} more" if len(copied) > 5 else "")
        print(f"Files:    {shown} copied into {run_dir / rundir.ARTIFACTS_DIR}", file=sys.stderr)
    print(f"View:     gridrun view {run_dir.name}{runs_dir_hint(runs_dir)}", file=sys.stderr)
    print("-" * width, file=sys.stderr)
