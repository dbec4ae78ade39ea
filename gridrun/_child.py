"""Entry point of the child process started by `gridrun training-run`: run one script, recorded.

    python -m gridrun._child SCRIPT RUN_DIR     (flags come in GRIDRUN_FLAGS, the run in GRIDRUN_RUN_DIR,
                                                 the script's own arguments in the run's script_args property)
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _on_sigint(signum, frame) -> None:
    """Ctrl-C reaches this process twice (the terminal's SIGINT to the process group, then the runner's
    own while it waits): the first stops the script, later ones are ignored so that the run records its
    end once and without a traceback. The runner escalates to SIGTERM/SIGKILL if the end never comes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGINT, _on_sigint)
    from .runner import execute

    # started with -P (gridrun/runner.py): the working directory goes first on sys.path only now, once
    # gridrun is imported, as `python -m` would have put it (the script imports modules from it)
    sys.path.insert(0, os.getcwd())

    script, run_dir = sys.argv[1], sys.argv[2]
    flags = json.loads(os.environ.get("GRIDRUN_FLAGS") or "{}")
    try:
        props = execute(script, run_dir, flags, context="local")
    except KeyboardInterrupt:  # Ctrl-C while the script's end was being recorded: the runner completes it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return 130
    return int(props.get("exit_code") or 0)


if __name__ == "__main__":
    sys.exit(main())
