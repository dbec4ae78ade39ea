"""The process-wide interpreter state a script run changes, saved and put back in one place.

Running a script in this process (runpy) touches three globals that belong to the whole process:
`sys.argv` (the script's own arguments), `sys.path` (the script's folder first, so it imports its own
modules) and `sys.modules["__main__"]` (runpy swaps in the script's module and puts it back on the way
out, except when a Ctrl-C lands inside runpy's own enter/exit; a session left with a script as its
`__main__` runs that script in every later multiprocessing "spawn" child, a Dask worker or a process
pool, which then dies on the session's arguments). The runner, the sweep's population worker and the
population coordinator all go through `script_environment`, so the rule is written once.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


@contextmanager
def script_environment(
    folder: str | os.PathLike | None = None,
    argv: Sequence[str] | None = None,
    *,
    restore_main: bool = True,
) -> Iterator[None]:
    """Run the body with `folder` first on `sys.path` (unless it is there already) and `sys.argv` set to
    `argv` (unless None); put back what was there on the way out, whatever happened.

    `sys.modules["__main__"]` is put back too when `restore_main` and the caller is the main thread:
    threads of one population share the process's main module, so their coordinator restores it once
    they have all ended (it calls this on the main thread around them).
    """
    saved_argv = sys.argv
    main = sys.modules.get("__main__")
    path = None if folder is None else str(folder)
    added = path is not None and path not in sys.path
    if added:
        sys.path.insert(0, path)  # type: ignore[arg-type]
    if argv is not None:
        sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = saved_argv
        if restore_main and main is not None and threading.current_thread() is threading.main_thread():
            sys.modules["__main__"] = main
        if added and path in sys.path:
            sys.path.remove(path)  # type: ignore[arg-type]
