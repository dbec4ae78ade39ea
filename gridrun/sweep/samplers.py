"""Samplers: which flag values each trial of a sweep runs with.

| name | what | trial values chosen |
|---|---|---|
| grid | every combination of the lists, or a sample of them without repeats (tfruns) | when the sweep is planned |
| random | as grid for lists alone; with ranges, each flag drawn independently | when the trial starts |
| tpe | Optuna's Tree-structured Parzen Estimator (`pip install gridrun[optuna]`) | when the trial starts |
| cmaes | Optuna's CMA-ES (numeric flags; a list of strings or booleans is drawn at random beside it) | when the trial starts |
| nsga2 | Optuna's NSGA-II, a genetic algorithm for several metrics (or one) | when the trial starts |

With several metrics (`--metric a --metric b`) a sweep is multi-objective: `metrics` and `modes` hold
them all (`metric`, `mode` the first), `values(trial)` gives a trial's value of each. grid and random
ignore them; nsga2 and tpe optimize them together (an Optuna study with `directions=`); cmaes refuses.

A sampler plans the sweep's trial list (`plan`), gives a trial its values when it is about to run
(`ask`, lazily: adaptive samplers learn from the trials that ended before), and is told every ended
trial (`tell`), including, after a resume, every trial that ended before the resume. Values asked are
recorded in the manifest and the run dir before the trial runs, so a resumed sweep reruns exactly
them. The base class is small on purpose (as Optuna's samplers): a new sampler implements `ask` and,
if it learns, `tell` (docs/extending.md).

A sampler object is made before the sweep's space is known (`TPESampler(n_startup_trials=5)`, or a
user's own); the sweep then binds it to the grid, seed and metric (`bind`, which calls `setup`).
`tuning_run(sampler=)` takes a name, a Sampler object, or an Optuna sampler object (wrapped by
OptunaSampler). Names resolve through REGISTRY: gridrun's own, then those other packages declare
under the entry point group `gridrun.samplers`; a sampler's keyword arguments are its options
(`--sampler-opt KEY=VALUE`).
"""

from __future__ import annotations

import random
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from .. import scoring
from .._registry import Registry
from ..errors import GridrunError
from ..grid import Grid, sample_grid
from ..record import Status
from .state import Trial

SAMPLERS = ("grid", "random", "tpe", "cmaes", "nsga2")


class Sampler(ABC):
    name = "base"
    lazy = True  # values are asked when a trial starts (False: fixed when the sweep is planned)
    grid: Grid
    seed: int
    metric: str
    mode: str
    metrics: list[str]  # every metric the sweep optimizes (one, or several: a multi-objective sweep)
    modes: list[str]

    def bind(self, grid: Grid, seed: int, metric: str | list[str] | None = None,
             mode: str | list[str] | None = None) -> Sampler:
        """Give the sampler the sweep's space, seed and metric(s) (done by the sweep); returns itself."""
        self.grid, self.seed = grid, seed
        objectives = scoring.objectives(metric, mode) or [(scoring.DEFAULT_METRIC, scoring.direction(
            scoring.DEFAULT_METRIC, mode if isinstance(mode, str) else None))]
        self.metrics, self.modes = [n for n, _ in objectives], [m for _, m in objectives]
        self.metric, self.mode = self.metrics[0], self.modes[0]
        self.setup()
        return self

    @property
    def multi_objective(self) -> bool:
        """Does the sweep optimize several metrics?"""
        return len(getattr(self, "metrics", ())) > 1

    def setup(self) -> None:
        """Called by `bind`, once `grid`, `seed`, `metric` and `mode` are set."""
        return None

    def options(self) -> dict[str, Any]:
        """The options this sampler was made with (recorded in the manifest, given again on resume)."""
        return dict(getattr(self, "_options", {}))

    def plan(self, n: int, sample: Any = None, ordered: bool = False) -> list[Trial]:
        """The sweep's trials, `n` of them; lazy samplers leave their flags empty until `ask`."""
        return [Trial(trial=i, flags={}) for i in range(n)]

    @abstractmethod
    def ask(self, trial: Trial) -> dict[str, Any]:
        """The flag values trial `trial` runs with."""

    def tell(self, trial: Trial) -> None:
        """Trial `trial` ended (its status, last metrics and `history` are set)."""
        return None

    def value(self, trial: Trial) -> float | None:
        """The sweep metric's final value of an ended trial (None: not logged or not finite)."""
        return scoring.finite(trial.metrics.get(self.metric))

    def values(self, trial: Trial) -> list[float] | None:
        """Each sweep metric's final value of an ended trial, in `metrics` order (None: one is missing)."""
        out = [scoring.finite(trial.metrics.get(name)) for name in self.metrics]
        return None if any(v is None for v in out) else out  # type: ignore[return-value]

    def intermediate(self, trial: Trial) -> list[tuple[int, float]]:
        """The sweep metric's (epoch, value) pairs an ended trial reported, finite ones only."""
        return [(e, v) for e, v in trial.reports(self.metric) if scoring.finite(v) is not None]


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

    def setup(self) -> None:
        self.lazy = self.grid.has_ranges

    def plan(self, n: int, sample: Any = None, ordered: bool = False) -> list[Trial]:
        if not self.grid.has_ranges:
            return GridSampler().bind(self.grid, self.seed).plan(n, sample, ordered)
        return super().plan(n, sample, ordered)

    def ask(self, trial: Trial) -> dict[str, Any]:
        if trial.flags:
            return trial.flags
        return self.grid.draw(random.Random(f"gridrun:{self.seed}:{trial.trial}"))


