"""Search strategies side by side: random search, ASHA pruning, TPE, TPE + ASHA, population + ASHA.

    python bench/search.py --n-train 4000     # Fashion-MNIST subsampled, N=24 trials, 9 epochs at most
    python bench/search.py --trials 12 --epochs 9 --n-train 3000 --dataset digits   # quicker
    python bench/search.py --vs-optuna [--quick]  # gridrun's TPE + ASHA beside Optuna's own loop
    python bench/search.py --promotion [--quick]  # ASHA's promotion variant beside stopping ASHA (issue 19)

The search space is the chapter's tuned network (256-128-64, batch norm, dropout after each layer,
Adam) with ranges for the learning rate (log-uniform) and the three dropout rates (uniform), on a
subsample of Fashion-MNIST (same subsample, same seeds for every strategy). Each strategy runs as a real
`tuning_run` in this process, one after the other; for each it prints the trial-epochs spent, the wall
time, the best validation loss reached, and the test accuracy of the configuration it picked (the trial
with the lowest final val_loss among those trained to the end). Random search and random + ASHA run
with twenty seeds (per-seed ratios and their median); TPE with the first three (its median against
random's over the same seeds); TPE + ASHA with the first seed; the population strategies with the
first three. A pruned trial skips the test-set evaluation (`gridrun.is_pruned()`), as a user's script
would: its model is not a candidate.

Targets (issue 11): ASHA's best val_loss within 2% of full random search's with <= 40% of its
trial-epochs and <= 50% of its wall time; TPE's median best val_loss over 3 seeds no worse than random's;
population + ASHA with slot refilling <= 1.1x the time per trial-epoch of an unpruned population.
Population + ASHA is reported against an unpruned population: without slot refilling a pruned member
is frozen but still carried by the vmapped program (see docs/population.md).

`--vs-optuna` (issue 18) runs another task: the chapter-style MLP 784-u-u/2-10 (units 64/128/256,
one dropout rate after each hidden layer, uniform; Adam's lr log-uniform) on Fashion-MNIST, 12k
training and the next 3k as validation samples, 10 epochs, 48 trials, over seeds 0-2; gridrun's
`tuning_run(sampler="tpe", prune="asha")` (grace 1, reduction 4) beside Optuna's own ask-and-tell loop
with its TPESampler and SuccessiveHalvingPruner (min_resource 1, reduction_factor 4), the same
n_startup_trials (10, given to both: gridrun's default for this grid would be 3, its lists' size), the
same training function (gridrun.fit, the same data arrays, model and training seed), both in this
process and sequential, after one warm-up of both that compiles every width (outside the timings).
Optuna's loop suggests the values in the order gridrun's sampler asks them (the lists, then the
ranges), so both draw the same random startup trials; in both a rung at the last epoch stops nothing.
Neither evaluates on the test set. Each seed runs both sides twice, in both orders (`--ab-rounds`), and
a side's wall time for the seed is the mean of its two runs (the first of a pair ran up to 10% slower).
It prints each seed's best val_loss and wall time, how many trials were alike in both, and the medians. Target: gridrun's median best val_loss <= Optuna's, at no more
wall time. `--same-tpe`: Optuna's loop uses the TPE settings gridrun's `sampler="tpe"` uses
(multivariate=False, which keeps Optuna's older defaults; Optuna 5's own default TPE differs), so both run the
very same trials and their wall times differ by gridrun's cost per trial alone.
`--quick`: 16 trials, 4 epochs, 4k/1k samples, seeds 0-1.

`--promotion` (issue 19) runs random search, random + ASHA and random + ASHA with promotion
(`prune_options={"promote": True}`: trials pause at rungs and the best continue from their checkpoints)
on the space above, over the same seeds, and prints each one's trial-epochs trained (a continued
attempt counts only the epochs it trained), wall time and best val_loss, with medians of the ratios to
random search. `--quick`: 16 trials, 9 epochs, 3k samples, seeds 0-2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import gridrun

SCRIPT = '''
import numpy as np
import gridrun
from gridrun import BatchNorm, Dense, Dropout, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_numeric("lr", 1e-3, "Adam's learning rate", values=gridrun.loguniform(1e-4, 3e-2)),
    gridrun.flag_numeric("dropout1", 0.4, "dropout after layer 1", values=gridrun.uniform(0.05, 0.6)),
    gridrun.flag_numeric("dropout2", 0.3, "dropout after layer 2", values=gridrun.uniform(0.05, 0.6)),
    gridrun.flag_numeric("dropout3", 0.2, "dropout after layer 3", values=gridrun.uniform(0.05, 0.6)),
    gridrun.flag_integer("epochs", 9, "epochs"),
    gridrun.flag_integer("n_train", 6000, "training samples (the first n of the training set)"),
    gridrun.flag_string("dataset", "fashion_mnist", "data set"),
)
(x, y), (xt, yt) = data = load_prepared(FLAGS.dataset)
n = min(FLAGS.n_train, len(x))
model = Sequential([
    Dense(256, activation="relu"), BatchNorm(momentum=0.9), Dropout(FLAGS.dropout1),
    Dense(128, activation="relu"), BatchNorm(momentum=0.9), Dropout(FLAGS.dropout2),
    Dense(64, activation="relu"), BatchNorm(momentum=0.9), Dropout(FLAGS.dropout3),
    Dense(10, activation="softmax"),
])
history = gridrun.fit(model, x[:n], y[:n], loss="categorical_crossentropy", metrics=("accuracy",),
                      optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), epochs=FLAGS.epochs,
                      batch_size=128, validation_split=0.2, verbose=0, seed=0)
if not gridrun.is_pruned():  # a pruned trial's model is no candidate: skip its test-set evaluation
    gridrun.evaluate(history, xt, yt)
'''


PRUNE_OPTIONS = {"grace": 1, "reduction": 4.0}

# the --vs-optuna task: one training function, imported by the gridrun script and by Optuna's loop
MLP_TASK = '''
import gridrun
from gridrun import Dense, Dropout, Sequential
from gridrun.datasets import load_prepared


def train(lr, dropout, units, epochs, n_train, n_val, dataset="fashion_mnist", callbacks=()):
    (x, y), _ = load_prepared(dataset)
    xt, yt, xv, yv = x[:n_train], y[:n_train], x[n_train:n_train + n_val], y[n_train:n_train + n_val]
    model = Sequential([Dense(units, activation="relu"), Dropout(dropout),
                        Dense(units // 2, activation="relu"), Dropout(dropout), Dense(10, activation="softmax")])
    return gridrun.fit(model, xt, yt, loss="categorical_crossentropy", metrics=("accuracy",),
                       optimizer=gridrun.optimizer("adam", learning_rate=lr), epochs=epochs, batch_size=128,
                       validation_data=(xv, yv), verbose=0, seed=0, callbacks=callbacks)
'''

MLP_SCRIPT = '''
import gridrun
from mlp_task import train

FLAGS = gridrun.flags(
    gridrun.flag_numeric("lr", 1e-3, "Adam's learning rate", values=gridrun.loguniform(1e-4, 3e-2)),
    gridrun.flag_numeric("dropout", 0.3, "dropout after each hidden layer", values=gridrun.uniform(0.0, 0.5)),
    gridrun.flag_integer("units", 128, "units of the first hidden layer", values=[64, 128, 256]),
    gridrun.flag_integer("epochs", 10, "epochs"),
    gridrun.flag_integer("n_train", 12000, "training samples"),
    gridrun.flag_integer("n_val", 3000, "validation samples (after the training ones)"),
)
train(FLAGS.lr, FLAGS.dropout, FLAGS.units, FLAGS.epochs, FLAGS.n_train, FLAGS.n_val)
'''
LR, DROPOUT, UNITS = (1e-4, 3e-2), (0.0, 0.5), [64, 128, 256]
STARTUP = 10  # random trials before TPE models anything, in both


def optuna_loop(seed: int, trials: int, epochs: int, n_train: int, n_val: int, same_tpe: bool = False) -> dict:
    """Optuna's own TPE + SuccessiveHalvingPruner loop (ask and tell), training with mlp_task.train.
    `same_tpe`: the TPE as gridrun's `sampler="tpe"` builds it (multivariate=False, Optuna's older
    default), not Optuna's own default one: both then run the same trials."""
    import optuna
    from mlp_task import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tpe = {"multivariate": False} if same_tpe else {}
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP, **tpe),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=4, min_early_stopping_rate=0))
    t0 = time.perf_counter()
    best, spent = float("inf"), 0
    for _ in range(trials):
        trial = study.ask()
        # in the order gridrun's sampler asks Optuna (the lists, then the ranges, as the script declares
        # them): both TPEs then draw the same random startup trials from the same seed
        units = trial.suggest_categorical("units", UNITS)
        lr = trial.suggest_float("lr", *LR, log=True)
        dropout = trial.suggest_float("dropout", *DROPOUT)
        pruned: list[bool] = [False]

        def judge(epoch: int, logs: dict, trial=trial, pruned=pruned) -> bool:
            trial.report(float(logs["val_loss"]), epoch + 1)
            # as gridrun's pruning: a rung at the last epoch stops nothing (the trial trained to the end)
            pruned[0] = trial.should_prune() and epoch + 1 < epochs
            return pruned[0]

        history = train(lr, dropout, units, epochs, n_train, n_val, callbacks=[gridrun.Stopper(judge)])
        last = float(history.history["val_loss"][-1])
        spent += len(history.history["val_loss"])
        best = min(best, last)
        study.tell(trial, None if pruned[0] else last,
                   state=optuna.trial.TrialState.PRUNED if pruned[0] else optuna.trial.TrialState.COMPLETE)
    wall = time.perf_counter() - t0
    return {"wall": wall, "best_val_loss": best, "trial_epochs": spent,
            "pruned": sum(t.state.name == "PRUNED" for t in study.trials),
            "trials": [(t.params["units"], t.params["lr"], t.params["dropout"], len(t.intermediate_values))
                       for t in study.trials]}


