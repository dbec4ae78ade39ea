"""Grids of flag combinations: the Cartesian product (lazily indexed), explicit tables, and sampling.

A grid is never materialized: combination `i` of a product is found by reading `i` as a mixed-radix
number whose first digit belongs to the first flag (tfruns' order: the first flag varies fastest). So a
grid of 10^9 combinations costs nothing until a few of them are drawn by index.

    grid = build_grid({"nodes1": [64, 128], "optimizer": ["rmsprop", "adam"]}, specs)
    grid[1]                        # {'nodes1': 128, 'optimizer': 'rmsprop'}
    sample_grid(grid, 0.5, seed=1) # indices of ceil(0.5 * 4) = 2 distinct combinations

Conditional flags (`when=`, gridrun/flagspec.py): a flag that does not apply is left out of a
combination (the script gets its default) and is not multiplied in, so the grid is a union of
products, one per *branch*. The flags that others depend on split their values into classes (values
for which the same flags apply); a branch picks one class of each such flag that applies, and is the
product of its classes and the values of the other flags that apply there. Branches are disjoint, so
the grid has no duplicates, `len` is exact and combination `i` is found by the branch's offset, then
mixed radix within it. A grid without conditions is one branch: tfruns' order, unchanged.
"""

from __future__ import annotations

