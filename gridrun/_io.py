"""Small file helpers shared by every module: atomic JSON writes and tolerant reads (and `process_cores`,
the cores this process may run on).

Every machine-read file gridrun writes goes through `write_json`, which writes a temporary file in the
same folder and renames it over the target (`os.replace` is atomic on POSIX and Windows), so a reader or
a crash never sees half a file. Floats are written with Python's shortest round-trip repr, so 1e-5 and
2e-5 stay distinct (tfruns lost them, its issues #49/#55). Non-finite floats are recorded as the strings
"NaN", "Infinity" and "-Infinity" (JavaScript's names for them), which keeps every file valid JSON for
browsers and other languages while a diverged metric stays distinct from a missing one (null);
`decode_float` reads them back. Pages for browsers (`dumps` without `nonfinite`) get null instead.
Files are created with mode 0666 less the umask, like any file `open` creates.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import secrets
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_float(value: float) -> float | str:
    """A float as recorded: itself when finite, else "NaN", "Infinity" or "-Infinity"."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def decode_float(value: Any) -> Any:
    """Read back a recorded number: "NaN", "Infinity" and "-Infinity" become floats; the rest is as is."""
    if isinstance(value, str):
        return NONFINITE.get(value, value)
    return value


def _plain(value: Any) -> Any:
    """A value JSON has no type for, as one it has: numpy / jax scalars as Python numbers, arrays as
    lists, anything else (a path) as its text. `clean_json`'s last step, and the C encoder's `default`
    hook on `dumps`'s fast path."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def clean_json(value: Any, nonfinite: bool = False) -> Any:
    """Make a value JSON-safe: numpy scalars to Python, tuples to lists, and non-finite floats to None
    (or, with `nonfinite`, to the strings "NaN", "Infinity", "-Infinity" that `decode_float` reads)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v, nonfinite) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return encode_float(value) if nonfinite else None
    return clean_json(_plain(value), nonfinite)  # numpy / jax scalars and arrays, paths, the rest as text


_FAST = json.JSONEncoder(allow_nan=False, ensure_ascii=False, default=_plain).encode


