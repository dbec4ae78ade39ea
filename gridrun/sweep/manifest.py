"""The sweep manifest `runs/sweeps/<id>.json`: planning a sweep, saving it, and recovering it on resume.

The client process running a sweep is the only writer of its manifest (format in docs/tuning.md), always
with an atomic write. After Ctrl-C, a kill -9 or a reboot, `reconcile` brings the manifest up to date
with the run dirs (a run dir that completed counts even if the manifest missed it), closing the run dirs
that a dead process left `running`; `client_alive` tells whether a sweep's client still runs. A trial
whose earlier attempt is still running (an orphaned worker) is waited for and its result adopted: a
resume never runs a trial twice at once. A run dir left empty (a kill between creating it and
submitting its trial) is removed.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import rundir
from .._io import drop_spare, dumps, read_json, write_json
from ..errors import GridrunError
from ..grid import Grid, sample_size
from ..record import Status, close_run, last_metrics
from ..rundir import STALE_SECONDS, client_alive, heartbeat_age, pid_alive  # noqa: F401 - re-exported
from .state import FINAL, Attempt, Trial, as_status

MAX_TRIALS = 1_000_000  # a trial list longer than this is surely a mistake: sample instead
SAVE_INTERVAL = 0.5  # seconds between two manifest writes while trials finish quickly
ORPHAN_WAIT_SECONDS = 60.0  # on resume, how long to wait for a trial's earlier attempt still running
EMPTY_DIR_AGE = 2.0  # seconds: an empty run dir older than this, in a dead sweep's time, is left over
SWEEPS_DIR = "sweeps"
MANIFEST_FORMAT = 1

# --------------------------------------------------------------------------------------------------
# The manifest


def new_sweep_id() -> str:
    """`2026-11-27T06-44-38Z-ab12`: UTC start time plus 4 random hex digits."""
    return rundir.utc_now().strftime("%Y-%m-%dT%H-%M-%SZ") + "-" + secrets.token_hex(2)


def sweeps_dir(runs_dir: str | os.PathLike) -> Path:
    return Path(runs_dir) / SWEEPS_DIR


class Manifest:
    """The sweep's record, kept in memory and rewritten atomically (by this client only) on change.

    `data` holds the sweep's own fields (JSON-ready); `trials` the typed trials, serialized on save.
    """

    def __init__(self, path: Path, data: dict[str, Any], trials: list[Trial] | None = None):
        self.path = path
        data = dict(data)
        raw = data.pop("trials", [])
        self.data = data
        self.trials: list[Trial] = trials if trials is not None else [Trial.from_json(t) for t in raw]
        self.lock = threading.RLock()  # held by whoever reads or changes the manifest while the sweep runs
        self.dirty = False
        self.saved_at = 0.0
        # while its sweep runs, each save goes over the version before last's file (`write_reusing`:
        # 1.1 ms of a 48-trial manifest's 2 ms save was the new file's write); `retire` ends it
        self.live = False

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

    def completed(self) -> int:
        return sum(t.status in FINAL for t in self.trials)

    def touch(self) -> None:
        """Save soon: at once when the last write is older than SAVE_INTERVAL, else by the heartbeat thread.

        Deferring is safe: every run dir records its sweep, trial and status itself, and a resume
        reconciles the manifest with them, so a write lost to a kill costs nothing.
        """
        if time.monotonic() - self.saved_at >= SAVE_INTERVAL:
            self.save()
        else:
            self.dirty = True

    def to_json(self) -> dict[str, Any]:
        counts = {str(s): 0 for s in (Status.PENDING, Status.RUNNING, Status.COMPLETED, Status.FAILED,
                                      Status.INTERRUPTED)}
        for t in self.trials:
            counts[str(t.status)] = counts.get(str(t.status), 0) + 1
        return {**self.data, "counts": counts, "trials": [t.to_json() for t in self.trials]}

    def save(self) -> None:
        with self.lock:
            self.dirty = False
            self.saved_at = time.monotonic()
            now = rundir.iso(rundir.utc_now())
            self.data["updated"] = now
            client = self.data.get("client") or {}
            if client.get("pid") == os.getpid() and not client.get("ended"):
                client["heartbeat"] = now
            write_json(self.path, self.to_json(), indent=None if len(self.trials) > 200 else 1, reuse=self.live)

    def retire(self) -> None:
        """The sweep's client is done with the manifest: plain atomic writes again, and no spare left."""
        with self.lock:
            self.live = False
            drop_spare(self.path)


