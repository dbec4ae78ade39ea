"""Per-trial overhead of a gridrun sweep, against one fresh Python process per trial (measured here, now).

    python bench/overhead.py [--trials 50]

A trial script that does almost nothing (imports gridrun, declares flags, logs one metric), and the same
script importing JAX. For each: a 50-trial sweep in-process and on the local pool (2 reused workers),
next to the baseline of starting `python script.py` afresh for every trial. Prints seconds per trial
(sweep wall time / trials; for the pool that is throughput with 2 workers) and the median latency of
one trial (submission to end, from the manifest), and the ratio baseline / gridrun.
Targets: <= 0.5 s per trial, and >= 5x below the fresh-process baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIAL = """
import gridrun
{extra}
FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.1), gridrun.flag_integer("units", 8))
gridrun.log_metrics(loss=FLAGS.lr * FLAGS.units)
"""


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def sweep(script: Path, runs: Path, trials: int, backend: str, jobs: int) -> tuple[float, float]:
    import gridrun
    from gridrun.sweep import list_sweeps

    t0 = time.perf_counter()
    gridrun.tuning_run(script, {"lr": [i / 1000 for i in range(1, trials + 1)]}, runs_dir=runs, backend=backend,
                       jobs=jobs, quiet=True, seed=0)
    wall = time.perf_counter() - t0
    m = json.loads(list_sweeps(runs)[-1].read_text())
    assert all(t["status"] == "completed" for t in m["trials"]), "a trial failed"
    latency = statistics.median(_ts(t["attempts"][-1]["end"]) - _ts(t["attempts"][-1]["start"]) for t in m["trials"])
    return wall / trials, latency


def fresh(script: Path, n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(script), "--lr", str(i / 1000)], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--fresh", type=int, default=15, help="fresh processes timed per baseline (median)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridrun-bench-") as tmp:
        tmp = Path(tmp)
        rows = []
        for label, extra in (("plain", ""), ("imports jax", "import jax, jax.numpy as jnp\njnp.zeros(1).block_until_ready()")):
            folder = tmp / label.replace(" ", "_")
            folder.mkdir()
            script = folder / "trial.py"
            script.write_text(TRIAL.format(extra=extra))
            base = fresh(script, args.fresh)
            for backend, jobs, name in (("inprocess", 1, "inprocess"), ("local", 2, "local 2, cold"),
                                        ("local", 2, "local 2, warm")):
                if name.endswith("cold"):  # new worker processes: their start-up is in this sweep
                    from gridrun.executors.local import shutdown_workers

                    shutdown_workers()
                per_trial, latency = sweep(script, folder / f"runs_{name[-4:]}", args.trials, backend, jobs)
                rows.append((label, name, per_trial, latency, base))
        print(f"{'trial script':<12} {'gridrun executor':<18} {'s/trial':>8} {'latency':>8} "
              f"{'fresh python':>12} {'speed-up':>8}")
        for label, ex, per_trial, latency, base in rows:
            print(f"{label:<12} {ex:<18} {per_trial:>8.4f} {latency:>8.4f} {base:>12.4f} {base / per_trial:>7.1f}x")
        worst = max(r[2] for r in rows)
        ratio = min(r[4] / r[2] for r in rows)
        print(f"worst per-trial time {worst:.4f} s (target <= 0.5 s); smallest speed-up {ratio:.1f}x (target >= 5x)")
        print("s/trial: sweep wall time / trials (local pool: throughput of 2 workers; cold: a new pool, its "
              "start-up included; warm: the pool of the previous sweep, kept by the same Python session); "
              "latency: median submission-to-end of one trial; fresh python: median `python trial.py` per trial")


if __name__ == "__main__":
    main()
