"""Does a sweep that varies only float flags compile its training program once per worker?

    python bench/compile_count.py [--trials 20]

Runs three 20-trial sweeps on the local pool (2 reused workers), with JAX's persistent compilation cache
off so that every XLA compilation shows, and counts backend compilations in each worker with a
jax.monitoring listener (registered once per worker by the helper module `counter.py`):

- fit:    gridrun.fit of a small Sequential model; float flags dropout and l2 vary.
- module: a hand-written jitted SGD step defined in an imported module; float flags lr and momentum.
- inline: the same step defined in the script itself (a new function object every trial).

Prints, per sweep: trials per worker, compilations in each worker's first trial, and compilations in
all of its later trials (0 = compiled once per worker).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
from pathlib import Path

COUNTER = '''
import os
from jax import monitoring

count = 0


def _listen(name, duration, **kw):
    global count
    if name == "/jax/core/compile/backend_compile_duration":
        count += 1


monitoring.register_event_duration_secs_listener(_listen)


def report():
    import gridrun

    gridrun.write_properties(worker_pid=os.getpid(), compiles_so_far=count)
'''

FIT = '''
import numpy as np
import counter
import gridrun
from gridrun import Dense, Dropout, Sequential

FLAGS = gridrun.flags(gridrun.flag_numeric("dropout", 0.2), gridrun.flag_numeric("l2", 0.001))
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = Sequential([Dense(16, activation="relu", kernel_regularizer=gridrun.l2(FLAGS.l2)),
                    Dropout(FLAGS.dropout), Dense(2, activation="softmax")])
gridrun.fit(model, x, y, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=3, batch_size=64,
            validation_split=0.25)
counter.report()
'''

STEP = '''
import jax
import jax.numpy as jnp


@jax.jit
def train(w, x, y, lr, momentum):
    def step(carry, _):
        w, v = carry
        g = jax.grad(lambda w: jnp.mean((x @ w - y) ** 2))(w)
        v = momentum * v - lr * g
        return (w + v, v), jnp.mean((x @ (w + v) - y) ** 2)

    (w, _), losses = jax.lax.scan(step, (w, jnp.zeros_like(w)), None, length=50)
    return w, losses
'''

MODULE = '''
import jax.numpy as jnp
import numpy as np
import counter
import gridrun
from step import train

FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.01), gridrun.flag_numeric("momentum", 0.9))
rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(128, 4)), dtype="float32")
y = x @ jnp.arange(4.0)
w, losses = train(jnp.zeros(4), x, y, FLAGS.lr, FLAGS.momentum)
gridrun.log_metrics(loss=float(losses[-1]))
counter.report()
'''

INLINE = MODULE.replace("from step import train\n", STEP.replace("import jax.numpy as jnp\n", ""))


def run(kind: str, source: str, folder: Path, trials: int, grid: dict) -> dict:
    import gridrun
    from gridrun.sweep import list_sweeps

    (folder / "counter.py").write_text(COUNTER)
    (folder / "step.py").write_text(STEP)
    script = folder / f"{kind}.py"
    script.write_text(source)
    runs = folder / f"runs_{kind}"
    gridrun.tuning_run(script, grid, runs_dir=runs, jobs=2, backend="local", quiet=True, sample=trials, seed=0)
    m = json.loads(list_sweeps(runs)[-1].read_text())
    by_worker: dict[int, list[int]] = collections.defaultdict(list)
    for t in m["trials"]:
        props = json.loads((runs / t["run_dir"] / "properties.json").read_text())
        if props["status"] != "completed":
            raise SystemExit(f"{kind}: trial failed: {props.get('error_message')}")
        by_worker[props["worker_pid"]].append(props["compiles_so_far"])
    out = {}
    for pid, counts in by_worker.items():
        counts.sort()  # cumulative counts grow with each trial of the worker
        out[pid] = (len(counts), counts[0], counts[-1] - counts[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    os.environ["GRIDRUN_JAX_CACHE"] = "off"  # count every compilation; workers inherit this
    from gridrun.executors.local import shutdown_workers

    floats = [round(0.05 * i, 2) for i in range(1, 6)]
    sweeps = {
        "fit": (FIT, {"dropout": floats, "l2": [1e-4, 3e-4, 1e-3, 3e-3]}),
        "module": (MODULE, {"lr": [0.001, 0.003, 0.01, 0.03, 0.05], "momentum": [0.0, 0.5, 0.8, 0.9]}),
        "inline": (INLINE, {"lr": [0.001, 0.003, 0.01, 0.03, 0.05], "momentum": [0.0, 0.5, 0.8, 0.9]}),
    }
    with tempfile.TemporaryDirectory(prefix="gridrun-compile-") as tmp:
        print(f"{'sweep':<8} {'worker':>8} {'trials':>6} {'compiles, 1st trial':>20} {'compiles, later trials':>23}")
        for kind, (source, grid) in sweeps.items():
            folder = Path(tmp) / kind
            folder.mkdir()
            shutdown_workers()  # fresh workers: counts start at 0
            for pid, (n, first, later) in run(kind, source, folder, args.trials, grid).items():
                print(f"{kind:<8} {pid:>8} {n:>6} {first:>20} {later:>23}")


if __name__ == "__main__":
    main()