def list_sweeps(runs_dir: str | os.PathLike = "runs") -> list[Path]:
    """Manifest files, oldest first (ids sort by time)."""
    folder = sweeps_dir(runs_dir)
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


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
    sampler: Any = None,
    metric: str | None = None,
    mode: str | None = None,
) -> Manifest:
    """A new manifest with its trial list (sampled, ordered), not yet written.

    With lists alone the trials are combinations of the grid, fixed now. With ranges (or an adaptive
    sampler) the sweep needs a trial count, and each trial's values are drawn when it starts.
    `sampler` is a bound Sampler (its seed is the sweep's), or what `make_sampler` takes.
    """
    from .samplers import Sampler, make_sampler

    if isinstance(sampler, Sampler) and hasattr(sampler, "grid"):
        chosen, seed = sampler, sampler.seed
    else:
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        chosen = make_sampler(sampler, grid, seed, metric, mode)
    if grid.has_ranges:
        whole = (isinstance(sample, int) and not isinstance(sample, bool) and sample >= 1) or (
            isinstance(sample, float) and sample.is_integer() and sample > 1)
        if not whole:
            raise GridrunError(
                f"this sweep draws from ranges ({', '.join(f'{k}={r}' for k, r in grid.ranges.items())}): "
                f"give the number of trials as a whole count, e.g. --sample 50 (a fraction of a range has no size)"
            )
        n = int(sample)
    else:
        n = sample_size(len(grid), sample)
    if n > MAX_TRIALS:  # checked before drawing: the draw would hold n indices in memory
        raise GridrunError(
            f"{describe_size(len(grid), n)}: more trials than gridrun runs in one sweep ({MAX_TRIALS:,}); "
            f"draw a random subset with --sample (e.g. --sample 1000)"
        )
    trials = chosen.plan(n, sample, ordered)
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
        "total_combinations": None if grid.has_ranges else len(grid),
        "sample": sample,
        "seed": seed,
        "ordered": ordered,
        "sampler": chosen.name,
        "sampler_options": chosen.options(),
        "metric": metric,
        "mode": mode,
        "settings": {},
        "client": None,
        "counts": {},
    }
    return Manifest(path, data, trials)


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


def describe_size(n_total: int | None, n_trials: int) -> str:
    """tfruns' line: `2,916 total combinations of flags (sampled to 146 combinations)`."""
    if n_total is None:
        return f"{n_trials:,} trials drawn from ranges of flag values"
    text = f"{n_total:,} total combinations of flags"
    if n_trials != n_total:
        text += f" (sampled to {n_trials:,} combinations)"
    return text


def _jsonish(value: Any) -> Any:
    import json

    return json.loads(dumps(value))


def reconcile(manifest: Manifest, runs_dir: str | os.PathLike) -> None:
    """Bring the manifest up to date with the run dirs after a client died or was stopped.

    A trial with any completed (or pruned) run dir counts as such. Run dirs left `running` by a dead
    process are closed as interrupted. Every other trial that did not end goes back to pending.
    """
    by_trial: dict[int, list[Path]] = {}
    for t in manifest.trials:
        for a in t.attempts:
            if a.run_dir:
                by_trial.setdefault(t.trial, []).append(Path(runs_dir) / a.run_dir)
    # run dirs the manifest may have missed (client killed between mkdir and the manifest write)
    since = (manifest.data.get("created") or "")[:19].replace(":", "-")
    root = Path(runs_dir)
    empty: list[Path] = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not d.is_dir() or d.name == SWEEPS_DIR or d.name[:19] < since:
            continue
        props = read_json(d / rundir.PROPERTIES_FILE, {}) or {}
        if props.get("sweep") == manifest.id and isinstance(props.get("trial"), int):
            paths = by_trial.setdefault(props["trial"], [])
            if d not in paths:
                paths.append(d)
        elif not props and _is_empty(d):
            empty.append(d)
    _remove_empty(empty, manifest, runs_dir)
    for t in manifest.trials:
        if t.status in FINAL:
            continue
        known = {a.run_dir: a for a in t.attempts}
        for d in by_trial.get(t.trial, []):
            if not d.is_dir():  # an empty run dir the manifest knew: removed above, never ran
                if d.name in known and known[d.name].status == Status.RUNNING:
                    known[d.name].status = Status.INTERRUPTED
                continue
            props = read_json(d / rundir.PROPERTIES_FILE, {}) or {}
            status = props.get("status")
            if status == Status.RUNNING and _run_alive(props):  # an orphaned worker still at it
                props = _wait_for(d, props, t.trial)
                status = props.get("status")
            if status == Status.RUNNING:
                close_run(d, Status.INTERRUPTED, "the sweep's client process stopped before this trial ended")
                status = Status.INTERRUPTED
            attempt = known.get(d.name)
            if attempt is None:
                attempt = Attempt(run_dir=d.name, status=Status.RUNNING, start=props.get("start"), lost=True)
                t.attempts.append(attempt)
            if attempt.status == Status.RUNNING:
                attempt.status = as_status(status, Status.INTERRUPTED)
                attempt.end = props.get("end")
                attempt.error = attempt.error or props.get("error_message")
            if status in FINAL:
                t.status, t.run_dir, t.error = Status(status), d.name, None
                t.metrics = last_metrics(d)
        if t.status not in FINAL:
            t.status = Status.PENDING if t.status in (Status.RUNNING, Status.INTERRUPTED, Status.PENDING) else t.status


