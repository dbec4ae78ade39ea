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
from ..space import Range
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
from .pruners import make_pruner
from .samplers import make_sampler
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
    metric: str | None = None,
    mode: str | None = None,
    sampler: str | None = None,
    prune: str | None = None,
    prune_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    worker_devices: list[str] | None = None,
    pbt: Any = None,
):
    """Run `script` once per flag combination; return this sweep's runs (a DataFrame like `ls_runs`).

    The search space is the script's own flag declarations (`values=[...]` or a range such as
    `values=gridrun.loguniform(1e-4, 1e-1)`), overridden per flag by `flags` (flag -> list of values or
    a range); `combinations` is an explicit table (DataFrame, list of dicts or CSV path) used as given.
    `sample` draws a fraction (0 < F <= 1, at least one) or a count (> 1) of combinations (with ranges:
    a count); `seed` makes the draw and the order reproducible (a random seed is chosen and recorded
    otherwise); the order is random unless `ordered`. `sampler` is grid, random, tpe or cmaes
    (gridrun/sweep/samplers.py). `metric`/`mode` say what the sweep optimizes (default val_loss; mode
    by gridrun's scoring rule); `prune` (asha, median) stops bad trials early, with `prune_options`
    (grace, reduction, max_epochs; warmup, startup). `jobs` > 1 runs trials in a pool of reused worker
    processes; `backend` picks the executor (inprocess, local, dask, ray). `resume` is a sweep id, or
    True for the latest sweep of this script. `confirm` asks before a sweep of more than 100 trials
    (the CLI does, unless --yes). `population` trains trials that share their static flags together as
    one vmapped program (docs/population.md); `population_size` caps the trials per program.
    `dry_run` prints the plan and returns None without running anything. `worker_devices` pins local
    workers to device sets, one per worker, round robin (e.g. ["0", "1"]; see docs/own-loop.md).
    `pbt` (True, a dict of interval / quantile / resample, or a gridrun.pbt.PBTConfig; needs
    `population`) runs population-based training inside each population program (docs/population.md).
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
    if population_size is not None and population_size < 1:
        raise GridrunError(f"--population-size {population_size} must be at least 1")
    if mode not in (None, "min", "max"):
        raise GridrunError(f"--mode {mode!r}: use min or max")
    wants_pbt = pbt is not None and pbt is not False
    if wants_pbt and not population:
        raise GridrunError("--pbt needs --population: PBT runs inside a population's vmapped program "
                           "(sequential PBT through checkpoints is not built yet)")
    pruner_opts = dict(prune_options or {})
    make_pruner(prune, **pruner_opts)  # bad pruner settings fail before anything runs

    grid = None
    if (flags is not None or combinations is not None) and script_path is None:
        raise GridrunError("a grid needs the script it is for: give the script path")
    if script_path is not None and not (resume and flags is None and combinations is None):
        grid = _search_space(script_path, flags, combinations)

    if wants_pbt and grid is not None:  # nothing to mutate fails before anything is planned
        from ..flagspec import declared_flags
        from ..pbt import sweep_config

        assert script_path is not None
        sweep_config(pbt, grid=grid, specs=declared_flags(script_path), metric=metric, mode=mode, seed=0)

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
            print(f"Resuming sweep {sweep_id}: {done} of {len(manifest.trials)} trials ended, "
                  f"{len(manifest.trials) - done} to run", flush=True)
        grid = _manifest_grid(manifest)
        # what the sweep was started with holds, unless given again now
        metric = metric or manifest.data.get("metric")
        mode = mode or manifest.data.get("mode")
        sampler = manifest.data.get("sampler") or sampler
        seed = manifest.data.get("seed")
        prune = prune or (manifest.data.get("pruner") or {}).get("name")
        if not pruner_opts:
            pruner_opts = {k: v for k, v in (manifest.data.get("pruner") or {}).items() if k != "name"}
    else:
        if grid is None:
            where = f"{script_path.name} declares no values to search" if script_path else "no script given"
            raise GridrunError(
                f"nothing to tune: {where}. Declare them in the script (gridrun.flag_integer('nodes1', 128, "
                f"values=[64, 128, 256]), or values=gridrun.loguniform(1e-4, 1e-1)) or give --flag NAME=V1,V2, "
                f"--grid FILE.yml or --combinations FILE.csv")
        assert script_path is not None
        if sample is not None and len(grid) <= 1 and not grid.has_ranges and flags is None and combinations is None:
            raise GridrunError(
                f"--sample with {script_path.name}: its flags declare no values to search, so there is only one "
                f"combination. Declare them (gridrun.flag_integer('nodes1', 128, values=[64, 128, 256])) or "
                f"give them: --flag nodes1=64,128,256"
            )
        manifest = plan_sweep(script_path, grid, sample=sample, seed=seed, ordered=ordered, runs_dir=runs_dir,
                              sampler=sampler, metric=metric, mode=mode)
        total = None if grid.has_ranges else len(grid)
        n = len(manifest.trials)
        if dry_run:
            _print_plan(manifest, grid, total)
            return None
        if not quiet:
            print(describe_size(total, n), flush=True)
        _confirm(total or n, n, confirm, yes)
        sweeps_dir(runs_dir).mkdir(parents=True, exist_ok=True)
        manifest.save()
        if not quiet:
            print(f"Sweep {manifest.id}: {n} trials, manifest {manifest.path}", flush=True)

    pruner = make_pruner(prune, **pruner_opts)
    if pruner is not None:
        manifest.data["pruner"] = pruner.describe()
    chosen = make_sampler(sampler, grid, manifest.data["seed"], metric, mode)
    for t in manifest.trials:  # a resumed adaptive sampler learns every trial that ended before
        if t.status not in (Status.PENDING, Status.RUNNING):
            chosen.tell(t)
    grouper = None
    if population:
        from ..flagspec import declared_flags

        specs = declared_flags(manifest.data["script_path"])
        from ..train.population import PopulationConfig

        pbt_config = None
        if wants_pbt:
            from ..pbt import sweep_config

            pbt_config = sweep_config(pbt, grid=grid, specs=specs, metric=metric, mode=mode, seed=manifest.data["seed"])
        grouper = Grouper([name for name, spec in specs.items() if spec.is_static],
                          PopulationConfig.from_env(max_size=population_size, pbt=pbt_config), workers=jobs)
    if worker_devices and backend is None and jobs > 1:
        backend = "local"
    executor = get_executor(backend, jobs, scheduler, devices=worker_devices)
    t0 = time.monotonic()
    try:
        run_sweep(manifest, executor, runs_dir, retries=retries, max_failures=max_failures, quiet=quiet,
                  max_bytes=max_artifact_bytes, grouper=grouper, sampler=chosen, pruner=pruner)
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


def _search_space(script: Path, flags: Mapping[str, Any] | None, combinations: Any) -> Any:
    """The sweep's grid: the script's declared `values=`, overridden per flag by `flags`; or a table."""
    from ..flagspec import declared_flags

    specs = declared_flags(script) or None
    if specs is None and (flags or combinations is not None):  # values would reach the script as untyped strings
        raise no_flags_error(script, {str(k): list(v) if isinstance(v, (list, tuple)) else [v]
                                      for k, v in (flags or {}).items()})
    if combinations is not None:
        return build_grid(flags, specs, combinations=combinations, script=script.name)
    space: dict[str, Any] = {}
    for name, spec in (specs or {}).items():
        if spec.values is not None:
            space[name] = spec.values if isinstance(spec.values, Range) else list(spec.values)
    space.update(flags or {})
    if not space:
        return None
    return build_grid(space, specs, script=script.name)


def _manifest_grid(manifest: Manifest) -> Any:
    """The grid a sweep was planned with, rebuilt from its manifest (for samplers on resume)."""
    from ..flagspec import declared_flags
    from ..space import from_yaml

    desc = manifest.data.get("grid") or {}
    if "combinations" in desc:
        return build_grid(combinations=desc["combinations"])
    space: dict[str, Any] = dict(desc.get("flags") or {})
    for name, r in (desc.get("ranges") or {}).items():
        space[name] = from_yaml(r)
    try:
        specs = declared_flags(manifest.data["script_path"]) or None
        return build_grid(space, specs, script=manifest.data.get("script", ""))
    except GridrunError:  # the script's flags changed since: keep the values as recorded
        return build_grid(space)


def _print_plan(manifest: Manifest, grid: Any, total: int | None, show: int = 5) -> None:
    """--dry-run: the plan, and nothing else."""
    n = len(manifest.trials)
    print(describe_size(total, n))
    d = manifest.data
    print(f"Sampler: {d['sampler']}, seed {d['seed']}; metric: {d.get('metric') or 'val_loss'} "
          f"({d.get('mode') or 'by the scoring rule'})")
    for name, values in grid.values.items():
        print(f"  {name}: {', '.join(map(str, values))}")
    for name, r in grid.ranges.items():
        print(f"  {name}: {r}")
    print(f"First {min(show, n)} trial(s):" if n else "No trials.")
    chosen = make_sampler(d["sampler"], grid, d["seed"], d.get("metric"), d.get("mode"))
    for t in manifest.trials[:show]:
        flags = t.flags or (chosen.ask(t) if d["sampler"] == "random" else None)
        shown = ", ".join(f"{k}={v}" for k, v in flags.items()) if flags else f"chosen by {d['sampler']} when it starts"
        print(f"  trial {t.trial}: {shown}")
    print("Dry run: nothing was run or written.")
