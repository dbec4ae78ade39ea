"""Grids of flag combinations: the Cartesian product (lazily indexed), explicit tables, and sampling.

A grid is never materialized: combination `i` of a product is found by reading `i` as a mixed-radix
number whose first digit belongs to the first flag (tfruns' order: the first flag varies fastest). So a
grid of 10^9 combinations costs nothing until a few of them are drawn by index.

    grid = build_grid({"nodes1": [64, 128], "optimizer": ["rmsprop", "adam"]}, specs)
    grid[1]                        # {'nodes1': 128, 'optimizer': 'rmsprop'}
    sample_grid(grid, 0.5, seed=1) # indices of ceil(0.5 * 4) = 2 distinct combinations
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FlagError, GridrunError
from .flagspec import FlagSpec, undeclared_message
from .space import Range


@dataclass
class Grid:
    """Flag combinations, addressable by index: a Cartesian product or an explicit table (`rows`)."""

    values: dict[str, list[Any]] = field(default_factory=dict)  # product: flag -> its values
    rows: list[dict[str, Any]] | None = None  # explicit table: used as given
    ranges: dict[str, Range] = field(default_factory=dict)  # flag -> a range to draw from (random search)
    types: dict[str, str] = field(default_factory=dict)  # flag -> its declared type, where known
    order: list[str] = field(default_factory=list)  # flags in the order they were given

    @property
    def has_ranges(self) -> bool:
        return bool(self.ranges)

    def __len__(self) -> int:
        if self.rows is not None:
            return len(self.rows)
        return math.prod(len(v) for v in self.values.values()) if self.values else 0

    @property
    def names(self) -> list[str]:
        if self.rows is not None:
            return list(self.rows[0]) if self.rows else []
        return list(self.values) + [n for n in self.ranges if n not in self.values]

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"combination {index} out of range 0..{n - 1}")
        if self.rows is not None:
            return dict(self.rows[index])
        out = {}
        for name, vals in self.values.items():  # first flag = least significant digit
            index, digit = divmod(index, len(vals))
            out[name] = vals[digit]
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the sweep manifest."""
        if self.rows is not None:
            return {"combinations": self.rows}
        if self.ranges:
            return {"flags": self.values, "ranges": {k: r.to_json() for k, r in self.ranges.items()}}
        return {"flags": self.values}

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """One combination drawn at random: each listed flag uniformly from its values, each range by its
        distribution, typed by the flag's declaration (random search)."""
        out = {name: vals[rng.randrange(len(vals))] for name, vals in self.values.items()}
        for name, r in self.ranges.items():
            out[name] = r.sample(rng, self.types.get(name, "numeric"))
        return {name: out[name] for name in self.order if name in out} | out

    def to_frame(self, indices: Sequence[int] | None = None):  # -> pandas.DataFrame
        import pandas as pd

        idx = range(len(self)) if indices is None else indices
        return pd.DataFrame([self[i] for i in idx], columns=self.names)


def _check_names(names: Sequence[str], specs: Mapping[str, FlagSpec], script: str) -> None:
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise FlagError(undeclared_message(unknown, list(specs)) + f" (in the grid for {script})")


def _typed(spec: FlagSpec, value: Any) -> Any:
    return spec.parse(value, source="the grid")


