"""The runs table's index: a cache of run rows, so a listing reads a few files instead of one per run.

Each run dir stays the source of truth: an ended run's row is its `summary.json`, and a run without one
(still active) is summarised from its files on every listing. The index only caches `summary.json`
contents, in `RUNS_DIR/.index/<day>.jsonl` (one shard per day of run names, so a sweep adding runs today
rewrites only today's shard; shards of before named `<day>.json` are read, and renamed when next written). Each cached row carries the stat of the summary it was read from (inode,
size, mtime and ctime in ns); a listing stats every run's summary.json (one cheap system call per run) and
uses a cached row only when all four match, else it reads the summary again. gridrun replaces summaries
atomically (a new inode each time), and a row is cached only when its summary was older than `RACY_NS`
when read, so not even an edit in place within one timestamp tick can pass for the cached content.

A shard is written by whichever listing finds it out of date, with an atomic replace: concurrent
listings (and sweeps writing runs meanwhile) can only make a shard miss rows, which the next listing
re-reads, never hold a wrong one. A runs dir that cannot be written is listed from the summaries.

Shard format (FORMAT 2), three lines of one JSON text each: a first line `{"format": 2, "light": BYTES,
"heavy": BYTES}`, then two JSON texts of those sizes, each ending in a newline. The light part: `{"groups": [{"keys": [...], "names":
[...], "ino": [...], "size": [...], "mtime": [...], "ctime": [...], "cols": {key: [value per run] or
{"=": value shared by all its runs} or {"d"/"q": base64 of float64s/int64s}}}]}`, one group per set of
columns (a sweep's runs share one), with the columns other than HEAVY (see `_pack`). The heavy part: a
list, per group, of the same `cols` mapping for the HEAVY columns (long text: the output tail, the model
summary, the traceback), which `gridrun ls` never reads.
Columns are decoded as a whole, so a listing builds its table column by column. No pandas here.
"""

from __future__ import annotations

import array
import base64
import bisect
import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import rundir
from ._io import write_bytes_atomic

INDEX_DIR = ".index"
SUFFIX = ".jsonl"  # a shard holds one JSON text a line
LEGACY_SUFFIX = ".json"  # shards written before were named so: still read, renamed when next written
FORMAT = 2
HEAVY = frozenset(("output", "model", "error_traceback"))  # long text: on the shard's second line
RACY_NS = 2_000_000_000  # a summary changed less than this before it was read is not cached yet
SKIP = ("archive", "sweeps", INDEX_DIR)  # folders of a runs dir that are not runs
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}$")
_ALL = None  # a block's rows: all of its group's, in order


def shard_key(name: str) -> str:
    """The shard a run name belongs to: its day for gridrun's names, `other` for any other name."""
    return name[:10] if _DAY.match(name[:10]) else "other"


def run_names(root: Path) -> list[str]:
    """The names in a runs dir that may be runs, sorted (files among them are found out when their
    summary.json and properties.json are looked for)."""
    names = os.listdir(root)
    for skip in SKIP:
        if skip in names:
            names.remove(skip)
    names.sort()
    return names


def _const(col: Any) -> bool:
    return isinstance(col, dict)


_CODES = {"d": float, "q": int}


def _pack(values: list[Any]) -> Any:
    """A column as stored: {"=": v} when all runs have the same value (of the same type); {"d": base64}
    of little-endian doubles when all are floats, {"q": ...} of int64s when all are ints (decoding
    numbers from text is most of a JSON parse; bytes decode exactly, NaN and -0.0 included); else the list."""
    first = values[0]
    kind = type(first)
    if all(type(v) is kind for v in values):
        if all(v == first for v in values) and (kind is not float or first == first):
            return {"=": first}
        for code, typ in _CODES.items():
            if kind is typ:
                try:
                    arr = array.array(code, values)
                except OverflowError:  # ints beyond int64 (an inode number on some file systems)
                    break
                if sys.byteorder == "big":
                    arr.byteswap()
                return {code: base64.b64encode(arr.tobytes()).decode("ascii")}
    return values


def _unpack(col: Any, n: int) -> Any:
    """A stored column as a list of n values, or its {"=": v} form; ValueError when it is not one."""
    if isinstance(col, list):
        if len(col) != n:
            raise ValueError("index column length")
        return col
    if not isinstance(col, dict) or len(col) != 1:
        raise ValueError("index column")
    (code, data), = col.items()
    if code == "=":
        return col
    if code not in _CODES:
        raise ValueError("index column code")
    arr = array.array(code, base64.b64decode(data))
    if sys.byteorder == "big":
        arr.byteswap()
    if len(arr) != n:
        raise ValueError("index column length")
    return arr.tolist()


