"""A run keeps its model: checkpoints of a trial's training state in its run dir, and loading them back.

    saver = Checkpointer(run_dir, policy="both", metric="val_loss")   # one per trial
    for epoch in range(1, epochs + 1):                                 # any epoch loop, 1-based epochs
        state, metrics = train_one_epoch(state)
        saver.on_epoch(epoch, metrics, lambda: state)                  # get_state: called only when a save is due
    saver.close(lambda: state)                                         # writes what the policy left unsaved

A trial writes at most every `CheckpointPolicy.seconds` (5 s by default; 0: every epoch): between two
writes the best epoch's state is held in memory and the last one waits for the next write or the end.

Files: `<run>/checkpoints/best.ckpt` (the best epoch by the sweep's metric and mode, else val_loss,
else loss: gridrun/scoring.py's rule) and `last.ckpt` (the last epoch). Each file is a short header
(a magic line, then one JSON line: payload length, CRC-32 (SHA-256 in older files), epoch, metric and value, PRNG-key leaves)
followed by the payload: every leaf's bytes one after the other, the header naming each leaf's key
path, dtype, shape and offset (the "raw" layout; checkpoints written before it hold
`flax.serialization` msgpack of nested dicts of NumPy arrays named by their key paths, still read). A save writes
over the previous version's file and swaps names with the target (`_io.write_reusing`; elsewhere a temporary file
`os.replace`d over it; no fsync), so a kill -9 in the middle of a save leaves the previous checkpoint as it was; a file
cut short or damaged any other way fails the length or checksum test and is refused with a clear
error, never loaded wrong. Why flax.serialization and not orbax-checkpoint: docs/run-dir.md
("Checkpoints"); the figures come from bench/checkpoint.py.

`load_state` returns a run's raw pytree. Loading a model (`gridrun.load_model`, which reruns the run's
script in *restore mode*) lives with the training library that rebuilds it: gridrun/train/restore.py.
`CheckpointObserver` plugs a Checkpointer into the epoch driver (gridrun/train/driver.py).

This module imports no JAX at import time (record.py and the CLI read checkpoint headers cheaply).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import scoring
from ._io import drop_spare, process_cores, read_json, write_bytes_atomic, write_reusing
from .errors import GridrunError

CHECKPOINT_DIR = "checkpoints"
WHICH = ("best", "last")
MAGIC = b"gridrun-checkpoint 1\n"
MAX_HEADER = 1_000_000  # bytes: a header line longer than this is not a checkpoint header
LINGER = 30.0  # seconds a background writer thread waits for a next save before it ends
HOLD_SECONDS = 0.05  # at most this long a save waits for the training's next epoch to be dispatched
RECORD_EVERY = 5.0  # seconds: how often saves record the checkpoint_* properties (and at the end of training)
# seconds: the least time between two writes of a trial's checkpoints (CheckpointPolicy.seconds). Measured
# (bench/search.py --vs-optuna, 48 trials of 10 epochs of 50-150 ms): a save at every epoch cost the sweep
# about 0.9 s of its 15 s; with a window, a trial this short writes once, at its end
DEFAULT_SECONDS = 5.0


# --------------------------------------------------------------------------------------------------
# Errors (one line each, naming the run and the fix)


class CheckpointError(GridrunError):
    """A run's checkpoint cannot be used."""


class NoCheckpoint(CheckpointError):
    """The run has no checkpoint of the kind asked for (an old run, a pruned one, checkpoint=None)."""


class CorruptCheckpoint(CheckpointError):
    """The checkpoint file is truncated or damaged (its length or checksum does not match its header)."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint holds the state of another model (other leaves, shapes or dtypes)."""


class ModelRebuildError(CheckpointError):
    """The run's script could not rebuild its model (it failed, or never called fit / fit_loop)."""


# --------------------------------------------------------------------------------------------------
# The policy


@dataclass(frozen=True)
class CheckpointPolicy:
    """What a trial keeps: `best` (the best epoch's state), `last` (the last epoch's), how often the
    last one is written (`every` epochs, and always at the end of training; the best one is checked
    after every epoch, else the best epoch could be missed), and `seconds`: at least this long between
    two writes of a trial's checkpoints (0: at every epoch that is due). Between writes the best epoch's
    state is held in memory, not lost; the end of training (completed, stopped, paused, Ctrl-C, an
    error) writes what is held and the last epoch, so only a kill -9 loses anything: at most `seconds`
    of the trial's training, which its continuation (--resume) trains again. A trial whose epochs take
    longer than `seconds` writes at every epoch, as with 0.

    `CheckpointPolicy.parse` reads what `fit(checkpoint=...)` takes: "both" (the default in a run),
    "best", "last", None / False / "none" (nothing), an int N or "every=N" (both, the last one every
    N epochs, and every such epoch written: `seconds` 0 unless given), "seconds=S",
    {"keep": "both", "every": N, "seconds": S}, or a CheckpointPolicy."""

    best: bool = True
    last: bool = True
    every: int = 1
    seconds: float = DEFAULT_SECONDS

    @classmethod
    def parse(cls, value: Any) -> CheckpointPolicy | None:
        if isinstance(value, CheckpointPolicy):
            return value if (value.best or value.last) else None
        hint = ("use 'both', 'best', 'last', None, every=N as an int (checkpoint=5) or the string 'every=5', "
                "'seconds=S', or {'keep': 'both', 'every': 5, 'seconds': 0}")
        if value is None or value is False or (isinstance(value, str) and value.lower() == "none"):
            return None
        if value is True:
            return cls()
        keep, every, seconds = "both", 1, None
        try:
            if isinstance(value, int):
                every = value
            elif isinstance(value, str) and value.lower().startswith("every="):
                every = int(value.split("=", 1)[1])
            elif isinstance(value, str) and value.lower().startswith("seconds="):
                seconds = float(value.split("=", 1)[1])
            elif isinstance(value, str):
                keep = value.lower()
            elif isinstance(value, Mapping) and set(value) <= {"keep", "every", "seconds"}:
                keep, every, seconds = str(value.get("keep", "both")).lower(), value.get("every", 1), value.get("seconds")
            else:
                raise ValueError
            if seconds is not None and not seconds_ok(seconds):
                raise ValueError
        except ValueError:
            raise GridrunError(f"checkpoint={value!r}: {hint}") from None
        if keep not in ("both", "best", "last") or not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise GridrunError(f"checkpoint={value!r}: {hint}")
        if seconds is None:  # an epoch schedule asked for (every=N) is kept as asked; else the default window
            explicit = isinstance(value, int) or (isinstance(value, str) and value.lower().startswith("every=")) \
                or (isinstance(value, Mapping) and "every" in value)
            seconds = 0.0 if explicit else DEFAULT_SECONDS
        return cls(best=keep in ("both", "best"), last=keep in ("both", "last"), every=every, seconds=float(seconds))


