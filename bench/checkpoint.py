"""What checkpoints cost (gridrun/checkpoint.py), on the chapter's model and Fashion-MNIST, on the CPU.

    python bench/checkpoint.py [--epochs 4] [--kills 6] [--skip-orbax] [--skip-load]

Prints, each as a ratio against a baseline measured in this same run:
1. save time per epoch / epoch time: the chapter's tuned model (Dense 256-128-64, BatchNorm, Dropout,
   Adam, EarlyStopping + ReduceLROnPlateau, batch 128, 48k/12k split), trained by gridrun.fit inside a
   run dir with the default checkpoint="both"; the time the run's Checkpointer spent saving (serialize,
   write, fsync, rename) against the epochs' time (first epoch, with compilation, left out). The worst
   case, a best epoch every epoch (both files written), is timed apart on the trained state.
2. the format: gridrun's (flax.serialization msgpack + header + atomic replace) against orbax-checkpoint's
   StandardCheckpointer on the same state: save and load seconds, bytes on disk, import time in a fresh
   process, and kill -9 in the middle of a save (`--kills` times each): how often the previous
   checkpoint was lost or unreadable afterwards.
3. `gridrun.load_model` in a fresh process (rerunning the script up to its fit call, restoring, and
   predicting 10k test images) against the training run it loads; disk per trial (checkpoints / the
   rest of the run dir).

Timings come from a machine that may be shared: rerun to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def chapter_model(classes: int):
    import gridrun
    from gridrun import BatchNorm, Dense, Dropout

    layers = []
    for units, rate in ((256, 0.4), (128, 0.3), (64, 0.2)):
        layers += [Dense(units, activation="relu"), BatchNorm(), Dropout(rate)]
    return gridrun.Sequential([*layers, Dense(classes, activation="softmax")])


def train_in_a_run(epochs: int) -> dict[str, float]:
    """Part 1: fit in a run dir with checkpoint='both'; the Checkpointer's own seconds vs the epochs'."""
    import gridrun
    from gridrun import checkpoint as ckpt
    from gridrun import rundir
    from gridrun.datasets import load_prepared

    data = load_prepared("fashion_mnist")
    (x, y), _ = data
    savers: list[ckpt.Checkpointer] = []
    made = ckpt.for_run

    def keep(ctx, policy):  # the run's Checkpointer, to read the seconds it spent
        saver = made(ctx, policy)
        if saver is not None:
            savers.append(saver)
        return saver

    ckpt.for_run = keep  # type: ignore[assignment]
    stamps: list[float] = []
    tmp = Path(tempfile.mkdtemp(prefix="gridrun-bench-ckpt-"))
    try:
        with rundir.activate(rundir.RunContext.open(tmp)):
            t0 = time.perf_counter()
            history = gridrun.fit(
                chapter_model(data.num_classes), x, y, loss="categorical_crossentropy", optimizer="adam",
                metrics=("accuracy",), epochs=epochs, batch_size=128, validation_split=0.2, verbose=0,
                callbacks=[gridrun.EarlyStopping(patience=5), gridrun.ReduceLROnPlateau(factor=0.05, patience=10),
                           gridrun.LambdaCallback(on_epoch_end=lambda e, logs: stamps.append(time.perf_counter()))])
        saver = savers[-1]
        # the per-epoch saves, timed again one by one on the trained state: best and last both due
        worst = []
        state = {"state": history.state, "rng": np.zeros(2, np.uint32)}
        bench_saver = ckpt.Checkpointer(tmp / "worst", "both")
        for e in range(1, 6):
            t = time.perf_counter()
            bench_saver.on_epoch(e, {"val_loss": 1.0 / e}, lambda: state)
            worst.append(time.perf_counter() - t)
        epoch_times = np.diff([t0, *stamps])[1:]  # the first epoch compiles
        info = ckpt.info(tmp)
        return {
            "epoch_s": float(np.median(epoch_times)),
            "epochs": len(stamps),
            "saves": saver.saves,
            "save_s_per_epoch": saver.seconds / max(len(stamps), 1),
            "first_save_s": saver.times[0] if saver.times else float("nan"),  # with the one-off imports
            "median_save_s": float(np.median(saver.times)) if saver.times else float("nan"),
            "worst_save_s": float(np.median(worst)),
            "checkpoint_bytes": sum(v["bytes"] for v in info.values()),
            "state": state,
        }
    finally:
        ckpt.for_run = made  # type: ignore[assignment]
        shutil.rmtree(tmp, ignore_errors=True)


def formats(state, kills: int, skip_orbax: bool) -> dict[str, dict[str, float]]:
    """Part 2: gridrun's format vs orbax on one state: save, load, bytes, import time, kill -9."""
    import jax

    from gridrun import checkpoint as ckpt

    out: dict[str, dict[str, float]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="gridrun-bench-fmt-"))
    target = jax.eval_shape(lambda: state)
    try:
        saves, loads = [], []
        for i in range(5):
            t = time.perf_counter()
            ckpt.write_atomic(tmp / "g.ckpt", ckpt.encode(state, {"epoch": i}))
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            header, raw = ckpt.decode((tmp / "g.ckpt").read_bytes())
            ckpt.restore_into(target, raw, header, "bench")
            loads.append(time.perf_counter() - t)
        out["gridrun"] = {"save_s": float(np.median(saves)), "load_s": float(np.median(loads)),
                          "bytes": (tmp / "g.ckpt").stat().st_size,
                          "import_s": _import_time("flax.serialization"),
                          "lost_after_kill": _kills("gridrun", kills)}
        if not skip_orbax:
            import orbax.checkpoint as ocp

            saver = ocp.StandardCheckpointer()
            saves, loads = [], []
            for _ in range(5):
                t = time.perf_counter()
                saver.save(tmp / "o", state, force=True)
                saver.wait_until_finished()
                saves.append(time.perf_counter() - t)
                t = time.perf_counter()
                saver.restore(tmp / "o", target)
                loads.append(time.perf_counter() - t)
            size = sum(f.stat().st_size for f in (tmp / "o").rglob("*") if f.is_file())
            out["orbax"] = {"save_s": float(np.median(saves)), "load_s": float(np.median(loads)), "bytes": size,
                            "import_s": _import_time("orbax.checkpoint"),
                            "lost_after_kill": _kills("orbax", kills)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _import_time(module: str) -> float:
    """Seconds importing `module` adds to `import jax, numpy` in a fresh process (best of 3 each)."""
    def best(statement: str) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", statement], check=True, env=_env())
            times.append(time.perf_counter() - t)
        return min(times)

    return max(best(f"import jax, numpy, {module}") - best("import jax, numpy"), 0.0)


KILL = r'''
import sys, time, numpy as np
kind, path = sys.argv[1], sys.argv[2]
state = {"w": np.zeros(8_000_000, np.float32)}
if kind == "gridrun":
    from gridrun import checkpoint as C
    def save(i):
        C.write_atomic(path, C.encode({"w": state["w"] + i}))
else:
    import orbax.checkpoint as ocp
    saver = ocp.StandardCheckpointer()
    def save(i):
        saver.save(path, {"w": state["w"] + i}, force=True)
        saver.wait_until_finished()
save(1)
print("ready", flush=True)
for i in range(2, 100000):
    save(i)
'''

CHECK = r'''
import sys, numpy as np
kind, path = sys.argv[1], sys.argv[2]
try:
    if kind == "gridrun":
        from gridrun import checkpoint as C
        w = C.decode(open(path, "rb").read())[1]["w"]
    else:
        import orbax.checkpoint as ocp
        w = ocp.StandardCheckpointer().restore(path)["w"]
    ok = w.shape == (8_000_000,) and float(w.min()) == float(w.max()) and float(w[0]) >= 1
except Exception as exc:
    ok = False
print("ok" if ok else "lost")
'''


def _kills(kind: str, n: int) -> float:
    """Fraction of kill -9s during a stream of saves (32 MB each) after which the checkpoint is lost."""
    import random

    if n <= 0:
        return float("nan")
    lost = 0
    rng = random.Random(0)
    for _ in range(n):
        folder = Path(tempfile.mkdtemp(prefix="gridrun-bench-kill-"))
        path = str(folder / ("c.ckpt" if kind == "gridrun" else "c"))
        proc = subprocess.Popen([sys.executable, "-c", KILL, kind, path], stdout=subprocess.PIPE, text=True, env=_env())
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(rng.uniform(0.05, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check = subprocess.run([sys.executable, "-c", CHECK, kind, path], capture_output=True, text=True, env=_env())
        lost += check.stdout.strip() != "ok"
        shutil.rmtree(folder, ignore_errors=True)
    return lost / n


LOAD = r'''
import sys, time
t0 = time.perf_counter()
import gridrun
from gridrun.datasets import load_prepared
model = gridrun.load_model(sys.argv[1])
t1 = time.perf_counter()
(_, _), (x_test, y_test) = load_prepared("fashion_mnist")
scores = gridrun.evaluate(model, x_test, y_test, record=False)
print(t1 - t0, time.perf_counter() - t1, scores["acc"], model.epoch)
'''


def load_in_a_fresh_process(epochs: int) -> dict[str, float]:
    """Part 3: train scripts/mnist_tuned.py by `gridrun training-run`, then load_model in another process."""
    import gridrun

    tmp = Path(tempfile.mkdtemp(prefix="gridrun-bench-load-"))
    try:
        t = time.perf_counter()
        row = gridrun.training_run(ROOT / "scripts" / "mnist_tuned.py", {"dataset": "fashion_mnist", "epochs": epochs},
                                   runs_dir=tmp / "runs", echo=False)
        train_s = time.perf_counter() - t
        run = Path(row["run_dir"].iloc[0])
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", LOAD, str(run)], capture_output=True, text=True, env=_env(),
                              check=True)
        process_s = time.perf_counter() - t
        load_s, eval_s, acc, epoch = proc.stdout.split()[-4:]
        ckpt_bytes = sum(f.stat().st_size for f in (run / "checkpoints").iterdir())
        rest = sum(f.stat().st_size for f in run.rglob("*") if f.is_file() and "checkpoints" not in f.parts)
        return {"train_s": train_s, "load_s": float(load_s), "process_s": process_s, "eval_s": float(eval_s),
                "test_acc": float(acc), "epoch": int(epoch), "checkpoint_bytes": ckpt_bytes, "rest_bytes": rest}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--skip-orbax", action="store_true")
    ap.add_argument("--skip-load", action="store_true")
    args = ap.parse_args()

    fit = train_in_a_run(args.epochs)
    print(f"1. chapter model, {fit['epochs']} epochs in a run dir, checkpoint='both' ({fit['saves']} saves): "
          f"epoch {fit['epoch_s']:.2f} s, saving {fit['save_s_per_epoch'] * 1e3:.1f} ms per epoch = "
          f"{fit['save_s_per_epoch'] / fit['epoch_s']:.2%} of an epoch (target <= 3%; the first save, with its "
          f"one-off imports, {fit['first_save_s'] * 1e3:.0f} ms, the median {fit['median_save_s'] * 1e3:.0f} ms = "
          f"{fit['median_save_s'] / fit['epoch_s']:.2%}); worst case (best and last "
          f"both written every epoch) {fit['worst_save_s'] * 1e3:.1f} ms = {fit['worst_save_s'] / fit['epoch_s']:.2%}; "
          f"{fit['checkpoint_bytes'] / 1e6:.2f} MB on disk")
    result = {"fit": {k: v for k, v in fit.items() if k != "state"}}

    fmt = formats(fit["state"], args.kills, args.skip_orbax)
    result["formats"] = fmt
    for name, f in fmt.items():
        print(f"2. {name:8s} save {f['save_s'] * 1e3:7.1f} ms  load {f['load_s'] * 1e3:7.1f} ms  "
              f"{f['bytes'] / 1e6:6.2f} MB  import (over jax's) {f['import_s']:.2f} s  lost after kill -9: {f['lost_after_kill']:.0%}")
    if "orbax" in fmt:
        g, o = fmt["gridrun"], fmt["orbax"]
        print(f"   gridrun / orbax: save {g['save_s'] / o['save_s']:.2f}x, load {g['load_s'] / o['load_s']:.2f}x, "
              f"bytes {g['bytes'] / o['bytes']:.2f}x, import {g['import_s'] / max(o['import_s'], 1e-9):.2f}x")

    if not args.skip_load:
        load = load_in_a_fresh_process(2)
        result["load"] = load
        print(f"3. load_model in a fresh process: {load['load_s']:.1f} s (whole process with evaluate on 10k: "
              f"{load['process_s']:.1f} s) vs {load['train_s']:.1f} s for the 2-epoch training run = "
              f"{load['load_s'] / load['train_s']:.2f}x; test acc {load['test_acc']:.4f} (epoch {load['epoch']}); "
              f"disk per trial: checkpoints {load['checkpoint_bytes'] / 1e6:.2f} MB, "
              f"{load['checkpoint_bytes'] / load['rest_bytes']:.1f}x the rest of the run dir")
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
