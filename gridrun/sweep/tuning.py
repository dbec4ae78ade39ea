"""Tuning runs: one run per flag combination, on an executor, recorded in a resumable sweep manifest.

    gridrun.tuning_run("mnist.py", flags={"nodes1": [64, 128, 256], "lr": [0.01, 0.001]}, sample=0.5, seed=1)

Every trial is an ordinary run dir (properties `sweep` and `trial`). After Ctrl-C, a kill -9 or a
reboot, `resume` reconciles the manifest with the run dirs (a run dir that completed counts even if the
manifest missed it) and runs only what did not complete. This module is the verb: it checks the
request, plans or resumes the sweep, picks the executor, and hands over to the loop (loop.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import ask_yes_no
from ..errors import GridrunError
from ..executors import get_executor
from ..grid import build_grid
from ..record import Status
from ..runner import no_flags_error, runs_dir_hint
from .groups import Grouper
from .loop import run_sweep
from .manifest import (
    Manifest,
    client_alive,
    close_orphans,
    describe_size,
    find_sweep,
    plan_sweep,
    reconcile,
    sweeps_dir,
)
from .progress import print_results
from .trial import MAX_REMOTE_BYTES

CONFIRM_ABOVE = 100  # trials; larger sweeps ask "Proceed with tuning run? [Y/n]"



def _confirm(n_total: int, n_trials: int, confirm: bool, yes: bool) -> None:
    if not confirm or yes or n_trials <= CONFIRM_ABOVE:
        return
    answer = ask_yes_no("Proceed with tuning run?", default=True)
    if answer is None:
        raise GridrunError(
            f"this sweep has {n_trials:,} trials and there is no terminal to confirm it: "
            f"add --yes (or confirm=False in Python), or draw fewer with --sample"
        )
    if not answer:
        raise GridrunError("tuning run cancelled")


def tuning_run(
    script: str | os.PathLike | None = None,
    flags: Mapping[str, Any] | None = None,
    *,
    combinations: Any = None,
    sample: float | int | None = None,
    seed: int | None = None,
    ordered: bool = False,
    runs_dir: str | os.PathLike = "runs",
    jobs: int = 1,
    backend: str | None = None,
    scheduler: str | None = None,
    retries: int = 0,
    max_failures: int | None = None,
    resume: str | bool | None = None,
    confirm: bool = False,
    yes: bool = False,
    quiet: bool = False,
    max_artifact_bytes: int = MAX_REMOTE_BYTES,
    population: bool = False,
    population_size: int | None = None,
):
    """Run `script` once per flag combination; return this sweep's runs (a DataFrame like `ls_runs`).

    `flags` maps flag -> list of values (a grid, the first flag varying fastest); `combinations` is an
    explicit table (DataFrame, list of dicts or CSV path) used as given. `sample` draws a fraction
    (0 < F <= 1, at least one) or a count (> 1) of combinations; `seed` makes the draw and the order
    reproducible (a random seed is chosen and recorded otherwise); the order is random unless `ordered`.
    `jobs` > 1 runs trials in a pool of reused worker processes; `backend` picks the executor
    (inprocess, local, dask, ray). `resume` is a sweep id, or True for the latest sweep of this script.
    `confirm` asks before a sweep of more than 100 trials (the CLI does, unless --yes); in Python the
    call itself is the confirmation, so the default is False. `population` trains trials that share
    their static flags together as one vmapped program (docs/population.md); `population_size` caps
    the trials per program.
    """
    script_path: Path | None = None
    if script is not None:
        script_path = Path(script)
        if not script_path.is_file():
            raise GridrunError(f"script {script_path} does not exist: check the path (relative to {Path.cwd()})")
        script_path = script_path.resolve()
    if jobs < 1:
        raise GridrunError(f"--jobs {jobs} must be at least 1")
    if retries < 0:
        raise GridrunError(f"--retries {retries} must be 0 or more")
    if max_failures is not None and max_failures < 1:
        raise GridrunError(f"--max-failures {max_failures} must be at least 1")

    grid = None
    if flags is not None or combinations is not None:
        if script_path is None:
            raise GridrunError("a grid needs the script it is for: give the script path")
        from ..flagspec import declared_flags

        specs = declared_flags(script_path)
        if not specs:  # values would reach the script as untyped strings that nothing reads
            raise no_flags_error(script_path, {str(k): list(v) if isinstance(v, (list, tuple)) else [v]
                                               for k, v in (flags or {}).items()})
        grid = build_grid(flags, specs, combinations=combinations, script=script_path.name)

    if resume:
        sweep_id = resume if isinstance(resume, str) and resume != "latest" else find_sweep(
            runs_dir, script_path, grid, sample
        )
        manifest = Manifest.load(runs_dir, sweep_id)
        if client_alive(manifest.data.get("client")):
            c = manifest.data["client"]
            raise GridrunError(
                f"sweep {sweep_id} is still being run by process {c.get('pid')} on {c.get('hostname')}: "
                f"stop that process first, or wait for it to finish"
            )
        if not Path(manifest.data["script_path"]).is_file():
            raise GridrunError(f"the sweep's script {manifest.data['script_path']} no longer exists: restore it")
        reconcile(manifest, runs_dir)
        manifest.save()
        done = manifest.completed()
        if not quiet:
            print(f"Resuming sweep {sweep_id}: {done} of {len(manifest.trials)} trials completed, "
                  f"{len(manifest.trials) - done} to run", flush=True)
    else:
        if grid is None:
            raise GridrunError("nothing to tune: give --flag NAME=V1,V2, --grid FILE.yml or --combinations FILE.csv")
        assert script_path is not None
        manifest = plan_sweep(script_path, grid, sample=sample, seed=seed, ordered=ordered, runs_dir=runs_dir)
        n = len(manifest.trials)
        if not quiet:
            print(describe_size(len(grid), n), flush=True)
        _confirm(len(grid), n, confirm, yes)
        sweeps_dir(runs_dir).mkdir(parents=True, exist_ok=True)
        manifest.save()
        if not quiet:
            print(f"Sweep {manifest.id}: {n} trials, manifest {manifest.path}", flush=True)

    if population_size is not None and population_size < 1:
        raise GridrunError(f"--population-size {population_size} must be at least 1")
    grouper = None
    if population:
        from ..flagspec import declared_flags

        specs = declared_flags(manifest.data["script_path"])
        grouper = Grouper([name for name, spec in specs.items() if spec.is_static], population_size)
    executor = get_executor(backend, jobs, scheduler)
    t0 = time.monotonic()
    try:
        run_sweep(manifest, executor, runs_dir, retries=retries, max_failures=max_failures, quiet=quiet,
                  max_bytes=max_artifact_bytes, grouper=grouper)
    except KeyboardInterrupt:
        print(f"\nSweep {manifest.id} interrupted; continue it with: gridrun tuning-run --resume {manifest.id}"
              f"{runs_dir_hint(runs_dir)}", file=sys.stderr, flush=True)
        raise
    finally:
        executor.close()
        close_orphans(manifest, runs_dir)
        manifest.save()
    print_results(manifest, time.monotonic() - t0, quiet=quiet, hint_args=runs_dir_hint(runs_dir))
    from ..runs import ls_runs

    df = ls_runs(runs_dir, sweep=manifest.id)
    df.attrs.update(sweep=manifest.id, manifest=str(manifest.path), trials=len(manifest.trials),
                    trials_completed=sum(t.status == Status.COMPLETED for t in manifest.trials),
                    trials_ended=manifest.completed())
    return df
