"""Population mode as an executor: groups of trials become one task each, on any other executor.

Trials are grouped by the values of their *static* flags (integer, string and boolean flags by default;
see FlagSpec.static), except integer values: trials that differ only in numeric flags share the shapes
and structure of their training program, and integer flags (layer widths, epochs, seeds) often do not
change it or only change widths, which the trainer merges by padding (gridrun/train/widths.py). This
grouping only decides which trials share a worker task: inside it, the trainer groups `gridrun.fit`
calls again by their actual configuration, so trials whose integers do change the program (e.g. a
batch size) still train as separate programs.

Each group (split into chunks of `size` trials when given) runs as one task, `run_population`, on the
inner executor: in this process, on a local worker pool, or on a Dask/Ray cluster; there its trials
train together as one vmapped program (gridrun/train/population.py). The sweep sees one outcome per
trial, exactly as with the other executors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .base import Executor
from .task import PopulationTask, TrialTask, run_population


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class PopulationExecutor(Executor):
    name = "population"

    def __init__(self, inner: Executor, static_flags: Iterable[str], size: int | None = None) -> None:
        super().__init__(inner.jobs)
        self.inner = inner
        self.static_flags = tuple(static_flags)
        self.size = size
        self.remote = inner.remote

    def group_key(self, task: TrialTask) -> tuple[Any, ...]:
        values = [task.flags.get(name) for name in self.static_flags]
        return tuple(repr(v) for v in values if not _is_int(v))

    def groups(self, tasks: list[TrialTask]) -> list[PopulationTask]:
        by_key: dict[tuple[Any, ...], list[TrialTask]] = {}
        for t in tasks:
            by_key.setdefault(self.group_key(t), []).append(t)
        out = []
        for members in by_key.values():
            step = self.size or len(members)
            out += [PopulationTask(members[i:i + step], self.size) for i in range(0, len(members), step)]
        return out

    # The inner executor does the work; these delegate to it.
    def submit(self, fn: Callable[[Any], Any], task: Any) -> Any:
        return self.inner.submit(fn, task)

    def wait(self, handles: list[Any]) -> list[Any]:
        return self.inner.wait(handles)

    def outcome(self, handle: Any) -> Any:
        return self.inner.outcome(handle)

    def cancel(self, handles: list[Any]) -> None:
        self.inner.cancel(handles)

    def close(self) -> None:
        self.inner.close()

    def submit_all(self, fn: Callable[[Any], Any], tasks: Iterable[TrialTask]) -> Iterator[tuple[Any, Any]]:
        """Take every trial available now, run them as groups, yield one outcome per trial.

        `fn` (the per-trial function) is replaced by `run_population` over each group. Trials queued
        later (retries) form new groups once the running ones are done.
        """
        it = iter(tasks)
        running: dict[Any, PopulationTask] = {}
        pending: list[PopulationTask] = []
        try:
            while True:
                if not running and not pending:
                    pending = self.groups(list(it))
                while pending and len(running) < self.inner.slots:
                    group = pending.pop(0)
                    running[self.inner.submit(run_population, group)] = group
                if not running:
                    return
                for handle in self.inner.wait(list(running)):
                    group = running.pop(handle)
                    result = self.inner.outcome(handle)
                    if isinstance(result, BaseException):
                        for t in group.tasks:
                            yield t, result
                    else:
                        yield from zip(group.tasks, result)
        finally:
            if running:
                self.inner.cancel(list(running))