def vs_optuna(args: argparse.Namespace) -> None:
    """gridrun's TPE + ASHA beside Optuna's TPE + SuccessiveHalvingPruner on the MLP task."""
    import sys

    if args.quick:
        trials, epochs, n_train, n_val, seeds = 16, 4, 4000, 1000, [0, 1]
    else:
        trials, epochs, n_train, n_val, seeds = 48, 10, 12000, 3000, list(range(args.optuna_seeds))
    tmp = Path(tempfile.mkdtemp(prefix="gridrun-vs-optuna-"))
    (tmp / "mlp_task.py").write_text(MLP_TASK)
    script = tmp / "mlp.py"
    script.write_text(MLP_SCRIPT)
    sys.path.insert(0, str(tmp))
    fixed = {"epochs": [epochs], "n_train": [n_train], "n_val": [n_val]}
    # compile the three widths once for both (a warm persistent cache), outside the timings: the
    # programs of a sweep whose trials report to a pruner, and of Optuna's loop (a Stopper) alike
    # (lr and dropout fixed: with their ranges in the grid, 3 trials would draw 3 random widths, not each)
    gridrun.tuning_run(script, {**fixed, "epochs": [2], "units": UNITS, "lr": [1e-3], "dropout": [0.1]},
                       prune="asha", runs_dir=tmp / "warm", quiet=True)
    optuna_loop(99, 4, 2, n_train, n_val)
    print(f"MLP 784-u-u/2-10, {n_train}/{n_val} samples, {epochs} epochs, {trials} trials, ASHA grace 1 "
          f"reduction 4, seeds {seeds}")
    mine, theirs = [], []
    for seed in seeds:
        def ours(seed: int = seed, runs: list[int] = [0]) -> dict:  # noqa: B006 - counts this seed's runs
            t0 = time.perf_counter()
            df = gridrun.tuning_run(script, fixed, sample=trials, seed=seed, sampler="tpe", prune="asha",
                                    sampler_options={"n_startup_trials": STARTUP},  # else its default: 3 here
                                    prune_options={"grace": 1, "reduction": 4.0}, runs_dir=tmp / f"gridrun{seed}-{runs[0]}",
                                    quiet=True)
            wall = time.perf_counter() - t0
            runs[0] += 1
            df = df.sort_values("trial")
            return {"wall": wall, "best_val_loss": float(df["metric_val_loss"].min()),
                    "trial_epochs": int(df["epochs_completed"].fillna(0).sum()),
                    "pruned": int((df["status"] == "pruned").sum()),
                    "trials": list(zip(df["flag_units"], df["flag_lr"], df["flag_dropout"],
                                       df["epochs_completed"].fillna(0).astype(int), strict=True))}

        # each seed in both orders (gridrun then Optuna, then Optuna then gridrun; --ab-rounds 1: one order,
        # alternating by seed): whichever runs first in a pair was measured slower by up to 10%, so
        # the mean of both orders is each side's wall time for the seed
        walls: dict[str, list[float]] = {"g": [], "o": []}
        cpus: dict[str, list[float]] = {"g": [], "o": []}  # the process's CPU seconds (user + system)
        for r in range(args.ab_rounds):
            first_ours = (r + seed) % 2 == 0
            for side in ("g", "o") if first_ours else ("o", "g"):
                c0 = sum(os.times()[:2])
                res = ours() if side == "g" else optuna_loop(seed, trials, epochs, n_train, n_val, args.same_tpe)
                cpus[side].append(sum(os.times()[:2]) - c0)
                walls[side].append(res["wall"])
                if side == "g":
                    g = res
                else:
                    o = res
        g["wall"], o["wall"] = statistics.mean(walls["g"]), statistics.mean(walls["o"])
        g["cpu"], o["cpu"] = statistics.mean(cpus["g"]), statistics.mean(cpus["o"])
        mine.append(g)
        theirs.append(o)
        for name, r in (("gridrun tpe + asha", g), ("optuna tpe + sha", o)):
            print(f"  seed {seed} {name:20s} best val_loss {r['best_val_loss']:.4f}  wall {r['wall']:6.1f} s  "
                  f"cpu {r['cpu']:6.1f} s  "
                  f"trial-epochs {r['trial_epochs']:4d}  pruned {r['pruned']:3d}", flush=True)
        same = sum(a[0] == b[0] and a[3] == b[3] and math.isclose(a[1], b[1], rel_tol=1e-9)
                   and math.isclose(a[2], b[2], rel_tol=1e-9) for a, b in zip(g["trials"], o["trials"], strict=True))
        print(f"  seed {seed}: {same} of {trials} trials alike in both (the same values and epochs trained)"
              + ("" if same == trials else "; the first that differs: trial "
                 f"{next(k for k, (a, b) in enumerate(zip(g['trials'], o['trials'])) if a != b)}"), flush=True)
    med = {k: (statistics.median(r[k] for r in mine), statistics.median(r[k] for r in theirs))
           for k in ("best_val_loss", "wall")}
    per_seed = statistics.median(a["wall"] / b["wall"] for a, b in zip(mine, theirs, strict=True))
    cpu = statistics.median(a["cpu"] / b["cpu"] for a, b in zip(mine, theirs, strict=True))
    print(f"Median over {len(seeds)} seeds: best val_loss gridrun {med['best_val_loss'][0]:.4f} vs optuna "
          f"{med['best_val_loss'][1]:.4f} ({'met' if med['best_val_loss'][0] <= med['best_val_loss'][1] else 'missed'}; "
          f"target <=), wall {med['wall'][0]:.1f} s vs {med['wall'][1]:.1f} s ({med['wall'][0] / med['wall'][1]:.2f}x; "
          f"target <= 1; the median of the seeds' ratios {per_seed:.2f}x; of their CPU seconds {cpu:.2f}x)")
    print(f"(runs in {tmp})")


