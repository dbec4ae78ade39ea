"""What a run records about its code and environment: a bounded source snapshot, git state, versions.

The snapshot copies only top-level source and config files of the script's folder, with hard caps on
file count and size, and never walks into sub-folders: tfruns hung on large folders (its #9, #31).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

SOURCE_SUFFIXES = {".py", ".yml", ".yaml", ".json", ".toml", ".cfg", ".ini", ".txt", ".md", ".r", ".sh", ".csv"}
MAX_FILES = 200
MAX_FILE_BYTES = 1_000_000
MAX_TOTAL_BYTES = 5_000_000


def snapshot_source(script: Path, run_dir: Path) -> list[str]:
    """Copy the script and its folder's top-level source files into run_dir/source; return the names."""
    dest = run_dir / "source"
    dest.mkdir(exist_ok=True)
    script = Path(script)
    candidates = [script]
    try:
        with_sizes = sorted(p for p in script.parent.iterdir() if p != script)
    except OSError:
        with_sizes = []
    candidates += [p for p in with_sizes if p.suffix.lower() in SOURCE_SUFFIXES]
    copied: list[str] = []
    total = 0
    for path in candidates:
        if len(copied) >= MAX_FILES:
            break
        try:
            if path.is_symlink() or not path.is_file() or path.name.startswith("."):
                continue
            size = path.stat().st_size
        except OSError:
            continue
        if size > MAX_FILE_BYTES or total + size > MAX_TOTAL_BYTES:
            continue
        try:
            shutil.copy2(path, dest / path.name)
        except OSError:
            continue
        copied.append(path.name)
        total += size
    return copied


@lru_cache(maxsize=64)
def git_info(folder: Path) -> dict[str, Any] | None:
    """{commit, dirty} when `folder` is inside a git work tree, else None (cached per folder)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


@lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in ("gridrun", "jax", "jaxlib", "flax", "optax"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
