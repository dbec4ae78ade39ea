"""gridrun tuning-run: run a script once per combination of flag values (grid or random search)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import GridrunError
from ..executors import REGISTRY as BACKENDS
from ..executors.local import parse_devices
from ..sweep.pruners import REGISTRY as PRUNERS
from ..sweep.samplers import REGISTRY as SAMPLERS
from ._common import add_runs_dir, parse_flag_options, parse_key_values, parse_sample

NAME = "tuning-run"
HELP = "Run a script for every combination (or a random sample) of flag values; resumable, parallel."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script", nargs="?", help="the training script (optional with --resume ID)")
    parser.add_argument("--flag", action="append", metavar="NAME=V1,V2,...",
                        help="values of one flag (repeatable, once per flag); quote a value with commas: 'name=\"a,b\",c'")
    parser.add_argument("--grid", metavar="FILE.yml", help="YAML mapping of flag -> list of values")
    parser.add_argument("--combinations", metavar="FILE",
                        help="an explicit table, one trial per row, run as given and in its own order (unless "
                             "--shuffle): CSV (a header of flag names), JSON (a list of objects) or YAML (a list of "
                             "mappings); --flag NAME=VALUE adds a constant to every row")
    parser.add_argument("--sample", metavar="F|N",
                        help="draw a fraction 0<F<=1 of the combinations (at least one), or N > 1 of them")
    parser.add_argument("--seed", type=int, help="seed of the random draw and order (recorded in the manifest)")
    parser.add_argument("--ordered", action="store_true", help="run in grid order instead of a random order")
    parser.add_argument("--shuffle", action="store_true",
                        help="run a --combinations table in a random order (seeded by --seed); a grid's order is "
                             "random already unless --ordered")
    parser.add_argument("--jobs", type=int, default=1, help="trials at a time (default 1; >1: a local worker pool)")
    parser.add_argument("--backend", choices=BACKENDS, metavar="NAME",
                        help="where trials run: %(choices)s (default: inprocess for --jobs 1, local for more, "
                             "dask with --scheduler; packages add more, docs/extending.md)")
    parser.add_argument("--population", action="store_true",
                        help="train trials that differ only in numeric flags together, as one vmapped JAX "
                             "program per group, or alone side by side where the cost model says that is faster "
                             "(a multi-core CPU) (scripts that train with gridrun.fit or gridrun.fit_loop; see docs/population.md)")
    parser.add_argument("--population-size", type=int, metavar="N",
                        help="at most N trials per compiled program (default: as many as device memory allows)")
    parser.add_argument("--pbt", action="store_true",
                        help="population-based training: every --pbt-interval epochs the bottom trials copy the top "
                             "trials' training state and perturb their numeric flags (inside the program with "
                             "--population, else through checkpoints on any executor)")
    parser.add_argument("--pbt-interval", type=int, metavar="E", help="--pbt: epochs between exploits (default: a tenth of the epochs, at least 1)")
    parser.add_argument("--pbt-quantile", type=float, metavar="Q", help="--pbt: bottom/top fraction (default 0.25)")
    parser.add_argument("--pbt-resample", type=float, metavar="P",
                        help="--pbt: probability of drawing a value afresh instead of x0.8 / x1.2 (default 0.25)")
    parser.add_argument("--worker-devices", metavar="D,D,...",
                        help="pin local workers to accelerators, round robin: 0,1,2,3 (one each) or 0+1,2+3 (a set "
                             "each), through CUDA_VISIBLE_DEVICES/ROCR_VISIBLE_DEVICES")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler (tcp://HOST:8786) or Ray address")
    parser.add_argument("--retries", type=int, default=0, help="re-run a failed trial up to R times (default 0)")
    parser.add_argument("--max-failures", type=int, metavar="K", help="stop the sweep after K failed trials")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="SWEEP_ID",
                        help="run what did not complete in sweep SWEEP_ID (alone: the latest matching sweep)")
    search = parser.add_argument_group("search")
    search.add_argument("--metric", action="append", metavar="NAME",
                        help="the metric the sweep optimizes (default: val_loss, else loss); repeat it for several "
                             "(--metric val_loss --metric n_params): a multi-objective sweep, whose summary shows "
                             "the Pareto front (samplers grid, random, nsga2, tpe; docs/analysis.md)")
    search.add_argument("--mode", metavar="MIN|MAX[,...]",
                        help="min or max, one per --metric, comma-separated: --mode min,max (default: by name: "
                             "losses min, accuracy-like max)")
    search.add_argument("--sampler", choices=SAMPLERS, metavar="NAME",
                        help="how trial values are chosen: %(choices)s (default: grid for lists, random with "
                             "ranges; tpe, cmaes, nsga2: Optuna's TPE, CMA-ES and NSGA-II, pip install "
                             "'gridrun[optuna]'; with several --metric: nsga2, tpe, random or grid; "
                             "packages add more, docs/extending.md)")
    search.add_argument("--sampler-opt", action="append", metavar="KEY=VALUE",
                        help="an option of the sampler's constructor (repeatable), e.g. n_startup_trials=5 for tpe")
    search.add_argument("--prune", choices=PRUNERS, metavar="NAME",
                        help="stop bad trials early: %(choices)s (asha: successive halving, hyperband: brackets "
                             "of ASHA, median; packages add more, docs/extending.md)")
    search.add_argument("--prune-metric", metavar="NAME",
                        help="with several --metric, the one --prune (and its rungs) judges trials by, in its "
                             "--mode; required then, since a pruner compares one value per epoch")
    search.add_argument("--checkpoints", choices=("best", "last", "both", "none"),
                        help="what each trial keeps of its training state, over the script's own checkpoint= "
                             "(default: the script's; fit's default is both; --resume continues from last)")
    search.add_argument("--checkpoint-seconds", type=float, metavar="S",
                        help="at least S seconds between two writes of a trial's checkpoints (default: the "
                             "script's, 5; 0: every epoch); its best epoch is held in memory between writes "
                             "and its end writes all, so only a kill -9 loses up to S s of its training")
    search.add_argument("--keep-pruned", action="store_true", default=None,
                        help="pruned and failed trials keep their checkpoints (default: deleted, to save disk)")
    search.add_argument("--promote", action="store_true",
                        help="asha, hyperband: the promotion variant: a trial pauses at each rung (its checkpoint "
                             "kept) and continues from it once it is among the best 1/reduction there")
    search.add_argument("--prune-opt", action="append", metavar="KEY=VALUE",
                        help="an option of the pruner's constructor (repeatable), e.g. brackets=2 for hyperband")
    search.add_argument("--prune-grace", type=int, metavar="E", help="asha, hyperband: epochs before the first rung (default 1)")
    search.add_argument("--prune-reduction", type=float, metavar="ETA",
                        help="asha, hyperband: keep the best 1/ETA at each rung (default 4)")
    search.add_argument("--prune-max-epochs", type=int, metavar="E", help="asha, hyperband: no rung at or after E epochs (hyperband: brackets below E)")
    search.add_argument("--prune-warmup", type=int, metavar="E", help="median: never prune at epochs <= E (default 1)")
    search.add_argument("--prune-startup", type=int, metavar="N",
                        help="median: prune only once N other trials reported that epoch (default 4)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (combinations, trials, the first few) and exit")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before a large sweep")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    add_runs_dir(parser)


def read_grid_file(path: str) -> dict[str, Any]:
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GridrunError(f"grid file {p} does not exist: check the path") from None
    except yaml.YAMLError as exc:
        raise GridrunError(f"grid file {p} is not valid YAML ({exc}): write a mapping of flag: [values]") from None
    if not isinstance(data, dict) or not data:
        raise GridrunError(f"grid file {p} must be a mapping of flag: [value, value, ...]")
    from ..space import from_yaml

    out: dict[str, Any] = {}
    for k, v in data.items():
        r = from_yaml(v)
        out[str(k)] = r if r is not None else (v if isinstance(v, list) else [v])
    return out


def run(args: argparse.Namespace) -> int:
    from ..sweep import tuning_run

    flags: dict[str, Any] | None = None
    if args.grid:
        flags = read_grid_file(args.grid)
    for name, values in parse_flag_options(args.flag).items():  # a flag given twice is an error
        flags = flags or {}
        flags[name] = values  # the command line wins over the grid file
    if args.combinations and args.grid:
        raise GridrunError("give either --combinations or --grid, not both (--flag NAME=VALUE adds a constant to "
                           "every row of the table)")
    if not args.script and not args.resume:
        raise GridrunError("give the script to tune (gridrun tuning-run script.py --flag lr=0.1,0.01), "
                           "or --resume SWEEP_ID")
    df = tuning_run(
        args.script, flags, combinations=args.combinations, sample=parse_sample(args.sample), seed=args.seed,
        ordered=args.ordered, shuffle=args.shuffle, runs_dir=args.runs_dir, jobs=args.jobs, backend=args.backend,
        population=args.population, population_size=args.population_size,
        scheduler=args.scheduler, retries=args.retries, max_failures=args.max_failures, resume=args.resume,
        confirm=True, yes=args.yes, quiet=args.quiet, metric=metric_option(args.metric), mode=args.mode,
        prune_metric=args.prune_metric, sampler=args.sampler,
        sampler_options=parse_key_values(args.sampler_opt, "--sampler-opt"),
        prune=args.prune, prune_options=prune_options(args), dry_run=args.dry_run,
        checkpoints=args.checkpoints, keep_pruned=args.keep_pruned, checkpoint_seconds=args.checkpoint_seconds,
        worker_devices=parse_devices(args.worker_devices) if args.worker_devices else None,
        pbt=pbt_options(args),
    )
    if df is None:  # --dry-run
        return 0
    return 0 if df.attrs.get("trials_ended") == df.attrs.get("trials") else 1


def pbt_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """tuning_run's `pbt`: the --pbt-* options given (None without --pbt; they need it)."""
    given = {k: getattr(args, f"pbt_{k}", None) for k in ("interval", "quantile", "resample")}
    given = {k: v for k, v in given.items() if v is not None}
    if not getattr(args, "pbt", False):
        if given:
            raise GridrunError(f"{', '.join('--pbt-' + k for k in given)} need --pbt")
        return None
    return given


