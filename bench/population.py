"""Population mode against sequential training, measured side by side in one process.

    python bench/population.py                      # GPU sizes: P = 1, 16, 64, 145 (+ 512 with --big)
    python bench/population.py --quick              # this 2-core CPU: P = 1, 4, 16
    python bench/population.py --sweep 145 --sweep-epochs 35 --sweep-dataset fashion_mnist
    python bench/population.py --modes [--quick]    # sequential vs --jobs 2 vs --population, cold CLI runs

Part 1, throughput: the chapter's tuned model (256-128-64, batch norm, dropout .4/.3/.2, Adam, batch
128, EarlyStopping(5), ReduceLROnPlateau) on Fashion-MNIST, 48k/12k split. Sequential gridrun.fit
seconds per epoch, then populations of P trials with different dropout rates and learning rates
trained through the real population path (one thread per trial, fit calls meeting in the
coordinator): seconds per trial-epoch, ratio to sequential, and achieved FLOP/s. Compilation is
excluded from both (each is warmed up with one epoch first; later calls reuse the compiled program).

Part 2, end to end (--sweep N): the chapter's grid (scripts/mnist_grid_search.py, 2,916 combinations)
sampled to N trials, run as a tuning run in population mode, and (unless --no-sequential) the same
trials run sequentially in-process: wall time of each, compilation included.

Part 3, modes (--modes, issue 22 item 8): a chapter-style MLP 784-u-u/2-10 (Adam, dropout) on
Fashion-MNIST (12k train / 3k validation, 10 epochs), as `gridrun tuning-run` commands in fresh
processes with the persistent compilation cache off (every run compiles from scratch): the 24
configurations units {64, 128, 256} x lr x dropout sequentially, with `--jobs 2` and with
`--population`; then 48 random trials of a 72-point grid with ASHA sequentially, with `--jobs 2` and with
`--population --population-size 8` (the grid case also runs `--jobs 2` with the workers' core pinning
off, GRIDRUN_WORKER_CORES=0, to show what pinning does, and `--population --jobs 2`). Each case's modes run interleaved (--rounds R times, median kept),
and the ratio of each mode to sequential is printed, with the machine's load average. `--quick`: 4k/1k
rows, 4 epochs, 12 and 24 trials. `--markdown` also prints the table docs/population.md shows.

--crossover: the cost model's (gridrun/train/widths.py) population/sequential ratio over model size x
trials for that MLP, no training: where the model says the population stops paying.

--calibrate: the measurements behind that cost model on this backend: the --modes MLP at units 64, 128
and 256, trained warm (compiled before), alone (gridrun.fit) and as a vmapped group of 8 trials (the
real population path), seconds per epoch as the difference of a 4-epoch and a 1-epoch run; then the
fitted model: FLOP/s and seconds per batch step from the lone trials (least squares over the widths),
and the vmapped program's speed per FLOP against a lone trial's (`vmap_speedup`); then 4 trials per
width made to train alone in a Population, one at a time and `widths.parallel_trials` at a time
(threads of one process): the throughput gain of lone trials side by side (`parallel_speedup`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import gridrun
from gridrun import BatchNorm, Dense, Dropout, EarlyStopping, ReduceLROnPlateau, Sequential
from gridrun.train.population import Population, PopulationConfig

ROOT = Path(__file__).resolve().parents[1]
SIZES = (256, 128, 64)
CHAPTER_GRID = {
    "nodes1": [64, 128, 256], "nodes2": [64, 128, 256], "nodes3": [64, 128, 256],
    "dropout1": [0.2, 0.3, 0.4], "dropout2": [0.2, 0.3, 0.4], "dropout3": [0.2, 0.3, 0.4],
    "optimizer": ["rmsprop", "adam"], "lr_annealing": [0.1, 0.05],
}


def out(**kw) -> None:
    kw["device"] = str(jax.devices()[0].device_kind)
    print(json.dumps(kw), flush=True)


def model(drops=(0.4, 0.3, 0.2)) -> Sequential:
    layers = []
    for units, rate in zip(SIZES, drops):
        layers += [Dense(units, activation="relu"), BatchNorm(), Dropout(rate)]
    return Sequential(layers + [Dense(10, activation="softmax")])


def fit(x, y, epochs, drops=(0.4, 0.3, 0.2), lr=1e-3, seed=0):
    return gridrun.fit(model(drops), x, y, loss="categorical_crossentropy", metrics=("accuracy",),
                       optimizer=gridrun.train.optimizer("adam", learning_rate=lr), epochs=epochs,
                       batch_size=128, validation_split=0.2, seed=seed,
                       callbacks=[EarlyStopping(patience=5), ReduceLROnPlateau(factor=0.1)])


def flops_per_trial_epoch(n_train: int, n_val: int) -> float:
    dims = (784, *SIZES, 10)
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 3 * 2 * macs * n_train + 2 * macs * n_val


def sequential(x, y, epochs: int) -> float:
    fit(x, y, 1)  # compile
    t = time.perf_counter()
    fit(x, y, epochs)
    return (time.perf_counter() - t) / epochs


def population(x, y, P: int, epochs: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    drops = rng.choice([0.2, 0.3, 0.4], size=(P, 3))
    lrs = rng.choice([1e-3, 5e-4], size=P)

    def jobs(n_epochs):
        return [lambda i=i: fit(x, y, n_epochs, tuple(drops[i]), float(lrs[i]), seed=i) for i in range(P)]

    t = time.perf_counter()
    Population().run(jobs(1))  # compile (and the first epoch)
    first = time.perf_counter() - t
    t = time.perf_counter()
    results = Population().run(jobs(epochs))
    wall = time.perf_counter() - t
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return wall / (P * epochs), first


def sweep(n: int, epochs: int, dataset: str, run_sequential: bool) -> None:
    script = ROOT / "scripts" / "mnist_grid_search.py"
    grid = dict(CHAPTER_GRID, dataset=[dataset], epochs=[epochs])
    times = {}
    modes = [("population", True)] + ([("sequential", False)] if run_sequential else [])
    for name, pop in modes:
        with tempfile.TemporaryDirectory(prefix=f"gridrun-bench-{name}-") as runs:
            t = time.perf_counter()
            df = gridrun.tuning_run(script, flags=grid, sample=n, seed=1, runs_dir=runs, quiet=True, population=pop)
            times[name] = time.perf_counter() - t
            done = int((df["status"] == "completed").sum())
            best = df["metric_val_loss"].min()
            out(case=f"sweep_{name}", trials=n, epochs=epochs, dataset=dataset, wall_s=round(times[name], 2),
                completed=done, best_val_loss=round(float(best), 4),
                mean_epochs=round(float(df["epochs_completed"].mean()), 1))
    if len(times) == 2:
        out(case="sweep_ratio", sequential_over_population=round(times["sequential"] / times["population"], 2))


MODES_SCRIPT = '''"""A chapter-style MLP 784-u-u/2-10 on Fashion-MNIST (bench/population.py --modes)."""
import gridrun
from gridrun import Dense, Dropout, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_integer("units", 128, "units of the first hidden layer (the second has half)"),
    gridrun.flag_numeric("lr", 1e-3, "Adam's learning rate"),
    gridrun.flag_numeric("dropout", 0.2, "dropout after each hidden layer"),
    gridrun.flag_integer("epochs", 10, "epochs"),
    gridrun.flag_integer("rows", 15000, "rows of the training set used (a fifth for validation)"),
)
(x, y), _ = load_prepared("fashion_mnist")
x, y = x[: FLAGS.rows], y[: FLAGS.rows]
model = Sequential([Dense(FLAGS.units, activation="relu"), Dropout(FLAGS.dropout),
                    Dense(FLAGS.units // 2, activation="relu"), Dropout(FLAGS.dropout),
                    Dense(10, activation="softmax")])
gridrun.fit(model, x, y, loss="categorical_crossentropy", metrics=("accuracy",),
            optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), epochs=FLAGS.epochs,
            batch_size=128, validation_split=0.2, verbose=0)
'''


def _cli(script: Path, flags: dict[str, str], extra: list[str]) -> tuple[float, dict[str, int]]:
    """One cold `gridrun tuning-run` process; (wall seconds, trial statuses counted). An extra argument
    NAME=VALUE (upper case) is an environment variable of that process, not a CLI argument."""
    env_extra = dict(a.split("=", 1) for a in extra if "=" in a and a.split("=", 1)[0].isupper())
    extra = [a for a in extra if not ("=" in a and a.split("=", 1)[0].isupper())]
    with tempfile.TemporaryDirectory(prefix="gridrun-bench-modes-") as runs:
        cmd = [sys.executable, "-m", "gridrun.cli", "tuning-run", str(script), "--runs-dir", runs, "--yes",
               "--quiet", *[a for k, v in flags.items() for a in ("--flag", f"{k}={v}")], *extra]
        env = dict(os.environ, **env_extra, GRIDRUN_JAX_CACHE="off",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        counts: dict[str, int] = {}
        for folder in Path(runs).iterdir():
            props = folder / "properties.json"
            if props.is_file():
                status = json.loads(props.read_text()).get("status", "?")
                counts[status] = counts.get(status, 0) + 1
        return wall, counts


def modes(quick: bool, rounds: int, markdown: bool) -> None:
    """Part 3: sequential vs --jobs 2 vs --population, cold processes, interleaved; ratios to sequential."""
    rows, epochs = (5000, 4) if quick else (15000, 10)
    lrs = "0.001,0.003" if quick else "0.0005,0.001,0.002,0.004,0.008,0.016"
    cases = {
        "grid": ({"units": "64,128,256", "lr": "0.001,0.003", "dropout": "0.1,0.3" if quick else "0.1,0.2,0.3,0.4"},
                 [], {"sequential": [], "jobs2": ["--jobs", "2"], "population": ["--population"],
                      "jobs2_unpinned": ["--jobs", "2", "GRIDRUN_WORKER_CORES=0"],
                      "population_jobs2": ["--population", "--jobs", "2"]}),
        "asha": ({"units": "64,128,256", "lr": lrs, "dropout": "0.1,0.2,0.3,0.4"},
                 ["--sampler", "random", "--sample", "24" if quick else "48", "--seed", "1", "--prune", "asha"],
                 {"sequential": [], "jobs2": ["--jobs", "2"],
                  "population": ["--population", "--population-size", "8"]}),
    }
    table = []
    with tempfile.TemporaryDirectory(prefix="gridrun-bench-script-") as folder:
        script = Path(folder) / "mlp.py"
        script.write_text(MODES_SCRIPT)
        for case, (grid, common, variants) in cases.items():
            flags = dict(grid, epochs=str(epochs), rows=str(rows))
            walls: dict[str, list[float]] = {m: [] for m in variants}
            if not table:  # one untimed run first: the data and the packages into the OS's file cache
                _cli(script, dict(flags, units="64", lr="0.001", dropout="0.1", epochs="1"), [])
            names = list(variants)
            for r in range(rounds):
                for mode in names[r % len(names):] + names[:r % len(names)]:  # each round starts one later
                    extra = variants[mode]
                    wall, counts = _cli(script, flags, common + extra)
                    walls[mode].append(wall)
                    out(case=f"modes_{case}", mode=mode, round=r, wall_s=round(wall, 2), statuses=counts,
                        load=round(os.getloadavg()[0], 1))
            seq = statistics.median(walls["sequential"])
            ratios = {m: round(statistics.median(w) / seq, 3) for m, w in walls.items()}
            out(case=f"modes_{case}_ratio", rows=rows, epochs=epochs,
                **{f"{m}_s": round(statistics.median(w), 2) for m, w in walls.items()},
                **{f"{m}_over_sequential": v for m, v in ratios.items() if m != "sequential"},
                load=[round(v, 1) for v in os.getloadavg()])
            table.append((case, {m: statistics.median(w) for m, w in walls.items()}, ratios))
    if markdown:
        print("\n| case | sequential | --jobs 2 | --population |\n|---|---|---|---|")
        for case, secs, ratios in table:
            print(f"| {case} | {secs['sequential']:.1f} s | {secs['jobs2']:.1f} s ({ratios['jobs2']:.2f}x) "
                  f"| {secs['population']:.1f} s ({ratios['population']:.2f}x) |")


def modes_config(u: int):
    """The static configuration (train/engine.py EngineConfig) of the --modes MLP 784-u-u/2-10 at 12k / 3k
    rows, as the cost model sees it (--calibrate, --crossover)."""
    from gridrun.train.engine import EngineConfig

    model = (("dense", u, "relu", True, False), ("dropout",), ("dense", max(1, u // 2), "relu", True, False),
             ("dropout",), ("dense", 10, "softmax", True, False))
    return EngineConfig(model=model, loss="categorical_crossentropy", optimizer=("adam", ()),
                        metrics=("accuracy",), early_stopping=None, reduce_lr=None, batch_size=128,
                        n_train=12000, n_val=3000, input_shape=(784,))


def calibrate(rounds: int = 2) -> None:
    """Part 4 (--calibrate): fit widths.Costs' flops_per_second, step_seconds and vmap_speedup to timed epochs,
    and measure parallel_speedup (lone trials side by side against one at a time)."""
    from gridrun.train import widths

    (x, y), _ = gridrun.datasets.load_prepared("fashion_mnist")
    x, y = x[:15000], y[:15000]

    def mlp_fit(units: int, lr: float, epochs: int):
        net = Sequential([Dense(units, activation="relu"), Dropout(0.2), Dense(units // 2, activation="relu"),
                          Dropout(0.2), Dense(10, activation="softmax")])
        return gridrun.fit(net, x, y, loss="categorical_crossentropy", metrics=("accuracy",),
                           optimizer=gridrun.optimizer("adam", learning_rate=lr), epochs=epochs, batch_size=128,
                           validation_split=0.2, verbose=0)

    def timed(run, epochs: int) -> float:
        t = time.perf_counter()
        run(epochs)
        return time.perf_counter() - t

    def per_epoch(run) -> float:  # warm; the 1-epoch run's fixed costs cancel out
        run(1)
        return statistics.median((timed(run, 4) - timed(run, 1)) / 3 for _ in range(rounds))

    group = 8
    lrs = [1e-3 * (1 + k / 10) for k in range(group)]
    # the group is measured as a vmapped program whatever the cost model would plan for it
    keep, widths.MIN_FALLBACK_SECONDS = widths.MIN_FALLBACK_SECONDS, float("inf")
    try:
        rows = []
        for u in (64, 128, 256):
            alone = per_epoch(lambda e, u=u: mlp_fit(u, 1e-3, e))
            together = per_epoch(lambda e, u=u: Population().run([lambda lr=lr: mlp_fit(u, lr, e) for lr in lrs]))
            rows.append((u, alone, together))
            out(case="calibrate", units=u, alone_s_per_epoch=round(alone, 4),
                vmapped_s_per_trial_epoch=round(together / group, 4), ratio=round(together / group / alone, 3))
    finally:
        widths.MIN_FALLBACK_SECONDS = keep
    # lone trials side by side: the same 4 trials made to train alone (a cost model whose vmapped programs
    # lose), one at a time and `parallel_trials` at a time (threads of one process), warm
    model_now = widths.costs()
    parallel = widths.parallel_trials(dataclasses.replace(model_now, parallel_speedup=max(2.0, model_now.parallel_speedup)))
    lone = dataclasses.replace(model_now, vmap_speedup=1e-3)
    keep_costs, widths.costs = widths.costs, lambda backend=None: lone
    keep, widths.MIN_FALLBACK_SECONDS = widths.MIN_FALLBACK_SECONDS, 0.0
    gains = []
    try:
        for u in (64, 128, 256):
            def side(e, p, u=u):
                Population(PopulationConfig(parallel=p)).run([lambda lr=lr: mlp_fit(u, lr, e) for lr in lrs[:4]])
            side(1, 1), side(1, parallel)  # compiled
            one = statistics.median(timed(lambda e: side(e, 1), 4) for _ in range(rounds))
            many = statistics.median(timed(lambda e: side(e, parallel), 4) for _ in range(rounds))
            gains.append(one / many)
            out(case="calibrate_parallel", units=u, parallel=parallel, one_at_a_time_s=round(one, 3),
                side_by_side_s=round(many, 3), speedup=round(one / many, 2))
    finally:
        widths.costs, widths.MIN_FALLBACK_SECONDS = keep_costs, keep
    flops = np.array([widths.epoch_flops(modes_config(u)) for u, _, _ in rows])
    steps = widths._steps(modes_config(64))
    alone = np.array([a for _, a, _ in rows])
    # alone = steps * step_seconds + flops / flops_per_second
    (step_s, inv_f), *_ = np.linalg.lstsq(np.stack([np.full(len(rows), steps), flops], 1), alone, rcond=None)
    together = np.array([t for _, _, t in rows])
    # together = steps * step_seconds + group * flops / (flops_per_second * vmap_speedup)
    speedup = float(np.sum(group * flops * inv_f) / np.sum(together - steps * step_s))
    model = widths.costs()
    out(case="calibrate_fit", flops_per_second=float(f"{1 / inv_f:.3g}"), step_seconds=float(f"{step_s:.3g}"),
        vmap_speedup=round(speedup, 2), parallel_speedup=round(statistics.median(gains), 2),
        model_now={"flops_per_second": model.flops_per_second, "step_seconds": model.step_seconds,
                   "vmap_speedup": model.vmap_speedup, "parallel_speedup": model.parallel_speedup})


def crossover() -> None:
    """The modelled crossover (gridrun/train/widths.py's cost model for this backend, not a measurement):
    for the --modes MLP (784-u-u/2-10, 12k/3k rows, 10 epochs) with n trials per width at each of three
    widths u, 2u, 4u, the modelled population time (widths.plan) over sequential training."""
    from gridrun.train import widths

    model = widths.costs()
    trials = (1, 2, 4, 8, 16, 32)
    print(f"\nmodelled population / sequential time, {jax.default_backend()} cost model {model}")
    for parallel in sorted({widths.parallel_trials(model), 1}, reverse=True):
        print(f"\nlone trials {parallel} at a time ({widths.cores()} cores here)")
        print("| widths | " + " | ".join(f"{n} per width" for n in trials) + " |")
        print("|---|" + "---|" * len(trials))
        for u in (16, 64, 256, 1024):
            cells = []
            for n in trials:
                configs = [modes_config(w) for w in (u, 2 * u, 4 * u) for _ in range(n)]
                p = widths.plan(configs, [10] * len(configs), model=model, parallel=parallel)
                alone = sum(len(i) for i, t in p.parts if not t)
                progs = sum(1 for _, t in p.parts if t)
                how = ("alone" if p.sequential else f"{progs} prog" + (f" + {alone} alone" if alone else ""))
                cells.append(f"{p.seconds / p.sequential_seconds:.2f} ({how})")
            out(case="crossover", parallel=parallel, units=[u, 2 * u, 4 * u], ratios=cells)
            print(f"| {u}/{2 * u}/{4 * u} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CPU sizes: P = 1, 4, 16")
    ap.add_argument("--pops", help="comma-separated population sizes")
    ap.add_argument("--big", action="store_true", help="also P = 512")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    ap.add_argument("--samples", type=int, default=60000, help="rows of Fashion-MNIST's training set used")
    ap.add_argument("--sweep", type=int, default=0, help="also run the chapter's sweep sampled to N trials")
    ap.add_argument("--sweep-epochs", type=int, default=35)
    ap.add_argument("--sweep-dataset", default="fashion_mnist")
    ap.add_argument("--no-sequential", action="store_true", help="skip the sequential sweep baseline")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--modes", action="store_true",
                    help="only part 3: sequential vs --jobs 2 vs --population as cold CLI runs (with --quick: smaller)")
    ap.add_argument("--rounds", type=int, default=1, help="--modes: interleaved rounds per case (median kept)")
    ap.add_argument("--markdown", action="store_true", help="--modes: also print the docs' table")
    ap.add_argument("--calibrate", action="store_true",
                    help="only measure the cost model's figures on this backend (lone and vmapped epochs of the MLP)")
    ap.add_argument("--crossover", action="store_true",
                    help="only print the cost model's crossover table (population vs sequential; no training)")
    args = ap.parse_args()

    if args.crossover:
        crossover()
        return
    if args.calibrate:
        calibrate()
        return

    if args.modes:
        modes(args.quick, args.rounds, args.markdown)
        return

    if not args.no_throughput:
        (x, y), _ = gridrun.datasets.load_prepared("fashion_mnist")
        x, y = x[: args.samples], y[: args.samples]
        n_train = int(np.ceil(len(x) * 0.8))
        flops = flops_per_trial_epoch(n_train, len(x) - n_train)
        seq = sequential(x, y, args.epochs)
        out(case="sequential_fit", s_per_epoch=round(seq, 4), gflops=round(flops / seq / 1e9, 1))
        if args.pops:
            pops = [int(p) for p in args.pops.split(",")]
        else:
            pops = [1, 4, 16] if args.quick else [1, 16, 64, 145] + ([512] if args.big else [])
        per = {}
        for P in pops:
            s, first = population(x, y, P, args.epochs)
            per[P] = s
            out(case="population", P=P, s_per_trial_epoch=round(s, 5), ratio_to_sequential=round(s / seq, 3),
                compile_plus_first_epoch_s=round(first, 2), gflops=round(flops / s / 1e9, 1))
        out(case="summary", best_ratio=round(min(per.values()) / seq, 3),
            median_ratio=round(statistics.median(per.values()) / seq, 3))
    if args.sweep:
        sweep(args.sweep, args.sweep_epochs, args.sweep_dataset, not args.no_sequential)


if __name__ == "__main__":
    main()
