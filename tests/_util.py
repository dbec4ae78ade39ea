"""Helpers shared by tests (import as `from _util import run_cli`)."""

import os
import sys


def run_cli(*args, cwd=None, env=None, timeout=120, check=False):
    """Run `python -m gridrun.cli ARGS` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    full_env = dict(os.environ)
    full_env.pop("GRIDRUN_RUN_DIR", None)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "gridrun.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"gridrun {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def manifest(runs):
    """The latest sweep manifest in runs dir `runs`, as a dict."""
    import json

    from gridrun.sweep.manifest import list_sweeps

    return json.loads(list_sweeps(runs)[-1].read_text())
