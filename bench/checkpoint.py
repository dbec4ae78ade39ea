"""What checkpoints cost (gridrun/checkpoint.py), on the chapter's model and Fashion-MNIST, on the CPU.

    python bench/checkpoint.py [--epochs 4] [--kills 6] [--skip-orbax] [--skip-load]

Prints, each as a ratio against a baseline measured in this same run:
1. save time per epoch / epoch time: the chapter's tuned model (Dense 256-128-64, BatchNorm, Dropout,
   Adam, EarlyStopping + ReduceLROnPlateau, batch 128, 48k/12k split), trained by gridrun.fit inside a
   run dir with checkpoint="both", written at every epoch (`seconds=0`: the cost of a save, where the
   default 5-second window writes less often); the time the run's Checkpointer spent saving (serialize,
   write over the previous version's file, swap names) against the epochs' time (first epoch, with compilation, left out). The worst
   case, a best epoch every epoch (both files written), is timed apart on the trained state.
2. the format: gridrun's (raw layout + header + atomic replace) against orbax-checkpoint's
   StandardCheckpointer on the same state: save and load seconds, bytes on disk, import time in a fresh
   process, and kill -9 in the middle of a save (`--kills` times each): how often the previous
   checkpoint was lost or unreadable afterwards.
3. `gridrun.load_model` in a fresh process (rerunning the script up to its fit call, restoring, and
   predicting 10k test images) against the training run it loads; disk per trial (checkpoints / the
   rest of the run dir).

4. population mode (`--population`): P=16 trials of the chapter model in one vmapped program (a
   `tuning_run(population=True, population_size=16)` in this process, on the first `--pop-n` training
   samples, compiled by a warm-up sweep first), each saving its own best and last checkpoints at every
   epoch (`checkpoint_seconds=0`): the
   seconds all 16 Checkpointers spent per program epoch (in each trial's background writer thread,
   while the program trains on) against the program's training loop per epoch (PopulationStats
   train_seconds: epochs and recording) in the same sweep with `checkpoints="none"`; and what the
   saves cost that loop (with / without - 1). Three rounds of each, alternately; medians.
5. continuing an interrupted trial (`--resume`): a sweep trial of the chapter model killed (kill -9 of
   its local worker) in its last epoch, resumed from its last checkpoint: the resumed attempt's wall
   time against the same trial trained from epoch 0 (what a resume cost before checkpoints).

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
                checkpoint={"keep": "both", "seconds": 0},  # every epoch written: what each save costs
                callbacks=[gridrun.EarlyStopping(patience=5), gridrun.ReduceLROnPlateau(factor=0.05, patience=10),
                           gridrun.LambdaCallback(on_epoch_end=lambda e, logs: stamps.append(time.perf_counter()))])
        saver = savers[-1]
        # the per-epoch saves, timed again one by one on the trained state: best and last both due
        worst = []
        state = {"state": history.state, "rng": np.zeros(2, np.uint32)}
        bench_saver = ckpt.Checkpointer(tmp / "worst", "seconds=0")
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


def _saver_seconds() -> tuple[list, object]:
    """Collect every Checkpointer the runs make (ckpt.for_run wrapped); returns (the list, the original)."""
    from gridrun import checkpoint as ckpt

    savers: list = []
    made = ckpt.for_run

    def keep(ctx, policy):
        saver = made(ctx, policy)
        if saver is not None:
            savers.append(saver)
        return saver

    ckpt.for_run = keep  # type: ignore[assignment]
    return savers, made


POP_SCRIPT = """
import os, signal
import gridrun
from gridrun.datasets import load_prepared
import sys
sys.path.insert(0, {root!r})
from bench.checkpoint import chapter_model

FLAGS = gridrun.flags(lr=0.001, epochs=4, n=12000, kill_at=0, marker="")
data = load_prepared("fashion_mnist")
(x, y), _ = data


def end(epoch, logs):
    if epoch + 1 == FLAGS.kill_at and FLAGS.marker and not os.path.exists(FLAGS.marker):
        open(FLAGS.marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)


gridrun.fit(chapter_model(data.num_classes), x[:FLAGS.n], y[:FLAGS.n], loss="categorical_crossentropy",
            optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), metrics=("accuracy",), epochs=FLAGS.epochs,
            batch_size=128, validation_split=0.2, verbose=0, callbacks=[gridrun.LambdaCallback(on_epoch_end=end)])
