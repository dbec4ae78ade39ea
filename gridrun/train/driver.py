"""The epoch driver: one place that records a trial's epoch and decides whether the trial goes on.

Every way gridrun trains runs its epochs through here: a sequential `fit` or `fit_loop`
(`train_alone`), and a population's vmapped group or refilled slots (train/population/), which run one
epoch of many trials and hand each trial's row to its `Member`. So the stop rule is written once:

    the loss is not finite      -> stop; the run ends `failed` ("loss became nan at epoch 3")
    EarlyStopping stopped it    -> stop (inside the compiled epoch: `logs["stopped"]`)
    the sweep's pruner said so  -> stop; the run ends `pruned` (TrialPruned from the run's epoch hook)
    a Stopper said so           -> stop
    the epoch budget is spent   -> stop

A training program (train/engine.py `Engine`, train/loop.py `LoopEngine`) meets the driver through the
`TrainingProgram` protocol. Anything that wants to see every recorded epoch (a checkpoint writer) is an
`EpochObserver`, given to the trial's `Member`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np

from ..checkpoint import release_held
from ..errors import TrialPruned
from ..scoring import is_loss
from .callbacks import Stopper
from .engine import epoch_key

State = Any  # a train-state pytree
Logs = dict[str, Any]  # one epoch's logged scalars (the program's log_names, "active", "stopped")


class ProgramConfig(Protocol):
    """The static configuration of a program, as far as the driver reads it."""

    @property
    def log_names(self) -> tuple[str, ...]: ...


@runtime_checkable
class TrainingProgram(Protocol):
    """What the driver and the population coordinator need of a training program: pure init / epoch /
    finalize functions of one static configuration (vmappable: `epoch` is vmapped over trials with
    in_axes (0, 0, None, 0)) and their jitted versions. `epoch` returns logs holding every name of
    `config.log_names` plus "active" (the epoch counted: the trial was not frozen) and "stopped"
    (EarlyStopping stopped the trial at this epoch)."""

    @property
    def config(self) -> ProgramConfig: ...

    def init(self, hparams: Any, rng: jax.Array) -> State: ...

    def epoch(self, state: State, hparams: Any, data: dict[str, jax.Array], rng: jax.Array) -> tuple[State, Logs]: ...

    def finalize(self, state: State) -> State: ...

    @property
    def jit_init(self) -> Callable[..., Any]: ...

    @property
    def jit_epoch(self) -> Callable[..., Any]: ...

    @property
    def jit_finalize(self) -> Callable[..., Any]: ...


class EpochObserver(Protocol):
    """Called after each recorded epoch of a trial with the epoch (0-based), its recorded metrics, and
    a function returning the trial's current (unfinalized, unbatched) train state: call it only when
    the state is needed, it may copy a row out of a population's stacked state."""

    def __call__(self, epoch: int, metrics: dict[str, float], state: Callable[[], State]) -> None: ...


class Stop(StrEnum):
    """Why a trial stopped training."""

    DIVERGED = "diverged"  # a loss is not finite
    EARLY_STOPPING = "early_stopping"
    PRUNED = "pruned"
    STOPPER = "stopper"
    BUDGET = "budget"  # its last epoch


def short(value: Any) -> float:
    """A float32 result as the shortest Python float that round-trips in float32 (0.001, not 0.0010000000474974513)."""
    return float(str(np.float32(value)))


def nonfinite_loss(record: dict[str, float]) -> str | None:
    """The first loss (a metric named loss, val_loss or *_loss) of an epoch that is not finite, or None."""
    return next((k for k, v in record.items() if is_loss(k) and not math.isfinite(v)), None)


def stop_rule(record: dict[str, float], stopped: bool, pruned: bool, asked: bool, epoch: int, epochs: int) -> Stop | None:
    """The stop rule, in one place: whether a trial that just recorded epoch `epoch` (0-based) of
    `epochs` stops, and why (the first reason that holds, in the order of the module docstring)."""
    if nonfinite_loss(record) is not None:
        return Stop.DIVERGED
    if stopped:
        return Stop.EARLY_STOPPING
    if pruned:
        return Stop.PRUNED
    if asked:
        return Stop.STOPPER
    if epoch + 1 >= epochs:
        return Stop.BUDGET
    return None