class OptunaSampler(Sampler):
    """An Optuna sampler through Optuna's ask-and-tell interface. Lists become categorical
    distributions, ranges Optuna's float/int distributions (log where the range is); several asks may
    be in flight (--jobs, population groups). A pruned trial is told with the values it reported at
    each epoch (`trial.report`, as Optuna's own pruning loop does), so that TPE ranks pruned trials by
    how far they got and how well. After a resume, every ended trial is added to the fresh study.

    `OptunaSampler(optuna.samplers.GPSampler(seed=0))` wraps any Optuna sampler object (so does
    `tuning_run(sampler=<an Optuna sampler>)`); a subclass names one instead (`optuna_sampler`)."""

    name = "optuna"

    def __init__(self, sampler: Any = None) -> None:
        self.given = sampler
        if sampler is not None:
            self.name = f"optuna:{type(sampler).__name__}"

    def setup(self) -> None:
        try:
            import optuna
        except ImportError:
            raise GridrunError(f"--sampler {self.name} needs Optuna: pip install 'gridrun[optuna]'") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.distributions = self._distributions()
        chosen = self.given if self.given is not None else self.optuna_sampler(
            self.seed, min(10, max(2, len(self.grid) or 10)))
        self.study = self._create_study(chosen)
        self.live: dict[int, Any] = {}  # trial index -> the optuna trial asked for it

    def _create_study(self, chosen: Any) -> Any:
        """The in-memory study: one direction, or one per metric for a multi-objective sweep."""
        directions = ["minimize" if m == "min" else "maximize" for m in self.modes]
        if len(directions) > 1:
            return self.optuna.create_study(directions=directions, sampler=chosen)
        return self.optuna.create_study(direction=directions[0], sampler=chosen)

    def optuna_sampler(self, seed: int, startup: int) -> Any:
        """The Optuna sampler, seeded; `startup` trials are drawn at random before it models anything."""
        raise GridrunError("OptunaSampler needs an Optuna sampler object: OptunaSampler(optuna.samplers.TPESampler())")

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
        if self.grid.when:
            return self._ask_conditional(trial)
        ot = self.study.ask(self.distributions)
        self.live[trial.trial] = ot
        out = {}
        for name in self.grid.names:
            v = ot.params[name]
            out[name] = int(v) if self.grid.types.get(name) == "integer" and isinstance(v, float) else v
        return out

    def _ask_conditional(self, trial: Trial) -> dict[str, Any]:
        """Define-by-run, as Optuna does conditional spaces: each flag is suggested after the flags it
        depends on, and only when it applies (so TPE models it on the trials where it did)."""
        ot = self.study.ask()
        self.live[trial.trial] = ot
        out: dict[str, Any] = {}
        for name in self.grid.flag_order():
            if name in self.distributions and self.grid.applies(name, out):
                v = _suggest(ot, name, self.distributions[name])
                out[name] = int(v) if self.grid.types.get(name) == "integer" and isinstance(v, float) else v
        return {name: out[name] for name in self.grid.names if name in out}

    def tell(self, trial: Trial) -> None:
        state = self.optuna.trial.TrialState
        value: Any = self.values(trial) if self.multi_objective else self.value(trial)
        steps: dict[int, float] = {}
        if trial.status == Status.COMPLETED and value is not None:
            st, values = state.COMPLETE, value
        elif trial.status == Status.PRUNED:
            st, values = state.PRUNED, None
            # a multi-objective study takes no intermediate values (Optuna's Trial.report refuses them,
            # and its TPE cannot rank pruned trials that carry some): told as pruned, without values
            steps = {} if self.multi_objective else dict(self.intermediate(trial))
        elif trial.status == Status.FAILED or trial.status == Status.COMPLETED:
            st, values = state.FAIL, None
        else:
            return  # pending, running, interrupted: nothing to learn yet
        ot = self.live.pop(trial.trial, None)
        if ot is not None:
            for step, v in steps.items():  # what Optuna's own pruning loop reports before it prunes
                ot.report(v, step)
            self.study.tell(ot, values, state=st)
            return
        try:  # a trial that ended before a resume: add it to the study as it ended
            params = {k: trial.flags[k] for k in self.distributions if k in trial.flags}
            if self.multi_objective:
                made = self.optuna.trial.create_trial(
                    params=params, distributions={k: self.distributions[k] for k in params}, values=values, state=st)
            else:
                made = self.optuna.trial.create_trial(
                    params=params, distributions={k: self.distributions[k] for k in params},
                    value=values if values is not None else (steps[max(steps)] if steps else None),
                    intermediate_values=steps or None, state=st)
            self.study.add_trial(made)
        except (ValueError, TypeError):  # values outside today's space (the grid changed): skip
            pass


