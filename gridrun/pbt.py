"""Population-based training (PBT; Jaderberg et al. 2017): the decisions, with no JAX.

Every `interval` epochs the members of a population in the bottom `quantile` by the sweep's metric
copy the training state of a member of the top quantile (exploit) and perturb the copied
hyperparameters (explore): each mutable flag is multiplied by 0.8 or 1.2 (a flag searched over a list
of values moves to a neighbouring value), or, with probability `resample`, drawn afresh from its
declared range or values. Values stay inside their declared ranges and keep their flag types.

This module decides; it trains nothing. Population mode applies the decisions inside its vmapped
program (gridrun/train/population/exploit.py: one gather on the device); a sequential PBT through
checkpoints can take the very same decisions, since they depend only on the metric values, the
settings and the seed (`rng(seed, epoch)`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import scoring
from .errors import GridrunError
from .space import Range

PERTURB = (0.8, 1.2)


@dataclass(frozen=True)
class MutableFlag:
    """A flag PBT may change: its declared type (numeric or integer) and its declared range or values."""

    name: str
    type: str = "numeric"  # "numeric" (float) or "integer"
    range: Range | None = None
    values: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if (self.range is None) == (self.values is None):
            raise GridrunError(f"PBT flag {self.name!r}: give a range or a list of values, not both or neither")
        if self.type not in ("numeric", "integer"):
            raise GridrunError(f"PBT flag {self.name!r} is a {self.type} flag: only numeric and integer flags mutate")

    def typed(self, value: float) -> int | float:
        """`value` as the flag's type, inside its declared range (on its step grid, if any)."""
        r = self.range
        if r is not None:
            if r.step:
                value = r.low + r.step * round((value - r.low) / r.step)
            value = min(r.high, max(r.low, value))
            if self.type == "integer" or r.kind == "randint":
                lo, hi = math.ceil(r.low), math.floor(r.high)
                return int(min(hi, max(lo, round(value))))
            return float(value)
        return int(round(value)) if self.type == "integer" else float(value)

    def resample(self, rnd: random.Random) -> int | float:
        """A fresh value from the declared range or values."""
        if self.range is not None:
            return self.typed(self.range.sample(rnd, self.type))
        assert self.values is not None
        return self.values[rnd.randrange(len(self.values))]

    def perturb(self, value: Any, rnd: random.Random) -> int | float:
        """`value` times 0.8 or 1.2 (kept in range and type); over a list of values: a neighbouring
        value (as Ray Tune's PBT), the value itself at an end of the list."""
        up = rnd.random() < 0.5
        if self.values is not None:
            ordered = sorted(self.values)
            # the nearest declared value (a value copied in is always one; be lenient)
            i = min(range(len(ordered)), key=lambda k: abs(float(ordered[k]) - float(value)))
            j = min(len(ordered) - 1, i + 1) if up else max(0, i - 1)
            return ordered[j]
        new = self.typed(float(value) * (PERTURB[1] if up else PERTURB[0]))
        if self.type == "integer" and new == value and self.range is not None:  # 3 * 1.2 rounds back to 3
            new = self.typed(float(value) + (1 if up else -1))
        return new

    def describe(self) -> str:
        return f"{self.name} in {self.range}" if self.range is not None else f"{self.name} in {list(self.values or ())}"