def seconds_ok(value: Any) -> bool:
    """Whether `value` is a window CheckpointPolicy.seconds takes: finite seconds, 0 or more (no bool)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


# --------------------------------------------------------------------------------------------------
# The file format


def _name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _flatten(tree: Any) -> list[tuple[tuple[str, ...], Any]]:
    import jax

    return [(tuple(_name(e) for e in path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _is_key(leaf: Any) -> bool:
    import jax

    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def encode(tree: Any, meta: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of a checkpoint file holding `tree` (any JAX pytree; typed PRNG keys as their key data)."""
    return b"".join(encode_parts(tree, meta))


def encode_parts(tree: Any, meta: Mapping[str, Any] | None = None) -> list[Any]:
    """`encode` as buffers (the header, then the payload's), which a save writes one after the other.

    The payload is the leaves' bytes one after the other (the "raw" layout: the header lists each
    leaf's key path, dtype, shape and offset), written straight from the arrays: flax.serialization's
    msgpack (the layout of earlier checkpoints, still read) copied every leaf twice more, and a save of
    the chapter model's 2.9 MB state took 3.5x as long. A leaf of no numeric dtype is a clear error.
    The layout of a tree's structure and leaf shapes is worked out once (`_layout`): a trial saves the
    same structure every epoch, and naming its 54 leaves' paths cost more than their checksum."""
    import jax
    import numpy as np

    leaves, treedef = jax.tree_util.tree_flatten(jax.device_get(tree))
    index, is_key, keys, total = _layout(leaves, treedef)
    buffers, crc = [], 0
    for leaf, key in zip(leaves, is_key, strict=True):
        a = np.asarray(jax.random.key_data(leaf) if key else leaf)
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        if not a.flags.c_contiguous:  # (np.ascontiguousarray would make a 0-d array 1-d)
            a = a.copy(order="C")
        buf = memoryview(a.reshape(-1).view(np.uint8)) if a.nbytes else b""  # (bfloat16 has no buffer format)
        buffers.append(buf)
        crc = zlib.crc32(buf, crc)
    # CRC-32 (zlib), as zip and PNG files check theirs: a torn or damaged file is what it must catch, and
    # it costs a third of SHA-256 (0.7 against 2.1 ms for the chapter model's 2.9 MB, a third of a save)
    header = dict(meta or {}, bytes=total, crc32=crc, keys=keys, layout="raw",
                  byteorder=sys.byteorder, leaves=index)
    return [MAGIC + json.dumps(header, allow_nan=True).encode() + b"\n", *buffers]


_LAYOUTS: dict[Any, tuple[list[Any], list[bool], dict[str, str], int]] = {}
_LAYOUTS_LOCK = threading.Lock()


def _layout(leaves: list[Any], treedef: Any) -> tuple[list[Any], list[bool], dict[str, str], int]:
    """(the header's leaf index, which leaves are typed PRNG keys, the keys' implementations, the payload's
    bytes) of a flattened tree, kept per structure and leaf shapes and dtypes."""
    import jax
    import numpy as np

    sig = (treedef, tuple((getattr(x, "shape", None), getattr(x, "dtype", None), type(x)) for x in leaves))
    with _LAYOUTS_LOCK:
        hit = _LAYOUTS.get(sig)
    if hit is not None:
        return hit
    tree = jax.tree_util.tree_unflatten(treedef, leaves)
    index: list[Any] = []
    is_key: list[bool] = []
    keys: dict[str, str] = {}
    offset = 0
    for path, leaf in _flatten(tree):
        key = _is_key(leaf)
        if key:
            keys["/".join(path)] = str(jax.random.key_impl(leaf))
        a = np.asarray(jax.random.key_data(leaf) if key else leaf)
        if not _raw_dtype(a.dtype):
            raise CheckpointError(f"the state's leaf {'/'.join(path)} is an array of {a.dtype}, which a checkpoint "
                                  f"cannot hold: keep only arrays of numbers (and PRNG keys) in the training state")
        index.append([list(path) or ["."], a.dtype.name, list(a.shape), offset])
        is_key.append(key)
        offset += a.nbytes
    hit = (index, is_key, keys, offset)
    with _LAYOUTS_LOCK:
        if len(_LAYOUTS) >= 256:  # (a process saving ever new structures)
            _LAYOUTS.clear()
        _LAYOUTS[sig] = hit
    return hit


