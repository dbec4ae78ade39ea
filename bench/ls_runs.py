"""How long does `ls_runs` take over 10,000 run dirs? (issue target: under 1 s on the 2-core machine)

    python bench/ls_runs.py [--runs 10000] [--keep DIR]

Builds synthetic ended runs (flags, 35 epochs of 5 metrics, properties, evaluation, summary.json)
in a temporary folder, then times `ls_runs` (median of 3) next to the baseline of summarising every
run from its full files (what a table without per-run summaries has to do), measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

import gridrun
from gridrun._io import write_json
from gridrun.record import finish, summarize
from gridrun.rundir import RunContext, create_run_dir


def build(root: Path, n: int) -> None:
    rng = random.Random(0)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(n):
        d = create_run_dir(root, t0 + dt.timedelta(seconds=i))
        ctx = RunContext(run_dir=d)
        ctx.properties = {"script": "mnist_grid_search.py", "start": (t0 + dt.timedelta(seconds=i)).isoformat(),
                          "status": "running", "type": "training", "context": "local", "samples": 48000,
                          "validation_samples": 12000, "batch_size": 128, "epochs": 35, "sweep": "bench"}
        ctx.write_flags({"nodes1": rng.choice([64, 128, 256]), "nodes2": rng.choice([64, 128, 256]),
                         "dropout1": rng.choice([0.2, 0.3, 0.4]), "optimizer": rng.choice(["adam", "rmsprop"]),
                         "lr_annealing": rng.choice([0.1, 0.05])})
        ctx.metrics = {k: [rng.random() for _ in range(35)] for k in ("loss", "acc", "val_loss", "val_acc", "lr")}
        write_json(d / "metrics.json", ctx.metrics, indent=None)
        finish(ctx, "completed", 0, None, None)


def timed(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--keep", help="build into this folder and keep it")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="gridrun-bench-"))
    if not any(root.iterdir()) if root.exists() else True:
        t = time.perf_counter()
        build(root, args.runs)
        print(f"built {args.runs} runs in {time.perf_counter() - t:.1f} s under {root}")
    fast, df = timed(lambda: gridrun.ls_runs(root))
    slow, _ = timed(lambda: [summarize(p) for p in root.iterdir() if p.is_dir()], repeat=1)
    print(f"ls_runs over {len(df)} runs: {fast:.3f} s (median of 3)  [target < 1 s]")
    print(f"baseline, summarising every run from its full files: {slow:.3f} s")
    print(f"ratio baseline / ls_runs: {slow / fast:.1f}x")
    best = df.query("metric_val_loss == metric_val_loss.min()")
    print(f"best run query returns {len(best)} row(s); columns: {len(df.columns)}")


if __name__ == "__main__":
    main()
