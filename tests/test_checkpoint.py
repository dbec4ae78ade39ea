"""A run keeps its model: checkpoints written atomically during fit / fit_loop, the best and last epochs,
the record's columns, and load_model / load_state in a fresh process, with one clear error per bad input."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gridrun
from gridrun import checkpoint as C
from gridrun.errors import GridrunError

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = '''
import numpy as np
import jax, jax.numpy as jnp, optax
import flax.linen as nn
from flax import nnx
import gridrun

FLAGS = gridrun.flags(kind="seq", units=16, epochs=4, checkpoint="both", data="")
if FLAGS.data:  # a data file the model's rebuild needs too
    arrays = np.load(FLAGS.data)
    x, y = arrays["x"], arrays["y"]
else:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 2.0, (3, 8))
    y = rng.integers(0, 3, 300)
    x = (centers[y] + rng.normal(0, 1.0, (300, 8))).astype(np.float32)
probe = x[:25]
fit_args = dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"], epochs=FLAGS.epochs, batch_size=32,
                optimizer=gridrun.optimizer("adam", learning_rate=0.01), validation_split=0.2,
                checkpoint=FLAGS.checkpoint)


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(FLAGS.units)(x))
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.softmax(nn.Dense(3)(x))


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(8, FLAGS.units, rngs=rngs)
        self.bn = nnx.BatchNorm(FLAGS.units, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.l2 = nnx.Linear(FLAGS.units, 3, rngs=rngs)

    def __call__(self, x):
        return nnx.softmax(self.l2(self.drop(self.bn(nnx.relu(self.l1(x))))))


out = gridrun.artifacts_dir()
if FLAGS.kind == "loop":
    mlp = nn.Sequential([nn.Dense(FLAGS.units), nn.relu, nn.Dense(3)])

    def init(key, hp):
        params = mlp.init(key, jnp.zeros((1, 8)))["params"]
        return params, optax.adam(hp["learning_rate"]).init(params)

    def train_step(state, batch, hp, key):
        params, opt_state = state
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(mlp.apply({"params": p}, batch[0]), batch[1]).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optax.adam(hp["learning_rate"]).update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), {"loss": loss}

    def eval_step(state, batch, hp):
        return {"loss": optax.softmax_cross_entropy_with_integer_labels(mlp.apply({"params": state[0]}, batch[0]), batch[1]).mean()}

    history = gridrun.fit_loop(init, train_step, (x[:240], y[:240]), hparams={"learning_rate": 0.01}, eval_step=eval_step,
                               validation_data=(x[240:], y[240:]), epochs=FLAGS.epochs, batch_size=32,
                               checkpoint=FLAGS.checkpoint)
    pred = np.asarray(mlp.apply({"params": history.state[0]}, probe))
else:
    model = {"seq": lambda: gridrun.Sequential([gridrun.Dense(FLAGS.units, activation="relu"), gridrun.BatchNorm(),
                                                gridrun.Dropout(0.2), gridrun.Dense(3, activation="softmax")]),
             "linen": LinenMLP, "nnx": lambda: NnxMLP(nnx.Rngs(0))}[FLAGS.kind]()
    history = gridrun.fit(model, x, y, **fit_args)
    pred = gridrun.predict(history, probe)
if out:
    np.save(f"{out}/pred.npy", pred)
'''

LOAD = '''
import json, sys
import numpy as np
import gridrun
from gridrun.train.restore import TrainedModel
import jax

out = {}
for kind, run in json.loads(sys.argv[1]).items():
    model = gridrun.load_model(run, which="last")
    assert isinstance(model, TrainedModel), type(model)
    probe = np.load(run + "/probe.npy")
    if kind == "loop":
        import flax.linen as nn
        mlp = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(3)])
        pred = np.asarray(mlp.apply({"params": model.state[0]}, probe))
    else:
        pred = gridrun.predict(model, probe)
        if kind == "nnx":  # the module itself holds the trained weights
            model.module.eval()
            assert np.allclose(np.asarray(model.module(probe)), pred, atol=1e-6)
        out[kind + "_eval"] = model.evaluate(probe, np.load(run + "/labels.npy"), record=False)
    expect = np.load(run + "/artifacts/pred.npy")
    out[kind] = float(np.abs(pred - expect).max())
    out[kind + "_epoch"] = model.epoch
print(json.dumps(out))
'''


def _disk(run: Path) -> int:
    """Bytes of a run's checkpoint files, a file under two names (hard links) counted once."""
    return sum({f.stat().st_ino: f.stat().st_size for f in (run / "checkpoints").glob("*.ckpt")}.values())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run per kind of model, each by `gridrun training-run` in its own process (the first
    from the command line, the others from Python)."""
    root = tmp_path_factory.mktemp("ckpt")
    (root / "train.py").write_text(SCRIPT)
    runs = {}
    for kind in ("seq", "linen", "nnx", "loop"):
        if kind == "seq":
            subprocess.run([sys.executable, "-m", "gridrun.cli", "training-run", str(root / "train.py"), "--flag",
                            "kind=seq", "--runs-dir", str(root / "runs"), "--quiet"], check=True, env=_env(), cwd=root,
                           capture_output=True)
            row = gridrun.ls_runs(runs_dir=root / "runs", latest_n=1)
        else:
            row = gridrun.training_run(root / "train.py", {"kind": kind}, runs_dir=root / "runs", echo=False)
        run = Path(row["run_dir"].iloc[0])
        assert row["status"].iloc[0] == "completed", row["error_message"].iloc[0]
        rng = np.random.default_rng(0)  # the script's data, for the loading process
        centers = rng.normal(0, 2.0, (3, 8))
        y = rng.integers(0, 3, 300)
        x = (centers[y] + rng.normal(0, 1.0, (300, 8))).astype(np.float32)
        np.save(run / "probe.npy", x[:25])
        np.save(run / "labels.npy", y[:25])
        runs[kind] = run
    return root, runs


# --------------------------------------------------------------------------------------------------
# The policy, the file format, the observer


def test_policy_parses_every_documented_form_and_names_the_fix_otherwise():
    P = C.CheckpointPolicy
    assert P.parse("both") == P() and P.parse(True) == P()
    assert P.parse("best") == P(best=True, last=False) and P.parse("LAST") == P(best=False, last=True)
    assert P.parse(None) is None and P.parse(False) is None and P.parse("none") is None
    assert P().seconds == C.DEFAULT_SECONDS > 0  # a trial writes at most every few seconds by default
    # an epoch schedule asked for is kept as asked: every such epoch written
    assert P.parse(5) == P(every=5, seconds=0) and P.parse("every=3") == P(every=3, seconds=0)
    assert P.parse({"keep": "last", "every": 2}) == P(best=False, last=True, every=2, seconds=0)
    assert P.parse("seconds=0") == P(seconds=0) and P.parse({"keep": "best", "seconds": 30}) == P(last=False, seconds=30)
    assert P.parse({"every": 2, "seconds": 1.5}) == P(every=2, seconds=1.5)
    for bad in ("bestt", 0, "every=x", {"every": 0}, 2.5, {"keep": "both", "often": 1}, "seconds=-1",
                {"seconds": "5"}, {"seconds": float("nan")}, {"seconds": True}):
        with pytest.raises(GridrunError, match=r"checkpoint=.*use 'both', 'best', 'last', None"):
            P.parse(bad)


def _tree():
    params = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.zeros(4)}
    return {"state": {"params": params, "opt_state": optax.adam(1e-3).init(params), "epoch": jnp.array(3),
                      "stopped": jnp.array(False)},
            "rng": jax.random.PRNGKey(7), "typed": jax.random.key(3)}


def test_a_checkpoint_round_trips_optax_state_and_typed_keys_exactly():
    tree = _tree()
    header, raw = C.decode(C.encode(tree, {"epoch": 3}))
    assert header["epoch"] == 3 and header["keys"] == {"typed": "threefry2x32"}
    back = C.restore_into(jax.eval_shape(lambda: tree), raw, header, "x")
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(tree)
    assert type(back["state"]["opt_state"][0]).__name__ == "ScaleByAdamState"
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(tree), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))


def test_the_raw_layout_keeps_every_dtype_and_shape_and_older_msgpack_files_still_load():
    """Leaves are written as raw bytes (the header names each one's path, dtype, shape, offset): bfloat16,
    bool, 0-d, empty and non-contiguous arrays, and a key with a '/' in it, come back exactly and
    writable. A string leaf is a clear error; a checkpoint in the earlier msgpack layout still loads."""
    from flax import serialization

    tree = {"a/b": {"c": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3)}, "flag": np.array(True),
            "empty": np.zeros((0, 4), np.float32), "t": np.arange(12, dtype=np.int32).reshape(3, 4).T,
            "u8": np.arange(5, dtype=np.uint8)}
    header, raw = C.decode(C.encode(tree, {"epoch": 2}))
    assert header["layout"] == "raw" and header["epoch"] == 2
    assert raw["a/b"]["c"].dtype == jnp.bfloat16 and raw["empty"].shape == (0, 4) and raw["flag"].shape == ()
    for a, b in ((raw["a/b"]["c"], tree["a/b"]["c"]), (raw["t"], tree["t"]), (raw["u8"], tree["u8"]),
                 (raw["flag"], tree["flag"])):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(np.asarray(a), np.asarray(b))
    raw["t"][0, 0] = 99  # the arrays are the caller's to change
    with pytest.raises(C.CheckpointError, match=r"leaf s is an array of <U2, which a checkpoint cannot hold"):
        C.encode({"s": np.array(["x", "yz"]), "w": np.ones(2)})
    tree = _tree()
    nested = {"state": jax.device_get(tree["state"]), "rng": np.asarray(tree["rng"]),
              "typed": np.asarray(jax.random.key_data(tree["typed"]))}
    nested["state"]["opt_state"] = {"0": {"count": nested["state"]["opt_state"][0].count,
                                          "mu": nested["state"]["opt_state"][0].mu, "nu": nested["state"]["opt_state"][0].nu},
                                    "1": {}}
    payload = serialization.msgpack_serialize(nested)  # what checkpoints held before the raw layout
    import hashlib
    old = C.MAGIC + json.dumps({"epoch": 5, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                                "keys": {"typed": "threefry2x32"}}).encode() + b"\n" + payload
    header, raw = C.decode(old)
    back = C.restore_into(jax.eval_shape(_tree), raw, header, "x")
    assert "layout" not in header and np.array_equal(back["state"]["params"]["w"], _tree()["state"]["params"]["w"])


def test_truncated_damaged_and_foreign_files_are_refused_with_one_line():
    data = C.encode(_tree(), {"epoch": 1})
    cases = {"truncated": data[:-7], "header cut": data[:25], "flipped": data[:-40] + bytes([data[-40] ^ 1]) + data[-39:],
             "foreign": b"PK\x03\x04 a zip file"}
    for what, bad in cases.items():
        with pytest.raises(C.CorruptCheckpoint) as info:
            C.decode(bad, "the best checkpoint of run R")
        message = str(info.value)
        assert "\n" not in message and "run R" in message and "train the run again" in message, what


def test_another_models_shapes_are_named_leaf_by_leaf():
    header, raw = C.decode(C.encode(_tree()))
    other = _tree()
    other["state"]["params"]["w"] = jnp.zeros((3, 5))
    with pytest.raises(C.CheckpointMismatch, match=r"leaf state/params/w is float32\[3, 4\] in the checkpoint but "
                                                   r"float32\[3, 5\] in the model"):
        C.restore_into(jax.eval_shape(lambda: other), raw, header, "the best checkpoint of run R")
    fewer = _tree()
    del fewer["typed"]
    with pytest.raises(C.CheckpointMismatch, match="holds 11 arrays where the model's state has 10"):
        C.restore_into(fewer, raw, header, "R")


def _states(calls: list[int]):
    """state(e): a get_state for epoch e's state ({"w": [e, e, e]}) that notes each call in `calls`."""
    def state(e):
        def get():
            calls.append(e)
            return {"w": jnp.full(3, float(e))}
        return get
    return state


def test_checkpointer_keeps_the_best_epoch_by_the_scoring_rule_and_calls_get_state_only_when_saving(tmp_path):
    calls: list[int] = []
    state = _states(calls)

    recorded = {}
    saver = C.Checkpointer(tmp_path, "seconds=0", metric="val_acc", record=recorded.update)
    accs = [0.5, 0.7, 0.6, 0.8, 0.75]
    for e, acc in enumerate(accs, 1):
        saver.on_epoch(e, {"loss": 1.0 / e, "val_loss": 0.3, "val_acc": acc}, state(e))
    assert calls == [1, 2, 3, 4, 5]  # last every epoch: one call per epoch, shared by best and last
    assert C.info(tmp_path)["best"]["epoch"] == 4 and C.info(tmp_path)["last"]["epoch"] == 5
    # the properties follow the saves at most every RECORD_EVERY seconds (none in the first ones), and
    # close() records the final ones
    assert recorded == {}
    saver.close()
    assert recorded["checkpoint_epoch"] == 4 and recorded["checkpoint_metric"] == "val_acc"
    assert recorded["checkpoint_last_epoch"] == 5
    assert recorded["checkpoint_bytes"] == _disk(tmp_path)
    best, last = (tmp_path / "checkpoints" / "best.ckpt").stat(), (tmp_path / "checkpoints" / "last.ckpt").stat()
    assert best.st_ino != last.st_ino  # epoch 4 best, epoch 5 last
    assert float(C.load_state(tmp_path)["w"][0]) == 4.0 and float(C.load_state(tmp_path, "last")["w"][0]) == 5.0

    first = C.Checkpointer(tmp_path / "a", "seconds=0")
    first.on_epoch(1, {"loss": 1.0}, state(1))  # best and last due at once: one file under both names
    a, b = (tmp_path / "a/checkpoints/best.ckpt").stat(), (tmp_path / "a/checkpoints/last.ckpt").stat()
    assert a.st_ino == b.st_ino and first.properties()["checkpoint_bytes"] == a.st_size
    first.on_epoch(2, {"loss": 2.0}, state(2))  # last replaced, best kept
    assert float(C.load_state(tmp_path / "a")["w"][0]) == 1.0 and float(C.load_state(tmp_path / "a", "last")["w"][0]) == 2.0

    calls.clear()  # best only, by val_loss when the sweep's metric is not logged; NaN is never best
    saver = C.Checkpointer(tmp_path / "b", {"keep": "best", "seconds": 0}, metric="val_auc")
    for e, v in enumerate([0.5, float("nan"), 0.4, 0.45], 1):
        saver.on_epoch(e, {"loss": 9.0, "val_loss": v}, state(e))
    assert calls == [1, 3] and saver.name == "val_loss" and saver.best_epoch == 3

    calls.clear()  # every=2: last on epochs 2 and 4, and epoch 5 at close; loss ranks without validation
    saver = C.Checkpointer(tmp_path / "c", {"keep": "last", "every": 2})
    for e in range(1, 6):
        saver.on_epoch(e, {"loss": 1.0}, state(e))
    assert calls == [2, 4]
    saver.close(state(5))
    assert calls == [2, 4, 5] and C.info(tmp_path / "c") == {"last": {"epoch": 5, "metric": "loss", "value": 1.0,
                                                                   "bytes": (tmp_path / "c/checkpoints/last.ckpt").stat().st_size}}
    saver.close(state(5))  # nothing left to write
    assert calls == [2, 4, 5]

    resumed = C.Checkpointer(tmp_path, {"keep": "best", "seconds": 0}, metric="val_acc", resume=True)
    assert resumed.on_epoch(6, {"val_acc": 0.79}, state(6)) == []  # not better than epoch 4's 0.8
    assert resumed.on_epoch(7, {"val_acc": 0.81}, state(7)) == ["best"]


def test_within_the_seconds_window_the_best_epoch_is_held_and_the_end_writes_it(tmp_path, monkeypatch):
    """policy.seconds: no write within that time of the last one (or of the saver's start). A better
    epoch's state is taken when it comes (so a later epoch cannot overwrite it) and held; the first epoch
    after the window writes it with the last one; close() writes what is held and the last epoch; a
    discarded trial (pruned, its checkpoints deleted anyway) writes nothing, even at close()."""
    clock = [100.0]
    monkeypatch.setattr(C.time, "monotonic", lambda: clock[0])
    calls: list[int] = []
    state = _states(calls)

    for background in (False, True):
        run = tmp_path / f"run{background}"
        calls.clear()
        saver = C.Checkpointer(run, {"keep": "both", "seconds": 10}, metric="val_loss", background=background)
        losses = [0.9, 0.5, 0.7, 0.6, 0.8, 0.4, 0.45]
        written = []
        for e, v in enumerate(losses, 1):
            clock[0] += 3.0  # 3 s an epoch: epochs 1-3 within the window, epoch 4 after it (12 s)
            written.append(saver.on_epoch(e, {"val_loss": v}, state(e)))
            if e == 5:
                if saver.writer is not None:
                    saver.writer.wait()
                # epoch 4 wrote the best epoch held (2) and the last one (4); nothing since
                assert C.info(run)["best"]["epoch"] == 2 and C.info(run)["last"]["epoch"] == 4
                assert saver.properties()["checkpoint_epoch"] == 2
        assert written == [[], [], [], ["best", "last"], [], [], []]
        assert calls == [1, 2, 4, 6]  # states taken: the better epochs when they came (1, 2, 6), the last at 4
        assert not (run / "checkpoints" / "best.ckpt").read_bytes() == b""
        props = saver.close(state(7))
        assert calls == [1, 2, 4, 6, 7]
        assert props["checkpoint_epoch"] == 6 and props["checkpoint_last_epoch"] == 7
        assert float(C.load_state(run)["w"][0]) == 6.0 and float(C.load_state(run, "last")["w"][0]) == 7.0
        assert C.info(run)["best"]["value"] == 0.4 and C.info(run)["best"]["epoch"] == 6

    held = C.Checkpointer(tmp_path / "same", {"keep": "both", "seconds": 10})
    held.on_epoch(1, {"loss": 1.0}, state(1))
    held.on_epoch(2, {"loss": 0.5}, state(2))  # the best is the last epoch: one file under both names
    held.close(state(2))
    a, b = (tmp_path / "same/checkpoints/best.ckpt").stat(), (tmp_path / "same/checkpoints/last.ckpt").stat()
    assert a.st_ino == b.st_ino and C.info(tmp_path / "same")["best"]["epoch"] == 2

    dropped = C.Checkpointer(tmp_path / "dropped", {"keep": "both", "seconds": 10})
    dropped.on_epoch(1, {"loss": 1.0}, state(1))
    dropped.discard()
    assert dropped.on_epoch(2, {"loss": 0.5}, state(2)) == []
    dropped.close(state(2))
    assert not (tmp_path / "dropped").exists()

    every = C.Checkpointer(tmp_path / "every", "seconds=0")  # 0: every epoch that is due, as before the window
    assert [every.on_epoch(e, {"loss": 1.0 / e}, state(e)) for e in (1, 2)] == [["best", "last"], ["best", "last"]]


def test_a_background_checkpointer_writes_and_records_what_a_synchronous_one_does(tmp_path):
    """fit/fit_loop save in the background (checkpoint.for_run): the same files, headers, states and
    properties once closed, and no thread left running."""
    import threading

    def state(e):
        return lambda: {"w": jnp.full(3, float(e))}

    before = threading.active_count()
    out = {}
    for background in (False, True):
        run, recorded = tmp_path / str(background), {}
        saver = C.Checkpointer(run, {"keep": "both", "every": 2}, metric="val_acc", record=recorded.update,
                               background=background)
        for e, acc in enumerate([0.5, 0.7, 0.6, 0.8, 0.75], 1):
            saver.on_epoch(e, {"loss": 1.0 / e, "val_acc": acc}, state(e))
        props = saver.close(state(5))
        out[background] = (C.info(run), props, dict(recorded), float(C.load_state(run)["w"][0]),
                           float(C.load_state(run, "last")["w"][0]))
    assert out[True] == out[False]
    assert out[True][1]["checkpoint_epoch"] == 4 and out[True][1]["checkpoint_last_epoch"] == 5
    assert out[True][3:] == (4.0, 5.0)
    assert threading.active_count() == before


KILL_SCRIPT = '''
import sys, numpy as np
from gridrun import checkpoint as C
saver = C.Checkpointer(sys.argv[1], {"keep": "last", "seconds": 0})
big = np.zeros((4_000_000,), np.float32)  # 16 MB: a save takes long enough to be killed in the middle
for e in range(1, 10_000):
    saver.on_epoch(e, {"loss": 1.0}, lambda: {"w": big + e})
    print(e, flush=True)
'''


def _unreadable(path) -> bool:
    try:
        C.decode(path.read_bytes())
    except C.CorruptCheckpoint:
        return True
    return False


def test_kill_9_in_the_middle_of_saves_leaves_a_whole_previous_checkpoint(tmp_path):
    (tmp_path / "kill.py").write_text(KILL_SCRIPT)
    rng = random.Random()
    killed_mid_write = False
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        proc = subprocess.Popen([sys.executable, str(tmp_path / "kill.py"), str(run)], stdout=subprocess.PIPE,
                                text=True, env=_env())
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "1"  # the first save is complete
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        rest = proc.communicate()[0].split()
        done = int(rest[-1]) if rest else 1
        raw = C.load_state(run, "last")  # whole, and one of the saves that completed (or the one after)
        assert raw["w"].shape == (4_000_000,) and float(raw["w"][0]) in (done, done + 1)
        assert float(raw["w"].min()) == float(raw["w"].max())
        assert [p.name for p in (run / "checkpoints").glob("*.ckpt")] == ["last.ckpt"]
        spare = run / "checkpoints" / ".last.ckpt.spare"  # the file the next save is written over in place
        torn_spare = spare.is_file() and _unreadable(spare)
        killed_mid_write = killed_mid_write or torn_spare or bool(list((run / "checkpoints").glob(".*.tmp")))
        again = C.Checkpointer(run, {"keep": "last", "seconds": 0})  # the next trial: its first save writes over what the kill left
        again.on_epoch(1, {}, lambda: {"w": np.zeros(2)})
        again.on_epoch(2, {}, lambda: {"w": np.ones(2)})
        assert float(C.load_state(run, "last")["w"][0]) == 1.0
        again.close()
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]  # tidies what a kill left
    print("a kill landed in the middle of a write:", killed_mid_write)