def build_grid(
    flags: Mapping[str, Any] | None = None,
    specs: Mapping[str, FlagSpec] | None = None,
    *,
    combinations: Any = None,
    script: str = "the script",
) -> Grid:
    """Build a Grid from `flags` (flag -> list of values) or an explicit `combinations` table.

    `combinations` is a pandas DataFrame, a list of dicts, or a path to a CSV file. With `specs` (the
    script's declared flags) every value is converted to its flag's type, and an undeclared flag or a
    value that does not fit raises FlagError naming the flag, the value and the fix, before any trial.
    Values that appear twice in one flag's list are kept once.
    """
    if (flags is None) == (combinations is None):
        if flags is None:
            raise GridrunError("nothing to tune: give flags (flag -> list of values) or a table of combinations")
        raise GridrunError("give either flags or combinations, not both")
    if combinations is not None:
        return _table_grid(combinations, specs, script)
    values: dict[str, list[Any]] = {}
    ranges: dict[str, Range] = {}
    if specs is not None:
        _check_names(list(flags), specs, script)
    for name, vals in flags.items():
        if isinstance(vals, Range):
            if specs is not None:
                vals.check_for(str(name), specs[name].type)
            ranges[str(name)] = vals
            continue
        if isinstance(vals, (str, bytes)) or not isinstance(vals, (Sequence, set, frozenset)) and not hasattr(
            vals, "tolist"
        ):
            vals = [vals]
        vals = list(vals.tolist() if hasattr(vals, "tolist") else vals)
        if not vals:
            raise GridrunError(f"flag '{name}' has an empty list of values: give at least one value")
        typed = [_typed(specs[name], v) for v in vals] if specs is not None else vals
        unique: list[Any] = []
        for v in typed:
            if not any(v == u and type(v) is type(u) for u in unique):
                unique.append(v)
        values[str(name)] = unique
    types = {n: specs[n].type for n in (*values, *ranges)} if specs is not None else {}
    return Grid(values=values, ranges=ranges, types=types, order=[str(n) for n in flags])


def _table_grid(table: Any, specs: Mapping[str, FlagSpec] | None, script: str) -> Grid:
    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                records: list[dict[str, Any]] = list(csv.DictReader(fh))
        except FileNotFoundError:
            raise GridrunError(f"combinations file {path} does not exist: check the path") from None
        if not records:
            raise GridrunError(f"combinations file {path} has no rows: add a header line and one row per trial")
    elif hasattr(table, "to_dict"):  # pandas DataFrame
        records = table.to_dict(orient="records")
    else:
        records = [dict(r) for r in table]
    if not records:
        raise GridrunError("the table of combinations is empty: give at least one row")
    names = list(records[0])
    if specs is not None:
        _check_names(names, specs, script)
    rows = []
    for i, rec in enumerate(records):
        row = {}
        for name in names:
            value = rec.get(name)
            if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
                raise GridrunError(f"row {i + 1} of the combinations has no value for flag '{name}': fill it in")
            if hasattr(value, "item"):
                value = value.item()
            row[str(name)] = _typed(specs[name], value) if specs is not None else value
        rows.append(row)
    return Grid(rows=rows)


def sample_size(n: int, sample: float | int | None) -> int:
    """How many combinations `sample` asks for out of `n`.

    None: all. A fraction 0 < F <= 1: ceil(F * n), never zero (tfruns #38). An integer N > 1: N
    (all of them when the grid has fewer).
    """
    if sample is None:
        return n
    if isinstance(sample, bool) or not isinstance(sample, (int, float)) or math.isnan(sample):
        raise GridrunError(f"sample {sample!r} is not a number: give a fraction in (0, 1] or a count > 1")
    if isinstance(sample, float) and sample > 1 and not sample.is_integer():
        raise GridrunError(
            f"sample {sample} is neither a fraction in (0, 1] nor a whole count: e.g. --sample 0.1 or --sample 50"
        )
    if sample <= 0:
        raise GridrunError(f"sample {sample} must be > 0: a fraction in (0, 1] or a count of trials > 1")
    if sample <= 1:
        return max(1, min(n, math.ceil(sample * n - 1e-9)))
    return min(n, int(sample))


def sample_grid(
    grid: Grid | int, sample: float | int | None = None, seed: int | None = None, ordered: bool = False
) -> list[int]:
    """Indices of the combinations to run, in execution order.

    Draws `sample_size(n, sample)` distinct indices without materializing the grid (`random.sample`
    over a `range` picks k of 10^9 in O(k)). Execution order is random (same seed, same order) unless
    `ordered`, which keeps grid order.
    """
    n = grid if isinstance(grid, int) else len(grid)
    k = sample_size(n, sample)
    rng = random.Random(seed)
    chosen = rng.sample(range(n), k) if k < n else list(range(n))
    if ordered:
        chosen.sort()
    elif k == n:
        rng.shuffle(chosen)
    return chosen