@dataclass
class Member:
    """One trial as the driver sees it: its epoch budget and where its epochs are recorded (the
    History, the active run's metrics.json, a progress bar, the Python callbacks, observers).

    `record` takes the trial's row of an epoch's logs, records it and applies the stop rule; `stop`
    is then the reason the trial stopped (None while it trains). A member with no epochs to train is
    stopped from the start."""

    epochs: int
    names: tuple[str, ...]  # the logged metrics, in order (the program's config.log_names)
    history: Any = None  # a train.history.History, or None
    ctx: Any = None  # the active rundir.RunContext, or None
    callbacks: Sequence[Any] = ()  # LambdaCallbacks and Stoppers, run in Python after each epoch
    progress: Any = None  # an EpochProgress, or None
    observers: list[EpochObserver] = field(default_factory=list)
    completed: int = 0  # epochs recorded
    stop: Stop | None = None
    # values logged with every epoch into the run's metrics.json only (not the History, nor the stop
    # rule): the model's parameter count `n_params`, so that a sweep can optimize it (--metric n_params)
    constants: dict[str, float] = field(default_factory=dict)
    resume: dict[str, Any] | None = None  # continue a sweep's interrupted trial: {"epoch": N, "run": ...} (ctx.resume_from)

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            self.stop = Stop.BUDGET

    @classmethod
    def for_trial(cls, epochs: int, names: tuple[str, ...], history: Any, ctx: Any, callbacks: Sequence[Any],
                  progress: Any, observers: Sequence[EpochObserver] = ()) -> Member:
        """The member of a `fit` / `fit_loop` call (the one place both build theirs), with the trial's
        observers (its checkpoints: gridrun/checkpoint.py CheckpointObserver)."""
        return cls(int(epochs), tuple(names), history, ctx, callbacks, progress, list(observers),
                   resume=getattr(ctx, "resume_from", None))

    def start_from(self, state: State, rng: jax.Array) -> State:
        """A continued trial (`resume`): its state and epoch counter from the run's last checkpoint (the
        sweep copied it and the earlier epochs' metrics.json into this run dir), `state` and `rng` giving
        the structure it is checked against; the History gets the earlier epochs. Epochs after it get the
        same data order and dropout keys as uninterrupted (engine.epoch_key(rng, epoch)). Returns the
        state to train on (`state` itself when there is nothing to continue)."""
        resume, self.resume = self.resume, None
        if not resume or self.ctx is None or self.completed:
            return state
        from ..checkpoint import resume_state

        epoch, tree = resume_state(self.ctx.run_dir, {"state": state, "rng": rng})
        if resume.get("exploit"):  # sequential PBT: the donor's state, with this trial's explored values
            tree["state"] = exploited(tree["state"], state, resume["exploit"])
        if self.history is not None:
            for row in range(epoch):
                self.history.append({k: (v[row] if row < len(v) else None)
                                     for k, v in self.ctx.metrics.items() if k in self.names})
        self.completed = epoch
        if epoch >= self.epochs:
            self.stop = Stop.BUDGET
        self.ctx.note_properties(resumed_from_epoch=epoch, resumed_from_run=resume.get("run"))  # with the next write
        if self.progress is not None:
            self.progress.note(f"Continuing from epoch {epoch} (checkpoint of run {resume.get('run')})")
        return tree["state"]

    def record(self, logs: Logs, stopped: bool, state: Callable[[], State] = lambda: None) -> Stop | None:
        """Record the trial's next epoch from its `logs` (one trial's values; `stopped`: EarlyStopping
        stopped it there) and return why it stops now, or None when it trains on."""
        e = self.completed
        self.completed += 1
        record = {k: short(logs[k]) for k in self.names}
        if self.history is not None:
            self.history.append(record)
        pruned = self._log(e, record)
        asked = False
        for cb in self.callbacks:
            if isinstance(cb, Stopper):
                asked = bool(cb.should_stop(e, dict(record))) or asked
            elif cb.on_epoch_end is not None:
                cb.on_epoch_end(e, dict(record))
        self.stop = stop_rule(record, stopped, pruned, asked, e, self.epochs)
        if not self._deleted_anyway(pruned):
            for observe in self.observers:
                observe(e, record, state)
        else:  # (a checkpoint writer drops what it held since its last write)
            for observe in self.observers:
                discard = getattr(observe, "discard", None)
                if discard is not None:
                    discard()
        if self.stop is not None:  # now, while `state` is alive (a population's next epoch may donate it)
            self._close_observers()
        if self.progress is not None:
            if self.stop is Stop.DIVERGED:
                bad = nonfinite_loss(record) or "loss"
                self.progress.note(f"Epoch {e + 1}: {bad} became {record[bad]}, training stopped")
            elif self.stop in (Stop.EARLY_STOPPING, Stop.STOPPER):
                self.progress.note(f"Epoch {e + 1}: early stopping")
        return self.stop

    def _deleted_anyway(self, pruned: bool) -> bool:
        """The trial's sweep deletes its checkpoints now (it was pruned, not paused, or failed at this
        epoch, and the sweep has no --keep-pruned): the observers skip the epoch rather than write a file
        only to delete it (under ASHA most trials end at the first rung)."""
        ctx = self.ctx
        if ctx is None or not getattr(ctx, "drops_pruned", False):
            return False
        failed = self.stop is Stop.DIVERGED
        if not failed and not (pruned and not ctx.properties.get("paused")):  # (a paused trial keeps its own)
            return False
        if self.observers:  # said in the properties the run's end writes (no write of its own now)
            from ..checkpoint import dropped_reason

            ctx.note_properties(checkpoints_dropped=dropped_reason("failed" if failed else "pruned"))
        return True

    def _log(self, e: int, record: dict[str, float]) -> bool:
        """Log epoch `e` into the active run and the progress bar; True when the sweep's pruner stopped
        the trial there (TrialPruned from the run's epoch hook). At the last epoch the pruner is told the
        value but stops nothing (the trial completed)."""
        pruned = False
        if self.ctx is not None:
            try:
                self.ctx.last_epoch = e + 1 >= self.epochs
                self.ctx.log_metrics(epoch=e + 1, **{**self.constants, **record})
            except TrialPruned:
                pruned = True
                if self.progress is not None:
                    self.progress.note(f"Epoch {e + 1}: pruned")
            finally:
                self.ctx.last_epoch = False
        if self.progress is not None:
            self.progress.update(e, record)
        return pruned

    def close(self) -> None:
        """The trial ended: close its progress bar and the observers that have a `close` (a checkpoint
        writes what `every=N` left unsaved)."""
        if self.progress is not None:
            self.progress.close()
        self._close_observers()

    def _close_observers(self) -> None:
        observers, self.observers = self.observers, []  # once: at the stop, or when training ends otherwise
        for observe in observers:
            close = getattr(observe, "close", None)
            if close is not None:
                close()