@dataclass(frozen=True)
class PBTConfig:
    """PBT's settings (docs/population.md, "Population-based training"); frozen and picklable, carried
    by PopulationConfig.pbt to every group task."""

    interval: int | None = None  # epochs between exploit/explore steps; None: max(1, epochs // 10)
    quantile: float = 0.25  # the bottom (and top) fraction of the population
    resample: float = 0.25  # probability that a value is drawn afresh instead of perturbed
    metric: str = scoring.DEFAULT_METRIC
    mode: str = "min"
    seed: int = 0
    flags: tuple[MutableFlag, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.interval is not None and (isinstance(self.interval, bool) or not isinstance(self.interval, int)
                                          or self.interval < 1):
            raise GridrunError(f"--pbt-interval {self.interval!r}: use a whole number of epochs >= 1")
        if not (isinstance(self.quantile, (int, float)) and 0 < self.quantile <= 0.5):
            raise GridrunError(f"--pbt-quantile {self.quantile!r}: use a fraction in (0, 0.5], e.g. 0.25")
        if not (isinstance(self.resample, (int, float)) and 0 <= self.resample <= 1):
            raise GridrunError(f"--pbt-resample {self.resample!r}: use a probability in [0, 1], e.g. 0.25")
        if self.mode not in ("min", "max"):
            raise GridrunError(f"PBT mode {self.mode!r}: use min or max")

    def interval_for(self, epochs: int) -> int:
        """The interval for a population whose longest trial trains `epochs` epochs: by default a tenth
        of them (2 for 20 epochs). Measured on bench/pbt.py (16 trials, 20 epochs, seeds 0-4), shorter
        intervals found better final models: PBT's best val_loss 0.995x random search's at interval 4
        (the earlier default, epochs // 5), 0.983x at 2, 0.977x at 1 (docs/population.md)."""
        return self.interval if self.interval is not None else max(1, int(epochs) // 10)

    def flag(self, name: str) -> MutableFlag | None:
        return next((f for f in self.flags if f.name == name), None)


def rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of PBT's decisions after `epoch` epochs of a sweep seeded `seed`."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), 0x5B7])


def quantile_count(n: int, quantile: float) -> int:
    """How many members the bottom (and the top) quantile holds among `n`: ceil(n * quantile), at most
    half of them (so no member is both); 0 for a population of one."""
    return min(math.ceil(n * quantile), n // 2)


def decide(values: Sequence[float], mode: str, quantile: float, gen: np.random.Generator,
           eligible: Sequence[bool] | None = None) -> dict[int, int]:
    """{recipient: donor}: which members (indices into `values`) copy which. `values` are the members'
    current metric values. The bottom quantile of the finite values, and every non-finite member (NaN,
    inf: the worst) beyond it, copies a member drawn uniformly from the top quantile; a non-finite member
    is never a donor. `eligible` (default: all) marks the
    members that may be replaced now (e.g. those at their interval in refilled slots); every member
    with a value may donate."""
    v = np.asarray(values, np.float64)
    n = len(v)
    sign = scoring.sign("", mode) if mode in ("min", "max") else 1.0
    key = np.where(np.isfinite(v), sign * v, np.inf)
    order = sorted(range(n), key=lambda i: (key[i], i))  # best first, ties by index
    finite = [i for i in order if np.isfinite(key[i])]
    k = quantile_count(n, quantile)
    if k == 0 or not finite:
        return {}
    top = finite[:min(k, len(finite))]
    # the k worst finite members (not the top ones) and, beyond them, every non-finite member
    bottom = set(finite[max(len(top), len(finite) - k):]) | {i for i in range(n) if not np.isfinite(key[i])}
    ok = [True] * n if eligible is None else [bool(x) for x in eligible]
    out: dict[int, int] = {}
    for i in sorted(bottom):
        donor = top[int(gen.integers(len(top)))]
        if ok[i]:
            out[i] = donor
    return out


def explore(values: Mapping[str, Any], flags: Sequence[MutableFlag], resample: float,
            gen: np.random.Generator) -> dict[str, Any]:
    """The perturbed copy of a donor's `values` (flag -> value) for the flags given: each resampled
    with probability `resample`, else perturbed."""
    rnd = random.Random(int(gen.integers(2**63)))
    out = dict(values)
    for f in flags:
        if f.name not in values:
            continue
        out[f.name] = f.resample(rnd) if rnd.random() < resample else f.perturb(values[f.name], rnd)
    return out


def mutable_flags(ranges: Mapping[str, Range], values: Mapping[str, Sequence[Any]], types: Mapping[str, str],
                  static: Sequence[str] = ()) -> tuple[MutableFlag, ...]:
    """The searched flags PBT may mutate: numeric or integer flags searched over a range or over a list
    of at least two numbers, and not declared static (those change the program)."""
    out = []
    for name, r in ranges.items():
        t = types.get(name, "numeric")
        if name not in static and t in ("numeric", "integer"):
            out.append(MutableFlag(name, t, range=r))
    for name, vals in values.items():
        t = types.get(name, "numeric")
        nums = [x for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if name in static or name in ranges or t not in ("numeric", "integer") or len(nums) != len(vals) \
                or len(set(nums)) < 2:
            continue
        out.append(MutableFlag(name, t, values=tuple(sorted(set(nums)))))
    return tuple(out)


def sweep_config(options: Mapping[str, Any] | bool | PBTConfig, *, grid: Any, specs: Mapping[str, Any],
                 metric: str | None, mode: str | None, seed: int) -> PBTConfig:
    """The PBTConfig of a sweep: its options (`tuning_run(pbt=...)`: True, a dict of interval /
    quantile / resample, or a PBTConfig), the flags it may mutate (from the sweep's grid and the
    script's declarations), the sweep's metric and mode, and its seed. A sweep with nothing to mutate
    is an error."""
    if isinstance(options, PBTConfig):
        given: dict[str, Any] = {k: getattr(options, k) for k in ("interval", "quantile", "resample")}
    elif options is True:
        given = {}
    elif isinstance(options, Mapping):
        unknown = sorted(set(options) - {"interval", "quantile", "resample"})
        if unknown:
            raise GridrunError(f"pbt={{{unknown[0]!r}: ...}}: PBT's options are interval, quantile and resample")
        given = {k: v for k, v in options.items() if v is not None}
    else:
        raise GridrunError(f"pbt={options!r}: use True, a dict(interval=..., quantile=..., resample=...) or a PBTConfig")
    static = [n for n, s in specs.items() if getattr(s, "static", None)]
    types = {n: getattr(s, "type", "numeric") for n, s in specs.items()}
    types.update(getattr(grid, "types", {}) or {})
    flags = mutable_flags(getattr(grid, "ranges", {}) or {}, getattr(grid, "values", {}) or {}, types, static)
    if not flags:
        searched = ", ".join(getattr(grid, "names", []) or []) or "none"
        raise GridrunError(
            f"--pbt has nothing to mutate: no numeric flag that leaves the program unchanged is searched "
            f"(searched: {searched}). Search a learning rate, dropout rate or penalty over a range or "
            f"several values, e.g. --flag lr='loguniform(1e-4,1e-1)'")
    name = metric or scoring.DEFAULT_METRIC
    return PBTConfig(metric=name, mode=scoring.direction(name, mode), seed=int(seed), flags=flags, **given)


def schedule(run_dir: str | Any) -> dict[str, list[Any]]:
    """The per-epoch values of the flags PBT mutated in a trial's run dir (its metrics `hp_<flag>`):
    {flag: [value of epoch 1, value of epoch 2, ...]}; empty for a run trained without PBT."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {k[3:]: list(v) for k, v in metrics.items() if k.startswith("hp_")}


SCHEDULE_PROPERTY = "pbt_schedule"  # properties.json of a run replaying a PBT trial's schedule


def schedule_flags(run_dir: str | Any, given: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a plain `training-run --schedule RUN_DIR` needs to replay the PBT trial of `run_dir`: its
    starting flags (the trial's flags.json; `given` flags win, except the scheduled ones) and the
    property the run records, {"run": the trial's run dir, "values": schedule(run_dir), "paths": where
    each flag sat in the hparams of fit, as PBT found it}. The sequential driver then trains epoch `e`
    with the values of the trial's epoch `e` (gridrun/train/population/exploit.py ScheduleReplay); past
    the schedule's end the last values hold."""
    import json
    from pathlib import Path

    path = Path(run_dir)
    if not path.is_dir():
        raise GridrunError(f"--schedule {run_dir}: no such run dir; give the run dir of a PBT trial "
                           f"(gridrun.ls_runs() column run_dir)")
    values = schedule(path)
    if not values:
        raise GridrunError(f"--schedule {run_dir}: the run records no hp_<flag> metrics, so it has no PBT schedule "
                           f"to replay; give a trial of a --pbt sweep")
    flags_file = path / "flags.json"
    flags = json.loads(flags_file.read_text(encoding="utf-8")) if flags_file.is_file() else {}
    props_file = path / "properties.json"
    props = json.loads(props_file.read_text(encoding="utf-8")) if props_file.is_file() else {}
    clash = sorted(set(given or {}) & set(values))
    if clash:
        raise GridrunError(f"--flag {clash[0]}: that flag follows the schedule of {path.name} (its hp_{clash[0]} per "
                           f"epoch); drop --flag {clash[0]}, or drop --schedule")
    for name, seq in values.items():
        if seq and name in flags:
            flags[name] = seq[0]  # the value its first epoch trained with (flags.json's own)
    paths = (props.get("pbt_settings") or {}).get("paths") or {}
    prop = {"run": str(path.resolve()), "values": values, "paths": {k: v for k, v in paths.items() if k in values}}
    return {**flags, **dict(given or {})}, prop


def manifest_options(options: Mapping[str, Any] | bool | PBTConfig) -> dict[str, Any]:
    """PBT's options as a sweep manifest records them ("pbt": {interval, quantile, resample}, those given),
    for `--resume` to run the sweep with PBT again; `sweep_config` takes them back."""
    if isinstance(options, PBTConfig):
        return {k: getattr(options, k) for k in ("interval", "quantile", "resample") if getattr(options, k) is not None}
    if isinstance(options, Mapping):
        return {k: v for k, v in options.items() if k in ("interval", "quantile", "resample") and v is not None}
    return {}
