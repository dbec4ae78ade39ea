"""Samplers: which flag values each trial of a sweep runs with.

| name | what | trial values chosen |
|---|---|---|
| grid | every combination of the lists, or a sample of them without repeats (tfruns) | when the sweep is planned |
| random | as grid for lists alone; with ranges, each flag drawn independently | when the trial starts |
| tpe | Optuna's Tree-structured Parzen Estimator (`pip install gridrun[optuna]`) | when the trial starts |
| cmaes | Optuna's CMA-ES (numeric flags; a list of strings or booleans is drawn at random beside it) | when the trial starts |

A sampler plans the sweep's trial list (`plan`), gives a trial its values when it is about to run
(`ask`, lazily: adaptive samplers learn from the trials that ended before), and is told every ended
trial (`tell`), including, after a resume, every trial that ended before the resume. Values asked are
recorded in the manifest and the run dir before the trial runs, so a resumed sweep reruns exactly
them. The base class is small on purpose (as Optuna's samplers): a new sampler implements `ask` and,
if it learns, `tell`.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any

from .. import scoring
from ..errors import GridrunError
from ..grid import Grid, sample_grid
from ..record import Status
from .state import Trial

SAMPLERS = ("grid", "random", "tpe", "cmaes")


class Sampler(ABC):
    name = "base"
    lazy = True  # values are asked when a trial starts (False: fixed when the sweep is planned)

    def __init__(self, grid: Grid, seed: int, metric: str | None = None, mode: str | None = None) -> None:
        self.grid, self.seed = grid, seed
        self.metric = metric or scoring.DEFAULT_METRIC
        self.mode = scoring.direction(self.metric, mode)

    def plan(self, n: int, sample: Any = None, ordered: bool = False) -> list[Trial]:
        """The sweep's trials, `n` of them; lazy samplers leave their flags empty until `ask`."""
        return [Trial(trial=i, flags={}) for i in range(n)]

    @abstractmethod
    def ask(self, trial: Trial) -> dict[str, Any]:
        """The flag values trial `trial` runs with."""

    def tell(self, trial: Trial) -> None:
        """Trial `trial` ended (its status and last metrics are set)."""
        return None

    def value(self, trial: Trial) -> float | None:
        """The sweep metric's final value of an ended trial (None: not logged or not finite)."""
        return scoring.finite(trial.metrics.get(self.metric))


class GridSampler(Sampler):
    """tfruns' sampling: the Cartesian grid, all of it or a sample of distinct combinations."""

    name = "grid"
    lazy = False

    def plan(self, n: int, sample: Any = None, ordered: bool = False) -> list[Trial]:
        if self.grid.has_ranges:
            raise GridrunError("the grid sampler enumerates lists of values, and this sweep has ranges: "
                               "use --sampler random (the default with ranges) or --sampler tpe")
        indices = sample_grid(self.grid, sample, seed=self.seed, ordered=ordered)
        return [Trial(trial=i, flags=self.grid[c], combination=int(c)) for i, c in enumerate(indices)]

    def ask(self, trial: Trial) -> dict[str, Any]:
        return trial.flags


class RandomSampler(Sampler):
    """Random search: without ranges the same as grid sampling (distinct combinations); with ranges,
    trial k's values are drawn from a generator seeded by (seed, k), so they never depend on the order
    in which trials start and are the same on every resume."""

    name = "random"

    def __init__(self, grid: Grid, seed: int, metric: str | None = None, mode: str | None = None) -> None:
        super().__init__(grid, seed, metric, mode)
        self.lazy = grid.has_ranges

    def plan(self, n: int, sample: Any = None, ordered: bool = False) -> list[Trial]:
        if not self.grid.has_ranges:
            return GridSampler(self.grid, self.seed).plan(n, sample, ordered)
        return super().plan(n, sample, ordered)

    def ask(self, trial: Trial) -> dict[str, Any]:
        if trial.flags:
            return trial.flags
        return self.grid.draw(random.Random(f"gridrun:{self.seed}:{trial.trial}"))