"""


def population_saves(epochs: int, n: int, size: int = 16, rounds: int = 3) -> dict[str, float]:
    """Part 4: P=`size` trials in one program, each saving best + last, beside the same program saving
    nothing (`rounds` of each, alternately): save seconds and the program's loop per program epoch."""
    import gridrun
    from gridrun import checkpoint as ckpt
    from gridrun.train.population import PopulationStats

    tmp = Path(tempfile.mkdtemp(prefix="gridrun-bench-pop-"))
    (tmp / "train.py").write_text(POP_SCRIPT.format(root=str(ROOT)))
    stats = tmp / "stats.jsonl"
    os.environ["GRIDRUN_POPULATION_STATS"] = str(stats)
    savers, made = _saver_seconds()
    try:
        lrs = [float(v) for v in np.geomspace(1e-4, 3e-3, size)]
        gridrun.tuning_run(tmp / "train.py", {"lr": lrs, "epochs": [1], "n": [n]}, runs_dir=tmp / "warm", quiet=True,
                           population=True, population_size=size, backend="inprocess")  # compile once
        loops: dict[str, list[float]] = {"both": [], "none": []}  # the program's loop per program epoch
        saving, cpu, times, bytes_per_trial, df = 0.0, 0.0, [], float("nan"), None
        for r in range(rounds):  # with and without checkpoints, alternately (a shared machine drifts)
            for policy in (("both", "none") if r % 2 == 0 else ("none", "both")):
                stats.unlink(missing_ok=True)
                savers.clear()
                df = gridrun.tuning_run(tmp / "train.py", {"lr": lrs, "epochs": [epochs], "n": [n]},
                                        runs_dir=tmp / f"runs-{policy}-{r}", quiet=True, population=True,
                                        population_size=size, backend="inprocess", checkpoints=policy,
                                        checkpoint_seconds=0)  # (every epoch written: what saving costs)
                totals = PopulationStats.read_totals(str(stats))
                program_epochs = max(totals["slot_epochs"] / size, 1)
                loops[policy].append(totals["train_seconds"] / program_epochs)
                if policy == "both":
                    saving += sum(s.seconds for s in savers) / program_epochs / rounds
                    cpu += sum(s.cpu_seconds for s in savers) / program_epochs / rounds
                    times += [t for s in savers for t in s.times]
                    bytes_per_trial = float(np.median([ckpt.disk_bytes(d) for d in df["run_dir"]]))
        # the saves run in each trial's background writer thread while the program trains on: their
        # seconds against the program's epoch without checkpoints, and what the epoch lost to them
        epoch_s, with_s = float(np.median(loops["none"])), float(np.median(loops["both"]))
        return {"trials": len(df), "savers": size, "program_epochs": program_epochs, "epoch_s": epoch_s,
                "epoch_with_saves_s": with_s, "stall": with_s / epoch_s - 1, "rounds": rounds,
                "save_s_per_epoch": saving, "median_save_s": float(np.median(times)) if times else float("nan"),
                "fraction": saving / epoch_s, "cpu_s_per_epoch": cpu, "cpu_fraction": cpu / epoch_s,
                "bytes_per_trial": bytes_per_trial}
    finally:
        ckpt.for_run = made  # type: ignore[assignment]
        os.environ.pop("GRIDRUN_POPULATION_STATS", None)
        shutil.rmtree(tmp, ignore_errors=True)


