"""Small file helpers shared by every module: atomic JSON writes and tolerant reads.

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

import json
import math
import os
import secrets
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
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / jax scalars
        return clean_json(value.item(), nonfinite)
    if hasattr(value, "tolist"):
        return clean_json(value.tolist(), nonfinite)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def dumps(data: Any, indent: int | None = 1, nonfinite: bool = False) -> str:
    return json.dumps(clean_json(data, nonfinite), indent=indent, allow_nan=False, ensure_ascii=False)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, mode 0666 less the umask (mkstemp would make it 0600)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def write_bytes_atomic(path: str | os.PathLike, data: bytes | Sequence[bytes]) -> None:
    """Write `data` (bytes, or buffers written one after the other) to a temporary file beside `path`,
    then rename it over `path`."""
    path = Path(path)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                fh.writelines(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def overwrite_in_place(path: str | os.PathLike, data: bytes) -> None:
    """Rewrite an existing file's content where it lies, without a temporary file: the last resort when
    the disk is full (the new content fits in the blocks the file already has). Not atomic."""
    with open(path, "r+b") as fh:
        fh.write(data)
        fh.truncate()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 1) -> None:
    """Atomically write `data` as JSON to `path` (non-finite floats as "NaN", "Infinity", "-Infinity")."""
    write_text_atomic(path, dumps(data, indent=indent, nonfinite=True))


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