def _raw_dtype(dtype: Any) -> bool:
    """A dtype the raw layout writes: NumPy's numeric ones and ml_dtypes' (bfloat16, float8_*...)."""
    if dtype.kind in "biufc":
        return True
    import ml_dtypes

    return dtype.kind == "V" and getattr(ml_dtypes, dtype.name, None) is not None


def _dtype(name: str) -> Any:
    import ml_dtypes
    import numpy as np

    extra = getattr(ml_dtypes, name, None)
    return np.dtype(extra) if extra is not None else np.dtype(name)


def _split(data: bytes, where: str) -> tuple[dict[str, Any], bytes]:
    fix = "train the run again (or load the other checkpoint with which='best'/'last')"
    if not data.startswith(MAGIC):
        raise CorruptCheckpoint(f"{where} is not a gridrun checkpoint (bad first line): {fix}")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER)
    try:
        header = json.loads(data[len(MAGIC):end]) if end > 0 else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or "bytes" not in header or not ("sha256" in header or "crc32" in header):
        raise CorruptCheckpoint(f"{where} is truncated or damaged (unreadable header): {fix}")
    payload = data[end + 1:]
    if len(payload) != header["bytes"]:
        raise CorruptCheckpoint(f"{where} is truncated or damaged ({len(payload)} bytes of data where its header "
                                f"says {header['bytes']}): {fix}")
    if ("crc32" in header and zlib.crc32(payload) != header["crc32"]) or \
            ("sha256" in header and hashlib.sha256(payload).hexdigest() != header["sha256"]):
        raise CorruptCheckpoint(f"{where} is damaged (its checksum does not match): {fix}")
    return header, payload


def decode(data: bytes, where: str = "the checkpoint") -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, raw tree) of checkpoint bytes: nested dicts of NumPy arrays named by key path."""
    from flax import serialization

    header, payload = _split(data, where)
    try:
        raw = _decode_raw(header, payload) if header.get("layout") == "raw" else serialization.msgpack_restore(payload)
    except Exception as exc:  # noqa: BLE001 - a payload that passed the checksum but does not parse
        raise CorruptCheckpoint(f"{where} holds no readable state ({type(exc).__name__}): train the run again") from None
    return header, raw


def _decode_raw(header: Mapping[str, Any], payload: bytes) -> dict[str, Any]:
    """The raw layout's nested dicts of NumPy arrays (writable: views of one copy of the payload)."""
    import numpy as np

    if header.get("byteorder", sys.byteorder) != sys.byteorder:
        raise ValueError(f"written on a {header['byteorder']}-endian machine")
    buf = bytearray(payload)
    nested: dict[str, Any] = {}
    for path, dtype_name, shape, offset in header["leaves"]:
        dtype = _dtype(dtype_name)
        count = int(np.prod(shape, dtype=np.int64))
        a = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = a
    return nested


