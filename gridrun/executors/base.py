"""The executor interface: run a picklable function over picklable tasks, yield outcomes as they finish.

An executor knows nothing about sweeps, runs or training (it imports none of them). A task is any
picklable object (a trial spec; a population group of trials can be one task), `fn(task)` runs on a
worker, and `submit_all` yields `(task, result)` or `(task, exception)` in completion order. A failing task never stops the others:
each outcome is independent (which is why gridrun uses futures and not `joblib.Parallel`, where one
error aborts the whole call).

`tasks` is read lazily, at most `slots` in flight, and is polled again after every outcome: a caller
that refills its queue (retries) or empties it (--max-failures) steers the run while it goes.

Affinity (optional, a hint): a task source may offer `next_preferring(choose)`, which calls
`choose(keys)` with the affinity keys of the tasks it could give next (in its order; None: not known
yet), takes the task at the position returned, and returns `(task, key)`; StopIteration as `next`. Tasks
with equal keys share compiled programs (the sweep keys a trial by its static flags), so an executor
that can send a task to the worker of its choice (local.py) lets each free worker pick one whose
program it has already compiled. `submit_all` here ignores it (iterating the source as before).

The contract every backend passes is tests/test_executor_contract.py: outcomes in completion order,
a raising task does not stop the others, a worker killed by a signal is reported as a crash
(`is_crash`), cancel leaves no task running, at most `slots` tasks run at once. A new backend (e.g.
SLURM) subclasses Executor and is added to that test's parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_END = object()


class Executor(ABC):
    name = "base"
    remote = False  # True: workers may not see the client's file system (results carry the files)

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, int(jobs))

    @property
    def slots(self) -> int:
        """How many tasks to keep in flight."""
        return self.jobs

    @abstractmethod
    def submit(self, fn: Callable[[Any], Any], task: Any) -> Any:
        """Start `fn(task)`; return a handle."""

    @abstractmethod
    def wait(self, handles: list[Any]) -> list[Any]:
        """Block until at least one handle is done; return the done ones."""

    @abstractmethod
    def outcome(self, handle: Any) -> Any:
        """The result of a done handle, or the exception it raised (returned, not raised)."""

    def channel(self, handler: Callable[[Any], Any]) -> Any:
        """A request/reply line from tasks back to `handler` in this process (executors/channel.py).
        Default: a socket on 127.0.0.1, for workers on this machine."""
        from .channel import SocketChannel

        return SocketChannel(handler)

    def is_crash(self, exc: BaseException) -> bool:
        """Does this outcome mean the worker process running the task died (killed, segfault, OOM)?"""
        return False

    def cancel(self, handles: list[Any]) -> None:
        """Stop the tasks of these handles, running ones included (used on Ctrl-C)."""
        return None

    def close(self) -> None:
        """Release workers and connections."""
        return None

    def submit_all(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        it = iter(tasks)
        running: dict[Any, Any] = {}  # handle -> task
        try:
            while True:
                while len(running) < self.slots:
                    task = next(it, _END)
                    if task is _END:
                        break
                    running[self.submit(fn, task)] = task
                if not running:
                    return
                for handle in self.wait(list(running)):
                    yield running.pop(handle), self.outcome(handle)
        finally:
            if running:
                self.cancel(list(running))

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