def resume_saving(epochs: int, n: int) -> dict[str, float]:
    """Part 5: two equal sweeps, each trial killed (kill -9 of its worker) in its last epoch; one resumes from
    its checkpoint, the other with the checkpoints deleted first (a restart from epoch 0, what a resume did
    before checkpoints). Both resumes start a new worker (the kill took the old one down)."""
    import gridrun

    tmp = Path(tempfile.mkdtemp(prefix="gridrun-bench-resume-"))
    (tmp / "train.py").write_text(POP_SCRIPT.format(root=str(ROOT)))
    try:
        seconds = {}
        for how in ("continued", "restarted"):
            marker = tmp / f"killed-{how}"
            flags = {"epochs": [epochs], "n": [n], "kill_at": [epochs], "marker": [str(marker)]}
            runs = tmp / how
            gridrun.tuning_run(tmp / "train.py", flags, runs_dir=runs, quiet=True, backend="local")
            if how == "restarted":
                for folder in runs.glob("*/checkpoints"):
                    shutil.rmtree(folder)
            t = time.perf_counter()
            df = gridrun.tuning_run(resume=True, script=tmp / "train.py", runs_dir=runs, quiet=True, backend="local")
            seconds[how] = time.perf_counter() - t
            run = Path(df[df["status"] == "completed"]["run_dir"].iloc[0])
            seconds[f"{how}_from"] = json.loads((run / "properties.json").read_text()).get("resumed_from_epoch") or 0
        return {"epochs": epochs, "resumed_from": seconds["continued_from"], "resumed_s": seconds["continued"],
                "fresh_s": seconds["restarted"], "restarted_from": seconds["restarted_from"]}
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
    ap.add_argument("--pop-n", type=int, default=12000, help="parts 4-5: training samples (the first n)")
    ap.add_argument("--resume-epochs", type=int, default=8, help="part 5: the trial's epochs (killed in the last)")
    ap.add_argument("--only", type=int, nargs="+", choices=(1, 2, 3, 4, 5), default=[1, 2, 3, 4, 5],
                    help="the parts to run (2 needs 1)")
    args = ap.parse_args()
    result: dict = {}
    if 4 in args.only:
        pop = population_saves(args.epochs, args.pop_n)
        result["population"] = pop
        print(f"4. population of {pop['savers']} trials in one program ({args.pop_n} samples): program epoch "
              f"{pop['epoch_s']:.2f} s without checkpoints; with the saves it took {pop['epoch_with_saves_s']:.2f} s "
              f"({pop['stall']:+.1%}, the saves' cost to training; target <= 3%; medians of {pop['rounds']} rounds "
              f"each); the {pop['savers']} trials' saves: {pop['cpu_s_per_epoch'] * 1e3:.0f} ms of CPU per program "
              f"epoch ({pop['cpu_fraction']:.2%} of an epoch), {pop['save_s_per_epoch'] * 1e3:.0f} ms of wall time in "
              f"their threads ({pop['fraction']:.2%}; one save: {pop['median_save_s'] * 1e3:.0f} ms, the median: "
              f"the threads wait for the cores the program holds); {pop['bytes_per_trial'] / 1e6:.2f} MB per trial",
              flush=True)
    if 5 in args.only:
        res = resume_saving(args.resume_epochs, args.pop_n)
        result["resume"] = res
        print(f"5. a trial killed in its last epoch ({res['epochs']}), resumed from epoch {res['resumed_from']}: "
              f"{res['resumed_s']:.1f} s against {res['fresh_s']:.1f} s restarted from epoch {res['restarted_from']} = "
              f"{res['resumed_s'] / res['fresh_s']:.2f}x (saves {res['fresh_s'] - res['resumed_s']:.1f} s)", flush=True)
    if 1 not in args.only:
        print(json.dumps(result, default=float))
        return

    fit = train_in_a_run(args.epochs)
    print(f"1. chapter model, {fit['epochs']} epochs in a run dir, checkpoint='both' ({fit['saves']} saves): "
          f"epoch {fit['epoch_s']:.2f} s, saving {fit['save_s_per_epoch'] * 1e3:.1f} ms per epoch = "
          f"{fit['save_s_per_epoch'] / fit['epoch_s']:.2%} of an epoch (target <= 3%; the first save, with its "
          f"one-off imports, {fit['first_save_s'] * 1e3:.0f} ms, the median {fit['median_save_s'] * 1e3:.0f} ms = "
          f"{fit['median_save_s'] / fit['epoch_s']:.2%}); worst case (best and last "
          f"both written every epoch) {fit['worst_save_s'] * 1e3:.1f} ms = {fit['worst_save_s'] / fit['epoch_s']:.2%}; "
          f"{fit['checkpoint_bytes'] / 1e6:.2f} MB on disk")
    result["fit"] = {k: v for k, v in fit.items() if k != "state"}

    fmt = formats(fit["state"], args.kills, args.skip_orbax) if 2 in args.only else {}
    result["formats"] = fmt
    for name, f in fmt.items():
        print(f"2. {name:8s} save {f['save_s'] * 1e3:7.1f} ms  load {f['load_s'] * 1e3:7.1f} ms  "
              f"{f['bytes'] / 1e6:6.2f} MB  import (over jax's) {f['import_s']:.2f} s  lost after kill -9: {f['lost_after_kill']:.0%}")
    if "orbax" in fmt:
        g, o = fmt["gridrun"], fmt["orbax"]
        print(f"   gridrun / orbax: save {g['save_s'] / o['save_s']:.2f}x, load {g['load_s'] / o['load_s']:.2f}x, "
              f"bytes {g['bytes'] / o['bytes']:.2f}x, import {g['import_s'] / max(o['import_s'], 1e-9):.2f}x")

    if not args.skip_load and 3 in args.only:
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
