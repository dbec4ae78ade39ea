"""Tuning runs: one run per flag combination, on an executor, recorded in a resumable sweep manifest.

    gridrun.tuning_run("mnist.py", flags={"nodes1": [64, 128, 256], "lr": [0.01, 0.001]}, sample=0.5, seed=1)

Every trial is an ordinary run dir (properties `sweep` and `trial`). After Ctrl-C, a kill -9 or a
reboot, `resume` reconciles the manifest with the run dirs (a run dir that completed counts even if the
manifest missed it) and runs only what did not complete. This module is the verb: it checks the
request, plans or resumes the sweep, picks the executor, and hands over to the loop (loop.py).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import ask_yes_no, read_json
from ..errors import GridrunError
from ..executors import Executor, get_executor
from ..grid import Grid, build_grid
from ..record import Status
from ..runner import no_flags_error, runs_dir_hint
from ..space import Range
from .groups import Grouper
from .loop import replay, run_sweep
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
from .pruners import REGISTRY as PRUNER_REGISTRY
from .pruners import Pruner, make_pruner
from .samplers import REGISTRY as SAMPLER_REGISTRY
from .samplers import Sampler, make_sampler
from .state import FINAL
from .trial import MAX_REMOTE_BYTES

CONFIRM_ABOVE = 100  # trials; larger sweeps ask "Proceed with tuning run? [Y/n]"


@dataclass
class SweepSpec:
    """What a tuning run was asked to do: `tuning_run`'s arguments, typed and checked in one place
    (`check`). The sampler, pruner and backend are each a registered name or an object."""

    script: Path | None = None
    flags: Mapping[str, Any] | None = None
    combinations: Any = None
    sample: float | int | None = None
    seed: int | None = None
    ordered: bool = False
    shuffle: bool = False
    runs_dir: str | os.PathLike = "runs"
    jobs: int = 1
    backend: str | Executor | None = None
    scheduler: str | None = None
    retries: int = 0
    max_failures: int | None = None
    resume: str | bool | None = None
    confirm: bool = False
    yes: bool = False
    quiet: bool = False
    max_artifact_bytes: int = MAX_REMOTE_BYTES
    population: bool = False
    population_size: int | None = None
    metric: str | list[str] | None = None  # several: a multi-objective sweep (recorded as a list)
    mode: str | list[str] | None = None  # one per metric ("min,max" or a list)
    prune_metric: str | None = None  # with several metrics, the one --prune judges by
    sampler: str | Sampler | Any | None = None
    sampler_options: dict[str, Any] = field(default_factory=dict)
    prune: str | Pruner | None = None
    prune_options: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    worker_devices: list[str] | None = None
    pbt: Any = None  # True, a dict (interval, quantile, resample) or a gridrun.pbt.PBTConfig: PBT (in each population, or sequential)

    @property
    def wants_pbt(self) -> bool:
        return self.pbt is not None and self.pbt is not False
    checkpoints: str | None = None  # best|last|both|none over each script's own checkpoint= (None: the script's)
    keep_pruned: bool | None = None  # pruned and failed trials keep their checkpoints (None: no, or as recorded)
    checkpoint_seconds: float | None = None  # at least this long between a trial's writes (None: the script's own)

    def check(self) -> SweepSpec:
        """Every mistake that can be seen before anything runs: a one-line error naming the fix."""
        if self.script is not None:
            path = Path(self.script)
            if not path.is_file():
                raise GridrunError(f"script {path} does not exist: check the path (relative to {Path.cwd()})")
            self.script = path.resolve()
        if self.jobs < 1:
            raise GridrunError(f"--jobs {self.jobs} must be at least 1")
        if self.retries < 0:
            raise GridrunError(f"--retries {self.retries} must be 0 or more")
        if self.max_failures is not None and self.max_failures < 1:
            raise GridrunError(f"--max-failures {self.max_failures} must be at least 1")
        if self.population_size is not None and self.population_size < 1:
            raise GridrunError(f"--population-size {self.population_size} must be at least 1")
        if self.ordered and self.shuffle:
            raise GridrunError("--ordered and --shuffle contradict each other: give one")
        self._check_objectives()
        if self.wants_pbt and self.prune is not None:
            raise GridrunError(f"--pbt and --prune {self.prune if isinstance(self.prune, str) else 'PRUNER'}: PBT "
                               f"decides which trials go on (its bottom trials continue from the top ones), so "
                               f"drop --prune")
        if self.wants_pbt and not self.population and self.checkpoints in ("best", "none"):
            raise GridrunError(f"--pbt --checkpoints {self.checkpoints}: PBT outside a population continues trials "
                               f"from their last checkpoints: use --checkpoints last or both, or add --population")
        if (self.flags is not None or self.combinations is not None) and self.script is None:
            raise GridrunError("a grid needs the script it is for: give the script path")
        self.sampler_options, self.prune_options = dict(self.sampler_options), dict(self.prune_options)
        if isinstance(self.sampler, str) and self.sampler not in SAMPLER_REGISTRY:
            SAMPLER_REGISTRY.get(self.sampler)  # the error, with "did you mean"
        if isinstance(self.sampler, str) and self.sampler_options:
            SAMPLER_REGISTRY.options(self.sampler, self.sampler_options)
        make_pruner(self.prune, self.prune_options)  # bad pruner settings fail before anything runs
        if self.checkpoints is not None:
            self.checkpoints = str(self.checkpoints).lower()
            if self.checkpoints not in CHECKPOINT_CHOICES:
                raise GridrunError(f"--checkpoints {self.checkpoints!r}: use one of {', '.join(CHECKPOINT_CHOICES)}")
        if self.checkpoint_seconds is not None:
            from ..checkpoint import seconds_ok

            s = self.checkpoint_seconds
            if not seconds_ok(s):
                raise GridrunError(f"--checkpoint-seconds {s!r}: give the least seconds between two writes of a "
                                   f"trial's checkpoints, 0 or more (0: at every epoch)")
            self.checkpoint_seconds = float(s)
        return self

    def _check_objectives(self) -> None:
        """--metric (repeatable), --mode (one per metric) and --prune-metric: checked, and normalized to
        what the manifest records (one metric: strings, as always; several: lists, the modes resolved)."""
        names = self.metric.split(",") if isinstance(self.metric, str) else list(self.metric or [])
        names = [str(n).strip() for n in names]
        modes = self.mode.split(",") if isinstance(self.mode, str) else list(self.mode or [])
        modes = [str(m).strip() for m in modes]
        for m in modes:
            if m not in ("min", "max"):
                raise GridrunError(f"--mode {m!r}: use min or max (one per --metric, e.g. --mode min,max)")
        if any(not n for n in names):
            raise GridrunError(f"--metric {self.metric!r} has an empty name: give each metric's name")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise GridrunError(f"--metric {twice[0]} is given twice: give each metric once")
        if len(modes) > max(1, len(names)) or (len(names) > 1 and len(modes) not in (0, len(names))):
            raise GridrunError(f"{len(names) or 1} metric(s) and {len(modes)} modes: give one mode per --metric, "
                               f"e.g. --mode {','.join(['min'] * max(1, len(names)))}")
        if self.prune_metric is not None and self.prune is None:
            raise GridrunError(f"--prune-metric {self.prune_metric} goes with --prune (e.g. --prune asha)")
        if len(names) <= 1:
            self.metric = names[0] if names else None
            self.mode = modes[0] if modes else None
            if self.prune_metric is not None and self.prune_metric != self.metric:
                raise GridrunError(f"--prune-metric {self.prune_metric}: the sweep optimizes "
                                   f"{self.metric or 'val_loss (else loss)'}; to prune and rank by "
                                   f"{self.prune_metric}, give --metric {self.prune_metric}")
            return
        from .. import scoring

        self.metric = names
        self.mode = [m for _, m in scoring.objectives(names, modes or None)]
        if self.prune is not None and self.prune_metric is None:
            raise GridrunError(f"--prune needs one metric and this sweep optimizes {len(names)} ({', '.join(names)}): "
                               f"add --prune-metric NAME (one of them; prune_metric= in Python)")
        if self.prune_metric is not None and self.prune_metric not in names:
            raise GridrunError(f"--prune-metric {self.prune_metric} is not one of the sweep's metrics "
                               f"({', '.join(names)}): name one of them")
        if self.sampler == "cmaes":
            raise GridrunError(f"--sampler cmaes optimizes one metric and this sweep has {len(names)}: use "
                               f"--sampler nsga2 or tpe (multi-objective), or random")


CHECKPOINT_CHOICES = ("best", "last", "both", "none")


def tuning_run(
    script: str | os.PathLike | None = None,
    flags: Mapping[str, Any] | None = None,
    *,
    combinations: Any = None,
    sample: float | int | None = None,
    seed: int | None = None,
    ordered: bool = False,
    shuffle: bool = False,
    runs_dir: str | os.PathLike = "runs",
    jobs: int = 1,
    backend: str | Executor | None = None,
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
    metric: str | list[str] | None = None,
    mode: str | list[str] | None = None,
    sampler: str | Sampler | Any | None = None,
    sampler_options: Mapping[str, Any] | None = None,
    prune: str | Pruner | None = None,
    prune_options: Mapping[str, Any] | None = None,
    prune_metric: str | None = None,
    dry_run: bool = False,
    worker_devices: list[str] | None = None,
    pbt: Any = None,
    checkpoints: str | None = None,
    keep_pruned: bool | None = None,
    checkpoint_seconds: float | None = None,
):
    """Run `script` once per flag combination; return this sweep's runs (a DataFrame like `ls_runs`).

    The search space is the script's own flag declarations (`values=[...]` or a range such as
    `values=gridrun.loguniform(1e-4, 1e-1)`), overridden per flag by `flags` (flag -> list of values or
    a range); `combinations` is an explicit table (DataFrame, list of dicts, or a CSV, JSON or YAML
    path) run as given, in its own order unless `shuffle`, with `flags` as constants (one value each).
    `sample` draws a fraction (0 < F <= 1, at least one) or a count (> 1) of combinations (with ranges:
    a count); `seed` makes the draw and the order reproducible (a random seed is chosen and recorded
    otherwise); the order is random unless `ordered`. `sampler` is a name (grid, random, tpe, cmaes,
    or one a package registers), a `gridrun.Sampler` object or an Optuna sampler object
    (`optuna.samplers.GPSampler()`), with `sampler_options` for a name (e.g. {"n_startup_trials": 5}).
    `metric`/`mode` say what the sweep optimizes (default val_loss; mode by gridrun's scoring rule); a
    list of metrics (`metric=["val_loss", "n_params"]`, `mode=["min", "min"]`) makes a multi-objective
    sweep (samplers grid, random, nsga2, tpe; the summary shows the Pareto front; docs/analysis.md), whose
    pruning judges by `prune_metric`, one of them;
    `prune` (asha, hyperband, median, a registered name, or a `gridrun.Pruner` object) stops bad
    trials early, with `prune_options` for a name (grace, reduction, max_epochs, promote; warmup, startup).
    `jobs` > 1 runs trials in a pool of reused worker processes; `backend` picks the executor
    (inprocess, local, dask, ray, a registered name, or a `gridrun.Executor` object). `resume` is a
    sweep id, or True for the latest sweep of this script. `confirm` asks before a sweep of more than
    100 trials (the CLI does, unless --yes). `population` trains trials that share their static flags
    together as one vmapped program (docs/population.md); `population_size` caps the trials per
    program. `pbt` (True, a dict of interval / quantile / resample, or a gridrun.pbt.PBTConfig) runs
    population-based training: inside each population program with `population`, else in rounds of
    `interval` epochs through checkpoints on any executor (docs/population.md).
    `dry_run` prints the plan and returns None without running anything. `worker_devices`
    pins local workers to device sets, one per worker, round robin (e.g. ["0", "1"]; docs/own-loop.md).
    `checkpoints` (best, last, both, none) overrides what each trial's fit / fit_loop keeps (default: the
    script's own `checkpoint=`, itself "both" by default); pruned and failed trials keep none unless
    `keep_pruned`. A trial writes its checkpoints at most every `checkpoint_seconds` (default: the
    script's policy, 5 s; 0: every epoch; between writes its best epoch is held in memory, and its end
    writes everything, so only a kill -9 loses up to that much training). An interrupted trial continues
    from its last checkpoint on `resume` (docs/tuning.md).
    Extending samplers, pruners and executors: docs/extending.md.
    """
    spec = SweepSpec(
        script=Path(script) if script is not None else None, flags=flags, combinations=combinations,
        sample=sample, seed=seed, ordered=ordered, shuffle=shuffle, runs_dir=runs_dir, jobs=jobs, backend=backend,
        scheduler=scheduler, retries=retries, max_failures=max_failures, resume=resume, confirm=confirm,
        yes=yes, quiet=quiet, max_artifact_bytes=max_artifact_bytes, population=population,
        population_size=population_size, metric=metric, mode=mode, sampler=sampler,
        sampler_options=dict(sampler_options or {}), prune=prune, prune_options=dict(prune_options or {}),
        prune_metric=prune_metric,
        dry_run=dry_run, worker_devices=worker_devices, pbt=pbt, checkpoints=checkpoints,
        keep_pruned=keep_pruned, checkpoint_seconds=checkpoint_seconds,
    )
    return run_spec(spec.check())


def run_spec(spec: SweepSpec):
    """Run a checked sweep specification: plan it (or resume it), then run it; see `tuning_run`."""
    grid = _requested_grid(spec)
    if spec.wants_pbt and grid is not None:  # nothing to mutate fails before anything is planned
        assert spec.script is not None
        _pbt_config(spec, grid, spec.script, seed=0)
    if spec.resume:
        if spec.dry_run:
            _print_resume_plan(spec, grid)
            return None
        manifest, grid = _resume(spec, grid)
        sampler = _resumed_sampler(spec, manifest, grid)
        pruner = _pruner(spec, manifest)
        _checkpoints(spec, manifest)
    else:
        sampler, manifest = _plan(spec, grid)
        if spec.wants_pbt:  # recorded, so that a resume needs no --pbt again
            from ..pbt import manifest_options

            manifest.data["pbt"] = manifest_options(spec.pbt)
        pruner = _pruner(spec, manifest)
        _checkpoints(spec, manifest)
        _advise(spec, manifest, pruner)
        if spec.dry_run:
            _print_plan(manifest, grid, None if grid.has_ranges else len(grid), sampler)
            return None
        _start(spec, manifest, grid)
    replay(manifest, spec.runs_dir, sampler, pruner)  # a resumed sweep's sampler and pruner learn the past
    grouper = _grouper(spec, manifest, grid)
    executor = _executor(spec)
    seconds = _run(spec, manifest, executor, grouper, sampler, pruner, _rounds(spec, manifest, grid))
    print_results(manifest, seconds, quiet=spec.quiet, hint_args=runs_dir_hint(spec.runs_dir))
    return _results(spec, manifest)


def _requested_grid(spec: SweepSpec) -> Grid | None:
    """The grid asked for now: the script's declarations and the flags given (None on a bare resume)."""
    if spec.script is None or (spec.resume and spec.flags is None and spec.combinations is None):
        return None
    return _search_space(spec.script, spec.flags, spec.combinations)


def _plan(spec: SweepSpec, grid: Grid | None) -> tuple[Sampler, Manifest]:
    """A new sweep: its sampler, bound to the grid and seed, and its manifest (not yet written)."""
    script = spec.script
    if grid is None:
        where = f"{script.name} declares no values to search" if script else "no script given"
        raise GridrunError(
            f"nothing to tune: {where}. Declare them in the script (gridrun.flag_integer('nodes1', 128, "
            f"values=[64, 128, 256]), or values=gridrun.loguniform(1e-4, 1e-1)) or give --flag NAME=V1,V2, "
            f"--grid FILE.yml or --combinations FILE.csv")
    assert script is not None
    if (spec.sample is not None and len(grid) <= 1 and not grid.has_ranges and spec.flags is None
            and spec.combinations is None):
        raise GridrunError(
            f"--sample with {script.name}: its flags declare no values to search, so there is only one "
            f"combination. Declare them (gridrun.flag_integer('nodes1', 128, values=[64, 128, 256])) or "
            f"give them: --flag nodes1=64,128,256"
        )
    seed = spec.seed if spec.seed is not None else random.SystemRandom().randrange(2**31)
    sampler = make_sampler(spec.sampler, grid, seed, spec.metric, spec.mode, spec.sampler_options)
    manifest = plan_sweep(script, grid, sample=spec.sample, seed=seed, ordered=_ordered(spec, grid), runs_dir=spec.runs_dir,
                          sampler=sampler, metric=spec.metric, mode=spec.mode)
    return sampler, manifest


def _ordered(spec: SweepSpec, grid: Grid) -> bool:
    """An explicit table runs in its own order unless --shuffle; a product in a random order unless --ordered."""
    return spec.ordered or (grid.rows is not None and not spec.shuffle)


def _start(spec: SweepSpec, manifest: Manifest, grid: Grid) -> None:
    """Say the sweep's size, confirm a large one, and write its manifest."""
    total = None if grid.has_ranges else len(grid)
    n = len(manifest.trials)
    if not spec.quiet:
        print(describe_size(total, n), flush=True)
    _confirm(total or n, n, spec.confirm, spec.yes)
    sweeps_dir(spec.runs_dir).mkdir(parents=True, exist_ok=True)
    manifest.save()
    if not spec.quiet:
        print(f"Sweep {manifest.id}: {n} trials, manifest {manifest.path}", flush=True)


def _load_resumed(spec: SweepSpec, grid: Grid | None) -> Manifest:
    resume = spec.resume
    sweep_id = resume if isinstance(resume, str) and resume != "latest" else find_sweep(
        spec.runs_dir, spec.script, grid, spec.sample)
    return Manifest.load(spec.runs_dir, sweep_id)


def _recorded_settings(spec: SweepSpec, manifest: Manifest) -> None:
    """What the sweep was started with holds (metric, mode, seed, pruner, PBT's options), unless given again now."""
    d = manifest.data
    spec.metric = spec.metric or d.get("metric")
    spec.mode = spec.mode or d.get("mode")
    spec.seed = d.get("seed")
    if not spec.wants_pbt and isinstance(d.get("pbt"), dict):  # a PBT sweep stays one (in population mode or not)
        spec.pbt = dict(d["pbt"])
        spec.population = spec.population or bool((d.get("settings") or {}).get("population", True))
    recorded = d.get("pruner") or {}
    spec.prune_metric = spec.prune_metric or recorded.get("metric")
    if spec.prune is None:
        spec.prune = recorded.get("name")
        if not spec.prune_options:
            spec.prune_options = dict(recorded.get("options") or {k: v for k, v in recorded.items()
                                                                   if k in ("grace", "reduction", "max_epochs",
                                                                            "warmup", "startup")})


def _resume(spec: SweepSpec, grid: Grid | None) -> tuple[Manifest, Grid]:
    """The sweep to resume, reconciled with its run dirs; what it was started with holds in `spec`
    (metric, mode, seed, sampler and pruner), unless given again now."""
    manifest = _load_resumed(spec, grid)
    sweep_id = manifest.id
    if client_alive(manifest.data.get("client")):
        c = manifest.data["client"]
        raise GridrunError(
            f"sweep {sweep_id} is still being run by process {c.get('pid')} on {c.get('hostname')}: "
            f"stop that process first, or wait for it to finish"
        )
    if not Path(manifest.data["script_path"]).is_file():
        raise GridrunError(f"the sweep's script {manifest.data['script_path']} no longer exists: restore it")
    reconcile(manifest, spec.runs_dir)
    manifest.save()
    done = manifest.completed()
    if not spec.quiet:
        print(f"Resuming sweep {sweep_id}: {done} of {len(manifest.trials)} trials ended, "
              f"{len(manifest.trials) - done} to run", flush=True)
    _recorded_settings(spec, manifest)
    return manifest, _manifest_grid(manifest)


def _resumed_sampler(spec: SweepSpec, manifest: Manifest, grid: Grid) -> Sampler:
    """The sampler a resumed sweep was run with: the object given again, else its name and options."""
    d = manifest.data
    if spec.sampler is not None and not isinstance(spec.sampler, str):
        return make_sampler(spec.sampler, grid, d["seed"], spec.metric, spec.mode)
    name = d.get("sampler") or spec.sampler
    if name not in SAMPLER_REGISTRY:
        raise GridrunError(f"sweep {manifest.id} was run with the sampler {name!r}, which is not a registered name: "
                           f"resume it from Python with the same sampler object (tuning_run(resume=..., sampler=...))")
    return make_sampler(name, grid, d["seed"], spec.metric, spec.mode, d.get("sampler_options") or None)


def _pruner(spec: SweepSpec, manifest: Manifest) -> Pruner | None:
    """The sweep's pruner, recorded in the manifest (with the options to build it again on resume)."""
    pruner = make_pruner(spec.prune, spec.prune_options)
    if pruner is not None:
        by_name = isinstance(spec.prune, str)
        manifest.data["pruner"] = {**pruner.describe(), "name": spec.prune if by_name else pruner.name,
                                   "options": PRUNER_REGISTRY.options(spec.prune, spec.prune_options) if by_name else {}}
        if spec.prune_metric:  # a multi-objective sweep's pruner judges by this one (sweep/progress.sweep_metric)
            manifest.data["pruner"]["metric"] = spec.prune_metric
    return pruner


def _checkpoints(spec: SweepSpec, manifest: Manifest) -> None:
    """The sweep's checkpoint settings, recorded in the manifest (a resume keeps them unless given again);
    the loop hands them to each trial (sweep/loop.py checkpoint_settings)."""
    recorded = manifest.data.get("checkpoints") or {}
    manifest.data["checkpoints"] = {
        "policy": spec.checkpoints if spec.checkpoints is not None else recorded.get("policy"),
        "keep_pruned": bool(spec.keep_pruned if spec.keep_pruned is not None else recorded.get("keep_pruned", False)),
        "seconds": spec.checkpoint_seconds if spec.checkpoint_seconds is not None else recorded.get("seconds"),
    }


def _advise(spec: SweepSpec, manifest: Manifest, pruner: Pruner | None) -> None:
    """Before a sweep starts: say so when it is too small for its pruner, and what to change."""
    text = pruner.advice(len(manifest.trials)) if pruner is not None else None
    if text and not spec.quiet:
        print(f"note: {text}", flush=True)


def _pbt_config(spec: SweepSpec, grid: Grid | None, script: str | os.PathLike, seed: int) -> Any:
    """The sweep's PBTConfig (gridrun/pbt.py): the flags it may mutate, its metric, mode and seed."""
    from ..flagspec import declared_flags
    from ..pbt import sweep_config

    return sweep_config(spec.pbt, grid=grid, specs=declared_flags(script), metric=spec.metric, mode=spec.mode,
                        seed=seed)


def _grouper(spec: SweepSpec, manifest: Manifest, grid: Grid | None = None) -> Grouper | None:
    """Population mode's grouping of trials (None without --population)."""
    if not spec.population:
        return None
    from ..flagspec import declared_flags
    from ..train.population import PopulationConfig  # no JAX: the configuration the groups' workers get

    specs = declared_flags(manifest.data["script_path"])
    pbt = _pbt_config(spec, grid, manifest.data["script_path"], manifest.data["seed"]) if spec.wants_pbt else None
    return Grouper([name for name, s in specs.items() if s.is_static],
                   PopulationConfig.from_env(max_size=spec.population_size, pbt=pbt), workers=spec.jobs)


def _rounds(spec: SweepSpec, manifest: Manifest, grid: Grid | None) -> Any:
    """PBT outside a population (sweep/pbt_rounds.py), or None."""
    if not spec.wants_pbt or spec.population:
        return None
    from .pbt_rounds import PBTRounds

    return PBTRounds(_pbt_config(spec, grid, manifest.data["script_path"], manifest.data["seed"]), manifest,
                     spec.runs_dir)


def _executor(spec: SweepSpec) -> Executor:
    backend = spec.backend
    if spec.worker_devices and backend is None and spec.jobs > 1:
        backend = "local"
    return get_executor(backend, spec.jobs, spec.scheduler, devices=spec.worker_devices)


def _run(spec: SweepSpec, manifest: Manifest, executor: Executor, grouper: Grouper | None,
         sampler: Sampler, pruner: Pruner | None, pbt: Any = None) -> float:
    """The sweep loop, with the executor closed and the manifest saved however it ends; its seconds."""
    t0 = time.monotonic()
    try:
        run_sweep(manifest, executor, spec.runs_dir, retries=spec.retries, max_failures=spec.max_failures,
                  quiet=spec.quiet, max_bytes=spec.max_artifact_bytes, grouper=grouper, sampler=sampler,
                  pruner=pruner, pbt=pbt)
    except KeyboardInterrupt:
        print(f"\nSweep {manifest.id} interrupted; continue it with: gridrun tuning-run --resume {manifest.id}"
              f"{runs_dir_hint(spec.runs_dir)}", file=sys.stderr, flush=True)
        raise
    finally:
        executor.close()
        close_orphans(manifest, spec.runs_dir)
        manifest.save()
        manifest.retire()
    return time.monotonic() - t0


def _results(spec: SweepSpec, manifest: Manifest):
    """This sweep's runs, as `ls_runs` lists them, with the sweep's counts in `attrs`."""
    from ..runs import ls_runs

    df = ls_runs(spec.runs_dir, sweep=manifest.id)
    df.attrs.update(sweep=manifest.id, manifest=str(manifest.path), trials=len(manifest.trials),
                    trials_completed=sum(t.status == Status.COMPLETED for t in manifest.trials),
                    trials_ended=manifest.completed())
    return df


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
        return build_grid(combinations=desc["combinations"], when=desc.get("when") or {})
    space: dict[str, Any] = dict(desc.get("flags") or {})
    for name, r in (desc.get("ranges") or {}).items():
        space[name] = from_yaml(r)
    try:
        specs = declared_flags(manifest.data["script_path"]) or None
        return build_grid(space, specs, script=manifest.data.get("script", ""), when=desc.get("when") or {})
    except GridrunError:  # the script's flags changed since: keep the values as recorded
        return build_grid(space, when=desc.get("when") or {})


def _print_resume_plan(spec: SweepSpec, grid: Grid | None, show: int = 10) -> None:
    """--resume ID --dry-run: what a resume would run, and the state its sampler and pruner would
    start from, read from the manifest and the run dirs; nothing is run, written or reconciled."""
    manifest = _load_resumed(spec, grid)
    _recorded_settings(spec, manifest)
    grid = _manifest_grid(manifest)
    d = manifest.data
    trials = manifest.trials
    # what a resume would see: run dirs that ended count, whatever the manifest says
    for t in trials:
        if t.status in FINAL or not t.run_dir:
            continue
        props = read_json(Path(spec.runs_dir) / t.run_dir / "properties.json", {}) or {}
        if props.get("status") in FINAL:
            t.status = Status(props["status"])
    ended = [t for t in trials if t.status in FINAL]
    left = [t for t in trials if t.status not in FINAL]
    print(f"Dry run of resuming sweep {manifest.id} ({d.get('script')}): {len(ended)} of {len(trials)} trials "
          f"ended, {len(left)} would run")
    settings = d.get("settings") or {}
    print(f"Settings recorded: backend {settings.get('backend', 'inprocess')}, jobs {settings.get('jobs', 1)}, "
          f"retries {settings.get('retries', 0)}, population {bool(settings.get('population'))}; "
          f"metric {spec.metric or 'val_loss (else loss)'} ({spec.mode or 'by the scoring rule'})")
    sampler = None
    if d.get("sampler") in SAMPLER_REGISTRY or spec.sampler is not None:
        sampler = _resumed_sampler(spec, manifest, grid)
    pruner = make_pruner(spec.prune, spec.prune_options)
    replay(manifest, spec.runs_dir, sampler, pruner)  # in memory only: reads the run dirs' metrics.json
    counts = {s: sum(t.status == s for t in trials) for s in (Status.COMPLETED, Status.PRUNED, Status.FAILED)}
    learned = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing yet"
    options = d.get("sampler_options") or {}
    print(f"Sampler: {d.get('sampler')}{' ' + str(options) if options else ''}, seed {d.get('seed')}; "
          f"it would start having been told {learned}")
    if pruner is None:
        print("Pruner: none")
    else:
        print(f"Pruner: {pruner.describe()}; it would start from {describe_pruner_state(pruner)}")
    print(f"Trials that would run{f' (the first {show})' if len(left) > show else ''}:" if left else
          "No trial left to run.")
    for t in left[:show]:
        flags = ", ".join(f"{k}={v}" for k, v in t.flags.items()) if t.flags else \
            f"values chosen by {d.get('sampler')} when it starts"
        print(f"  trial {t.trial} ({t.status}, {len(t.attempts)} attempt(s) so far): {flags}")
    print("Dry run: nothing was run or written.")


def describe_pruner_state(pruner: Pruner) -> str:
    """What a pruner has recorded, in words (its rungs, or its values per epoch)."""
    rungs = getattr(pruner, "rungs", None)
    if isinstance(rungs, dict):
        return ("rungs " + ", ".join(f"epoch {e}: {len(v)} value(s)" for e, v in sorted(rungs.items()))) if rungs \
            else "empty rungs"
    brackets = getattr(pruner, "brackets", None)
    if isinstance(brackets, list):
        return "; ".join(f"bracket of grace {b.grace}: {describe_pruner_state(b)}" for b in brackets)
    values = getattr(pruner, "values", None)
    if isinstance(values, dict):
        return f"values at {len(values)} epoch(s) from {len({t for v in values.values() for t in v})} trial(s)"
    return "what its replay() recorded"


def _print_plan(manifest: Manifest, grid: Any, total: int | None, sampler: Sampler, show: int = 5) -> None:
    """--dry-run: the plan, and nothing else."""
    n = len(manifest.trials)
    print(describe_size(total, n))
    d = manifest.data
    if isinstance(d.get("metric"), list):  # a multi-objective sweep
        from .. import scoring

        what = ", ".join(f"{n} ({m})" for n, m in scoring.objectives(d["metric"], d.get("mode")))
        print(f"Sampler: {d['sampler']}, seed {d['seed']}; metrics: {what}")
    else:
        print(f"Sampler: {d['sampler']}, seed {d['seed']}; metric: {d.get('metric') or 'val_loss'} "
              f"({d.get('mode') or 'by the scoring rule'})")
    for line in grid.tree_lines():  # each flag's values; a conditional flag under the flag it depends on
        print(line)
    print(f"First {min(show, n)} trial(s):" if n else "No trials.")
    for t in manifest.trials[:show]:
        flags = t.flags or (sampler.ask(t) if d["sampler"] == "random" else None)
        shown = ", ".join(f"{k}={v}" for k, v in flags.items()) if flags else f"chosen by {d['sampler']} when it starts"
        print(f"  trial {t.trial}: {shown}")
    print("Dry run: nothing was run or written.")