def exploited(restored: State, fresh: State, exploit: dict[str, Any]) -> State:
    """A donor's restored train state for a recipient of sequential PBT (gridrun/sweep/pbt_rounds.py):
    the state's current learning rate scaled by the ratio of the recipient's new learning rate (the flag
    whose explored value is the fresh state's rate) to the donor's value of it, as the population's
    exploit scales it (train/population/exploit.py)."""
    if not (isinstance(restored, dict) and isinstance(fresh, dict) and "lr" in restored and "lr" in fresh):
        return restored
    now = float(np.asarray(fresh["lr"]))
    for name, new in (exploit.get("values") or {}).items():
        old = (exploit.get("donor_values") or {}).get(name)
        if isinstance(new, (int, float)) and isinstance(old, (int, float)) and old and \
                np.isclose(np.float32(new), now, rtol=1e-6, atol=0.0):
            scale = np.float32(np.float32(new) / float(np.float32(old)))
            lr = jax.numpy.asarray(restored["lr"])
            return dict(restored, lr=(lr * scale).astype(lr.dtype))
    return restored


def train_alone(program: TrainingProgram, state: State, hparams: Any, data: dict[str, jax.Array],
                k_train: jax.Array, member: Member) -> State:
    """Train one trial (sequential `fit` / `fit_loop`): ask the program for an epoch, record it, until
    the stop rule ends the trial; return the finalized state. A run replaying a PBT trial's schedule
    (properties `pbt_schedule`: `training-run --schedule RUN`) gets each epoch's hparams from it."""
    replay = None
    if member.ctx is not None and member.ctx.properties.get("pbt_schedule"):
        from .population.exploit import ScheduleReplay

        replay = ScheduleReplay.create(member.ctx, program, hparams)
    try:
        state = member.start_from(state, k_train)
        while member.stop is None:
            if replay is not None:
                hparams, state = replay(member.completed, hparams, state)
            state, logs = program.jit_epoch(state, hparams, data, epoch_key(k_train, member.completed))
            release_held()  # the last epoch's checkpoint is written while this one computes
            logs = jax.device_get(logs)
            member.record(logs, bool(logs["stopped"]), lambda state=state: state)
    finally:
        member.close()
    return program.jit_finalize(state)
