"""Pruners: stop bad trials early, from the metric each trial reports after every epoch.

| name | rule |
|---|---|
| asha | asynchronous successive halving: at rungs of `grace * reduction**k` epochs a trial goes on only if its metric is in the best `1/reduction` of the values recorded at that rung so far |
| hyperband | asynchronous Hyperband: trials take turns among brackets, each an ASHA of its own with a grace period `reduction` times the previous one's, so some trials are judged late (robust to slow starters) |
| asha, hyperband with promote=True | the promotion variant (Syne Tune's, Ray Tune's HyperBandForBOHB): every trial pauses at each rung, its checkpoint kept, and the sweep continues the best paused trial of the highest rung once it is in the best `1/reduction` of those that reached the rung; none is stopped for arriving early, and trials still paused when the sweep ends are stopped (pruned) |
| median | a trial stops at epoch k when its metric is worse than the median of the other trials' at epoch k, after `warmup` epochs and once `startup` other trials reported epoch k |

The decision is the sweep client's (one pruner object, one lock); trials reach it through the
executor's channel (Executor.channel: a direct call in-process, a socket for local workers, the
engine's own channel on Dask and Ray). A pruner only sees numbers oriented so that lower is better.
A new pruner subclasses Pruner and implements `report` (docs/extending.md); `tuning_run(prune=)`
takes a name or a Pruner object. Names resolve through REGISTRY: gridrun's own, then those other
packages declare under the entry point group `gridrun.pruners`; a pruner's keyword arguments are its
options (`--prune-opt KEY=VALUE`). On resume, `replay` hands the pruner every ended trial's history.
"""

from __future__ import annotations

import math
import statistics
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from .._registry import Registry
from ..errors import GridrunError
from .trial import PAUSE

PRUNERS = ("none", "asha", "hyperband", "median")


class Pruner(ABC):
    name = "base"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.decisions: list[tuple[int, int, bool | str]] = []  # (trial, epoch, stopped or PAUSE), for reports and tests

    def __call__(self, trial: int, epoch: int, value: float) -> bool | str:
        """Record trial `trial`'s value at `epoch` (lower is better); True: stop the trial now; PAUSE
        ("pause", a promoting pruner): pause it here, its checkpoint kept, until `promote` picks it."""
        if not math.isfinite(value):
            return False  # a diverged trial fails on its own (its loss is not finite)
        with self.lock:
            stop = self.report(trial, epoch, value)
            self.decisions.append((trial, epoch, stop))
            return stop

    @abstractmethod
    def report(self, trial: int, epoch: int, value: float) -> bool | str:
        """The decision, under the lock."""

    def promote(self, paused: Mapping[int, int]) -> int | None:
        """Of the `paused` trials ({trial: the epoch it paused at}), the one to continue now, or None.
        Only promoting pruners pause trials (ASHA and Hyperband with promote=True)."""
        return None

    def replay(self, trial: int, history: Iterable[tuple[int, float]]) -> None:
        """Hear again what an ended trial reported (a resumed sweep: its fresh pruner learns what the
        interrupted one knew); the decisions are not acted on, nor recorded in `decisions`."""
        with self.lock:
            for epoch, value in history:
                if math.isfinite(value):
                    self.report(trial, epoch, value)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def advice(self, n_trials: int) -> str | None:
        """Said before a sweep of `n_trials` starts when it is too small for this pruner (None: fine)."""
        return None


SMALL_SWEEPS = 'docs/tuning.md, "Small sweeps"'