def read_header(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON header of a checkpoint file (no checksum test), or None when it has none."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(MAGIC))
            if head != MAGIC:
                return None
            line = fh.readline(MAX_HEADER)
        header = json.loads(line)
        return header if isinstance(header, dict) else None
    except (OSError, ValueError):
        return None


def write_atomic(path: str | os.PathLike, data: bytes | Sequence[bytes]) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`: a kill (-9 too) at any
    point leaves either the old file or the new one, whole. No fsync, as for every other file of a run
    dir: it halved a save's cost (docs/run-dir.md), and what an operating-system crash could still tear
    fails the length and checksum tests when read, with a clear error, never loaded wrong."""
    write_bytes_atomic(path, data)


def link_atomic(source: Path, path: Path, data: bytes | Sequence[bytes]) -> None:
    """`path` becomes a hard link to `source` (whose content is `data`), atomically (link to a temporary
    name, rename over `path`); where hard links are not possible, `data` is written anew. Files are never
    changed in place, so the two names stay right when either is later replaced."""
    if not _link_over(source, path):
        write_atomic(path, data)


def _link_over(source: Path, path: Path) -> bool:
    """Make `path` a hard link to `source` atomically (a link under a temporary name, renamed over
    `path`); False, with `path` as it was, where that failed (no hard links here, a file gone)."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        os.link(source, tmp)
        os.replace(tmp, path)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


def restore_into(target: Any, raw: Mapping[str, Any], header: Mapping[str, Any], where: str) -> Any:
    """`raw` (a decoded checkpoint) in the structure of `target` (a pytree of arrays or of
    jax.ShapeDtypeStruct), every leaf checked for presence, shape and dtype."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    fix = ("it was saved from another model (other layers, widths or optimizer); rebuild the model the run "
           "trained, or read the raw tree with gridrun.load_state")
    flat, treedef = jax.tree_util.tree_flatten(target)
    paths = _flatten(target)
    counted = len(_flatten(raw))
    leaves = []
    for (path, want), _ in zip(paths, flat, strict=True):
        node: Any = raw
        for part in path or (".",):
            if not isinstance(node, Mapping) or part not in node:
                raise CheckpointMismatch(f"{where} has no leaf {'/'.join(path)} of the model's state: {fix}")
            node = node[part]
        arr = np.asarray(node)
        key = "/".join(path)
        if _is_key(want):
            if key not in header.get("keys", {}):
                raise CheckpointMismatch(f"{where}: the model's leaf {key} is a PRNG key, the saved one is not: {fix}")
            leaves.append(jax.random.wrap_key_data(jnp.asarray(arr), impl=header["keys"][key]))
            continue
        # (the fallbacks only for leaves without a shape or dtype, such as Python numbers: evaluated for
        # every leaf, np.asarray copied each of a live state's arrays to the host, 44 ms a restore)
        shape = tuple(want.shape) if hasattr(want, "shape") else np.shape(want)
        dtype = np.dtype(want.dtype) if hasattr(want, "dtype") else np.asarray(want).dtype
        if arr.shape != shape or arr.dtype != dtype:
            raise CheckpointMismatch(f"{where}: leaf {key} is {arr.dtype}{list(arr.shape)} in the checkpoint but "
                                     f"{dtype}{list(shape)} in the model: {fix}")
        leaves.append(arr)
    if counted != len(paths):
        raise CheckpointMismatch(f"{where} holds {counted} arrays where the model's state has {len(paths)}: {fix}")
    arrays = [i for i, leaf in enumerate(leaves) if isinstance(leaf, np.ndarray)]
    for i, leaf in zip(arrays, jax.device_put([leaves[i] for i in arrays]), strict=True):  # one transfer
        leaves[i] = leaf
    return jax.tree_util.tree_unflatten(treedef, leaves)


# --------------------------------------------------------------------------------------------------
# Saving: the per-epoch observer


def checkpoint_path(run_dir: str | os.PathLike, which: str) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{which}.ckpt"


class Checkpointer:
    """Saves one trial's training state into `run_dir/checkpoints/` as an epoch loop runs.

    `on_epoch(epoch, metrics, get_state)` after each finished epoch (`epoch` 1-based, `metrics` that
    epoch's values by name, `get_state()` the state pytree of that epoch; it is called only when a save
    is due, at most once per epoch, so epochs without a save cost a comparison). `close(get_state)` at
    the end (normal or not): writes the last epoch when `every` skipped it. `record(**props)`, when
    given, receives the run's checkpoint properties (`checkpoint_epoch`: the best epoch,
    `checkpoint_last_epoch`, `checkpoint_metric`, `checkpoint_bytes`) after a save at most every
    RECORD_EVERY seconds (a trial's first RECORD_EVERY seconds record nothing), and at close(), where
    `note(**props)`, when given, takes them instead (a run's properties the run's end writes: a sweep
    trial's segment is often shorter than that).

    For a population slot, pass `get_state` returning the slot's state already cut from the vmapped
    one (e.g. `lambda: engine.unstack(state, i)`): what is saved does not depend on how it was trained.
    `resume=True` picks up the best value of the checkpoint already in the run dir, so a continued
    trial only replaces it with a better epoch.
    """

    def __init__(self, run_dir: str | os.PathLike, policy: Any = "both", metric: str | None = None,
                 mode: str | None = "auto", record: Callable[..., None] | None = None, resume: bool = False,
                 background: bool = False, note: Callable[..., None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        # background: the state is taken at on_epoch (get_state() is called there, as always), and a
        # thread of this Checkpointer serializes and writes it while training goes on; close() waits
        self.writer = _Writer() if background else None
        self.policy = CheckpointPolicy.parse(policy)
        self.metric, self.mode, self.record, self.note = metric, mode, record, note
        self.name: str | None = None  # the metric that ranks epochs, fixed at the first epoch that has one
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.last_epoch: int | None = None  # the last epoch seen
        self.saved_last: int | None = None  # the epoch last.ckpt holds
        self._last_value: float | None = None  # the ranking metric's value at last_epoch
        self.seconds = 0.0  # spent saving (serializing and writing), wall time
        self.cpu_seconds = 0.0  # the same saves' CPU time (in a busy process a thread also waits for a core)
        self.saves = 0
        self.times: list[float] = []  # seconds of each save
        self._recorded_at = time.monotonic()  # when the properties were last recorded (or the saver made)
        self._recorded: dict[str, Any] | None = None  # what it recorded
        self._cleaned = False
        self._both_at: int | None = None  # the epoch of the last save written under both names
        self.saved_best: int | None = None  # the epoch best.ckpt holds (or will, once the writer has caught up)
        # between writes (policy.seconds): the best epoch not written yet, (epoch, its state, its header)
        self._held: tuple[int, Any, dict[str, Any]] | None = None
        self._written_at = time.monotonic()  # when a write was last asked for (or the saver made)
        self._discarded = False  # the trial's checkpoints are deleted anyway: nothing more is written
        if resume:
            header = read_header(checkpoint_path(self.run_dir, "best")) or {}
            if header.get("metric") and scoring.finite(header.get("value")) is not None:
                self.name, self.best_value, self.best_epoch = header["metric"], float(header["value"]), header.get("epoch")
                self.saved_best = self.best_epoch

    @property
    def enabled(self) -> bool:
        return self.policy is not None

    def _mode(self, name: str | None) -> str | None:
        """The sweep's mode applies to the sweep's metric (or, with none named, to the default one);
        a fallback metric (the named one was not logged) goes by the scoring rule."""
        return self.mode if self.metric is None or name == self.metric else "auto"

    def _rank(self, metrics: Mapping[str, Any]) -> tuple[str | None, float | None]:
        if self.name is None:
            wanted = self.metric if self.metric and self.metric in metrics else None
            name, value = scoring.score(metrics, wanted)
            if value is not None:
                self.name = name
            return name if value is not None else None, value
        return self.name, scoring.finite(metrics.get(self.name))

    def on_epoch(self, epoch: int, metrics: Mapping[str, Any], get_state: Callable[[], Any]) -> list[str]:
        """Save what is due after epoch `epoch`; return which files were written (or handed to the
        background writer): "best", "last". Within `policy.seconds` of the last write nothing is
        written: a better epoch's state is held (get_state() called now) and the last one waits."""
        if self.policy is None or self._discarded:
            return []
        self.last_epoch = int(epoch)
        due: list[str] = []
        name, value = self._rank(metrics)
        self._last_value = value
        if self.policy.best and value is not None and scoring.is_better(value, self.best_value, name or "", self._mode(name)):
            self.best_value, self.best_epoch = value, int(epoch)
            due.append("best")
        if self.policy.last and int(epoch) % self.policy.every == 0:
            due.append("last")
        if not due:
            return []
        if time.monotonic() - self._written_at < self.policy.seconds:
            if "best" in due:
                self._held = (int(epoch), _detached(get_state()), self._meta(int(epoch)))
            return []
        return self._save(due, int(epoch), get_state)

    def discard(self) -> None:
        """The trial's sweep deletes its checkpoints (a pruned or failed trial): what is held is dropped
        and nothing more is written, not even at close()."""
        self._discarded, self._held = True, None

    def close(self, get_state: Callable[[], Any] | None = None) -> dict[str, Any]:
        """End of training: write the best epoch held since the last write, and `last` if its epoch was
        not saved yet; return the checkpoint properties. In the background mode: once every save asked
        for is on disk."""
        p = self.policy
        if p is not None and not self._discarded:
            # the last epoch from get_state(), or from what is held when that is the last epoch too
            state = get_state is not None or (self._held is not None and self._held[0] == self.last_epoch)
            due = ["last"] if p.last and state and self.last_epoch is not None \
                and self._last_asked != self.last_epoch else []
            if due or self._held is not None:
                self._save(due, self.last_epoch or 0, get_state or (lambda: None))
        if self.writer is not None:
            self.writer.wait()
        if self.saves:
            self._tidy()
        if self.record is not None and self.saves:
            props = self.properties()
            if props != self._recorded:  # what is on disk now, unless the last save recorded just that
                (self.note or self.record)(**props)
                self._recorded = props
        return self.properties()

    def _tidy(self) -> None:
        """Done saving: the spares `write_reusing` kept go, and best and last holding the same epoch's
        bytes become one file under two names (the disk a trial keeps: one or two states, never four)."""
        folder = self.run_dir / CHECKPOINT_DIR
        for w in WHICH:
            drop_spare(folder / f"{w}.ckpt")
        best, last = folder / "best.ckpt", folder / "last.ckpt"
        if self._both_at is None or not self._both_at == self.best_epoch == self.saved_last:
            return  # (the two hold different epochs, or came from different saves)
        try:
            shared = os.path.samefile(best, last)
        except OSError:  # (a file gone: nothing to share)
            return
        if not shared:
            _link_over(best, last)  # (where that fails, the two files stay as they are)

    @property
    def _last_asked(self) -> int | None:
        """The epoch last.ckpt holds, or will hold once the background writer has caught up."""
        return self.writer.last_asked if self.writer is not None else self.saved_last

    def properties(self) -> dict[str, Any]:
        size = disk_bytes(self.run_dir)
        return {"checkpoint_epoch": self.saved_best, "checkpoint_last_epoch": self.saved_last,
                "checkpoint_metric": self.name if self.saved_best is not None else None, "checkpoint_bytes": size}

    def _meta(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "metric": self.name, "value": self._last_value if epoch == self.last_epoch else None,
                "mode": scoring.direction(self.name, self._mode(self.name)) if self.name else None}

    def _save(self, which: list[str], epoch: int, get_state: Callable[[], Any]) -> list[str]:
        """Write `which` at `epoch` from get_state(), with the best epoch held since the last write: under
        both names when it is this epoch, else first, as its own file (one job for the background
        writer: a trial's training waits for at most one save). Returns the names written."""
        held, self._held = self._held, None
        last = "last" in which
        saves: list[tuple[list[str], int, Any, dict[str, Any]]] = []
        if held is not None and "best" not in which:  # (else a better epoch is being written)
            if held[0] == epoch and which:  # the epoch held is this one: one save under both names
                saves.append((["best", *which], epoch, held[1], held[2]))
                which = []
            else:
                saves.append((["best"], *held))
        if which:
            saves.append((list(which), epoch, get_state(), self._meta(epoch)))
        self._written_at = time.monotonic()
        for names, at, _, _ in saves:
            if "best" in names:
                self.saved_best = at
        names = sorted({name for save in saves for name in save[0]})
        if self.writer is None:
            for save in saves:
                self._write(*save)
            return names
        if last:
            self.writer.last_asked = epoch
        self.writer.put(lambda: [self._write(*save) for save in saves])
        return names

    def _write(self, which: list[str], epoch: int, tree: Any, meta: dict[str, Any]) -> None:
        """Write one save (in this thread, or the background writer's): the files, then the record."""
        t0, c0 = time.perf_counter(), time.thread_time()
        folder = self.run_dir / CHECKPOINT_DIR
        if not self._cleaned:  # a first save: a save killed before (kill -9) may have left its temporary file
            self._cleaned = True
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(".*.ckpt.*.tmp"):
                stale.unlink(missing_ok=True)
        if "last" in which:
            self.saved_last = epoch
        self._write_files(which, tree, meta, t0)
        if "best" in which and "last" in which:
            self._both_at = epoch  # best and last hold this one save's bytes
        self.cpu_seconds += time.thread_time() - c0

    def _write_files(self, which: list[str], tree: Any, meta: dict[str, Any], t0: float) -> None:
        folder = self.run_dir / CHECKPOINT_DIR
        data = encode_parts(tree, meta)
        # each name rewritten over its previous version's file (write_reusing: a tenth of a new file's
        # cost); the second name of a save either so too, or, where names cannot be swapped, a hard link
        # (a link here cost less in the writer's thread, 0.43 against 0.8 ms, but the file it replaced
        # was freed, and the program's epoch lost more: +9 to +15% against +3.2%, bench part 4)
        reused = write_reusing(folder / f"{which[0]}.ckpt", data)
        for w in which[1:]:
            if reused:
                write_reusing(folder / f"{w}.ckpt", data)
            else:
                link_atomic(folder / f"{which[0]}.ckpt", folder / f"{w}.ckpt", data)
        mirror = _mirror_of(self.run_dir)
        if mirror is not None:  # a remote worker's trial: the save goes to the client too (sweep/remote.py)
            mirror(list(which), b"".join(data), int(meta["epoch"]))
        self.times.append(time.perf_counter() - t0)
        self.seconds += self.times[-1]
        self.saves += 1
        # the properties follow the saves at most every RECORD_EVERY seconds (a properties.json write
        # each epoch was a fifth of a save's cost); close() records the final ones
        if self.record is not None and time.monotonic() - self._recorded_at >= RECORD_EVERY:
            self._recorded_at = time.monotonic()
            self._recorded = self.properties()
            self.record(**self._recorded)


_MIRRORS: dict[str, Callable[[list[str], bytes, int], None]] = {}  # run dir -> where its saves are copied too
_MIRRORS_LOCK = threading.Lock()


@contextmanager
def mirror_saves(run_dir: str | os.PathLike, send: Callable[[list[str], bytes, int], None]) -> Iterator[None]:
    """While inside: every checkpoint a Checkpointer of `run_dir` saves is also handed to
    `send(which, data, epoch)` (`which`: the names it was saved under, "best" / "last"; `data`: the
    file's bytes) once it is on disk, in the thread that wrote it. A remote worker sends its trial's
    checkpoints to the client this way (gridrun/sweep/remote.py); `send` must not raise."""
    key = os.path.realpath(run_dir)
    with _MIRRORS_LOCK:
        _MIRRORS[key] = send
    try:
        yield
    finally:
        with _MIRRORS_LOCK:
            if _MIRRORS.get(key) is send:
                del _MIRRORS[key]


def _mirror_of(run_dir: Path) -> Callable[[list[str], bytes, int], None] | None:
    if not _MIRRORS:
        return None
    with _MIRRORS_LOCK:
        return _MIRRORS.get(os.path.realpath(run_dir))


def _writer_slots() -> int:
    """How many background saves may run at once in this process: half its cores (at least one)."""
    return max(1, process_cores() // 2)


# the background writers of every Checkpointer take turns: a population's 16 writer threads all at
# once held the GIL against the training thread between epochs, and the program's epoch lost twice
# their CPU time (12k samples, 2 cores: +6.6% with 16 at once, +3.2% one at a time; docs/run-dir.md)
_SAVING = threading.BoundedSemaphore(_writer_slots())


_HELD: set[_Writer] = set()  # writers whose queued save waits for the next epoch's dispatch
_HELD_LOCK = threading.Lock()


def release_held() -> None:
    """Called by a training loop right after it dispatched an epoch (before it waits for its results):
    the saves of the epoch before may start now, while that epoch computes. Measured on the 2-core CPU
    (bench/search.py --vs-optuna's sweeps): a save's serializing, started at once, held the GIL while
    the loop went on to its next dispatch, whose epoch key took 0.65 ms an epoch; 0.23 ms with the hold."""
    if not _HELD:
        return
    with _HELD_LOCK:
        writers = list(_HELD)
        _HELD.clear()
    for writer in writers:
        writer.release()


class _Writer:
    """One Checkpointer's background writer: a daemon thread running its saves in order, from the first
    save to `wait()` (the end of training; or LINGER seconds without a save: no idle thread is left
    behind by a Checkpointer never closed), never more than one save behind the training (`put` waits
    for the save before). Starting a thread per save made the training thread wait for each one to
    start: 16 starts a population epoch cost it 19 ms (bench/checkpoint.py part 4). Each save is atomic
    (`_io.write_reusing`, or `write_atomic`), so a kill at any point leaves every checkpoint file whole (the previous one, or the new one). `wait()` returns once
    every save asked for is done, raising the first error a save met."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jobs: list[Callable[[], None]] = []
        self.busy = False
        self.error: BaseException | None = None
        self.last_asked: int | None = None
        self.thread: threading.Thread | None = None  # the running writer thread
        self.closing = False  # wait() was called: the thread ends once every save is written
        self.held = False  # the queued save waits for the training's next dispatch (`release_held`)
        self.ended: threading.Thread | None = None  # the last one started

    def put(self, job: Callable[[], None]) -> None:
        self._raise()
        with self.cond:
            self.held = False  # a save still held (no dispatch came between): it may start now
            self.cond.notify_all()
            # at most one save behind: a save waits for the one before it to be written, so the write of
            # epoch N overlaps the training of epoch N + 1, and a kill loses at most the save in flight
            # (a trial continued on --resume starts from epoch N - 1 at worst, never further back)
            while self.jobs or self.busy:
                self.cond.wait()
            self.jobs = [job]
            self.held = True
            if self.thread is None:
                self.thread = self.ended = threading.Thread(target=self._run, name="gridrun-checkpoint", daemon=True)
                self.thread.start()
            self.cond.notify_all()
        with _HELD_LOCK:
            _HELD.add(self)

    def release(self) -> None:
        """The training dispatched its next epoch: the save held since the last one may start."""
        with self.cond:
            if self.held:
                self.held = False
                self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                if not self.jobs and not self.closing:  # caught up: wait for the next save
                    self.cond.wait_for(lambda: self.jobs or self.closing, timeout=LINGER)
                if not self.jobs:  # closed, or idle too long: the thread ends (a next save starts another)
                    self.thread = None
                    self.cond.notify_all()
                    return
                # a save starts once the training has dispatched its next epoch (`release_held`), so its
                # Python work, which holds the GIL, overlaps that epoch's computation instead of
                # delaying the dispatch (at most HOLD_SECONDS: a loop that never says so)
                self.cond.wait_for(lambda: not self.held or self.closing, timeout=HOLD_SECONDS)
                self.held = False
                job = self.jobs.pop(0)
                self.busy = True
            try:
                with _SAVING:
                    job()
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread at its next save or close
                with self.cond:
                    self.error = self.error or exc
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def wait(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
            while self.jobs or self.busy or self.thread is not None:
                self.cond.wait()
            self.closing = False
            ended = self.ended
        with _HELD_LOCK:
            _HELD.discard(self)
        if ended is not None:
            ended.join()  # it only returns now
        self._raise()

    def _raise(self) -> None:
        with self.cond:
            error, self.error = self.error, None
        if error is not None:
            raise error


def _detached(tree: Any) -> Any:
    """A state held between writes, as its own memory: a NumPy view of a population's whole state
    (train/population/program.py EpochStates) is copied, so a held slot keeps alive its own bytes, not
    the population's (device arrays are immutable: kept as they are)."""
    import jax
    import numpy as np

    return jax.tree_util.tree_map(lambda leaf: leaf.copy() if isinstance(leaf, np.ndarray) and leaf.base is not None
                                  else leaf, tree)


def for_run(ctx: Any, policy: Any) -> Checkpointer | None:
    """The Checkpointer of the active run `ctx` (fit / fit_loop), or None outside a run, with
    checkpoint=None (restore mode never gets this far: train/restore.py). In a sweep, the sweep's
    --checkpoints policy (ctx.checkpoint: a name, or {"keep": name or None, "seconds": its
    --checkpoint-seconds}) overrides the script's `policy`, and epochs are ranked by the
    sweep's metric and mode (ctx.metric, ctx.mode); a continued trial (ctx.resume_from) keeps the best
    value of the checkpoint it continues."""
    parsed = CheckpointPolicy.parse(policy)  # bad values fail even outside a run
    if ctx is None:
        return None
    sweep = getattr(ctx, "checkpoint", None)
    if isinstance(sweep, Mapping):  # {"keep": --checkpoints or None, "seconds": --checkpoint-seconds}
        if sweep.get("keep") is not None:
            parsed = CheckpointPolicy.parse(sweep["keep"])
        if parsed is not None and sweep.get("seconds") is not None:
            parsed = replace(parsed, seconds=float(sweep["seconds"]))
    elif sweep is not None:
        parsed = CheckpointPolicy.parse(sweep)
    if parsed is None:
        return None
    return Checkpointer(ctx.run_dir, parsed, getattr(ctx, "metric", None), getattr(ctx, "mode", None) or "auto",
                        record=ctx.write_properties, note=getattr(ctx, "note_properties", None),
                        resume=bool(getattr(ctx, "resume_from", None)),
                        background=True)


def resume_state(run_dir: str | os.PathLike, template: Any) -> tuple[int, Any]:
    """(epoch, tree) of the run's last checkpoint, in the structure of `template` ({"state": ..., "rng":
    ...} as the trial would save it), every leaf checked: what a continued trial starts from."""
    path = checkpoint_path(run_dir, "last")
    where = f"the last checkpoint of run {run_dir}"
    if not path.is_file():
        raise NoCheckpoint(f"run {run_dir} has no last checkpoint to continue from: run the trial again from epoch 0")
    header, raw = decode(path.read_bytes(), where)
    return int(header["epoch"]), restore_into(template, raw, header, where)


def dropped_reason(what: str) -> str:
    """Why a `what` ("pruned", "failed") sweep trial has no checkpoint (its property checkpoints_dropped)."""
    return f"a {what} trial of a sweep keeps no checkpoint: run the sweep with --keep-pruned (keep_pruned=True) to keep them"


def drop(run_dir: str | os.PathLike, reason: str) -> bool:
    """Delete a run's checkpoints (a pruned or failed sweep trial keeps none by default); record why, so
    that load_model names it. True when there was something to delete."""
    import shutil

    from .record import adopt

    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    adopt(run_dir, checkpoints_dropped=reason, checkpoint_epoch=None, checkpoint_last_epoch=None, checkpoint_bytes=0)
    return True


def disk_bytes(run_dir: str | os.PathLike) -> int:
    """Bytes the run's checkpoint files take on disk (best and last may be one file under two names)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    files = {(st.st_dev, st.st_ino): st.st_size for st in (f.stat() for f in folder.glob("*.ckpt"))} if folder.is_dir() else {}
    return sum(files.values())


def last_values(history: Mapping[str, list[Any]]) -> dict[str, Any]:
    """{metric: its last value} of a History's `history` dict: the metrics of the epoch just ended."""
    return {k: v[-1] for k, v in history.items() if v}


def info(run_dir: str | os.PathLike) -> dict[str, Any]:
    """What a run dir's checkpoints hold, read from the file headers: {which: {epoch, metric, value, bytes}}."""
    out = {}
    for which in WHICH:
        path = checkpoint_path(run_dir, which)
        header = read_header(path)
        if header is not None:
            out[which] = {"epoch": header.get("epoch"), "metric": header.get("metric"), "value": header.get("value"),
                          "bytes": path.stat().st_size}
    return out


# --------------------------------------------------------------------------------------------------
# Loading


def resolve_run_dir(run: Any, runs_dir: str | os.PathLike) -> Path:
    """gridrun.runs.resolve_run, and besides a run dir given by its path wherever it lies (a copy, an archive)."""
    from .runs import resolve_run

    try:
        return resolve_run(run, runs_dir)
    except GridrunError:
        given = run["run_dir"] if not isinstance(run, (str, os.PathLike)) and hasattr(run, "__getitem__") else run
        given = given.iloc[0] if hasattr(given, "iloc") and len(given) == 1 else given
        path = Path(str(given))
        if path.is_dir() and ((path / "properties.json").is_file() or (path / CHECKPOINT_DIR).is_dir()):
            return path.resolve()
        raise


def read_checkpoint(run_dir: Path, which: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if which not in WHICH:
        raise GridrunError(f"which={which!r}: use 'best' or 'last'")
    path = checkpoint_path(run_dir, which)
    if not path.is_file():
        other = next((w for w in WHICH if w != which and checkpoint_path(run_dir, w).is_file()), None)
        dropped = (read_json(run_dir / "properties.json", {}) or {}).get("checkpoints_dropped")
        fix = (f"load which={other!r} instead" if other else dropped if dropped else
               "train it again with checkpoints on (gridrun.fit(..., checkpoint='both'), the default in a run); runs "
               "made before checkpoints, pruned trials and checkpoint=None keep none")
        raise NoCheckpoint(f"run {run_dir} has no {which} checkpoint ({CHECKPOINT_DIR}/{which}.ckpt): {fix}")
    return decode(path.read_bytes(), f"the {which} checkpoint of run {run_dir}")


def load_state(run: Any = None, which: str = "best", *, target: Any = None, runs_dir: str | os.PathLike = "runs") -> Any:
    """The saved training state of a run (a run dir, a run name or an ls_runs() row) as a raw pytree.

    Without `target`: {"state": the train state, "rng": the trial's training key} as nested dicts of
    NumPy arrays, named as in the live state (a fit_loop run's own state is `["state"]["user"]`, a fit
    run's weights `["state"]["params"]` and batch statistics `["state"]["extra"]`). With `target` (a
    pytree of arrays or ShapeDtypeStructs, e.g. what your `init` returns): that part of the state (a
    fit_loop run's user state; a fit run's {"params", "extra"}) in target's structure, every leaf's
    shape and dtype checked."""
    run_dir = resolve_run_dir(run, runs_dir)
    header, raw = read_checkpoint(run_dir, which)
    if target is None:
        return raw
    state = raw.get("state", {})
    part = state["user"] if "user" in state else {"params": state.get("params", {}), "extra": state.get("extra", {})}
    prefix = "state/user/" if "user" in state else "state/"
    keys = {k[len(prefix):]: v for k, v in header.get("keys", {}).items() if k.startswith(prefix)}
    return restore_into(target, part, dict(header, keys=keys), f"the {which} checkpoint of run {run_dir}")


class CheckpointObserver:
    """The epoch driver's observer (train/driver.py EpochObserver) for one trial's Checkpointer: saves
    `{"state": the trial's train state, "rng": its training key}` when the policy says so, and what
    `every=N` left unsaved when the trial ends (`close`)."""

    def __init__(self, saver: Checkpointer, rng: Any) -> None:
        self.saver, self.rng = saver, rng
        self._state: Callable[[], Any] | None = None

    def _tree(self, state: Callable[[], Any]) -> Callable[[], Any]:
        return lambda: {"state": state(), "rng": self.rng}

    def __call__(self, epoch: int, metrics: Mapping[str, Any], state: Callable[[], Any]) -> None:
        self._state = state
        self.saver.on_epoch(epoch + 1, metrics, self._tree(state))

    def discard(self) -> None:
        self.saver.discard()

    def close(self) -> None:
        self.saver.close(self._tree(self._state) if self._state is not None else None)