# --------------------------------------------------------------------------------------------------
# Saving during fit / fit_loop, the record


def test_every_kind_of_model_saves_best_and_last_into_its_run(trained):
    root, runs = trained
    for kind, run in runs.items():
        metrics = json.loads((run / "metrics.json").read_text())
        best = int(np.argmin(metrics["val_loss"])) + 1
        info = C.info(run)
        assert info["best"]["epoch"] == best and info["best"]["metric"] == "val_loss", kind
        assert info["best"]["value"] == pytest.approx(min(metrics["val_loss"]))
        assert info["last"]["epoch"] == 4
        summary = json.loads((run / "summary.json").read_text())
        assert summary["checkpoint_epoch"] == best and summary["checkpoint_last_epoch"] == 4
        assert summary["checkpoint_bytes"] == _disk(run)
    table = gridrun.ls_runs(runs_dir=root / "runs")
    assert {"checkpoint_epoch", "checkpoint_bytes"} <= set(table.columns)
    assert str(table["checkpoint_epoch"].dtype) == "Int64"


def test_checkpoint_none_saves_nothing_and_outside_a_run_nothing_is_written(trained, tmp_path, monkeypatch):
    root, _ = trained
    row = gridrun.training_run(root / "train.py", {"checkpoint": "none", "epochs": 1}, runs_dir=tmp_path / "runs",
                               echo=False)
    run = Path(row["run_dir"].iloc[0])
    assert not (run / "checkpoints").exists() and "checkpoint_epoch" not in row
    with pytest.raises(C.NoCheckpoint) as info:
        gridrun.load_model(run)
    assert str(run) in str(info.value) and "checkpoint='both'" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    gridrun.fit(gridrun.Sequential([gridrun.Dense(2, activation="softmax")]), x, (x[:, 0] > 0).astype(int),
                loss="sparse_categorical_crossentropy", epochs=1)
    assert not list(tmp_path.rglob("*.ckpt"))