def _fast(data: Any, indent: int | None) -> str:
    """JSON text by the C encoder (`json` runs its pure-Python encoder whenever `indent` is set: 3.2 ms
    for a 48-trial manifest, 0.4 ms this way). `indent`: the outer object one member a line, and a
    member that is a list of objects (a manifest's trials) one item a line; the rest compact."""
    if not indent or not isinstance(data, dict) or not data:
        return _FAST(data)
    pad = " " * indent
    lines = []
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            text = "[\n" + ",\n".join(pad * 2 + _FAST(v) for v in value) + "\n" + pad + "]"
        else:
            text = _FAST(value)
        lines.append(f"{pad}{_FAST(str(key))}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}"


def dumps(data: Any, indent: int | None = 1, nonfinite: bool = False) -> str:
    """`data` as JSON text (see `clean_json`: numpy values, tuples, paths; non-finite floats become null,
    or with `nonfinite` the strings "NaN", "Infinity", "-Infinity"). Values the C encoder takes as they
    are (the common case) skip `clean_json`'s walk; a non-finite float or an odd key takes the walk."""
    try:
        return _fast(data, indent)
    except (ValueError, TypeError):  # a non-finite float (allow_nan=False), a key json does not take
        return _fast(clean_json(data, nonfinite), indent)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, mode 0666 less the umask (mkstemp would make it 0600)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def _write_fd(fd: int, data: bytes | Sequence[bytes], truncate: bool = False) -> None:
    """Write `data` (bytes, or buffers one after the other) to the open file `fd` from its start, and close it."""
    with os.fdopen(fd, "wb") as fh:
        if isinstance(data, (bytes, bytearray, memoryview)):
            fh.write(data)
        else:
            fh.writelines(data)
        if truncate:
            fh.truncate()


def write_bytes_atomic(path: str | os.PathLike, data: bytes | Sequence[bytes]) -> None:
    """Write `data` (bytes, or buffers written one after the other) to a temporary file beside `path`,
    then rename it over `path`."""
    path = Path(path)
    fd, tmp = _create_temp(path)
    try:
        _write_fd(fd, data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_RENAME_EXCHANGE = 2  # renameat2's flag (linux/fs.h)
_AT_FDCWD = -100
_renameat2: Any = None  # libc's renameat2 once looked up, False where there is none
_NO_EXCHANGE: set[int] = set()  # devices (st_dev) whose file system refused to swap names


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap the files named `a` and `b` (both existing) in one atomic step: Linux's renameat2 with
    RENAME_EXCHANGE (kernel 3.15, glibc 2.28; ext4, xfs, btrfs, tmpfs...). No reader ever finds either
    name missing or half written. False, with nothing changed, where the system or file system cannot."""
    global _renameat2
    if _renameat2 is None:
        fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if sys.platform == "linux" else None
        if fn is not None:
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
        _renameat2 = fn or False
    if not _renameat2:
        return False
    dev = os.stat(a).st_dev
    if dev in _NO_EXCHANGE:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EPERM):
        _NO_EXCHANGE.add(dev)
        return False
    raise OSError(code, os.strerror(code), str(b))


def spare_of(path: str | os.PathLike) -> Path:
    """The hidden file beside `path` that `write_reusing` writes the next version of `path` into."""
    path = Path(path)
    return path.parent / f".{path.name}.spare"


def write_reusing(path: str | os.PathLike, data: bytes | Sequence[bytes]) -> bool:
    """`write_bytes_atomic`'s promise (a kill at any point leaves `path` whole: its old content or the
    new) for a file rewritten again and again, at a tenth of its cost: the new bytes go over the
    previous version's file in place (`spare_of(path)`, what `path` held before its last rewrite),
    which then swaps names with `path` (`exchange`). Writing into a file's existing pages spares the
    kernel allocating a new file's pages and freeing the replaced one's: a 2.9 MB checkpoint took 0.5
    instead of 4.7 ms on this project's ext4 (docs/run-dir.md). The spare is written in place only when
    no other name links to it (else a new spare is made); it costs one more copy of the file on disk,
    which `drop_spare` frees. Returns False when it fell back to `write_bytes_atomic` (no `path` yet,
    or no name swapping here)."""
    path = Path(path)
    if not os.path.lexists(path) or _renameat2 is False:
        write_bytes_atomic(path, data)
        return False
    spare = spare_of(path)
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(spare, flags)
        st = os.fstat(fd)
        if st.st_nlink != 1 or not stat.S_ISREG(st.st_mode):  # another name shares it: never write over that
            os.close(fd)
            os.unlink(spare)
            raise FileNotFoundError
    except OSError:  # none yet (or a link, or unreadable): a new spare
        try:
            os.unlink(spare)
        except FileNotFoundError:
            pass
        fd = os.open(spare, flags | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _write_fd(fd, data, truncate=True)  # (truncate: a shorter version than the spare held)
        if exchange(spare, path):
            return True
        os.replace(spare, path)  # no swapping on this file system: a plain atomic rename
        return False
    except BaseException:
        try:
            os.unlink(spare)  # a torn spare is never a checkpoint, but no reason to keep it
        except FileNotFoundError:
            pass
        raise


def scratch(name: str) -> bool:
    """Whether a file name is one of these helpers' own (a temporary file, a spare), never a run's content."""
    return name.startswith(".") and name.endswith((".spare", ".tmp"))


def drop_spare(path: str | os.PathLike) -> None:
    """Delete `write_reusing`'s spare of `path` (done rewriting it), if any."""
    try:
        os.unlink(spare_of(path))
    except FileNotFoundError:
        pass


def overwrite_in_place(path: str | os.PathLike, data: bytes) -> None:
    """Rewrite an existing file's content where it lies, without a temporary file: the last resort when
    the disk is full (the new content fits in the blocks the file already has). Not atomic."""
    with open(path, "r+b") as fh:
        fh.write(data)
        fh.truncate()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 1, reuse: bool = False) -> None:
    """Atomically write `data` as JSON to `path` (non-finite floats as "NaN", "Infinity", "-Infinity").
    `reuse`: a file rewritten again and again (a running run's metrics and properties), by `write_reusing`."""
    text = dumps(data, indent=indent, nonfinite=True)
    if reuse:
        write_reusing(path, text.encode("utf-8"))
    else:
        write_text_atomic(path, text)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read JSON from `path`; return `default` when the file is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return default


def ask_yes_no(question: str, default: bool) -> bool | None:
    """Ask a yes/no question on the terminal; None when there is no terminal to ask (callers then refuse
    with their own message naming the flag that skips the question)."""
    if not sys.stdin or not sys.stdin.isatty():
        return None
    answer = input(f"{question} {'[Y/n]' if default else '[y/N]'} ").strip().lower()
    return default if not answer else answer in ("y", "yes")


def process_cores() -> int:
    """The cores this process may run on (its affinity: a local worker's block, executors/local.py)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (not on Linux)
        return os.cpu_count() or 1