def run(script: Path, runs: Path, *, seed: int, trials: int, epochs: int, n_train: int, dataset: str,
        sampler: str = "random", prune: str | None = None, population: bool = False,
        slots: int | None = None, refill: bool = True, promote: bool = False) -> dict:
    os.environ["GRIDRUN_SLOT_REFILL"] = "1" if refill else "0"
    from gridrun.train.population import PopulationStats

    stats_file = runs.parent / f"{runs.name}-population-stats.jsonl"  # each population of the sweep appends
    stats_file.unlink(missing_ok=True)  # its PopulationStats as one line
    os.environ["GRIDRUN_POPULATION_STATS"] = str(stats_file)
    t0 = time.perf_counter()
    df = gridrun.tuning_run(script, {"epochs": [epochs], "n_train": [n_train], "dataset": [dataset]},
                            sample=trials, seed=seed, sampler=sampler, prune=prune,
                            prune_options=({**PRUNE_OPTIONS, "promote": True} if promote else PRUNE_OPTIONS)
                            if prune else None,
                            population=population, population_size=slots, runs_dir=runs, quiet=True)
    wall = time.perf_counter() - t0
    # epochs trained: a continued attempt (--promote) counts only what it trained after its checkpoint
    resumed = sum(int((json.loads((Path(d) / "properties.json").read_text()).get("resumed_from_epoch")) or 0)
                  for d in df["run_dir"])
    spent = int(df["epochs_completed"].fillna(0).sum()) - resumed
    best = df.loc[df["metric_val_loss"].idxmin()]
    done = df[df["status"] == "completed"]
    pick = done.loc[done["metric_val_loss"].idxmin()] if len(done) else best  # the best trained to the end
    program = PopulationStats.read_totals(str(stats_file))  # the population programs' own loop
    return {"trial_epochs": spent, "wall": wall, "program": program, "best_val_loss": float(best["metric_val_loss"]),
            "test_acc": float(pick.get("eval_acc", float("nan"))), "pruned": int((df["status"] == "pruned").sum()),
            "failed": int((df["status"] == "failed").sum())}