# --------------------------------------------------------------------------------------------------
# The result of a scan: blocks of rows, read column by column


@dataclass
class _Block:
    """Rows sharing one set of columns: `cols[key]` is a list over the group's rows, or {"=": value}."""

    keys: tuple[str, ...]
    cols: dict[str, Any]
    names: list[str]  # the run names of the rows taken, in listing order
    rows: list[int] | None  # which of the group's rows are taken (None: all, in order)
    first: int  # listing position of its first row taken (for the order columns appear in)

    def column(self, key: str, fill: Any = None) -> list[Any]:
        col = self.cols.get(key)
        if col is None:
            return [fill] * len(self.names)
        if _const(col):
            return [col["="]] * len(self.names)
        return col if self.rows is _ALL else [col[j] for j in self.rows]


@dataclass
class Scan:
    """The runs found by `scan`: blocks of rows from the index and rows read now from run dirs."""

    prefix: str = ""
    blocks: list[_Block] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: {"cached": 0, "read": 0, "live": 0, "written": 0})

    def __len__(self) -> int:
        return sum(len(b.names) for b in self.blocks)

    def keys(self) -> list[str]:
        """Every column, in the order it first appears in listing order (as pandas' from_records)."""
        out: dict[str, None] = {}
        for block in sorted(self.blocks, key=lambda b: b.first):
            out.update(dict.fromkeys(block.keys))
        return list(out)

    def column(self, key: str, fill: Any = None) -> list[Any]:
        """One column's raw values over all rows (in `names()` order; `fill` where a row lacks it)."""
        out: list[Any] = []
        for block in self.blocks:
            out += block.column(key, fill)
        return out

    def names(self) -> list[str]:
        return [n for b in self.blocks for n in b.names]

    def run_dirs(self) -> list[str]:
        return [self.prefix + n for n in self.names()]

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts with their run_dir (as `runs._row` made them), in `names()` order."""
        out: list[dict[str, Any]] = []
        for block in self.blocks:
            cols = [block.column(k) for k in block.keys]
            for i, name in enumerate(block.names):
                out.append(dict({k: c[i] for k, c in zip(block.keys, cols)}, run_dir=self.prefix + name))
        return out


# --------------------------------------------------------------------------------------------------
# Shards


class _Shard:
    """One shard file as read: groups with their light columns; heavy columns read on demand."""

    def __init__(self, path: Path):
        self.path = path
        self.legacy: Path | None = None  # the shard of before this one was read from, to remove once rewritten
        self.groups: list[dict[str, Any]] = []
        self.gone: set[str] = set()  # runs whose cached rows are dropped (read again, or removed)
        self.fresh: dict[str, tuple[tuple[int, int, int, int], dict[str, Any]]] = {}  # read now: stat, row
        self.changed = False  # rows were read again or dropped: rewrite the shard
        self._fh: IO[bytes] | None = None
        self._heavy: list[dict[str, Any]] | None = None
        self._heavy_size = 0
        try:
            try:
                self._fh = open(path, "rb")  # noqa: SIM115 - kept open to read the heavy part of the same file later
            except FileNotFoundError:
                legacy = path.with_suffix(LEGACY_SUFFIX)
                if legacy == path:
                    raise
                self._fh = open(legacy, "rb")  # noqa: SIM115
                self.legacy, self.changed = legacy, True  # rewrite it under its name of now
            sizes = json.loads(self._fh.readline(200))
            if sizes.get("format") != FORMAT:
                raise ValueError("index format")
            self._heavy_size = int(sizes["heavy"])
            head = json.loads(self._fh.read(int(sizes["light"])))
            for group in head["groups"]:
                n = len(group["names"])
                if group["names"] != sorted(group["names"]):  # (TypeError for names that are not text)
                    raise ValueError("index names not sorted")
                group["keys"] = tuple(group["keys"])
                if set(group["cols"]) != {k for k in group["keys"] if k not in HEAVY} or not all(
                        isinstance(k, str) for k in group["keys"]):
                    raise ValueError("index columns")
                for stat in ("ino", "size", "mtime", "ctime"):
                    group[stat] = _unpack(group[stat], n)
                    if _const(group[stat]):
                        group[stat] = [group[stat]["="]] * n
                group["cols"] = {k: _unpack(c, n) for k, c in group["cols"].items()}
            self.groups = head["groups"]
        except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
            self.groups = []  # missing, unreadable or foreign: start anew
            self.close()

    def heavy(self, g: int) -> dict[str, Any] | None:
        """The heavy columns of group `g` (from the same file as the light ones), or None."""
        if self._heavy is None:
            try:
                heavy = json.loads(self._fh.read(self._heavy_size + 1)) if self._fh else None
                if not isinstance(heavy, list) or len(heavy) != len(self.groups):
                    raise ValueError("index heavy line")
                if not all(set(h) == {k for k in grp["keys"] if k in HEAVY} for h, grp in zip(heavy, self.groups)):
                    raise ValueError("index heavy columns")
                self._heavy = [{k: _unpack(c, len(grp["names"])) for k, c in h.items()}
                               for h, grp in zip(heavy, self.groups)]
            except (OSError, ValueError, AttributeError, TypeError):
                self._heavy = []
        return self._heavy[g] if g < len(self._heavy) else None

    def forget(self, name: str) -> bool:
        if name not in self.gone and self.find(name) is not None:
            self.gone.add(name)
            return True
        return False

    def drop(self, name: str) -> None:
        if self.forget(name) or self.fresh.pop(name, None) is not None:
            self.changed = True

    def names(self) -> set[str]:
        cached = {n for grp in self.groups for n in grp["names"]}
        return (cached - self.gone) | set(self.fresh)

    def find(self, name: str) -> tuple[int, int] | None:
        """(group, row) of a run's cached row; names are sorted in each group (a file that is not so only
        has its rows read again)."""
        for g, grp in enumerate(self.groups):
            names = grp["names"]
            j = bisect.bisect_left(names, name)
            if j < len(names) and names[j] == name:
                return None if name in self.gone else (g, j)
        return None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _read_summary(fd: int | None, rel: str, path: str) -> tuple[dict[str, Any] | None, os.stat_result | None]:
    """A summary's content and the stat of the very file read, taken before reading it (an in-place change
    during the read then shows as a changed stat next time, never as a stale row)."""
    try:
        fh = os.open(rel, os.O_RDONLY, dir_fd=fd) if fd is not None else os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    try:
        st = os.fstat(fh)
        with os.fdopen(fh, "rb") as f:
            fh = -1
            data = json.loads(f.read())
    except (ValueError, UnicodeDecodeError):
        return None, None
    finally:
        if fh >= 0:
            os.close(fh)
    return (data, st) if isinstance(data, dict) else (None, None)


def _same_stat(grp: dict[str, Any], j: int, st: os.stat_result) -> bool:
    return (grp["ino"][j] == st.st_ino and grp["size"][j] == st.st_size and grp["mtime"][j] == st.st_mtime_ns
            and grp["ctime"][j] == st.st_ctime_ns)


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# --------------------------------------------------------------------------------------------------
# Scanning a runs dir


def scan(
    runs_dir: str | os.PathLike,
    sweep: str | None = None,
    heavy: bool = True,
    newest_first: bool = False,
    limit: int | None = None,
    write: bool = True,
) -> Scan:
    """The rows of the runs in `runs_dir`, in name order (`newest_first`: reversed), from the index where
    it is current and from the run dirs otherwise. `sweep` keeps one sweep's runs, `limit` stops after
    that many rows, `heavy=False` leaves out the long text columns (HEAVY). Shards found out of date are
    rewritten (unless `write=False`)."""
    root = Path(runs_dir)
    out = Scan(prefix=str(root) + os.sep)
    if not root.is_dir():
        return out
    names = run_names(root)
    with _Scanner(root, out.prefix, sweep, heavy, limit) as scanner:
        scanner.walk(reversed(names) if newest_first else names)  # 1. each run: a cached row or one read now
        out.blocks += scanner.cached_blocks(newest_first)  # 2. the cached rows, block by block
        out.blocks += _blocks_of(scanner.singles)  # 3. the rows read now
        out.stats.update(scanner.stats, cached=sum(map(len, scanner.taken.values())))
        if write:
            out.stats["written"] = scanner.write_shards(set(names))  # 4. shards found out of date
    if newest_first:
        out.blocks.sort(key=lambda b: b.first)
    return out


class _Scanner:
    """One scan of a runs dir: the shards it opened, the cached rows it takes and the rows it reads."""

    def __init__(self, root: Path, prefix: str, sweep: str | None, heavy: bool, limit: int | None):
        self.root, self.prefix, self.sweep, self.heavy, self.limit = root, prefix, sweep, heavy, limit
        self.index_dir = root / INDEX_DIR
        self.shards: dict[str, _Shard] = {}
        self.taken: dict[tuple[str, int], list[tuple[int, str]]] = {}  # (shard, group) -> [(row, name)]
        self.firsts: dict[tuple[str, int], int] = {}  # listing position of each group's first row taken
        self.singles: list[tuple[int, str, dict[str, Any]]] = []  # rows read now: (position, name, row)
        self.sweep_cols: dict[tuple[str, int], Any] = {}
        self.stats = {"read": 0, "live": 0}
        self.count = 0
        self.complete = True  # every run was looked at (no `limit` cut the walk short)
        self.fresh_before = time.time_ns() - RACY_NS
        use_fd = os.stat in os.supports_dir_fd and os.open in os.supports_dir_fd
        self.fd = os.open(root, os.O_RDONLY) if use_fd else None

    def __enter__(self) -> _Scanner:
        return self

    def __exit__(self, *exc: Any) -> None:
        for shard in self.shards.values():
            shard.close()
        if self.fd is not None:
            os.close(self.fd)

    def shard(self, key: str) -> _Shard:
        """The shard `key` (opened once per scan): `<key>.jsonl`, else a shard of before (`<key>.json`)."""
        shard = self.shards.get(key)
        if shard is None:
            shard = self.shards[key] = _Shard(self.index_dir / f"{key}{SUFFIX}")
        return shard

    def walk(self, names: Any) -> None:
        """Look at each run in turn, day by day (one shard per day), until `limit` rows are taken."""
        for day, day_names in itertools.groupby(names, key=lambda n: n[:10]):
            key = shard_key(day)
            if not self._walk_day(key, self.shard(key), day_names):
                self.complete = False
                return

    def _walk_day(self, key: str, shard: _Shard, names: Any) -> bool:
        """Take each run of one shard: its cached row when its summary's stat matches, else its row read
        now. False when `limit` stopped the walk."""
        fd, prefix, stat, find, suffix = self.fd, self.prefix, os.stat, shard.find, "/" + rundir.SUMMARY_FILE
        for name in names:
            if self.limit is not None and self.count >= self.limit:
                return False
            rel = name + suffix
            try:
                st = stat(rel, dir_fd=fd) if fd is not None else stat(prefix + rel)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            at = find(name) if st is not None else None
            if at is not None and _same_stat(shard.groups[at[0]], at[1], st):
                self._take_cached(key, shard, at, name)
            else:
                self._read_now(shard, name, rel, st)
        return True

    def _take_cached(self, key: str, shard: _Shard, at: tuple[int, int], name: str) -> None:
        g, j = at
        if self.sweep is not None:
            col = self.sweep_cols.get((key, g), 0)
            if col == 0:
                col = self.sweep_cols[key, g] = shard.groups[g]["cols"].get("sweep")
            if (None if col is None else col["="] if _const(col) else col[j]) != self.sweep:
                return
        picked = self.taken.get((key, g))
        if picked is None:
            picked = self.taken[key, g] = []
            self.firsts[key, g] = self.count
        picked.append((j, name))
        self.count += 1

    def _read_now(self, shard: _Shard, name: str, rel: str, st: os.stat_result | None) -> None:
        """A run whose cached row is missing or stale: its summary.json (cached for next time when old
        enough), or, for a run still active (no summary), its row summarised from its files."""
        from .record import summarize  # the record layer summarises active runs

        row, fst = _read_summary(self.fd, rel, self.prefix + rel) if st is not None else (None, None)
        if row is not None:
            self.stats["read"] += 1
            if max(fst.st_mtime_ns, fst.st_ctime_ns) < self.fresh_before:
                shard.forget(name)
                shard.fresh[name] = (_stat_key(fst), row)
                shard.changed = True
            else:
                shard.drop(name)  # changed too recently to be cached yet
        else:
            if not os.path.exists(self.prefix + f"{name}/{rundir.PROPERTIES_FILE}"):
                return  # not a run (reports/, stray folders)
            row = summarize(self.prefix + name)
            self.stats["live"] += 1
            shard.drop(name)  # no summary.json (any more)
        if self.sweep is not None and row.get("sweep") != self.sweep:
            return
        if not self.heavy:
            row = {k: v for k, v in row.items() if k not in HEAVY}
        self.singles.append((self.count, name, row))
        self.count += 1

    def cached_blocks(self, newest_first: bool) -> list[_Block]:
        """One block per shard group of the cached rows taken (with the heavy columns when asked)."""
        blocks = []
        for (key, g), picked in self.taken.items():
            shard = self.shards[key]
            grp = shard.groups[g]
            cols = dict(grp["cols"])
            keys = tuple(k for k in grp["keys"] if k not in HEAVY)
            if self.heavy and len(keys) < len(grp["keys"]):
                hv = shard.heavy(g)
                if hv is None:  # the heavy line is unreadable: read those runs' summaries
                    for _, name in picked:
                        row, _ = _read_summary(None, "", self.prefix + f"{name}/{rundir.SUMMARY_FILE}")
                        if row is not None and (self.sweep is None or row.get("sweep") == self.sweep):
                            self.singles.append((self.firsts[key, g], name, row))
                    continue
                cols.update(hv)
                keys = grp["keys"]
            if newest_first:
                picked.reverse()
            rows = [j for j, _ in picked]
            whole = len(rows) == len(grp["names"]) and rows == list(range(len(rows)))
            blocks.append(_Block(keys, cols, [n for _, n in picked], _ALL if whole else rows, self.firsts[key, g]))
        return blocks

    def write_shards(self, present: set[str]) -> int:
        """Rewrite the shards found out of date (rows read again, runs gone, a shard of before to rename);
        return how many were written."""
        written = 0
        for shard in self.shards.values():
            if self.complete and not shard.names() <= present:
                shard.changed = True  # runs removed since: drop their rows
            if shard.changed and _write_shard(shard, present if self.complete else None):
                written += 1
        return written


def _blocks_of(rows: list[tuple[int, str, dict[str, Any]]]) -> list[_Block]:
    """Blocks of the rows read now, one per set of columns."""
    groups: dict[tuple[str, ...], _Block] = {}
    for pos, name, row in rows:
        keys = tuple(row)
        block = groups.get(keys)
        if block is None:
            block = groups[keys] = _Block(keys, {k: [] for k in keys}, [], _ALL, pos)
        block.names.append(name)
        for k, v in row.items():
            block.cols[k].append(v)
    return list(groups.values())


def _write_shard(shard: _Shard, keep: set[str] | None) -> bool:
    """Rewrite a shard with its rows (those named in `keep`, when given); False when it cannot be."""
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for name in sorted(shard.names()):
        if keep is not None and name not in keep:
            continue
        fresh = shard.fresh.get(name)
        if fresh is not None:
            stat, row = fresh
            keys = tuple(row)
            values = row
        else:
            g, j = shard.find(name)  # type: ignore[misc]
            grp = shard.groups[g]
            hv = shard.heavy(g)
            if hv is None:
                continue
            keys = grp["keys"]
            cols = {**grp["cols"], **hv}
            values = {k: (cols[k]["="] if _const(cols[k]) else cols[k][j]) for k in keys}
            stat = (grp["ino"][j], grp["size"][j], grp["mtime"][j], grp["ctime"][j])
        out = groups.get(keys)
        if out is None:
            out = groups[keys] = {"keys": list(keys), "names": [], "ino": [], "size": [], "mtime": [], "ctime": [],
                                  "vals": {k: [] for k in keys}}
        out["names"].append(name)
        for field_name, v in zip(("ino", "size", "mtime", "ctime"), stat):
            out[field_name].append(v)
        for k in keys:
            out["vals"][k].append(values[k])
    light, heavy = [], []
    for grp in groups.values():
        vals = grp.pop("vals")
        for stat in ("ino", "size", "mtime", "ctime"):
            grp[stat] = _pack(grp[stat])
        grp["cols"] = {k: _pack(v) for k, v in vals.items() if k not in HEAVY}
        light.append(grp)
        heavy.append({k: _pack(v) for k, v in vals.items() if k in HEAVY})
    light_part = json.dumps({"groups": light}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    heavy_part = json.dumps(heavy, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    sizes = json.dumps({"format": FORMAT, "light": len(light_part), "heavy": len(heavy_part)})
    data = b"".join((sizes.encode("ascii"), b"\n", light_part, b"\n", heavy_part, b"\n"))
    try:
        shard.path.parent.mkdir(exist_ok=True)
        write_bytes_atomic(shard.path, data)
    except OSError:  # a read-only or foreign runs dir: list without an index
        return False
    if shard.legacy is not None:
        try:
            shard.legacy.unlink()
        except OSError:
            pass
    return True