def _suggest(ot: Any, name: str, dist: Any) -> Any:
    """One value of an Optuna distribution, through the trial's public suggest_* methods."""
    kind = type(dist).__name__
    if kind == "CategoricalDistribution":
        return ot.suggest_categorical(name, dist.choices)
    if kind == "IntDistribution":
        return ot.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return ot.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


class TPESampler(OptunaSampler):
    """Optuna's Tree-structured Parzen Estimator; `n_startup_trials` random trials first (default:
    the grid's size, between 2 and 10), `multivariate` models the flags jointly. With several metrics,
    Optuna's multi-objective TPE (its "below" trials are the best non-dominated ones)."""

    name = "tpe"

    def __init__(self, n_startup_trials: int | None = None, multivariate: bool = False) -> None:
        super().__init__()
        if n_startup_trials is not None and n_startup_trials < 0:
            raise GridrunError(f"--sampler-opt n_startup_trials={n_startup_trials} must be 0 or more")
        self.n_startup_trials, self.multivariate = n_startup_trials, multivariate
        self._options = {k: v for k, v in (("n_startup_trials", n_startup_trials), ("multivariate", multivariate))
                         if v not in (None, False)}

    def optuna_sampler(self, seed: int, startup: int) -> Any:
        n = startup if self.n_startup_trials is None else self.n_startup_trials
        return self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=n, multivariate=self.multivariate)


class CmaEsSampler(OptunaSampler):
    """Optuna's CMA-ES (needs the `cmaes` package, in the optuna extra). It models the numeric flags
    (ranges and numeric lists); Optuna draws the others (strings, booleans) independently at random."""

    name = "cmaes"

    def __init__(self, n_startup_trials: int | None = None) -> None:
        super().__init__()
        self.n_startup_trials = n_startup_trials
        self._options = {"n_startup_trials": n_startup_trials} if n_startup_trials is not None else {}

    def optuna_sampler(self, seed: int, startup: int) -> Any:
        if self.multi_objective:
            raise GridrunError(f"--sampler cmaes optimizes one metric and this sweep has {len(self.metrics)} "
                               f"({', '.join(self.metrics)}): use --sampler nsga2 or tpe, or random")
        try:
            import cmaes  # noqa: F401 - Optuna imports it when the first generation starts
        except ImportError:
            raise GridrunError("--sampler cmaes needs the cmaes package: pip install 'gridrun[optuna]'") from None
        n = startup if self.n_startup_trials is None else self.n_startup_trials
        return self.optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=n, warn_independent_sampling=False,
            independent_sampler=self.optuna.samplers.RandomSampler(seed=seed))