def _wait_for(run_dir: Path, props: Mapping[str, Any], trial: int) -> dict[str, Any]:
    """Wait for the live process running an earlier attempt of `trial` to end it (or die); return the
    run's properties then. A resume must not run the trial beside it: after ORPHAN_WAIT_SECONDS, stop."""
    print(f"Waiting for trial {trial}'s earlier attempt ({run_dir.name}, process {props.get('pid')} on "
          f"{props.get('hostname')}) to end...", file=sys.stderr, flush=True)
    deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
    current = dict(props)
    while current.get("status") == Status.RUNNING and _run_alive(current):
        if time.monotonic() > deadline:
            raise GridrunError(
                f"trial {trial}'s earlier attempt {run_dir} is still running in process {current.get('pid')} on "
                f"{current.get('hostname')}: let it end (or stop it: kill {current.get('pid')}), then resume again")
        time.sleep(0.1)
        current = read_json(run_dir / rundir.PROPERTIES_FILE, {}) or {}
    return current


def _is_empty(d: Path) -> bool:
    try:
        with os.scandir(d) as it:
            return next(it, None) is None
    except OSError:
        return False


def _name_time(name: str) -> _dt.datetime | None:
    try:
        ts = _dt.datetime.strptime(name[:19], rundir.NAME_FORMAT).replace(tzinfo=_dt.UTC)
        return ts + _dt.timedelta(milliseconds=int(name[20:23]))
    except ValueError:
        return None


def _remove_empty(dirs: list[Path], manifest: Manifest, runs_dir: str | os.PathLike) -> None:
    """Remove run dirs a killed client created but never used (empty, named within the sweep's time).

    Only once EMPTY_DIR_AGE old, so that a run dir another process has just made (and is about to write
    its properties into) is left alone, and none made since another sweep still running started (its
    run dirs stay empty until a worker starts them); `rmdir` removes only a dir that is still empty."""
    if not dirs:
        return
    others = [read_json(p, {}) or {} for p in list_sweeps(runs_dir) if p.stem != manifest.id]
    live = [(o.get("created") or "")[:19].replace(":", "-") for o in others if client_alive(o.get("client"))]
    if live:  # another sweep's client is running: its fresh run dirs wait empty for their worker
        dirs = [d for d in dirs if d.name[:19] < min(live)]
    ages = [(d, _name_time(d.name)) for d in dirs]
    ages = [(d, ts) for d, ts in ages if ts is not None]
    if not ages:
        return
    youngest = max(ts for _, ts in ages)
    wait = EMPTY_DIR_AGE - (rundir.utc_now() - youngest).total_seconds()
    if wait > 0:
        time.sleep(min(wait, EMPTY_DIR_AGE))
    for d, _ in ages:
        try:
            os.rmdir(d)
        except OSError:
            pass


def close_orphans(manifest: Manifest, runs_dir: str | os.PathLike) -> None:
    """Recheck attempts found still running on resume (an orphaned worker): close them if it died since."""
    for t in manifest.trials:
        for a in t.attempts:
            if a.status != Status.LOST:
                continue
            d = Path(runs_dir) / a.run_dir
            props = read_json(d / rundir.PROPERTIES_FILE, {}) or {}
            if props.get("status") == Status.RUNNING and not _run_alive(props):
                props = close_run(d, Status.INTERRUPTED, "the sweep's client process stopped before this trial ended")
            if props.get("status") != Status.RUNNING:
                a.status = as_status(props.get("status"), Status.INTERRUPTED)


def _run_alive(props: Mapping[str, Any]) -> bool:
    """Is the process executing a run still alive (its pid on this host, or a fresh heartbeat)?"""
    if props.get("hostname") == rundir.hostname() and props.get("pid"):
        return int(props["pid"]) != os.getpid() and pid_alive(int(props["pid"]))
    return heartbeat_age(props.get("heartbeat")) < STALE_SECONDS

