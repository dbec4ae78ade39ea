"""Population mode's grouping step: trials become group tasks, each trained as one vmapped program.

Trials are grouped by the values of their *static* flags (integer, string and boolean flags by default;
see FlagSpec.static), except integer values: trials that differ only in numeric flags share the shapes
and structure of their training program, and integer flags (layer widths, epochs, seeds) often do not
change it or only change widths, which the trainer merges by padding (gridrun/train/widths.py). This
grouping only decides which trials share a worker task: inside it, the trainer groups `gridrun.fit`
calls again by their actual configuration, so trials whose integers do change the program (e.g. a
batch size) still train as separate programs.

How the groups train is one `PopulationConfig` (gridrun/train/population/config.py), built once where
the sweep is set up and sent with every group task, so a worker trains as the client planned whatever
its own environment says. With `max_size` (--population-size) a group trains in programs of that many
slots, each slot refilled with the next waiting trial of the group as soon as its trial ends (pruned,
stopped early, or done), so a group is cut into one task per worker, not per `max_size` trials
(`slot_refill=False`: chunks of `max_size` trials, one program each). Each group task is one task,
`run_group`, for any executor: in this process, on a local worker pool, or on a Dask/Ray cluster; there
its trials train together (gridrun/train/population/). `expand` turns a group's outcome back into one per trial, so
the sweep loop handles trials exactly as it does without population mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .trial import PopulationTask, TrialResult, TrialTask, _one_by_one, run_trial, run_trials, train_together

if TYPE_CHECKING:  # the sweep's client imports no JAX until it runs a population
    from ..train.population import PopulationConfig


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class GroupTask(PopulationTask):
    """A population group task with the configuration its worker trains it by."""

    config: PopulationConfig | None = None


PRUNED_ALONE = ("trained one after another, as in a sequential sweep: the sweep's pruner stops them at its rungs, "
                "and on this backend a population program loses that to sequential training "
                "(bench/population.py --modes, the asha case; GRIDRUN_POPULATION_PRUNED=1 trains them together)")


def run_group(task: GroupTask) -> list[TrialResult]:
    """Run a group of trials (on a worker) in population mode, as `task.config` says; one result per
    trial, in order. Trials a pruner watches train one after another where the configuration or, by
    default, the worker's cost model (widths.Costs.pruned_together: False on a CPU) says so, said in one line."""
    if any(t.pruner is not None for t in task.tasks) and not pruned_together(task.config):
        import sys

        print(f"gridrun population: {len(task.tasks)} trials {PRUNED_ALONE}", file=sys.stderr, flush=True)
        return run_trials(task.tasks, _one_by_one)
    return run_trials(task.tasks, lambda plans: train_together(plans, task.config))


def pruned_together(config: PopulationConfig | None) -> bool:
    """Do trials that a sweep's pruner watches train together (config.pruned_together; None: the backend's
    cost model)?"""
    if config is not None and config.pruned_together is not None:
        return config.pruned_together
    from ..train import widths

    return widths.costs().pruned_together


class Grouper:
    """Turns trial tasks into population group tasks."""

    def __init__(self, static_flags: Iterable[str], config: PopulationConfig | int | None = None,
                 workers: int = 1) -> None:
        from ..train.population import PopulationConfig

        self.static_flags = tuple(static_flags)
        self.config = config if isinstance(config, PopulationConfig) else PopulationConfig(max_size=config)
        self.size = self.config.max_size
        self.workers = max(1, workers)

    def key(self, task: TrialTask) -> tuple[Any, ...]:
        """The static flags' values that split trials into groups. A conditional flag that does not
        apply to a trial is absent from its flags (the script keeps its default): it is keyed as
        absent, so it never splits trials by a value the script does not use."""
        return tuple((name, repr(task.flags[name])) for name in self.static_flags
                     if name in task.flags and not _is_int(task.flags[name]))

    def groups(self, tasks: list[TrialTask]) -> list[PopulationTask]:
        by_key: dict[tuple[Any, ...], list[TrialTask]] = {}
        for t in tasks:
            by_key.setdefault(self.key(t), []).append(t)
        out = []
        for members in by_key.values():
            if self.size and not self.config.slot_refill:  # one program per chunk of `size` trials
                step = self.size
                out += [GroupTask(members[i:i + step], self.size, self.config)
                        for i in range(0, len(members), step)]
                continue
            # one task per worker (a program of `size` slots is refilled with the task's waiting trials;
            # without a size, each task is one program): the trials are dealt round-robin in the order of
            # their programs (widths), so every worker gets an equal share of each width's compute
            chunks = min(self.workers, len(members) if not self.size else math.ceil(len(members) / self.size))
            order = sorted(range(len(members)), key=lambda i: program_key(self.static_flags, members[i].flags) or ())
            out += [GroupTask([members[i] for i in sorted(order[k::chunks])], self.size, self.config)
                    for k in range(chunks)]
        return out

    def batches(self, tasks: Iterable[TrialTask]) -> Iterator[PopulationTask]:
        """Group tasks lazily: every trial available now forms groups; trials queued later (retries)
        form new groups when asked for again. An iterator that may resume after StopIteration."""
        return _Batches(self, iter(tasks))


class _Batches:
    def __init__(self, grouper: Grouper, tasks: Iterator[TrialTask]) -> None:
        self.grouper, self.tasks = grouper, tasks
        self.pending: list[PopulationTask] = []

    def __iter__(self) -> _Batches:
        return self

    def __next__(self) -> PopulationTask:
        if not self.pending:
            self.pending = self.grouper.groups(list(self.tasks))
        if not self.pending:
            raise StopIteration
        return self.pending.pop(0)


def program_key(static_flags: Iterable[str], flags: dict[str, Any]) -> tuple[Any, ...] | None:
    """A trial's affinity key: the values of its static flags (integers included: a width changes the
    compiled program). Trials with equal keys share their compiled programs, so the local executor runs
    them on one worker (executors/local.py). None while a trial's flags are not drawn yet."""
    if not flags:
        return None
    return tuple((name, repr(flags[name])) for name in static_flags if name in flags)


def affinity_key(script: str) -> Callable[[dict[str, Any]], tuple[Any, ...] | None] | None:
    """flags -> program_key for `script`'s declared static flags; None when the script declares none
    (or its declaration cannot be read: the sweep checked it already, affinity is only a preference)."""
    from ..errors import GridrunError
    from ..flagspec import declared_flags

    try:
        static = tuple(name for name, spec in declared_flags(script).items() if spec.is_static)
    except (GridrunError, OSError):
        return None
    if not static:
        return None
    return lambda flags: program_key(static, flags)


def worker_function(grouper: Grouper | None) -> Callable[[Any], Any]:
    """What a worker runs for one task: a trial, or a population group."""
    return run_trial if grouper is None else run_group


def expand(task: Any, outcome: Any) -> list[tuple[TrialTask, Any]]:
    """One (trial task, outcome) per trial of a task's outcome: a group's results, or its exception."""
    if not isinstance(task, PopulationTask):
        return [(task, outcome)]
    if isinstance(outcome, BaseException) or not isinstance(outcome, list):
        return [(t, outcome) for t in task.tasks]
    return list(zip(task.tasks, outcome))