# --------------------------------------------------------------------------------------------------
# Loading


def test_a_fresh_process_loads_and_predicts_with_every_kind_of_model(trained):
    _, runs = trained
    proc = subprocess.run([sys.executable, "-c", LOAD, json.dumps({k: str(v) for k, v in runs.items()})],
                          capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for kind in runs:
        assert out[kind] < 1e-6, (kind, out[kind])  # the last checkpoint is the model the script ended with
        assert out[kind + "_epoch"] == 4
    assert 0.0 <= out["seq_eval"]["acc"] <= 1.0 and out["seq_eval"]["loss"] > 0


def test_load_model_by_name_and_row_best_and_last_and_load_state(trained):
    root, runs = trained
    run = runs["seq"]
    table = gridrun.ls_runs(runs_dir=root / "runs")
    row = table[table["run_dir"] == str(run)].iloc[0]  # an ls_runs() row
    best = gridrun.load_model(row)
    by_name = gridrun.load_model(run.name, runs_dir=root / "runs")
    assert best.epoch == by_name.epoch == C.info(run)["best"]["epoch"] and best.which == "best"
    probe = np.load(run / "probe.npy")
    assert np.array_equal(gridrun.predict(best, probe), gridrun.predict(by_name, probe))
    assert len(best.history.history["val_loss"]) == best.epoch  # the run's metrics up to that epoch
    raw = gridrun.load_state(run, "last")
    last = gridrun.load_model(run, "last")
    assert np.array_equal(raw["state"]["params"]["Dense_0"]["kernel"], np.asarray(last.state["params"]["Dense_0"]["kernel"]))
    part = gridrun.load_state(run, "last", target=jax.eval_shape(lambda: {"params": last.state["params"],
                                                                          "extra": last.state["extra"]}))
    assert np.array_equal(np.asarray(part["params"]["Dense_0"]["kernel"]), raw["state"]["params"]["Dense_0"]["kernel"])
    loop = gridrun.load_state(runs["loop"], target=gridrun.load_model(runs["loop"]).state)
    assert isinstance(loop, tuple) and type(loop[1][0]).__name__ == "ScaleByAdamState"


def test_clean_copy_and_purge_carry_checkpoints(trained, tmp_path):
    root, runs = trained
    copied = gridrun.copy_run(runs["seq"].name, tmp_path / "elsewhere", runs_dir=root / "runs", rename="copied")
    assert gridrun.load_model(copied).epoch == C.info(runs["seq"])["best"]["epoch"]
    (archived,) = gridrun.clean_runs(copied, runs_dir=tmp_path / "elsewhere")
    assert (archived / "checkpoints" / "best.ckpt").is_file() and gridrun.load_model(archived).epoch
    gridrun.purge_runs(tmp_path / "elsewhere")
    assert not archived.exists()


def _copy(run: Path, tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(run, dest)
    return dest


def test_bad_checkpoints_each_get_one_clear_line_naming_the_run_and_the_fix(trained, tmp_path):
    _, runs = trained
    cut = _copy(runs["seq"], tmp_path, "cut")
    data = (cut / "checkpoints/best.ckpt").read_bytes()
    (cut / "checkpoints/best.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(C.CorruptCheckpoint, match=rf"best checkpoint of run {cut} is truncated"):
        gridrun.load_model(cut)
    assert gridrun.load_model(cut, "last").epoch == 4  # the other one still loads
    (cut / "checkpoints/last.ckpt").unlink()
    with pytest.raises(C.NoCheckpoint, match=rf"run {cut} has no last checkpoint.*load which='best' instead"):
        gridrun.load_state(cut, "last")
    with pytest.raises(GridrunError, match="which='first': use 'best' or 'last'"):
        gridrun.load_model(cut, "first")

    other = _copy(runs["seq"], tmp_path, "other")  # the flags now build a wider model than the one saved
    flags = json.loads((other / "flags.json").read_text())
    (other / "flags.json").write_text(json.dumps(dict(flags, units=32)))
    with pytest.raises(C.CheckpointMismatch) as info:
        gridrun.load_model(other)
    message = str(info.value)
    assert str(other) in message
    assert re.search(r"is float32\[(8, )?16\] in the checkpoint but float32\[(8, )?32\] in the model", message)
    assert "gridrun.load_state" in message and "\n" not in message


def test_a_model_that_cannot_be_rebuilt_says_why_and_gives_the_fallback(trained, tmp_path):
    root, _ = trained
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=(x[:, 0] > 0).astype(np.int32))
    row = gridrun.training_run(root / "train.py", {"data": str(data), "epochs": 1}, runs_dir=tmp_path / "runs", echo=False)
    run = Path(row["run_dir"].iloc[0])
    data.unlink()  # a deleted data file
    with pytest.raises(C.ModelRebuildError) as info:
        gridrun.load_model(run)
    message = str(info.value)
    assert "FileNotFoundError" in message and "data.npz" in message and "gridrun.load_state(run, target=...)" in message
    assert str(run) in message and "\n" not in message
    assert gridrun.load_state(run)["state"]["params"]["Dense_0"]["kernel"].shape == (8, 16)  # the fallback works

    (run / "source" / "train.py").write_text("import gridrun\nprint('no training here')\n")
    with pytest.raises(C.ModelRebuildError, match="ran to its end without calling gridrun.fit or gridrun.fit_loop"):
        gridrun.load_model(run)
    shutil.rmtree(run / "source")
    with pytest.raises(C.ModelRebuildError, match=r"keeps no copy of its script \(source/train.py\)"):
        gridrun.load_model(run)


# --------------------------------------------------------------------------------------------------
# Remote workers bring checkpoints back, under the artifact limit


def test_a_remote_trial_brings_its_checkpoints_back_or_names_the_limit(trained, tmp_path):
    from gridrun.sweep.trial import TrialTask, run_trial, unpack

    root, _ = trained
    results = {}
    for limit in (50_000_000, 1_000):  # 1 kB: less than the recorded files alone
        task = TrialTask(script=str(root / "train.py"), flags={"epochs": 2}, sweep="s", trial=0, context="dask",
                         max_bytes=limit)
        result = run_trial(task)
        assert result.properties["status"] == "completed", result.properties.get("error_message")
        client = tmp_path / f"client{limit}"
        client.mkdir()
        results[limit] = (unpack(result, client, str(root / "train.py"), limit), client)
    props, client = results[50_000_000]
    assert C.info(client)["last"]["epoch"] == 2 and "checkpoints_dropped" not in props
    assert gridrun.load_model(client, "last").epoch == 2
    props, client = results[1_000]
    assert not (client / "checkpoints").exists()
    assert "max_artifact_bytes" in props["checkpoints_dropped"] and "checkpoints/best.ckpt" in props["checkpoints_dropped"]
    with pytest.raises(C.NoCheckpoint, match="max_artifact_bytes"):
        gridrun.load_model(client)


def test_checkpoint_module_imports_no_jax():
    code = "import sys, gridrun.checkpoint, gridrun.record; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    assert out.stdout.strip() == "False"


def test_docs_name_the_files_and_the_api():
    run_dir = (ROOT / "docs" / "run-dir.md").read_text()
    guide = (ROOT / "docs" / "user-guide.md").read_text()
    assert "checkpoints/best.ckpt" in run_dir and "checkpoints/last.ckpt" in run_dir
    assert "gridrun.load_model(best)" in guide and "load_state" in guide


def test_gridrun_view_shows_what_the_checkpoints_hold(trained, tmp_path):
    root, runs = trained
    run = runs["seq"]
    info = C.info(run)
    page = Path(gridrun.view_run(run.name, runs_dir=root / "runs", output=tmp_path / "r.html", open_browser=False))
    text = page.read_text()
    size = _disk(run) / 1e6
    assert f"best: epoch {info['best']['epoch']} (val_loss), last: epoch 4; {size:.3g} MB" in text


def test_in_a_sweep_the_best_epoch_is_ranked_by_the_sweeps_metric(trained, tmp_path):
    from gridrun.runner import execute

    root, _ = trained
    run = tmp_path / "trial"
    run.mkdir()
    props = execute(root / "train.py", run, {"epochs": 5}, sweep="s", trial=0, metric="val_acc")
    assert props["status"] == "completed" and props["checkpoint_metric"] == "val_acc"
    accs = json.loads((run / "metrics.json").read_text())["val_acc"]
    assert C.info(run)["best"]["epoch"] == int(np.argmax(accs)) + 1  # the first of the highest


def test_restoring_never_copies_the_target_state_to_the_host():
    """restore_into takes only the target's shapes and dtypes: materializing a live state's arrays (as
    np.asarray of each did) cost a continued sequential-PBT segment 44 ms."""
    class Leaf:  # a device array that must not be read: shape and dtype only
        def __init__(self, shape, dtype):
            self.shape, self.dtype = shape, np.dtype(dtype)

        def __array__(self, *a, **k):
            raise AssertionError("the target's values were read")

    saved = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.int32(4)}
    header, raw = C.decode(C.encode(saved, {"epoch": 1}))
    out = C.restore_into({"w": Leaf((2, 3), np.float32), "step": Leaf((), np.int32)}, raw, header, "the test's")
    assert np.array_equal(np.asarray(out["w"]), saved["w"]) and int(out["step"]) == 4


def test_a_background_save_waits_for_the_next_epochs_dispatch(monkeypatch):
    """A save queued at an epoch's end starts once the training loop has dispatched its next epoch
    (`release_held`), so its serializing does not hold the GIL against that dispatch; a next save, the
    end of training, or HOLD_SECONDS without a word release it too."""
    import threading

    monkeypatch.setattr(C, "HOLD_SECONDS", 30.0)
    writer = C._Writer()
    ran: list[int] = []
    started = threading.Event()

    def job(k):
        def run():
            ran.append(k)
            started.set()
        return run

    writer.put(job(1))
    time.sleep(0.2)
    assert ran == []  # held: the loop has not dispatched its next epoch yet
    C.release_held()
    assert started.wait(5) and ran == [1]
    started.clear()
    writer.put(job(2))  # never released by a dispatch: the next save lets it go first
    writer.put(job(3))
    assert ran[:2] == [1, 2]
    writer.wait()  # the end of training writes what is held at once
    assert ran == [1, 2, 3]
    monkeypatch.setattr(C, "HOLD_SECONDS", 0.05)
    writer.put(job(4))  # nobody says a word: it starts after HOLD_SECONDS
    t0 = time.perf_counter()
    while ran[-1] != 4 and time.perf_counter() - t0 < 5:
        time.sleep(0.01)
    assert ran[-1] == 4
    writer.wait()
