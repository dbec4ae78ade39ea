"""How long does `gridrun.importance` take over a large sweep? (issue 21: thousands of trials in seconds)

    python bench/importance.py [--trials 10000] [--repeat 3]

Builds a synthetic runs table (the columns ls_runs gives: run_dir, status, flag_*, metric_val_loss) of
--trials runs over five flags: a log-uniform learning rate that matters most, a dropout that matters, an
integer width and a categorical activation that matter a little, and a flag of pure noise; 5% of the
runs pruned, 2% failed, one constant flag. It times `gridrun.importance` (PED-ANOVA plus 5 bootstraps
for the spread) against the baseline of one bare PED-ANOVA evaluation of an optuna study built the
same way, in the same process, and prints the median of --repeat, with the table found. It also times
Optuna's fANOVA at --fanova-trials (default 500) to show why gridrun does not use it.
Timings are wall-clock seconds on whatever machine runs it (the figures in docs/analysis.md were taken
on a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lr = np.exp(rng.uniform(np.log(1e-5), np.log(1e-1), n))
    dropout = rng.uniform(0, 0.5, n)
    units = rng.integers(32, 513, n)
    act = rng.choice(["relu", "tanh", "gelu"], n)
    noise = rng.uniform(0, 1, n)
    y = (np.log10(lr) + 3) ** 2 + 2 * dropout + 0.001 * units + (act == "tanh") * 0.5 + rng.normal(0, 0.1, n)
    status = np.where(rng.uniform(size=n) < 0.05, "pruned", "completed")
    status[rng.uniform(size=n) < 0.02] = "failed"
    return pd.DataFrame({
        "run_dir": [f"/tmp/bench-runs/run-{i:06d}" for i in range(n)],
        "status": status,
        "metric_val_loss": y,
        "flag_lr": lr, "flag_dropout": dropout, "flag_units": pd.array(units, dtype="Int64"),
        "flag_activation": pd.Series(act, dtype=object), "flag_noise": noise, "flag_epochs": 10,
    })


def baseline(df: pd.DataFrame) -> float:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = time.perf_counter()
    d = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "dropout": FloatDistribution(0, 0.5),
         "units": IntDistribution(32, 512), "activation": CategoricalDistribution(["gelu", "relu", "tanh"]),
         "noise": FloatDistribution(0, 1)}
    done = df[df.status == "completed"]
    trials = [optuna.trial.create_trial(
        params={"lr": float(r.flag_lr), "dropout": float(r.flag_dropout), "units": int(r.flag_units),
                "activation": str(r.flag_activation), "noise": float(r.flag_noise)},
        distributions=d, value=float(r.metric_val_loss)) for r in done.itertuples()]
    study = optuna.create_study()
    study.add_trials(trials)
    get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    return time.perf_counter() - t


def fanova(df: pd.DataFrame) -> tuple[float, dict[str, float]]:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    from gridrun.analysis import flag_distribution

    done = df[df.status == "completed"]
    names = ["lr", "dropout", "units", "activation", "noise"]
    d = {n: flag_distribution(n, done[f"flag_{n}"].astype(object).tolist()) for n in names}
    trials = [optuna.trial.create_trial(params={n: (str(getattr(r, f"flag_{n}")) if n == "activation" else
                                                    float(getattr(r, f"flag_{n}")) if n != "units" else
                                                    int(r.flag_units)) for n in names},
                                        distributions=d, value=float(r.metric_val_loss)) for r in done.itertuples()]
    study = optuna.create_study()
    study.add_trials(trials)
    t = time.perf_counter()
    ranking = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    return time.perf_counter() - t, ranking


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fanova-trials", type=int, default=500, help="0: skip the fANOVA timing")
    args = ap.parse_args()
    import gridrun

    df = table(args.trials)
    gridrun.importance(df.head(200))  # warm-up: imports
    ours, base = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = gridrun.importance(df)
        ours.append(time.perf_counter() - t)
        base.append(baseline(df))
    print(result.to_string(index=False))
    print(f"constant: {result.attrs['constant']}, runs used: {result.attrs['trials']}")
    mo, mb = statistics.median(ours), statistics.median(base)
    print(f"{args.trials:,} trials: gridrun.importance {mo:.2f} s (median of {args.repeat}; PED-ANOVA + 5 "
          f"bootstraps), one bare PED-ANOVA evaluation {mb:.2f} s: ratio {mo / mb:.1f}x")
    if args.fanova_trials:
        small = table(args.fanova_trials)
        ped = min(baseline(small) for _ in range(3))
        fa, ranking = fanova(small)
        ours_small = gridrun.importance(small, n_bootstrap=0)
        print(f"{args.fanova_trials:,} trials: fANOVA {fa:.2f} s, PED-ANOVA {ped:.3f} s ({fa / ped:.0f}x)")
        print("  fANOVA:    " + ", ".join(f"{k} {v:.3f}" for k, v in ranking.items()))
        print("  PED-ANOVA: " + ", ".join(f"{r.flag} {r.importance:.3f}" for r in ours_small.itertuples()))
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