def metric_option(given: list[str] | None) -> str | list[str] | None:
    """`--metric` (repeatable): one name as a string (a one-metric sweep, as always), several as a list;
    `--metric a,b` counts as two."""
    names = [n.strip() for item in given or [] for n in item.split(",")]
    return None if not names else names[0] if len(names) == 1 else names


def prune_options(args: argparse.Namespace) -> dict[str, Any]:
    """The pruner's keyword arguments: the --prune-* options given, then each --prune-opt KEY=VALUE
    (typed later by the pruner's signature; a key it does not take is an error naming those it does)."""
    asha = ("grace", "reduction", "max_epochs")
    names = {"asha": asha, "hyperband": asha, "median": ("warmup", "startup")}.get(args.prune or "", ())
    given: dict[str, Any] = {k: getattr(args, f"prune_{k}") for k in names if getattr(args, f"prune_{k}") is not None}
    other = [f"--prune-{k.replace('_', '-')}" for k in ("grace", "reduction", "max_epochs", "warmup", "startup")
             if k not in names and getattr(args, f"prune_{k}") is not None]
    if other:
        raise GridrunError(f"{', '.join(other)} do not apply to --prune {args.prune or 'none'}")
    if args.promote:
        if args.prune not in ("asha", "hyperband"):
            raise GridrunError(f"--promote applies to --prune asha or hyperband, not {args.prune or 'none'}: "
                               f"add --prune asha")
        given["promote"] = True
    given.update(parse_key_values(args.prune_opt, "--prune-opt"))
    return given