class OptunaSampler(Sampler):
    """An Optuna sampler through Optuna's ask-and-tell interface. Lists become categorical
    distributions, ranges Optuna's float/int distributions (log where the range is); several asks may
    be in flight (--jobs, population groups). After a resume, every ended trial is added to the fresh
    study. A subclass names the Optuna sampler (`optuna_sampler`)."""

    name = "optuna"

    def __init__(self, grid: Grid, seed: int, metric: str | None = None, mode: str | None = None) -> None:
        super().__init__(grid, seed, metric, mode)
        try:
            import optuna
        except ImportError:
            raise GridrunError(f"--sampler {self.name} needs Optuna: pip install 'gridrun[optuna]'") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.distributions = self._distributions()
        self.study = optuna.create_study(direction="minimize" if self.mode == "min" else "maximize",
                                         sampler=self.optuna_sampler(seed, min(10, max(2, len(grid) or 10))))
        self.live: dict[int, Any] = {}  # trial index -> the optuna trial asked for it

    @abstractmethod
    def optuna_sampler(self, seed: int, startup: int) -> Any:
        """The Optuna sampler, seeded; `startup` trials are drawn at random before it models anything."""

    def _distributions(self) -> dict[str, Any]:
        d = self.optuna.distributions
        out: dict[str, Any] = {}
        for name, values in self.grid.values.items():
            out[name] = d.CategoricalDistribution(values)
        for name, r in self.grid.ranges.items():
            integer = r.kind == "randint" or self.grid.types.get(name) == "integer"
            log = r.kind == "loguniform" or r.log
            if integer:
                out[name] = d.IntDistribution(int(r.low), int(r.high), log=log,
                                              step=int(r.step) if r.step and not log else 1)
            else:
                out[name] = d.FloatDistribution(float(r.low), float(r.high), log=log,
                                                step=None if log else r.step)
        return out

    def ask(self, trial: Trial) -> dict[str, Any]:
        if trial.flags:  # asked before a resume: run the same values again
            return trial.flags
        ot = self.study.ask(self.distributions)
        self.live[trial.trial] = ot
        out = {}
        for name in self.grid.names:
            v = ot.params[name]
            out[name] = int(v) if self.grid.types.get(name) == "integer" and isinstance(v, float) else v
        return out

    def tell(self, trial: Trial) -> None:
        state = self.optuna.trial.TrialState
        value = self.value(trial)
        if trial.status == Status.COMPLETED and value is not None:
            st, values = state.COMPLETE, value
        elif trial.status == Status.PRUNED:
            st, values = state.PRUNED, None
        elif trial.status == Status.FAILED or trial.status == Status.COMPLETED:
            st, values = state.FAIL, None
        else:
            return  # pending, running, interrupted: nothing to learn yet
        ot = self.live.pop(trial.trial, None)
        if ot is not None:
            self.study.tell(ot, values, state=st)
            return
        try:  # a trial that ended before a resume: add it to the study as it ended
            params = {k: trial.flags[k] for k in self.distributions if k in trial.flags}
            self.study.add_trial(self.optuna.trial.create_trial(
                params=params, distributions={k: self.distributions[k] for k in params},
                value=values, state=st))
        except (ValueError, TypeError):  # values outside today's space (the grid changed): skip
            pass


class TPESampler(OptunaSampler):
    """Optuna's Tree-structured Parzen Estimator."""

    name = "tpe"

    def optuna_sampler(self, seed: int, startup: int) -> Any:
        return self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


class CmaEsSampler(OptunaSampler):
    """Optuna's CMA-ES (needs the `cmaes` package, in the optuna extra). It models the numeric flags
    (ranges and numeric lists); Optuna draws the others (strings, booleans) independently at random."""

    name = "cmaes"

    def optuna_sampler(self, seed: int, startup: int) -> Any:
        try:
            import cmaes  # noqa: F401 - Optuna imports it when the first generation starts
        except ImportError:
            raise GridrunError("--sampler cmaes needs the cmaes package: pip install 'gridrun[optuna]'") from None
        return self.optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=startup, warn_independent_sampling=False,
            independent_sampler=self.optuna.samplers.RandomSampler(seed=seed))


def make_sampler(name: str | None, grid: Grid, seed: int, metric: str | None, mode: str | None) -> Sampler:
    """The sampler named `name` (default: grid for lists, random with ranges)."""
    if name is None:
        name = "random" if grid.has_ranges else "grid"
    classes = {"grid": GridSampler, "random": RandomSampler, "tpe": TPESampler, "cmaes": CmaEsSampler}
    if name not in classes:
        raise GridrunError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")
    return classes[name](grid, seed, metric, mode)
