"""Interrupted sweep trials continue from their last checkpoint (issue 19): a trial whose worker is killed
(kill -9) at a random epoch continues on --resume (or on its retry) from the last saved epoch, in a new
attempt, and every epoch's metrics equal those of the same trial run uninterrupted; the sweep's
--checkpoints policy, mode and --keep-pruned reach each trial."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gridrun
from gridrun import checkpoint as C
from gridrun.errors import GridrunError
from gridrun.sweep.manifest import Manifest, list_sweeps

SCRIPT = '''
import os, signal, time
import numpy as np
import jax, jax.numpy as jnp, optax
import flax.linen as nn
import gridrun

FLAGS = gridrun.flags(kind="seq", lr=0.01, epochs=6, kill_at=0, marker="", fail_at=0, sleep=0.0)
rng = np.random.default_rng(0)
centers = rng.normal(0, 2.0, (3, 8))
y = rng.integers(0, 3, 300)
x = (centers[y] + rng.normal(0, 1.0, (300, 8))).astype(np.float32)


def end(epoch, logs):  # kill -9 of this process once (the marker file says it happened) at epoch kill_at
    if epoch + 1 == FLAGS.kill_at and FLAGS.marker and not os.path.exists(FLAGS.marker):
        open(FLAGS.marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    if epoch + 1 == FLAGS.fail_at:
        raise RuntimeError("the script failed")
    time.sleep(FLAGS.sleep)


callbacks = [gridrun.LambdaCallback(on_epoch_end=end)]
if FLAGS.kind == "loop":
    mlp = nn.Sequential([nn.Dense(16), nn.relu, nn.Dropout(0.3, deterministic=False), nn.Dense(3)])

    def init(key, hp):
        params = mlp.init({"params": key, "dropout": key}, jnp.zeros((1, 8)))["params"]
        return params, optax.adam(hp["learning_rate"]).init(params)

    def train_step(state, batch, hp, key):
        params, opt_state = state
        def loss_fn(p):
            logits = mlp.apply({"params": p}, batch[0], rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optax.adam(hp["learning_rate"]).update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), {"loss": loss}

    def eval_step(state, batch, hp):
        logits = mlp.apply({"params": state[0]}, batch[0], rngs={"dropout": jax.random.key(0)})
        return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()}

    gridrun.fit_loop(init, train_step, (x[:240], y[:240]), hparams={"learning_rate": FLAGS.lr}, eval_step=eval_step,
                     validation_data=(x[240:], y[240:]), epochs=FLAGS.epochs, batch_size=32, callbacks=callbacks)
else:
    model = gridrun.Sequential([gridrun.Dense(16, activation="relu"), gridrun.BatchNorm(), gridrun.Dropout(0.3),
                                gridrun.Dense(3, activation="softmax")])
    gridrun.fit(model, x, y, loss="sparse_categorical_crossentropy", metrics=["accuracy"], epochs=FLAGS.epochs,
                batch_size=32, optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), validation_split=0.2,
                callbacks=callbacks)
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def _metrics(run: Path) -> dict[str, list[float]]:
    return json.loads((run / "metrics.json").read_text())


def _manifest(runs: Path) -> Manifest:
    (path,) = list_sweeps(runs)
    return Manifest.load(runs, json.loads(path.read_text())["id"])


def _uninterrupted(script: Path, tmp_path: Path, kind: str) -> dict[str, list[float]]:
    row = gridrun.training_run(script, {"kind": kind}, runs_dir=tmp_path / "alone", echo=False)
    assert row["status"].iloc[0] == "completed", row["error_message"].iloc[0]
    return _metrics(Path(row["run_dir"].iloc[0]))


def _same(a: dict[str, list[float]], b: dict[str, list[float]]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert len(a[name]) == len(b[name]), name
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("kind", ["seq", "loop"])
def test_a_trial_killed_at_a_random_epoch_continues_on_resume_with_the_same_metrics(script, tmp_path, kind):
    k = random.Random().randint(3, 5)  # killed in epoch k's end hook
    runs = tmp_path / "runs"
    marker = tmp_path / "killed"
    flags = {"kind": [kind], "kill_at": [k], "marker": [str(marker)]}
    # checkpoint_seconds=0: written at every epoch (this trial's epochs take milliseconds, all within the
    # default window); the manifest keeps the setting for the resume
    df = gridrun.tuning_run(script, flags, runs_dir=runs, backend="local", quiet=True, checkpoint_seconds=0)
    assert marker.exists() and list(df["status"]) == ["failed"], f"k={k}"
    first = Path(df["run_dir"].iloc[0])
    # a killed worker's trial keeps its checkpoints: the last one written is epoch k - 1, or k - 2 when
    # the kill came before the background writer had written k - 1 (saves never stall an epoch)
    saved = C.info(first)["last"]["epoch"]
    assert saved in (k - 2, k - 1), (k, saved)

    df = gridrun.tuning_run(resume=True, script=script, runs_dir=runs, backend="local", quiet=True)
    assert sorted(df["status"]) == ["completed", "failed"]  # the sweep's runs: both attempts
    run = Path(df[df["status"] == "completed"]["run_dir"].iloc[0])
    assert run != first
    props = json.loads((run / "properties.json").read_text())
    assert props["resumed_from_epoch"] == saved and props["resumed_from_run"] == first.name, f"k={k}"
    (trial,) = _manifest(runs).trials
    assert [a.extra.get("resumed_from_epoch") for a in trial.attempts] == [None, saved]
    assert trial.attempts[0].extra.get("crashed") is True
    # every epoch: the ones copied from the killed attempt and the ones trained after the resume
    _same(_metrics(run), _uninterrupted(script, tmp_path, kind))
    assert props["epochs_completed"] == 6 and C.info(run)["last"]["epoch"] == 6


def test_with_the_default_window_a_trial_killed_before_its_first_write_trains_again_the_same(script, tmp_path):
    """The default CheckpointPolicy.seconds: a trial of millisecond epochs writes nothing before its end,
    so a kill -9 at epoch k leaves no checkpoint, and the resume trains it from epoch 0, to the same
    metrics; what it writes at its end is its best and last epochs."""
    k = random.Random().randint(3, 5)
    runs = tmp_path / "runs"
    marker = tmp_path / "killed"
    df = gridrun.tuning_run(script, {"kill_at": [k], "marker": [str(marker)]}, runs_dir=runs, backend="local",
                            quiet=True)
    assert marker.exists() and list(df["status"]) == ["failed"]
    assert C.info(Path(df["run_dir"].iloc[0])) == {}, f"k={k}"
    df = gridrun.tuning_run(resume=True, script=script, runs_dir=runs, backend="local", quiet=True)
    run = Path(df[df["status"] == "completed"]["run_dir"].iloc[0])
    props = json.loads((run / "properties.json").read_text())
    assert not props.get("resumed_from_epoch") and props["checkpoint_last_epoch"] == 6
    metrics = _metrics(run)
    _same(metrics, _uninterrupted(script, tmp_path, "seq"))
    best = int(np.argmin(metrics["val_loss"])) + 1
    assert C.info(run)["best"]["epoch"] == props["checkpoint_epoch"] == best


def test_population_slots_continue_their_trials_after_a_killed_worker(script, tmp_path):
    """kill -9 of the worker training a population (3 trials in 2 slots, one refilled): the group's trials
    fail with their worker; on --resume each continues in a slot from its own last checkpoint, at its own
    epoch (one may have none and starts at 0); every epoch's metrics equal the trial's trained alone."""
    # from epoch 3: by the kill every trial's epoch-1 save is on disk (a save waits for the one before it);
    # a kill at epoch 2 could come while both slots' first saves were still being written, one at a time
    k = random.Random().randint(3, 5)
    runs = tmp_path / "runs"
    marker = tmp_path / "killed"
    lrs = [0.01, 0.03, 0.003]
    df = gridrun.tuning_run(script, {"lr": lrs, "kill_at": [k], "marker": [str(marker)]}, runs_dir=runs,
                            backend="local", population=True, population_size=2, ordered=True, quiet=True,
                            checkpoint_seconds=0)
    assert marker.exists() and set(df["status"]) == {"failed"}
    df = gridrun.tuning_run(resume=True, script=script, runs_dir=runs, backend="local", quiet=True, population=True,
                            population_size=2)
    done = df[df["status"] == "completed"]
    assert len(done) == 3, df[["status", "error_message"]]
    continued = 0
    for _, row in done.iterrows():
        run = Path(row["run_dir"])
        props = json.loads((run / "properties.json").read_text())
        continued += bool(props.get("resumed_from_epoch"))
        assert props["context"] == "population" and props["population"].get("slot_refill"), props.get("population")
        lr = json.loads((run / "flags.json").read_text())["lr"]
        alone = gridrun.training_run(script, {"lr": lr}, runs_dir=tmp_path / f"alone{lr}", echo=False)
        want = _metrics(Path(alone["run_dir"].iloc[0]))
        got = _metrics(run)
        for name in want:
            tol = {"rtol": 1e-4, "atol": 1e-6} if "acc" not in name else {"rtol": 0, "atol": 1.01 / 60}
            np.testing.assert_allclose(got[name], want[name], err_msg=f"lr={lr} {name} k={k}", **tol)
    assert continued >= 1, f"no population trial continued from a checkpoint (k={k})"


def test_a_sweep_whose_client_was_killed_continues_its_trial_on_resume(script, tmp_path):
    """kill -9 of the client (and its process group) of an in-process sweep while a trial trains: the
    resume closes the trial's run interrupted and continues it from its last checkpoint (1-second epochs,
    the default 5-second window between writes: its first write comes at epoch 5 or so)."""
    runs = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "gridrun.cli", "tuning-run", str(script), "--flag", "sleep=1.0", "--runs-dir",
           str(runs), "--quiet", "--backend", "inprocess"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    want = random.Random().randint(2, 4)
    deadline = time.monotonic() + 180
    saved = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        headers = [C.read_header(p) for p in runs.glob("*/checkpoints/last.ckpt")] if runs.is_dir() else []
        saved = max([h.get("epoch", 0) for h in headers if h] or [0])
        if saved >= want:
            break
    assert saved >= want, proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint in time"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    df = gridrun.tuning_run(resume=True, script=script, runs_dir=runs, backend="inprocess", quiet=True)
    run = Path(df[df["status"] == "completed"]["run_dir"].iloc[0])
    props = json.loads((run / "properties.json").read_text())
    assert props["resumed_from_epoch"] >= want
    _same(_metrics(run), _uninterrupted(script, tmp_path, "seq"))


def test_a_retry_in_the_same_session_continues_too(script, tmp_path):
    runs = tmp_path / "runs"
    marker = tmp_path / "killed"
    df = gridrun.tuning_run(script, {"kill_at": [3], "marker": [str(marker)]}, runs_dir=runs, backend="local",
                            retries=1, quiet=True, checkpoint_seconds=0)
    assert sorted(df["status"]) == ["completed", "failed"]
    run = Path(df[df["status"] == "completed"]["run_dir"].iloc[0])
    # epoch 2's checkpoint, or epoch 1's when the kill came before the background writer wrote epoch 2
    assert json.loads((run / "properties.json").read_text())["resumed_from_epoch"] in (1, 2)
    _same(_metrics(run), _uninterrupted(script, tmp_path, "seq"))


def test_a_failure_of_the_script_starts_again_from_epoch_0_and_keeps_no_checkpoint(script, tmp_path):
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"fail_at": [3]}, runs_dir=runs, backend="inprocess", quiet=True)
    run = Path(df["run_dir"].iloc[0])
    assert list(df["status"]) == ["failed"] and not (run / "checkpoints").exists()
    props = json.loads((run / "properties.json").read_text())
    assert "--keep-pruned" in props["checkpoints_dropped"]
    with pytest.raises(C.NoCheckpoint, match="--keep-pruned"):
        C.load_state(run)
    df = gridrun.tuning_run(script, {"fail_at": [3]}, runs_dir=tmp_path / "kept", backend="inprocess", quiet=True,
                            keep_pruned=True)
    assert C.info(Path(df["run_dir"].iloc[0]))["last"]["epoch"] == 2


def test_pruned_trials_keep_no_checkpoint_unless_keep_pruned(script, tmp_path):
    lrs = [0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001]
    for keep in (False, True):
        runs = tmp_path / f"runs{keep}"
        df = gridrun.tuning_run(script, {"lr": lrs}, runs_dir=runs, backend="inprocess", quiet=True, prune="asha",
                                prune_options={"grace": 1, "reduction": 3}, ordered=True, keep_pruned=keep)
        pruned = df[df["status"] == "pruned"]
        assert len(pruned), "asha pruned nothing"
        for d in pruned["run_dir"]:
            assert (Path(d) / "checkpoints").is_dir() is keep
        for d in df[df["status"] == "completed"]["run_dir"]:
            assert C.info(Path(d))["best"]["epoch"] >= 1


def test_the_epoch_a_trial_is_pruned_at_saves_nothing_unless_keep_pruned(script, tmp_path, monkeypatch):
    """A sweep deletes a pruned trial's checkpoints, so the trial does not write one at the epoch it is
    pruned (under ASHA most trials end at the first rung: they would write a file only to delete it);
    with keep_pruned it does, and keeps it. Either way the run says why it has none."""
    saved: list[tuple[str, int]] = []
    write = C.Checkpointer._write_files

    def spy(self, which, tree, meta, t0):  # runs in the trial's background writer thread
        saved.append((self.run_dir.name, int(meta["epoch"])))
        return write(self, which, tree, meta, t0)

    monkeypatch.setattr(C.Checkpointer, "_write_files", spy)
    lrs = [0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001]
    for keep in (False, True):
        saved.clear()
        df = gridrun.tuning_run(script, {"lr": lrs}, runs_dir=tmp_path / f"runs{keep}", backend="inprocess",
                                quiet=True, prune="asha", prune_options={"grace": 1, "reduction": 3}, ordered=True,
                                keep_pruned=keep)
        pruned = df[df["status"] == "pruned"]
        assert len(pruned), "asha pruned nothing"
        for d in pruned["run_dir"]:
            props = json.loads((Path(d) / "properties.json").read_text())
            assert ((Path(d).name, props["pruned_epoch"]) in saved) is keep, (saved, props["pruned_epoch"])
            assert ("checkpoints_dropped" in props) is not keep
        for d in df[df["status"] == "completed"]["run_dir"]:
            assert (Path(d).name, 6) in saved


def test_the_sweeps_checkpoints_policy_and_mode_reach_every_trial(script, tmp_path):
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"epochs": [4]}, runs_dir=runs, backend="inprocess", quiet=True,
                            checkpoints="last", metric="val_acc", mode="min")
    run = Path(df["run_dir"].iloc[0])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert _manifest(runs).data["checkpoints"] == {"policy": "last", "keep_pruned": False, "seconds": None}

    df = gridrun.tuning_run(script, {"epochs": [4]}, runs_dir=tmp_path / "best", backend="inprocess", quiet=True,
                            checkpoints="best", metric="val_acc", mode="min")
    run = Path(df["run_dir"].iloc[0])
    accs = _metrics(run)["val_acc"]
    best = C.info(run)["best"]
    assert "last" not in C.info(run)
    assert int(np.argmin(accs)) != int(np.argmax(accs))  # the test tells the two modes apart
    assert best["epoch"] == int(np.argmin(accs)) + 1  # mode=min: the lowest accuracy is the "best" epoch

    df = gridrun.tuning_run(script, {"epochs": [2]}, runs_dir=tmp_path / "none", backend="inprocess", quiet=True,
                            checkpoints="none")
    assert not (Path(df["run_dir"].iloc[0]) / "checkpoints").exists()
    with pytest.raises(GridrunError, match="--checkpoints 'sometimes': use one of best, last, both, none"):
        gridrun.tuning_run(script, {"epochs": [2]}, runs_dir=tmp_path / "bad", checkpoints="sometimes")
    with pytest.raises(GridrunError, match=r"--checkpoint-seconds -1: give the least seconds .* 0 or more"):
        gridrun.tuning_run(script, {"epochs": [2]}, runs_dir=tmp_path / "bad", checkpoint_seconds=-1)
    assert not (tmp_path / "bad").exists()


def test_cli_checkpoints_and_keep_pruned_are_recorded_and_held_on_resume(script, tmp_path):
    from gridrun import cli

    runs = tmp_path / "runs"
    code = cli.main(["tuning-run", str(script), "--flag", "epochs=2", "--runs-dir", str(runs), "--quiet",
                     "--checkpoints", "best", "--keep-pruned", "--backend", "inprocess"])
    assert code == 0
    assert _manifest(runs).data["checkpoints"] == {"policy": "best", "keep_pruned": True, "seconds": None}
    code = cli.main(["tuning-run", "--resume", "--runs-dir", str(runs), "--quiet", str(script)])
    assert code == 0
    assert _manifest(runs).data["checkpoints"] == {"policy": "best", "keep_pruned": True, "seconds": None}


def test_checkpoint_seconds_reaches_each_trial_over_the_scripts_policy_and_is_held_on_resume(script, tmp_path,
                                                                                              monkeypatch):
    """--checkpoint-seconds S: the window of every trial's writes (its keep stays the script's, or
    --checkpoints'); recorded in the manifest and kept by --resume."""
    from gridrun import cli

    seen = []
    made = C.Checkpointer.__init__

    def spy(self, *args, **kwargs):
        made(self, *args, **kwargs)
        seen.append(self.policy)

    monkeypatch.setattr(C.Checkpointer, "__init__", spy)
    runs = tmp_path / "runs"
    code = cli.main(["tuning-run", str(script), "--flag", "epochs=2", "--runs-dir", str(runs), "--quiet",
                     "--checkpoint-seconds", "0", "--backend", "inprocess"])
    assert code == 0
    assert _manifest(runs).data["checkpoints"] == {"policy": None, "keep_pruned": False, "seconds": 0.0}
    assert seen == [C.CheckpointPolicy(seconds=0.0)]
    code = cli.main(["tuning-run", str(script), "--flag", "epochs=2", "--runs-dir", str(tmp_path / "last"), "--quiet",
                     "--checkpoint-seconds", "30", "--checkpoints", "last", "--backend", "inprocess"])
    assert code == 0 and seen[-1] == C.CheckpointPolicy(best=False, last=True, seconds=30.0)
    (run,) = [p for p in (tmp_path / "last").iterdir() if (p / "checkpoints").is_dir()]
    assert C.info(run)["last"]["epoch"] == 2  # written at the end, within the window
    code = cli.main(["tuning-run", "--resume", "--runs-dir", str(runs), "--quiet", str(script)])
    assert code == 0 and _manifest(runs).data["checkpoints"]["seconds"] == 0.0