def promotion(args: argparse.Namespace) -> None:
    """ASHA's promotion variant (--prune asha --promote) beside stopping ASHA and random search, over the
    same seeds: trial-epochs trained (a continued attempt counts only its own), wall time, best val_loss."""
    if args.quick:
        args.trials, args.epochs, args.n_train, args.seeds = 16, 9, 3000, [0, 1, 2]
    PRUNE_OPTIONS.update(grace=args.grace, reduction=args.reduction)
    tmp = Path(tempfile.mkdtemp(prefix="gridrun-promotion-bench-"))
    script = tmp / "search_space.py"
    script.write_text(SCRIPT)
    kw = {"trials": args.trials, "epochs": args.epochs, "n_train": args.n_train, "dataset": args.dataset}
    gridrun.tuning_run(script, {"epochs": [1], "n_train": [args.n_train], "dataset": [args.dataset]}, sample=2,
                       seed=99, runs_dir=tmp / "warm", quiet=True)  # compile once, as a warm cache would
    out: dict[str, list[dict]] = {"random": [], "asha": [], "asha --promote": []}
    for s in args.seeds:
        for name, extra in (("random", {}), ("asha", {"prune": "asha"}), ("asha --promote", {"prune": "asha", "promote": True})):
            r = run(script, tmp / f"{name.replace(' ', '_').replace('-', '')}-{s}", seed=s, **kw, **extra)
            out[name].append(r)
            print(f"seed {s} {name:15s} trial-epochs {r['trial_epochs']:5d}  wall {r['wall']:7.1f} s  best val_loss "
                  f"{r['best_val_loss']:.4f}  test acc {r['test_acc']:.4f}  pruned {r['pruned']:3d}", flush=True)
    print(f"\nMedians over seeds {args.seeds} ({args.trials} trials, {args.epochs} epochs, grace {args.grace}, reduction "
          f"{args.reduction:g}), ratios against random search of the same seed:")
    for name in ("asha", "asha --promote"):
        q = [(r["best_val_loss"] / b["best_val_loss"], r["trial_epochs"] / b["trial_epochs"], r["wall"] / b["wall"])
             for r, b in zip(out[name], out["random"], strict=True)]
        med = [statistics.median(x[k] for x in q) for k in range(3)]
        print(f"  {name:15s} best val_loss {med[0]:.3f}x, trial-epochs {med[1]:.2f}x, wall {med[2]:.2f}x "
              f"(median {statistics.median(r['trial_epochs'] for r in out[name]):.0f} trial-epochs, "
              f"{statistics.median(r['wall'] for r in out[name]):.1f} s)")
    print(f"\n(runs in {tmp})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=9)
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(20)),
                   help="seeds of random search and random + asha (TPE: the first three)")
    p.add_argument("--skip-tpe", action="store_true")
    p.add_argument("--skip-population", action="store_true")
    p.add_argument("--only-asha", action="store_true", help="random search and random + asha only")
    p.add_argument("--only-population", action="store_true", help="the population strategies only")
    p.add_argument("--slots", type=int, default=8, help="slots of a population program (--population-size)")
    p.add_argument("--grace", type=int, default=1, help="ASHA's grace period (epochs)")
    p.add_argument("--reduction", type=float, default=4.0, help="ASHA's reduction factor")
    p.add_argument("--vs-optuna", action="store_true", help="only gridrun's TPE + ASHA beside Optuna's own loop")
    p.add_argument("--quick", action="store_true", help="with --vs-optuna: 16 trials, 4 epochs, 4k/1k, seeds 0-1; "
                   "with --promotion: 16 trials, 9 epochs, 3k samples, seeds 0-2")
    p.add_argument("--promotion", action="store_true",
                   help="only random + asha beside random + asha --promote (pause at rungs, promote the best)")
    p.add_argument("--ab-rounds", type=int, default=2,
                   help="with --vs-optuna: runs of each side per seed, in alternating order (2: both orders)")
    p.add_argument("--optuna-seeds", type=int, default=3, help="with --vs-optuna: seeds 0..N-1")
    p.add_argument("--same-tpe", action="store_true",
                   help="with --vs-optuna: Optuna's loop uses the TPE settings gridrun's sampler='tpe' uses, so both "
                        "run the same trials and the wall times differ by gridrun's per-trial cost alone")
    args = p.parse_args()
    if args.vs_optuna:
        vs_optuna(args)
        return
    if args.promotion:
        promotion(args)
        return
    PRUNE_OPTIONS.update(grace=args.grace, reduction=args.reduction)
    if args.only_asha:
        args.skip_tpe = args.skip_population = True
    tmp = Path(tempfile.mkdtemp(prefix="gridrun-search-bench-"))
    script = tmp / "search_space.py"
    script.write_text(SCRIPT)
    kw = {"trials": args.trials, "epochs": args.epochs, "n_train": args.n_train, "dataset": args.dataset}
    # compile once, as a warm persistent compilation cache would: the same shapes as the measured sweeps,
    # including the smaller programs a refilled population shrinks to for its last survivors
    from gridrun.train.population import ladder

    warm = [(False, None)] if args.skip_population else [(False, None), (True, None)] + [
        (True, m) for m in ladder(args.slots)]
    for population, slots in warm:
        gridrun.tuning_run(script, {"epochs": [1], "n_train": [args.n_train], "dataset": [args.dataset]},
                           sample=(slots or 2) + 1, seed=99, runs_dir=tmp / "warm", quiet=True,
                           population=population, population_size=slots)
    rows: list[tuple[str, dict]] = []

    def go(name: str, **extra) -> dict:
        r = run(script, tmp / name.replace(" ", "_").replace("+", "and"), **kw, **extra)
        rows.append((name, r))
        print(f"{name:28s} trial-epochs {r['trial_epochs']:5d}  wall {r['wall']:7.1f} s  "
              f"best val_loss {r['best_val_loss']:.4f}  test acc {r['test_acc']:.4f}  "
              f"pruned {r['pruned']:3d}  failed {r['failed']}", flush=True)
        return r

    first = args.seeds[0]

    def program(r: dict) -> tuple[float, float]:
        """(seconds per trial-epoch in the population programs' training loop, share of slot-epochs busy)"""
        p = r["program"]
        return p["train_seconds"] / max(1, p["trial_epochs"]), p["trial_epochs"] / max(1, p["slot_epochs"])

    def population_seed(seed: int) -> tuple[float, float]:
        n = args.slots
        pop = go(f"population {n} slots, seed {seed}", seed=seed, population=True, slots=n)
        refill = go(f"population {n} + asha, refilled, seed {seed}", seed=seed, population=True, slots=n,
                    prune="asha")
        chunks = go(f"population {n} + asha, chunks, seed {seed}", seed=seed, population=True, slots=n,
                    prune="asha", refill=False)
        per, _ = program(pop)
        wall_per = pop["wall"] / max(1, pop["trial_epochs"])
        print(f"Seed {seed}, per trial-epoch: the population programs' training loop (slot refills, recording and "
              "pruning decisions included), and the whole sweep's wall time (start-up and evaluation included):")
        ratios = []
        for name, r in (("refilled", refill), ("chunks", chunks)):
            mine, busy = program(r)
            w = r["wall"] / max(1, r["trial_epochs"])
            ratios.append((mine / per, w / wall_per))
            print(f"  population + asha, {name}: program {mine * 1e3:.1f} ms vs {per * 1e3:.1f} unpruned "
                  f"({mine / per:.2f}x; target with slot refilling <= 1.10x), slots busy {busy:.0%}; "
                  f"wall {w * 1e3:.0f} ms vs {wall_per * 1e3:.0f} ({w / wall_per:.2f}x)")
        for name, r in (("unpruned", pop), ("asha, refilled", refill)):
            p = r["program"]
            other = p["train_seconds"] - p["epoch_seconds"] - p["release_seconds"]
            print(f"    {name}: epoch programs {p['epoch_seconds']:.2f} s, releasing/refilling/shrinking "
                  f"{p['release_seconds']:.2f} s, recording and the rest {other:.2f} s; "
                  f"{p['trial_epochs']} trial-epochs in {p['slot_epochs']} slot-epochs")
        return ratios[0]

    def population_section() -> None:
        """Population + ASHA against an unpruned population, over the first three seeds."""
        ratios = [population_seed(s) for s in args.seeds[:3]]
        print(f"Population + asha with slot refilling, median over {len(ratios)} seeds: program "
              f"{statistics.median(r[0] for r in ratios):.2f}x an unpruned population's time per trial-epoch "
              f"(target <= 1.10x), wall {statistics.median(r[1] for r in ratios):.2f}x")

    if args.only_population:
        population_section()
        print(f"\n(runs in {tmp})")
        return
    random_runs = [go(f"random seed {s}", seed=s) for s in args.seeds]
    asha_runs = [go(f"random + asha seed {s}", seed=s, prune="asha") for s in args.seeds]
    tpe_seeds = args.seeds[:3]
    tpe_runs = [] if args.skip_tpe else [go(f"tpe seed {s}", seed=s, sampler="tpe") for s in tpe_seeds]
    if not args.skip_tpe:
        go("tpe + asha", seed=first, sampler="tpe", prune="asha")

    print(f"\nASHA: grace {args.grace}, reduction {args.reduction:g}. Ratios against random search of the same "
          f"seed, run to the end:")
    ratios = []
    for s, base, asha in zip(args.seeds, random_runs, asha_runs, strict=True):
        q = (asha["best_val_loss"] / base["best_val_loss"], asha["trial_epochs"] / base["trial_epochs"],
             asha["wall"] / base["wall"])
        ratios.append(q)
        ok = q[0] <= 1.02 and q[1] <= 0.40 and q[2] <= 0.50
        print(f"  seed {s}: best val_loss {q[0]:.3f}x, trial-epochs {q[1]:.2f}x, wall {q[2]:.2f}x, test acc of the "
              f"pick {asha['test_acc']:.4f} vs {base['test_acc']:.4f}{'' if ok else '  (a target missed)'}")
    med = [statistics.median(q[k] for q in ratios) for k in range(3)]
    passed = sum(q[0] <= 1.02 and q[1] <= 0.40 and q[2] <= 0.50 for q in ratios)
    print(f"  median over {len(ratios)} seeds: best val_loss {med[0]:.3f}x (target <= 1.02), trial-epochs "
          f"{med[1]:.2f}x (target <= 0.40), wall {med[2]:.2f}x (target <= 0.50); all three met on {passed} of "
          f"{len(ratios)} seeds")
    if tpe_runs:
        med_r = statistics.median(r["best_val_loss"] for r in random_runs[: len(tpe_runs)])
        med_t = statistics.median(r["best_val_loss"] for r in tpe_runs)
        print(f"  tpe: median best val_loss over seeds {med_t:.4f} vs random {med_r:.4f} "
              f"({'no worse' if med_t <= med_r else 'worse'}; target: no worse)")
    if not args.skip_population:
        print()
        population_section()
    print(f"\n(runs in {tmp})")


if __name__ == "__main__":
    main()
