"""Entry point of the child process started by `gridrun training-run`: run one script, recorded.

    python -m gridrun._child SCRIPT RUN_DIR     (flags come in GRIDRUN_FLAGS, the run in GRIDRUN_RUN_DIR,
                                                 the script's own arguments in the run's script_args property)
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from .runner import execute

    script, run_dir = sys.argv[1], sys.argv[2]
    flags = json.loads(os.environ.get("GRIDRUN_FLAGS") or "{}")
    props = execute(script, run_dir, flags, context="local")
    return int(props.get("exit_code") or 0)


if __name__ == "__main__":
    sys.exit(main())
