"""Checkpoints of remote trials (Dask, Ray: no shared file system) reach the client while they train.

A remote trial runs into a worker-local temporary run dir; its files come back with its result
(gridrun/sweep/trial.py `pack` / `unpack`). A worker that dies (killed, preempted, out of memory)
returns no result, so its checkpoints would be lost with it, and the trial could only start again from
epoch 0. Instead, every checkpoint a remote trial saves is sent at once through the executor's channel
(gridrun/executors/channel.py, the line the pruner uses) to the client, which writes it atomically into
the trial's run dir there, with the metrics.json of that moment:

    worker: Checkpointer saves epoch N  ->  RemoteCheckpoints.send  ->  channel  ->  client: receive()
            (its local run dir)             (size-limited)                          write_atomic into runs/<run>/

So a killed worker leaves the client holding the trial's last streamed epoch. On `--resume` (or a retry)
the sweep prepares the new attempt's run dir as for a local trial (loop.py `continue_trial`) and the task
carries those files (`files`) to the worker, which writes them into its own run dir before the trial
starts: the trial continues from them exactly as a local one does.

Streamed checkpoints count against the per-trial limit on files returned by a remote worker
(`max_artifact_bytes`, 50 MB), as the final copy does: when the trial's checkpoints (best and last, each
file counted) exceed it, none is sent, the client's run dir records why (`checkpoints_dropped`), and a
continued trial starts again from epoch 0, said in one line (`restart_note`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt
from .. import rundir

KEY = "checkpoint"  # a channel message {KEY: {...}} is a streamed checkpoint; anything else goes to the pruner
FILES = tuple(f"{ckpt.CHECKPOINT_DIR}/{w}.ckpt" for w in ckpt.WHICH) + (rundir.METRICS_FILE,)
# what a continued trial's task carries to the worker: those, and flags.json (a continued PBT trial's
# keeps the values it started with, docs/population.md)
CARRIED = FILES + (rundir.FLAGS_FILE,)


def over_limit(names: list[str], size: int, limit: int, epoch: int) -> str:
    """The line a run records when its checkpoints do not fit the per-trial limit of remote workers."""
    return (f"the checkpoints of epoch {epoch} ({', '.join(names)}: {size} bytes in all) are over the "
            f"{limit / 1e6:g} MB per-trial limit for remote workers and did not reach the client: raise it with "
            f"tuning_run(max_artifact_bytes=...), or keep one (checkpoint='best')")


@dataclass
class RemoteCheckpoints:
    """Travels with a remote trial's task: where its checkpoints go (`caller`, the executor channel's
    caller to the client; `run`, the client's run dir name), the size limit, and the files of the
    checkpoint it continues from (relative path -> bytes), written into the worker's run dir first."""

    caller: Any
    run: str
    max_bytes: int
    files: dict[str, bytes] = field(default_factory=dict)

    @contextmanager
    def on_worker(self, run_dir: Path) -> Iterator[None]:
        """On the worker, around the trial: lay out the files it continues from, and send every
        checkpoint saved into `run_dir` to the client while the trial runs."""
        for rel, data in self.files.items():
            if rel in CARRIED:
                target = run_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        told: list[bool] = []

        def send(which: list[str], data: bytes, epoch: int) -> None:
            try:
                _send(which, data, epoch)
            except Exception:  # noqa: BLE001 - a checkpoint that cannot be sent never stops the training
                pass

        def _send(which: list[str], data: bytes, epoch: int) -> None:
            names = [f"{ckpt.CHECKPOINT_DIR}/{w}.ckpt" for w in which]
            # what the final copy would count: every checkpoint file the trial holds now, each file counted
            held = {p.name: p.stat().st_size for p in (run_dir / ckpt.CHECKPOINT_DIR).glob("*.ckpt")}
            total = sum(held.values())
            if total > self.max_bytes:
                if not told:
                    told.append(True)
                    self.caller({KEY: {"run": self.run, "dropped": over_limit(sorted(held), total, self.max_bytes,
                                                                                epoch)}})
                return
            metrics = run_dir / rundir.METRICS_FILE
            self.caller({KEY: {"run": self.run, "epoch": epoch, "names": names, "data": data,
                               "metrics": metrics.read_bytes() if metrics.is_file() else None}})

        with ckpt.mirror_saves(run_dir, send):
            yield


def receive(runs_dir: Path, message: dict[str, Any]) -> bool:
    """The client side: write a streamed checkpoint (or the note that it was over the limit) into the
    trial's run dir. True when written. Names outside the run dir's checkpoint files are refused."""
    name = str(message.get("run", ""))
    run_dir = runs_dir / name
    if not name or Path(name).name != name or name in (".", "..") or not run_dir.is_dir():
        return False
    if "dropped" in message:
        from ..record import adopt

        adopt(run_dir, checkpoints_dropped=str(message["dropped"]))
        return True
    names, data = message.get("names") or [], message.get("data")
    if not isinstance(data, bytes) or not names or any(n not in FILES[:-1] for n in names):
        return False
    (run_dir / ckpt.CHECKPOINT_DIR).mkdir(exist_ok=True)
    first = run_dir / names[0]
    ckpt.write_atomic(first, data)
    for other in names[1:]:
        ckpt.link_atomic(first, run_dir / other, data)
    if isinstance(message.get("metrics"), bytes):  # the epochs up to this checkpoint (and any since)
        ckpt.write_atomic(run_dir / rundir.METRICS_FILE, message["metrics"])
    return True


def client_handler(runs_dir: str | os.PathLike, other: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """The sweep's channel handler for a remote executor: streamed checkpoints are written here, every
    other message goes to `other` (the pruner's handler; None: no pruner, the reply is None)."""
    runs_dir = Path(runs_dir)

    def handle(message: Any) -> Any:
        if isinstance(message, dict) and KEY in message:
            return receive(runs_dir, message[KEY])
        return other(message) if other is not None else None

    return handle


def for_task(channel: Any, run_dir: Path, resume_from: dict[str, Any] | None, max_bytes: int) -> RemoteCheckpoints | None:
    """What a remote trial's task carries: the stream back to the client's `run_dir`, and when it
    continues an earlier attempt (`resume_from`), the files `continue_trial` (or sequential PBT's
    `prepare`) laid out there."""
    if channel is None:
        return None
    files = {}
    if resume_from is not None:
        for rel in CARRIED:
            if (run_dir / rel).is_file():
                files[rel] = (run_dir / rel).read_bytes()
    return RemoteCheckpoints(channel.caller, run_dir.name, max_bytes, files)


def restart_note(t: Any, runs_dir: Path) -> str | None:
    """One line when a remote trial that stopped from outside starts again from epoch 0 because its
    checkpoints were over the size limit and never reached the client; None otherwise."""
    from .._io import read_json
    from .loop import continuable

    earlier = t.attempts[:-1]
    if not earlier or not continuable(earlier[-1]) or not earlier[-1].run_dir:
        return None
    props = read_json(runs_dir / earlier[-1].run_dir / rundir.PROPERTIES_FILE, {}) or {}
    dropped = props.get("checkpoints_dropped")
    if not dropped or ckpt.checkpoint_path(runs_dir / earlier[-1].run_dir, "last").is_file():
        return None
    return f"trial {t.trial} starts again from epoch 0, not from a checkpoint: {dropped}"