class ASHA(Pruner):
    """Asynchronous successive halving (Li et al. 2018), as Ray Tune's ASHAScheduler decides; the
    defaults are Ray Tune's and Optuna's (grace 1, reduction 4). On bench/search.py's space over 20
    seeds, reduction 4 kept the best configuration more often than 3 (median best val_loss 1.011x full
    random search's against 1.024x) with fewer trial-epochs (median 0.29x against 0.31x)."""

    name = "asha"

    def __init__(self, grace: int = 1, reduction: float = 4.0, max_epochs: int | None = None,
                 promote: bool = False) -> None:
        super().__init__()
        self.promoting = bool(promote)
        if grace < 1:
            raise GridrunError(f"--prune-grace {grace} must be at least 1 epoch")
        if reduction <= 1:
            raise GridrunError(f"--prune-reduction {reduction} must be greater than 1, e.g. 3")
        if max_epochs is not None and max_epochs < grace:
            raise GridrunError(f"--prune-max-epochs {max_epochs} must be at least the grace period {grace}")
        self.grace, self.reduction, self.max_epochs = int(grace), float(reduction), max_epochs
        self.rungs: dict[int, dict[int, float]] = {}  # rung epoch -> trial -> value

    def is_rung(self, epoch: int) -> bool:
        """Rungs are at grace * reduction**k epochs (1, 4, 16, 64, ... by default), below max_epochs."""
        if epoch < self.grace or (self.max_epochs is not None and epoch >= self.max_epochs):
            return False
        k = 0
        while (r := round(self.grace * self.reduction ** k)) < epoch:
            k += 1
        return r == epoch

    def report(self, trial: int, epoch: int, value: float) -> bool | str:
        if not self.is_rung(epoch):
            return False
        recorded = self.rungs.setdefault(epoch, {})
        recorded[trial] = value
        if self.promoting:  # every trial pauses at a rung; `promote` continues the best when enough arrived
            return PAUSE
        values = sorted(recorded.values())
        # the best 1/reduction of the values recorded here go on (at least the best one)
        keep = max(1, math.floor(len(values) / self.reduction))
        cutoff = values[keep - 1]
        return value > cutoff

    def promote(self, paused: Mapping[int, int]) -> int | None:
        """ASHA's promotion rule (Li et al. 2018, Algorithm 2's get_job): from the highest rung down, the
        best paused trial among the top 1/reduction of all the trials that reached that rung."""
        if not self.promoting:
            return None
        for rung in sorted(self.rungs, reverse=True):
            recorded = self.rungs[rung]
            k = math.floor(len(recorded) / self.reduction)
            for t in sorted(recorded, key=lambda t: (recorded[t], t))[:k]:
                if paused.get(t) == rung:
                    return t
        return None

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "grace": self.grace, "reduction": self.reduction, "max_epochs": self.max_epochs}
        return {**out, "promote": True} if self.promoting else out

    def advice(self, n_trials: int, what: str = "") -> str | None:
        """Fewer trials than reduction**2: after the first rung fewer than `reduction` trials go on, so
        the next rung has (about) nothing to compare, and the first decided on one epoch's noise."""
        eta = self.reduction
        if n_trials >= eta * eta:
            return None
        nxt = round(self.grace * eta)
        return (f"{n_trials} trials are few for --prune {self.name}{what} (grace {self.grace}, reduction {eta:g}): "
                f"at epoch {self.grace} it keeps about the best 1 in {eta:g} on that epoch's values alone, and "
                f"fewer than {eta:g} trials go on to be compared at epoch {nxt}; with fewer than {eta * eta:g} "
                f"trials, judge later with --prune-grace E (e.g. a third of the epochs), keep more with "
                f"--prune-reduction 2, or drop --prune ({SMALL_SWEEPS})")