import bisect
import csv
import json
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
    # conditional flags of this grid: flag -> {flag it depends on: the values for which it applies}
    when: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    never: dict[str, str] = field(default_factory=dict)  # conditional flags that apply in no combination: why
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def has_ranges(self) -> bool:
        return bool(self.ranges)

    def __len__(self) -> int:
        if self.rows is not None:
            return len(self.rows)
        if not self.values:
            return 0
        if not self.when:
            return math.prod(len(v) for v in self.values.values())
        return self._offsets()[-1]

    @property
    def names(self) -> list[str]:
        if self.rows is not None:
            seen: dict[str, None] = {}
            for row in self.rows:  # rows leave out the flags that do not apply there
                seen.update(dict.fromkeys(row))
            return list(seen)
        return list(self.values) + [n for n in self.ranges if n not in self.values]

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"combination {index} out of range 0..{n - 1}")
        if self.rows is not None:
            return dict(self.rows[index])
        values = self.values
        if self.when:
            offsets = self._offsets()
            b = bisect.bisect_right(offsets, index) - 1
            index -= offsets[b]
            values = self._branches()[b]
        out = {}
        for name, vals in values.items():  # first flag = least significant digit
            index, digit = divmod(index, len(vals))
            out[name] = vals[digit]
        return out

    # -- conditional flags ---------------------------------------------------------------------------

    def applies(self, name: str, combination: Mapping[str, Any]) -> bool:
        """Whether flag `name` applies beside the flags already in `combination` (built parents first,
        as `flag_order` gives them: a flag that does not apply is absent from it)."""
        return all(p in combination and combination[p] in vals for p, vals in self.when.get(name, {}).items())

    def flag_order(self) -> list[str]:
        """The flags, each after every flag it depends on (otherwise in the grid's order)."""
        if "order" not in self._cache:
            out: list[str] = []
            pending = self.names

            def place(name: str) -> None:
                if name in out:
                    return
                for p in self.when.get(name, {}):
                    place(p)
                out.append(name)

            for name in pending:
                place(name)
            self._cache["order"] = out
        return self._cache["order"]

    def _branches(self) -> list[dict[str, list[Any]]]:
        """The products whose union is the grid (see the module docstring); cached."""
        if "branches" in self._cache:
            return self._cache["branches"]
        conds = {k: c for k, c in self.when.items() if k in self.values or k in self.ranges}
        deps = {p for c in conds.values() for p in c}
        controlling = [n for n in self.flag_order() if n in deps]
        children = {c: [k for k, cc in conds.items() if c in cc] for c in controlling}
        classes: dict[str, list[tuple[tuple[bool, ...], list[Any]]]] = {}
        for c in controlling:
            groups: dict[tuple[bool, ...], list[Any]] = {}
            for v in self.values[c]:
                groups.setdefault(tuple(v in conds[k][c] for k in children[c]), []).append(v)
            classes[c] = list(groups.items())

        def active(name: str, chosen: dict[str, Any]) -> bool:
            for p in conds.get(name, {}):
                cls = chosen.get(p)
                if cls is None or not cls[0][children[p].index(name)]:
                    return False
            return True

        out: list[dict[str, list[Any]]] = []
        stack: list[tuple[int, dict[str, Any]]] = [(0, {})]
        while stack:
            i, chosen = stack.pop()
            if i == len(controlling):
                out.append({n: (chosen[n][1] if n in classes else vals) for n, vals in self.values.items()
                            if (chosen.get(n) is not None if n in classes else active(n, chosen))})
                if len(out) > MAX_BRANCHES:
                    raise GridrunError(f"the conditional flags of this grid make more than {MAX_BRANCHES:,} "
                                       f"branches: condition on fewer flags, or give a --combinations table")
                continue
            c = controlling[i]
            options = classes[c] if active(c, chosen) else [None]
            for cls in reversed(options):  # a stack: push in reverse to visit in order
                stack.append((i + 1, {**chosen, c: cls}))
        self._cache["branches"] = out
        return out

    def _offsets(self) -> list[int]:
        if "offsets" not in self._cache:
            offsets = [0]
            for b in self._branches():
                offsets.append(offsets[-1] + math.prod(len(v) for v in b.values()))
            self._cache["offsets"] = offsets
        return self._cache["offsets"]

    def tree_lines(self, indent: str = "  ") -> list[str]:
        """The search space for --dry-run: each flag's values, a conditional flag under the flag it
        depends on (`if layers in (3, 4):`)."""
        def shown(name: str) -> str:
            if name in self.ranges:
                return str(self.ranges[name])
            return ", ".join(map(str, self.values.get(name, [])))

        lines: list[str] = []
        if self.rows is not None:
            lines += [f"{indent}{k} applies only if {_condition_text(c)}" for k, c in self.when.items()]
        elif not self.when:
            lines += [f"{indent}{name}: {shown(name)}" for name in self.values]
            lines += [f"{indent}{name}: {shown(name)}" for name in self.ranges]
        else:
            order = self.flag_order()
            under: dict[str | None, list[str]] = {}
            for name in order:
                parents = list(self.when.get(name, {}))
                anchor = max(parents, key=order.index) if parents else None
                under.setdefault(anchor, []).append(name)

            def walk(parent: str | None, depth: int) -> None:
                by_condition: dict[str, list[str]] = {}
                for name in under.get(parent, []):
                    if parent is None:
                        lines.append(f"{indent}{name}: {shown(name)}")
                        walk(name, 1)
                    else:
                        by_condition.setdefault(_condition_text(self.when[name]), []).append(name)
                for text, names in by_condition.items():
                    lines.append(f"{indent}{'  ' * (2 * depth - 1)}if {text}:")
                    for name in names:
                        lines.append(f"{indent}{'  ' * (2 * depth)}{name}: {shown(name)}")
                        walk(name, depth + 1)

            walk(None, 0)
        lines += [f"{indent}{name}: applies in no combination of this grid ({why}); the script gets its default"
                  for name, why in self.never.items()]
        return lines

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the sweep manifest."""
        if self.rows is not None:
            out: dict[str, Any] = {"combinations": self.rows}
        elif self.ranges:
            out = {"flags": self.values, "ranges": {k: r.to_json() for k, r in self.ranges.items()}}
        else:
            out = {"flags": self.values}
        if self.when:
            out["when"] = {k: {p: list(v) for p, v in c.items()} for k, c in self.when.items()}
        return out

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """One combination drawn at random: each listed flag uniformly from its values, each range by its
        distribution, typed by the flag's declaration (random search). A conditional flag is drawn only
        where it applies."""
        if self.when:
            drawn: dict[str, Any] = {}
            for name in self.flag_order():
                if not self.applies(name, drawn):
                    continue
                if name in self.values:
                    vals = self.values[name]
                    drawn[name] = vals[rng.randrange(len(vals))]
                else:
                    drawn[name] = self.ranges[name].sample(rng, self.types.get(name, "numeric"))
            return {name: drawn[name] for name in self.order if name in drawn} | drawn
        out = {name: vals[rng.randrange(len(vals))] for name, vals in self.values.items()}
        for name, r in self.ranges.items():
            out[name] = r.sample(rng, self.types.get(name, "numeric"))
        return {name: out[name] for name in self.order if name in out} | out

    def to_frame(self, indices: Sequence[int] | None = None):  # -> pandas.DataFrame
        import pandas as pd

        idx = range(len(self)) if indices is None else indices
        return pd.DataFrame([self[i] for i in idx], columns=self.names)


MAX_BRANCHES = 100_000  # products in the union of a conditional grid


def _condition_text(conds: Mapping[str, Sequence[Any]]) -> str:
    """`layers in (3, 4) and act == 'relu'`"""
    return " and ".join(f"{p} == {v[0]!r}" if len(v) == 1 else f"{p} in ({', '.join(map(repr, v))})"
                        for p, v in conds.items())


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
    when: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> Grid:
    """Build a Grid from `flags` (flag -> list of values) or an explicit `combinations` table.

    `combinations` is a pandas DataFrame, a list of dicts, or the path of a CSV file, a JSON file (a
    list of objects) or a YAML file (a list of mappings); with it, `flags` gives constants, one value
    each, added to every row. With `specs` (the script's declared flags) every value is converted to
    its flag's type, and an undeclared flag or a value that does not fit raises FlagError naming the
    flag, the value and the fix, before any trial. Values that appear twice in one flag's list are
    kept once. Conditional flags (`when=` in the declarations, or `when` here: flag -> {flag: values})
    apply only where their condition holds (the module docstring).
    """
    if flags is None and combinations is None:
        raise GridrunError("nothing to tune: give flags (flag -> list of values) or a table of combinations")
    if combinations is not None:
        return _table_grid(combinations, specs, script, _constants(flags or {}), when)
    values: dict[str, list[Any]] = {}
    ranges: dict[str, Range] = {}
    assert flags is not None
    if specs is not None:
        _check_names(list(flags), specs, script)
    for name, vals in flags.items():
        if isinstance(vals, Range):
            if specs is not None:
                vals.check_for(str(name), specs[name].type)
            ranges[str(name)] = vals
            continue
        vals = _as_list(vals)
        if not vals:
            raise GridrunError(f"flag '{name}' has an empty list of values: give at least one value")
        typed = [_typed(specs[name], v) for v in vals] if specs is not None else vals
        unique: list[Any] = []
        for v in typed:
            if not any(v == u and type(v) is type(u) for u in unique):
                unique.append(v)
        values[str(name)] = unique
    types = {n: specs[n].type for n in (*values, *ranges)} if specs is not None else {}
    grid = Grid(values=values, ranges=ranges, types=types, order=[str(n) for n in flags])
    grid.when, grid.never = _grid_conditions(grid, specs, when)
    for name in grid.never:  # a flag that applies nowhere in this grid is not searched
        grid.values.pop(name, None)
        grid.ranges.pop(name, None)
    return grid


def _as_list(vals: Any) -> list[Any]:
    if isinstance(vals, (str, bytes)) or not isinstance(vals, (Sequence, set, frozenset)) and not hasattr(
        vals, "tolist"
    ):
        return [vals]
    return list(vals.tolist() if hasattr(vals, "tolist") else vals)


def _constants(flags: Mapping[str, Any]) -> dict[str, Any]:
    """`flags` given beside a table: one value each, added to every row."""
    out = {}
    for name, vals in flags.items():
        listed = None if isinstance(vals, Range) else _as_list(vals)
        if listed is None or len(listed) != 1:
            shown = vals if isinstance(vals, Range) else ",".join(map(str, listed or []))
            raise GridrunError(f"--flag {name}={shown} with --combinations: beside a table, --flag gives a constant "
                               f"(one value, e.g. --flag {name}={listed[0] if listed else 'VALUE'}); put the values that "
                               f"vary in a column of the table")
        out[str(name)] = listed[0]
    return out


def _declared_conditions(names: Sequence[str], specs: Mapping[str, FlagSpec] | None,
                         when: Mapping[str, Mapping[str, Sequence[Any]]] | None) -> dict[str, dict[str, tuple]]:
    if when is not None:  # as recorded in a manifest
        return {str(k): {str(p): tuple(v) for p, v in c.items()} for k, c in when.items()}
    if specs is None:
        return {}
    return {n: specs[n].conditions for n in names if n in specs and specs[n].when}


def _grid_conditions(grid: Grid, specs: Mapping[str, FlagSpec] | None,
                     when: Mapping[str, Mapping[str, Sequence[Any]]] | None
                     ) -> tuple[dict[str, dict[str, tuple]], dict[str, str]]:
    """The grid's conditions among its own flags: a condition on a flag outside the grid is decided now by
    that flag's default; a flag whose condition can hold nowhere in the grid goes to `never` (with why)."""
    raw = _declared_conditions(grid.names, specs, when)
    conds: dict[str, dict[str, tuple]] = {}
    never: dict[str, str] = {}
    for child, c in raw.items():
        kept: dict[str, tuple] = {}
        for parent, vals in c.items():
            if parent in grid.ranges:
                raise GridrunError(f"flag '{child}' applies only if {_condition_text({parent: vals})}, and this sweep "
                                   f"draws '{parent}' from the range {grid.ranges[parent]}: give '{parent}' a list of "
                                   f"values")
            if parent in grid.values:
                kept[parent] = vals
                if not any(v in vals for v in grid.values[parent]):
                    never[child] = f"{parent} takes none of {', '.join(map(repr, vals))} here"
            else:
                default = specs[parent].default if specs is not None and parent in specs else None
                if default not in vals:
                    never[child] = f"{parent} stays at its default {default!r}"
        if kept:
            conds[child] = kept
    changed = True
    while changed:  # a flag depending on one that never applies never applies either
        changed = False
        for child, c in conds.items():
            gone = [p for p in c if p in never]
            if child not in never and gone:
                never[child] = f"{gone[0]} applies in no combination"
                changed = True
    return {k: c for k, c in conds.items() if k not in never}, never


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a combinations file: CSV (a header line, one row per trial), JSON (a list of objects)
    or YAML (a list of mappings), told apart by the file's extension (else by its first character)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GridrunError(f"combinations file {path} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GridrunError(f"cannot read combinations file {path}: {exc}") from None
    kind = {".json": "json", ".yml": "yaml", ".yaml": "yaml", ".csv": "csv", ".tsv": "csv"}.get(path.suffix.lower())
    if kind is None:
        first = text.lstrip()[:1]
        kind = "json" if first in "[{" and first else "yaml" if first == "-" else "csv"
    fix = ("write a list of objects, one per trial: [{\"lr\": 0.1, \"nodes\": 64}, ...]" if kind == "json" else
           "write a list of mappings, one per trial: - {lr: 0.1, nodes: 64}")
    if kind == "csv":
        records: list[dict[str, Any]] = list(csv.DictReader(text.splitlines()))
        if not records:
            raise GridrunError(f"combinations file {path} has no rows: add a header line and one row per trial")
        return [{k: v for k, v in r.items() if k is not None} for r in records]
    try:
        if kind == "json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - json.JSONDecodeError, yaml.YAMLError
        where = f"line {exc.lineno}" if hasattr(exc, "lineno") else "it"
        raise GridrunError(f"combinations file {path} is not valid {kind.upper()} ({where}): {fix}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        got = type(data).__name__ if not isinstance(data, list) else "a list with a " + next(
            type(r).__name__ for r in data if not isinstance(r, dict))
        raise GridrunError(f"combinations file {path} holds {got}, not a list of one {'object' if kind == 'json' else 'mapping'} "
                           f"per trial: {fix}")
    if not data:
        raise GridrunError(f"combinations file {path} has no rows: {fix}")
    return [{str(k): v for k, v in r.items()} for r in data]


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _table_grid(table: Any, specs: Mapping[str, FlagSpec] | None, script: str,
                constants: Mapping[str, Any] | None = None,
                when: Mapping[str, Mapping[str, Sequence[Any]]] | None = None) -> Grid:
    where = "the combinations"
    if isinstance(table, (str, os.PathLike)):
        records = read_table(table)
        where = Path(table).name
    elif hasattr(table, "to_dict"):  # pandas DataFrame
        records = table.to_dict(orient="records")
    else:
        records = [dict(r) for r in table]
    if not records:
        raise GridrunError("the table of combinations is empty: give at least one row")
    names: dict[str, None] = {}
    for rec in records:
        names.update(dict.fromkeys(str(k) for k in rec))
    constants = dict(constants or {})
    both = [n for n in constants if n in names]
    if both:
        raise GridrunError(f"flag '{both[0]}' is both a column of {where} and a --flag constant: give it in one place")
    names.update(dict.fromkeys(constants))
    if specs is not None:
        _check_names(list(names), specs, script)
    conds = _declared_conditions(list(names), specs, when)
    order = [n for n in names]
    placed: list[str] = []

    def place(n: str) -> None:
        if n not in placed:
            for p in conds.get(n, {}):
                if p in names:
                    place(p)
            placed.append(n)

    for n in order:
        place(n)
    rows = []
    for i, rec in enumerate(records):
        full = {**{str(k): v for k, v in rec.items()}, **constants}
        row: dict[str, Any] = {}
        for name in placed:  # parents first: whether a flag applies depends on them
            value = full.get(name)
            if hasattr(value, "item"):
                value = value.item()
            applies = True
            for p, vals in conds.get(name, {}).items():
                pv = row.get(p) if p in names else (specs[p].default if specs is not None and p in specs else None)
                if pv is None or pv not in vals:
                    applies = False
                    why = (f"{p} is {pv!r} there" if p in row else f"{p} does not apply there" if p in names
                           else f"{p} stays at its default {pv!r}")
                    break
            if not applies:
                if not _missing(value) and name not in constants:
                    raise GridrunError(f"row {i + 1} of {where} sets flag '{name}', which applies only if "
                                       f"{_condition_text(conds[name])} ({why}): leave the cell empty")
                continue
            if _missing(value):
                raise GridrunError(f"row {i + 1} of {where} has no value for flag '{name}': fill it in")
            row[name] = spec_value(specs, name, value, f"row {i + 1} of {where}")
        rows.append({n: row[n] for n in order if n in row})
    return Grid(rows=rows, when={k: c for k, c in conds.items()},
                types={n: specs[n].type for n in names} if specs is not None else {}, order=order)


def spec_value(specs: Mapping[str, FlagSpec] | None, name: str, value: Any, source: str) -> Any:
    return specs[name].parse(value, source=source) if specs is not None else value


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
