"""gridrun.fit with flax.nnx modules: sequential and population mode give the same per-epoch metrics,
the user's module ends up trained, evaluate/predict and recording work as for Sequential models."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gridrun
from gridrun import rundir
from gridrun._io import read_json
from gridrun.train import engine as E

SCRIPT = '''
import numpy as np
from flax import nnx
import gridrun

FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.01, "learning rate"), gridrun.flag_numeric("drop", 0.2, "dropout"))
rng = np.random.default_rng(0)
centers = rng.normal(0, 2.0, (3, 8))
y = rng.integers(0, 3, 300)
x = (centers[y] + rng.normal(0, 1.0, (300, 8))).astype(np.float32)


class MLP(nnx.Module):  # defined anew by every trial: still one program for the sweep
    def __init__(self, rngs):
        self.l1 = nnx.Linear(8, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.l2 = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return nnx.softmax(self.l2(self.drop(self.bn(nnx.relu(self.l1(x))))))


model = MLP(nnx.Rngs(0))
history = gridrun.fit(model, x, y, loss="sparse_categorical_crossentropy", metrics=["accuracy"], epochs=5,
                      batch_size=32, optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr),
                      validation_split=0.2,
                      callbacks=[gridrun.EarlyStopping(patience=1, min_delta=0.02, restore_best_weights=True)])
scores = gridrun.evaluate(history, x[240:], y[240:])
model.eval()
print("module accuracy", float((model(x[240:]).argmax(-1) == y[240:]).mean()), "evaluate", scores["acc"])
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnx_fit")
    (root / "train.py").write_text(SCRIPT)
    grid = {"lr": [0.001, 0.003, 0.01, 0.03]}
    return {mode: gridrun.tuning_run(root / "train.py", flags=grid, runs_dir=root / mode, quiet=True, seed=1,
                                     population=(mode == "pop")) for mode in ("seq", "pop")}


def test_nnx_module_in_fit_sequential_equals_population_of_4(runs):
    seq = {r.flag_lr: r for r in runs["seq"].itertuples()}
    pop = {r.flag_lr: r for r in runs["pop"].itertuples()}
    assert set(seq) == set(pop) and len(pop) == 4
    for lr, s in seq.items():
        p = pop[lr]
        assert s.status == p.status == "completed", (s.error_message, p.error_message)
        ms, mp = read_json(f"{s.run_dir}/metrics.json"), read_json(f"{p.run_dir}/metrics.json")
        assert set(ms) == set(mp) == {"loss", "acc", "val_loss", "val_acc", "lr", "n_params"}  # n_params: issue 21
        for name in ms:
            tol = {"rtol": 1e-4, "atol": 1e-6} if "acc" not in name else {"rtol": 0, "atol": 1.01 / 60}
            np.testing.assert_allclose(mp[name], ms[name], err_msg=f"{lr} {name}", **tol)
        assert read_json(f"{p.run_dir}/properties.json")["population"]["size"] == 4
        assert p.eval_acc == pytest.approx(s.eval_acc, abs=1.01 / 60)
        for row in (s, p):  # the script's own module holds the trained (restored) weights
            line = next(li for li in open(f"{row.run_dir}/output.log") if li.startswith("module accuracy"))
            _, _, module_acc, _, evaluated = line.split()
            assert float(module_acc) == pytest.approx(float(evaluated), abs=1e-6)
    assert len({r.epochs_completed for r in pop.values()}) > 1  # EarlyStopping per trial


def _blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, (3, 8))
    y = rng.integers(0, 3, n)
    return (centers[y] + rng.normal(0, 1.0, (n, 8))).astype(np.float32), y


def _module(seed):
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(8, 16, rngs=rngs)
            self.l2 = nnx.Linear(16, 3, rngs=rngs)

        def __call__(self, x):
            return nnx.softmax(self.l2(nnx.relu(self.l1(x))))

    return Net(nnx.Rngs(seed))


def test_nnx_fit_records_compiles_once_and_learns(tmp_path):
    x, y = _blobs()
    kw = dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"], epochs=4, batch_size=32,
              validation_split=0.2)
    with rundir.activate(rundir.RunContext(run_dir=tmp_path)):
        h = gridrun.fit(_module(0), x, y, optimizer=gridrun.optimizer("adam", learning_rate=0.01), **kw)
    assert h.history["val_acc"][-1] > 0.9 and h.history["loss"][-1] < h.history["loss"][0]
    props = json.loads((tmp_path / "properties.json").read_text())
    assert 'Model: "Net"' in props["model"] and "Total params: 195" in props["model"]  # 8*16+16 + 16*3+3
    assert json.loads((tmp_path / "metrics.json").read_text())["val_loss"] == pytest.approx(h.history["val_loss"])
    before = E.TRACE_COUNTS["epoch"]
    h2 = gridrun.fit(_module(1), x, y, optimizer=gridrun.optimizer("adam", learning_rate=0.003), **kw)
    assert E.TRACE_COUNTS["epoch"] == before  # another class object, seed and rate: the same program
    assert h2.history["loss"] != h.history["loss"]
    np.testing.assert_allclose(gridrun.predict(h2, x[:3]).sum(1), 1.0, rtol=1e-5)