class Hyperband(Pruner):
    """Asynchronous Hyperband (Li et al. 2018, as Ray Tune's AsyncHyperBand): bracket b is an ASHA with
    grace `grace * reduction**b`; trial t goes to bracket t mod the number of brackets, whose rungs
    alone judge it. The brackets are those with a grace below `max_epochs` (given: all of them; not
    given: `brackets`, default 3). It keeps slow starters more often than ASHA, for more epochs spent:
    in an offline replay of bench/search.py's random searches (9 epochs, brackets of grace 1 and 4) the
    best val_loss was 1.001x full random search's in the median of 10 seeds, for 0.47x of its
    trial-epochs, against ASHA's 1.028x for 0.28x."""

    name = "hyperband"

    def __init__(self, grace: int = 1, reduction: float = 4.0, max_epochs: int | None = None,
                 brackets: int | None = None, promote: bool = False) -> None:
        super().__init__()
        self.promoting = bool(promote)
        ASHA(grace, reduction, max_epochs)  # the same checks of the settings
        if brackets is not None and brackets < 1:
            raise GridrunError(f"hyperband brackets={brackets}: use at least 1")
        n = brackets or 3
        if max_epochs is not None and brackets is None:
            n = 1
            while round(grace * reduction ** n) < max_epochs:
                n += 1
        self.brackets = [ASHA(max(1, round(grace * reduction ** b)), reduction, max_epochs, promote)
                         for b in range(n)]
        self.grace, self.reduction, self.max_epochs = int(grace), float(reduction), max_epochs

    def report(self, trial: int, epoch: int, value: float) -> bool | str:
        return self.brackets[trial % len(self.brackets)].report(trial, epoch, value)

    def promote(self, paused: Mapping[int, int]) -> int | None:
        """Each bracket promotes among its own trials (the lowest-grace bracket asked first)."""
        n = len(self.brackets)
        for b, bracket in enumerate(self.brackets):
            t = bracket.promote({t: e for t, e in paused.items() if t % n == b})
            if t is not None:
                return t
        return None

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "grace": self.grace, "reduction": self.reduction, "max_epochs": self.max_epochs,
               "brackets": [b.grace for b in self.brackets]}
        return {**out, "promote": True} if self.promoting else out

    def advice(self, n_trials: int) -> str | None:
        per = n_trials // len(self.brackets)  # each bracket judges its own share of the trials
        text = self.brackets[0].advice(per, f", about {per} per bracket of {len(self.brackets)}")
        return text.replace(f"{per} trials are few", f"{n_trials} trials are few", 1).replace(
            "--prune asha", "--prune hyperband", 1) if text else None


class MedianPruner(Pruner):
    """Stop a trial whose value at epoch k is worse than the median of the other trials' at epoch k."""

    name = "median"

    def __init__(self, warmup: int = 1, startup: int = 4) -> None:
        super().__init__()
        if warmup < 0 or startup < 1:
            raise GridrunError("--prune-warmup must be >= 0 and --prune-startup >= 1")
        self.warmup, self.startup = int(warmup), int(startup)
        self.values: dict[int, dict[int, float]] = {}  # epoch -> trial -> value

    def report(self, trial: int, epoch: int, value: float) -> bool:
        at = self.values.setdefault(epoch, {})
        others = [v for t, v in at.items() if t != trial]
        at[trial] = value
        if epoch <= self.warmup or len(others) < self.startup:
            return False
        return value > statistics.median(others)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "warmup": self.warmup, "startup": self.startup}

    def advice(self, n_trials: int) -> str | None:
        if n_trials > self.startup:
            return None
        return (f"{n_trials} trials are too few for --prune median: it prunes only once --prune-startup "
                f"{self.startup} other trials reported an epoch, so it would stop nothing; lower --prune-startup "
                f"or drop --prune ({SMALL_SWEEPS})")


def _no_pruner() -> None:
    """`--prune none`: a name for no pruner (it takes no options)."""
    return None


REGISTRY = Registry("pruner", "gridrun.pruners", "--prune",
                    {"none": _no_pruner, "asha": ASHA, "hyperband": Hyperband, "median": MedianPruner})


def make_pruner(name: str | Pruner | None, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Pruner | None:
    """The pruner `name` (a registered name, or a Pruner object, used as given) built with `options`
    (keyword arguments of its class; text values typed by its signature); None: no pruning."""
    options = {**(options or {}), **kwargs}
    if isinstance(name, Pruner):
        if options:
            raise GridrunError(f"prune_options apply to a pruner named by its name, not to the {name.name!r} "
                               f"object given: set them when creating it")
        return name
    if name is None:
        if options:
            raise GridrunError(f"pruner options ({', '.join(options)}) given without a pruner: add --prune asha (or another)")
        return None
    if not isinstance(name, str):
        raise GridrunError(f"prune={name!r}: give a pruner's name ({', '.join(REGISTRY.names())}) or a "
                           f"gridrun.Pruner object")
    pruner = REGISTRY.create(name, options)
    if pruner is not None and not isinstance(pruner, Pruner):
        raise GridrunError(f"pruner {name!r} made a {type(pruner).__name__}, not a gridrun.Pruner: subclass "
                           f"gridrun.Pruner and implement report(trial, epoch, value)")
    return pruner
