"""Small file helpers shared by every module: atomic JSON writes and tolerant reads.

Every machine-read file gridrun writes goes through `write_json`, which writes a temporary file in the
same folder and renames it over the target (`os.replace` is atomic on POSIX and Windows), so a reader or
a crash never sees half a file. Floats are written with Python's shortest round-trip repr, so 1e-5 and
2e-5 stay distinct (tfruns lost them, its issues #49/#55). Non-finite floats become null, which keeps
every file valid JSON for browsers and other languages.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def clean_json(value: Any) -> Any:
    """Make a value JSON-safe: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / jax scalars
        return clean_json(value.item())
    if hasattr(value, "tolist"):
        return clean_json(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def dumps(data: Any, indent: int | None = 1) -> str:
    return json.dumps(clean_json(data), indent=indent, allow_nan=False, ensure_ascii=False)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 1) -> None:
    """Atomically write `data` as JSON to `path`."""
    write_text_atomic(path, dumps(data, indent=indent))


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
