"""Ranges of flag values: the search space beyond lists.

    gridrun.loguniform(1e-5, 1e-1)    # log-uniform floats in [1e-5, 1e-1]
    gridrun.uniform(0.0, 0.5)         # uniform floats in [0, 0.5]
    gridrun.randint(32, 512)          # integers 32..512, both ends included
    gridrun.randint(32, 512, step=32) # 32, 64, ..., 512
    gridrun.randint(16, 1024, log=True)

The same three are written `--flag lr=loguniform(1e-5,1e-1)` on the command line and
`lr: {loguniform: [1e-5, 1e-1]}` in a grid YAML file. A range is typed by the flag it is for (an
integer flag draws integers); draws are made from a seeded `random.Random`, so a sweep's values are
reproducible from its seed. This module imports only gridrun.errors.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any

from .errors import GridrunError

KINDS = ("uniform", "loguniform", "randint")
_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Range:
    """A range of flag values to draw from."""

    kind: str
    low: float
    high: float
    step: float | None = None
    log: bool = False

    def __post_init__(self) -> None:
        where = str(self)
        if self.kind not in KINDS:
            raise GridrunError(f"unknown distribution {self.kind!r} in {where}: use one of {', '.join(KINDS)}")
        for name in ("low", "high"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise GridrunError(f"{where}: {name} must be a finite number, got {v!r}")
        if self.low > self.high:
            raise GridrunError(f"{where}: low {self.low} is greater than high {self.high}: swap them")
        if (self.kind == "loguniform" or self.log) and self.low <= 0:
            raise GridrunError(f"{where}: a log scale needs low > 0 (got {self.low}): e.g. loguniform(1e-5, 1e-1)")
        if self.kind == "randint":
            if not (float(self.low).is_integer() and float(self.high).is_integer()):
                raise GridrunError(f"{where}: randint takes whole numbers, e.g. randint(32, 512)")
            if self.step is not None and (self.step <= 0 or not float(self.step).is_integer()):
                raise GridrunError(f"{where}: step must be a whole number > 0")
            if self.step is not None and self.log:
                raise GridrunError(f"{where}: give step or log=True, not both")
        elif self.step is not None and self.step <= 0:
            raise GridrunError(f"{where}: step must be > 0")

    def __str__(self) -> str:
        args = [_num(self.low), _num(self.high)]
        if self.step is not None:
            args.append(f"step={_num(self.step)}")
        if self.log and self.kind != "loguniform":
            args.append("log=True")
        return f"{self.kind}({', '.join(args)})"

    def check_for(self, flag: str, flag_type: str) -> None:
        """A range is for numeric and integer flags only."""
        if flag_type not in ("numeric", "integer"):
            raise GridrunError(
                f"flag '{flag}' is a {flag_type} flag and cannot take the range {self}: give a list of values, "
                f"e.g. --flag {flag}=a,b"
            )

    def sample(self, rng: random.Random, flag_type: str = "numeric") -> int | float:
        """One value, typed for the flag: an integer flag gets an int."""
        if self.kind == "randint" or flag_type == "integer":
            lo, hi = math.ceil(self.low), math.floor(self.high)
            if self.kind == "randint" and self.step:
                step = int(self.step)
                return lo + step * rng.randint(0, (hi - lo) // step)
            if self.kind == "loguniform" or self.log:
                # log-uniform over the integers: each value gets the log-width of [v - 0.5, v + 0.5]
                v = math.exp(rng.uniform(math.log(lo - 0.5 if lo > 0.5 else lo), math.log(hi + 0.5)))
                return int(min(hi, max(lo, round(v))))
            return rng.randint(lo, hi)
        if self.kind == "loguniform" or self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        if self.step:
            value = self.low + self.step * round((value - self.low) / self.step)
        return float(min(self.high, max(self.low, value)))

    def to_json(self) -> dict[str, Any]:
        """The grid-YAML form: `{"loguniform": [1e-05, 0.1]}` (plus step / log when set)."""
        out: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.step is not None:
            out["step"] = self.step
        if self.log and self.kind != "loguniform":
            out["log"] = True
        return out


def _num(v: float) -> str:
    return repr(int(v)) if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15) else repr(v)


def uniform(low: float, high: float, step: float | None = None) -> Range:
    """Floats drawn uniformly from [low, high] (on a grid of `step` when given)."""
    return Range("uniform", low, high, step)


def loguniform(low: float, high: float) -> Range:
    """Floats whose logarithm is uniform in [log(low), log(high)]: learning rates, penalties."""
    return Range("loguniform", low, high)


def randint(low: int, high: int, step: int | None = None, log: bool = False) -> Range:
    """Integers from low to high, both included (every `step`-th, or log-uniformly with log=True)."""
    return Range("randint", low, high, step, log)


_MAKERS = {"uniform": uniform, "loguniform": loguniform, "randint": randint}


def parse_range(text: str) -> Range | None:
    """`loguniform(1e-5,1e-1)` -> a Range; text that is not a call -> None (a list of values)."""
    m = _CALL.match(text)
    if not m:
        return None
    kind, body = m.group(1), m.group(2)
    if kind not in _MAKERS:
        raise GridrunError(f"unknown distribution {kind!r} in {text!r}: use one of {', '.join(KINDS)}, "
                           f"e.g. loguniform(1e-5,1e-1)")
    args: list[float] = []
    kwargs: dict[str, Any] = {}
    for part in (p.strip() for p in body.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        try:
            if sep:
                kwargs[key.strip()] = value.strip().lower() in ("true", "1", "yes") if key.strip() == "log" \
                    else float(value)
            else:
                args.append(float(part))
        except ValueError:
            raise GridrunError(f"{text!r}: {part!r} is not a number") from None
    if len(args) != 2 or set(kwargs) - {"step", "log"}:
        raise GridrunError(f"{text!r}: write {kind}(LOW, HIGH)" + (", with optional step=N or log=true"
                                                                     if kind == "randint" else ""))
    try:
        return _MAKERS[kind](*args, **kwargs)
    except TypeError:
        raise GridrunError(f"{text!r}: {kind} takes LOW, HIGH" + (" and step=/log=" if kind == "randint" else "")) \
            from None


def from_yaml(value: Any) -> Range | None:
    """`{"loguniform": [1e-5, 1e-1]}` (grid YAML) -> a Range; anything else -> None."""
    if not isinstance(value, dict):
        return None
    kinds = [k for k in value if k in _MAKERS]
    if len(kinds) != 1:
        unknown = [k for k in value if k not in ("step", "log")]
        if unknown and not kinds:
            raise GridrunError(f"unknown distribution {unknown[0]!r} in {value!r}: use one of {', '.join(KINDS)}")
        return None
    kind = kinds[0]
    bounds = value[kind]
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise GridrunError(f"{value!r}: write {{{kind}: [LOW, HIGH]}}")
    kwargs = {k: value[k] for k in ("step", "log") if k in value}
    try:
        return _MAKERS[kind](*bounds, **kwargs)
    except TypeError:
        raise GridrunError(f"{value!r}: only randint takes step and log") from None