class NSGAIISampler(OptunaSampler):
    """Optuna's NSGA-II (`optuna.samplers.NSGAIISampler`): a genetic algorithm whose generations of
    `population_size` trials (default 50, Optuna's) are bred from the non-dominated trials of the last
    ones; made for several metrics (`--metric a --metric b`), it also takes one. Its first generation is
    random, so a sweep needs several times `population_size` trials for it to do better than random
    search: with a small budget set `--sampler-opt population_size=8`. Pruned trials are told as pruned
    (NSGA-II breeds from completed ones only)."""

    name = "nsga2"

    def __init__(self, population_size: int = 50, mutation_prob: float | None = None,
                 crossover_prob: float = 0.9, swapping_prob: float = 0.5) -> None:
        super().__init__()
        if population_size < 2:
            raise GridrunError(f"--sampler-opt population_size={population_size} must be at least 2")
        if not 0.0 <= crossover_prob <= 1.0 or not 0.0 <= swapping_prob <= 1.0 or (
                mutation_prob is not None and not 0.0 <= mutation_prob <= 1.0):
            raise GridrunError("--sampler-opt mutation_prob, crossover_prob and swapping_prob are probabilities: "
                               "give values in [0, 1]")
        self.population_size, self.mutation_prob = population_size, mutation_prob
        self.crossover_prob, self.swapping_prob = crossover_prob, swapping_prob
        given = {"population_size": population_size, "mutation_prob": mutation_prob,
                 "crossover_prob": crossover_prob, "swapping_prob": swapping_prob}
        defaults = {"population_size": 50, "mutation_prob": None, "crossover_prob": 0.9, "swapping_prob": 0.5}
        self._options = {k: v for k, v in given.items() if v != defaults[k]}

    def optuna_sampler(self, seed: int, startup: int) -> Any:
        return self.optuna.samplers.NSGAIISampler(
            seed=seed, population_size=self.population_size, mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob, swapping_prob=self.swapping_prob)


REGISTRY = Registry("sampler", "gridrun.samplers", "--sampler",
                    {"grid": GridSampler, "random": RandomSampler, "tpe": TPESampler, "cmaes": CmaEsSampler,
                     "nsga2": NSGAIISampler})


def _is_optuna_sampler(obj: Any) -> bool:
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(obj, optuna.samplers.BaseSampler)


def resolve_sampler(spec: str | Sampler | Any | None, grid: Grid, options: Mapping[str, Any] | None = None) -> Sampler:
    """An unbound Sampler from a name (default: grid for lists, random with ranges), a Sampler object
    (used as given) or an Optuna sampler object (wrapped)."""
    if isinstance(spec, Sampler) or _is_optuna_sampler(spec):
        if options:
            raise GridrunError("sampler_options apply to a sampler named by its name, not to the object given: "
                               "set them when creating it")
        return spec if isinstance(spec, Sampler) else OptunaSampler(spec)
    if spec is None:
        spec = "random" if grid.has_ranges else "grid"
    if not isinstance(spec, str):
        raise GridrunError(f"sampler={spec!r}: give a sampler's name ({', '.join(REGISTRY.names())}), a "
                           f"gridrun.Sampler object or an Optuna sampler object")
    made = REGISTRY.create(spec, options)
    if not isinstance(made, Sampler):
        raise GridrunError(f"sampler {spec!r} made a {type(made).__name__}, not a gridrun.Sampler: subclass "
                           f"gridrun.Sampler and implement ask(trial)")
    if not made.options() and options:
        made._options = dict(REGISTRY.options(spec, options))  # type: ignore[attr-defined]
    made.name = spec  # as registered (what the manifest records, and a resume looks up)
    return made


def make_sampler(name: str | Sampler | Any | None, grid: Grid, seed: int, metric: str | list[str] | None,
                 mode: str | list[str] | None,
                 options: Mapping[str, Any] | None = None) -> Sampler:
    """The sampler `name` (see resolve_sampler), bound to the sweep's grid, seed and metric."""
    return resolve_sampler(name, grid, options).bind(grid, seed, metric, mode)
