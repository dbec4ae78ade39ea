"""A sweep's state, typed: trials and their attempts, and what the loop does with each outcome.

`Trial` and `Attempt` are the entries of the sweep manifest (`to_json`/`from_json` keep the JSON on
disk as it always was, unknown keys included). `SweepState` holds the queue of trials to run and
decides what an outcome means (completed; failed and retried or not; a crashed worker, whose trials
run again alone; --max-failures reached; interrupted). It does no I/O and knows no executor, so it is
unit-tested by feeding it outcomes (tests/test_sweep_state.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..record import Status

# Attempt statuses after which a trial is not run again, in this session or on resume
FINAL = (Status.COMPLETED, Status.PRUNED)
PICK_WINDOW = 1000  # queued trials a `pick` chooses among (the first ones)


def as_status(value: Any, default: Status = Status.RUNNING) -> Status:
    """A status from the JSON on disk (None or an unknown word: `default`)."""
    try:
        return Status(value)
    except ValueError:
        return default


@dataclass
class Attempt:
    """One run of a trial: its run dir, how it ended, and whether it counted against --retries."""

    run_dir: str
    status: Status = Status.RUNNING
    start: str | None = None
    end: str | None = None
    error: str | None = None
    charged: bool = True  # False: a free rerun after a worker crash took down a shared pool
    lost: bool = False  # found on resume in a run dir that the manifest had not recorded
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_dir": self.run_dir, "status": str(self.status), "start": self.start,
                               "end": self.end, "error": self.error}
        if not self.charged:
            out["charged"] = False
        if self.lost:
            out["lost"] = True
        return {**self.extra, **out}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attempt:
        known = {"run_dir", "status", "start", "end", "error", "charged", "lost"}
        return cls(run_dir=str(data.get("run_dir")), status=as_status(data.get("status")),
                   start=data.get("start"), end=data.get("end"), error=data.get("error"),
                   charged=bool(data.get("charged", True)), lost=bool(data.get("lost", False)),
                   extra={k: v for k, v in data.items() if k not in known})


@dataclass
class Trial:
    """One combination of flag values to run, with every attempt at it."""

    trial: int
    flags: dict[str, Any]
    combination: int | None = None
    status: Status = Status.PENDING
    run_dir: str | None = None  # the latest attempt's (the completed one's, once completed)
    attempts: list[Attempt] = field(default_factory=list)
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # last values, when the trial ended
    extra: dict[str, Any] = field(default_factory=dict)
    # every metric's per-epoch series of the attempt that ended (its metrics.json); kept in memory only,
    # for samplers and pruners that learn from the whole curve (read from the run dir again on resume)
    history: dict[str, list[Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def reports(self, metric: str) -> list[tuple[int, float]]:
        """`metric`'s (epoch, value) pairs as the trial reported them to the pruner: the epoch is the
        number of values recorded so far (gaps, logged as null, are skipped)."""
        out: list[tuple[int, float]] = []
        for v in self.history.get(metric) or []:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((len(out) + 1, float(v)))
        return out

    def to_json(self) -> dict[str, Any]:
        out = {"trial": self.trial, "combination": self.combination, "flags": self.flags,
               "status": str(self.status), "run_dir": self.run_dir,
               "attempts": [a.to_json() for a in self.attempts], "error": self.error, "metrics": self.metrics}
        return {**self.extra, **out}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trial:
        known = {"trial", "combination", "flags", "status", "run_dir", "attempts", "error", "metrics"}
        return cls(trial=int(data["trial"]), flags=dict(data.get("flags") or {}),
                   combination=data.get("combination"), status=as_status(data.get("status"), Status.PENDING),
                   run_dir=data.get("run_dir"), attempts=[Attempt.from_json(a) for a in data.get("attempts") or []],
                   error=data.get("error"), metrics=dict(data.get("metrics") or {}),
                   extra={k: v for k, v in data.items() if k not in known})


@dataclass
class Outcome:
    """How one attempt ended, as its run dir records it, plus whether its worker process died."""

    status: Status
    error: str | None = None
    end: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    crash: bool = False
    history: dict[str, list[Any]] = field(default_factory=dict)
    paused_epoch: int | None = None  # status paused: the rung epoch it paused at


class SweepState:
    """The queue of trials to run and the rules for their outcomes.

    The loop asks `next_trial()` for work (None: nothing to submit now; it asks again after the next
    outcome), calls `start()` when it submits an attempt and `record()` when the outcome comes back.
    """

    def __init__(
        self, trials: list[Trial], *, retries: int = 0, max_failures: int | None = None, slots: int = 1,
        promote: Callable[[Mapping[int, int]], int | None] | None = None,
    ) -> None:
        self.trials = trials
        self.slots = slots
        self.max_failures = max_failures
        # a promoting pruner's choice among the paused trials ({trial: epoch it paused at}) of the one to
        # continue now (sweep/pruners.py Pruner.promote); paused trials wait outside the queue for it
        self.promote = promote
        todo = [t.trial for t in trials if t.status not in FINAL]
        self.queue: deque[int] = deque(i for i in todo if trials[i].status != Status.PAUSED)
        self.budget = {i: 1 + max(0, retries) for i in todo}  # attempts allowed in this session
        self.closed = False  # no more submissions (--max-failures reached, or interrupted)
        self.solo: set[int] = set()  # trials that must run alone (suspects of a worker crash)
        self.in_flight: set[int] = set()
        self.failures = 0
        self.done = sum(t.status in FINAL for t in trials)
        self.failed = 0
        self.pruned = sum(t.status == Status.PRUNED for t in trials)
        self.interrupted = False
        self.stop_reason: str | None = None

    @property
    def running(self) -> int:
        return len(self.in_flight)

    @property
    def total(self) -> int:
        return len(self.trials)

    # ----------------------------------------------------------------------------------------------
    # The queue

    def paused(self) -> dict[int, int]:
        """{trial: the epoch it paused at} of the trials paused at a rung, waiting for promotion."""
        return {t.trial: int(t.last.extra.get("paused_epoch") or 0) for t in self.trials
                if t.status == Status.PAUSED and t.last is not None and t.trial not in self.in_flight}

    def next_trial(self, pick: Callable[[list[int]], int | None] | None = None) -> int | None:
        """The next trial to submit, or None when nothing may be submitted now: a paused trial the pruner
        promotes first (it continues from its checkpoint), then the queue: its first trial, or the one
        `pick` chooses (given the queued trials in order, it returns a position, or None to take none now;
        an executor's worker choosing a trial whose program it has compiled)."""
        if self.closed or self.solo & self.in_flight:
            return None
        if self.promote is not None:
            paused = self.paused()
            i = self.promote(paused) if paused else None
            if i is not None and i in paused:
                self.in_flight.add(i)
                self.budget.setdefault(i, 1)
                return i
        if not self.queue:
            return None
        if self.queue[0] in self.solo and self.in_flight:
            return None  # a crash suspect waits until it can run alone
        if pick is None or not self.solo.isdisjoint(self.queue):  # crash suspects keep their turn
            i = self.queue.popleft()
        else:
            pos = pick(list(self.queue)[:PICK_WINDOW])
            if pos is None:  # the picker waits (none of these for it now)
                return None
            i = self.queue[pos]
            del self.queue[pos]
        self.in_flight.add(i)
        return i

    def alone(self, i: int) -> bool:
        """Does trial `i` run with nothing beside it (so that a crash is its own)?"""
        return self.slots == 1 or i in self.solo

    def start(self, i: int, run_dir: str, now: str) -> Attempt:
        """Record the start of an attempt at trial `i` in `run_dir`."""
        t = self.trials[i]
        attempt = Attempt(run_dir=run_dir, status=Status.RUNNING, start=now)
        t.attempts.append(attempt)
        t.status, t.run_dir = Status.RUNNING, run_dir
        return attempt

    # ----------------------------------------------------------------------------------------------
    # Outcomes

    def record(self, i: int, outcome: Outcome) -> Attempt:
        """Apply the outcome of trial `i`'s running attempt; return that attempt."""
        t = self.trials[i]
        attempt = t.attempts[-1]
        alone = self.alone(i)
        self.in_flight.discard(i)
        attempt.status, attempt.end, attempt.error = outcome.status, outcome.end, outcome.error
        t.metrics = dict(outcome.metrics)
        t.history = dict(outcome.history)
        if outcome.crash:  # from now on this trial runs alone, so that it cannot take others down
            self.solo.add(i)
            attempt.extra["crashed"] = True  # stopped from outside: the next attempt continues its checkpoint
        if outcome.crash and not alone and not self.closed:
            # a dead worker takes the whole pool down: every trial in flight gets the error. Each of
            # them runs again alone, free of charge, to find out which one killed its worker.
            attempt.charged = False
            self.queue.appendleft(i)
            t.status, t.error = Status.PENDING, attempt.error
        elif outcome.status == Status.PAUSED:  # waits at a rung until promoted (next_trial) or stopped (stop_paused)
            t.status, t.error = Status.PAUSED, None
            attempt.extra["paused_epoch"] = outcome.paused_epoch
        elif outcome.status in FINAL:
            t.status, t.error = outcome.status, None
            self.done += 1
            self.pruned += outcome.status == Status.PRUNED
        elif outcome.status == Status.INTERRUPTED:  # Ctrl-C inside the trial (in-process)
            t.status = Status.INTERRUPTED
            self.interrupted = True
            self.closed = True
        else:
            t.status, t.error = Status.FAILED, attempt.error
            self.budget[i] = self.budget.get(i, 1) - 1
            if self.budget[i] > 0 and not self.closed:
                self.queue.append(i)
                t.status = Status.PENDING
            else:
                self.failed += 1
            self.failures += 1
            if self.max_failures is not None and self.failures >= self.max_failures and not self.closed:
                self._stop(f"{self.failures} failed trial(s) reached --max-failures {self.max_failures}")
        return attempt

    def _stop(self, reason: str) -> None:
        self.closed = True
        self.stop_reason = reason
        for j in self.queue:  # retries that will not happen now count as failed
            if self.trials[j].status == Status.PENDING and self.trials[j].attempts:
                self.trials[j].status = Status.FAILED
                self.failed += 1

    def interrupt(self, message: str = "interrupted by the user (Ctrl-C)") -> Iterator[Attempt]:
        """Mark every running trial interrupted; yield the attempts whose run dirs must be closed."""
        self.interrupted = self.closed = True
        for t in self.trials:
            if t.status in (Status.RUNNING, Status.INTERRUPTED):
                t.status = Status.INTERRUPTED
                a = t.attempts[-1]
                if a.status == Status.RUNNING:
                    a.status, a.error = Status.INTERRUPTED, message
                    yield a

    def stop_paused(self) -> list[Trial]:
        """The sweep ran out of work with trials still paused (none of them promotable): they are stopped,
        ended as pruned (not run again, also on resume). Returns them, for the loop to close their runs."""
        stopped = []
        for t in self.trials:
            if t.status == Status.PAUSED and t.trial not in self.in_flight:
                t.status = Status.PRUNED
                if t.last is not None:
                    t.last.status = Status.PRUNED
                self.done += 1
                self.pruned += 1
                stopped.append(t)
        return stopped

    def final_status(self) -> str:
        """The sweep's status once the loop has ended."""
        if self.interrupted:
            return "interrupted"
        if self.stop_reason:
            return "stopped"
        return "completed" if all(t.status in FINAL for t in self.trials) else "finished_with_failures"
