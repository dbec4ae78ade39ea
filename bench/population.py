"""Population mode against sequential training, measured side by side in one process.

    python bench/population.py                      # GPU sizes: P = 1, 16, 64, 145 (+ 512 with --big)
    python bench/population.py --quick              # this 2-core CPU: P = 1, 4, 16
    python bench/population.py --sweep 145 --sweep-epochs 35 --sweep-dataset fashion_mnist

Part 1, throughput: the chapter's tuned model (256-128-64, batch norm, dropout .4/.3/.2, Adam, batch
128, EarlyStopping(5), ReduceLROnPlateau) on Fashion-MNIST, 48k/12k split. Sequential gridrun.fit
seconds per epoch, then populations of P trials with different dropout rates and learning rates
trained through the real population path (one thread per trial, fit calls meeting in the
coordinator): seconds per trial-epoch, ratio to sequential, and achieved FLOP/s. Compilation is
excluded from both (each is warmed up with one epoch first; later calls reuse the compiled program).

Part 2, end to end (--sweep N): the chapter's grid (scripts/mnist_grid_search.py, 2,916 combinations)
sampled to N trials, run as a tuning run in population mode, and (unless --no-sequential) the same
trials run sequentially in-process: wall time of each, compilation included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import gridrun
from gridrun import BatchNorm, Dense, Dropout, EarlyStopping, ReduceLROnPlateau, Sequential
from gridrun.train.population import Population

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
    args = ap.parse_args()

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
