"""gridrun.fit_loop: your own init/step functions trained as fit trains (scan epochs, traced hyperparameters,
per-trial callbacks), in sequential and population mode; the population notice, per-trial logging
capture and sharding of a population over several devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _util import LINEN_MLP

import gridrun
from gridrun._io import read_json
from gridrun.errors import GridrunError
from gridrun.train import loop as L

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A flax.linen user: the model, loss and step are theirs; the optimizer is built from hp inside init and
# the step, so the learning rate is traced (one program for every rate) and ReduceLROnPlateau can scale it.
LINEN_SCRIPT = '''
import jax, jax.numpy as jnp, numpy as np, optax
import flax.linen as nn
import gridrun

FLAGS = gridrun.flags(
    gridrun.flag_numeric("lr", 0.01, "learning rate"),
    gridrun.flag_integer("seed", 0, "seed"),
    gridrun.flag_integer("epochs", 6, "epochs"),
    gridrun.flag_numeric("stop_at", -1, "a scripted stopper (a pruner's decision): stop after this epoch"),
)
''' + LINEN_MLP + '''

def eval_step(state, batch, hp):
    logits = model.apply({"params": state[0]}, batch[0])
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(),
            "acc": (logits.argmax(-1) == batch[1]).mean()}


stopper = gridrun.Stopper(lambda epoch, logs: epoch + 1 == FLAGS.stop_at)
history = gridrun.fit_loop(init, train_step, (x[:240], y[:240]), hparams={"learning_rate": FLAGS.lr},
                           eval_step=eval_step, validation_data=(x[240:], y[240:]), epochs=FLAGS.epochs,
                           batch_size=32, seed=FLAGS.seed, eval_batch_size=25,
                           callbacks=[gridrun.EarlyStopping(patience=1, min_delta=0.05), stopper])
print("final val_acc", history.history["val_acc"][-1])
'''


def _blobs(n=300, d=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, (k, d))
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(0, 1.0, (n, d))).astype(np.float32), y.astype(np.int32)


def _linen_functions(lr_const=None):
    """A fresh set of functions, as a re-run script defines them (optionally baking in a constant rate)."""
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))

    model = MLP()

    def rate(hp):
        return hp["learning_rate"] if lr_const is None else lr_const

    def init(key, hp):
        params = model.init(key, jnp.zeros((1, 8)))["params"]
        return params, optax.adam(rate(hp)).init(params)

    def train_step(state, batch, hp, key):
        params, opt_state = state

        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, batch[0]), batch[1]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optax.adam(rate(hp)).update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), {"loss": loss}

    def eval_step(state, batch, hp):
        logits = model.apply({"params": state[0]}, batch[0])
        return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(),
                "acc": (logits.argmax(-1) == batch[1]).mean()}

    return init, train_step, eval_step


def _nnx_functions():
    """An NNX user: model and nnx.Optimizer built in init (the rate traced via inject_hyperparams), an
    nnx.jit-style step that updates them in place and returns them."""
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(8, 16, rngs=rngs)
            self.bn = nnx.BatchNorm(16, rngs=rngs)
            self.drop = nnx.Dropout(0.1, rngs=rngs)
            self.l2 = nnx.Linear(16, 3, rngs=rngs)

        def __call__(self, x):
            return self.l2(self.drop(self.bn(nnx.relu(self.l1(x)))))

    def init(key, hp):
        model = MLP(nnx.Rngs(key))
        tx = optax.inject_hyperparams(optax.adam)(learning_rate=hp["learning_rate"])
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    def loss_fn(model, batch):
        logits = model(batch[0])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(), logits

    def train_step(state, batch, hp, key):
        model, optimizer = state
        model.train()
        (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
        optimizer.update(model, grads)
        return (model, optimizer), {"loss": loss, "acc": (logits.argmax(-1) == batch[1]).mean()}

    def eval_step(state, batch, hp):
        model, _ = state
        model.eval()
        loss, logits = loss_fn(model, batch)
        return {"loss": loss, "acc": (logits.argmax(-1) == batch[1]).mean()}

    return init, train_step, eval_step


def test_fit_loop_trains_a_linen_and_an_nnx_model_to_a_low_loss():
    x, y = _blobs()
    for make in (_linen_functions, _nnx_functions):
        init, step, ev = make()
        h = gridrun.fit_loop(init, step, (x[:240], y[:240]), hparams={"learning_rate": 0.01}, eval_step=ev,
                             validation_data=(x[240:], y[240:]), epochs=8, batch_size=32, seed=1)
        loss, val = h.history["loss"], h.history["val_loss"]
        assert len(loss) == 8 and h.history["lr"] == [pytest.approx(0.01)] * 8, make.__name__
        assert loss[0] > 3 * loss[-1] and val[-1] < 0.15, (make.__name__, loss, val)
        assert h.history["val_acc"][-1] >= 0.95
        assert h.params["samples"] == 240 and h.params["validation_samples"] == 60
    model, optimizer = h.state  # NNX: the trained objects come back merged
    model.eval()
    acc = float((model(x[240:]).argmax(-1) == y[240:]).mean())
    assert acc == pytest.approx(h.history["val_acc"][-1], abs=1e-6)
    assert int(optimizer.step[...]) == 8 * (240 // 32)


def test_validation_metrics_are_exact_means_over_uneven_chunks():
    x, y = _blobs()
    init, step, ev = _linen_functions()
    h = gridrun.fit_loop(init, step, (x[:240], y[:240]), hparams={"learning_rate": 0.01}, eval_step=ev,
                         validation_data=(x[240:], y[240:]), epochs=1, batch_size=32, eval_batch_size=25)
    whole = {k: float(v) for k, v in ev(h.state, (jnp.asarray(x[240:]), jnp.asarray(y[240:])), {}).items()}
    assert h.history["val_loss"][0] == pytest.approx(whole["loss"], rel=1e-5)  # 60 rows: 25 + 25 + 10
    assert h.history["val_acc"][0] == pytest.approx(whole["acc"], abs=1e-6)


def test_a_float_sweep_compiles_once_and_a_baked_in_constant_is_a_new_program():
    x, y = _blobs()
    kw = dict(epochs=2, batch_size=32, validation_data=(x[240:], y[240:]),
              callbacks=[gridrun.ReduceLROnPlateau(factor=0.5, patience=0)])
    histories = []
    for lr in (0.003, 0.01, 0.03):  # three trials; each "script run" defines fresh functions and classes
        if lr == 0.01:
            before = L.TRACE_COUNTS["epoch"]
        init, step, ev = _linen_functions()
        histories.append(gridrun.fit_loop(init, step, (x[:240], y[:240]), hparams={"learning_rate": lr},
                                          eval_step=ev, **kw))
    assert L.TRACE_COUNTS["epoch"] == before  # trials 2 and 3 reused trial 1's compiled epoch
    assert len({h.history["loss"][-1] for h in histories}) == 3
    assert [h.history["lr"][0] for h in histories] == pytest.approx([0.003, 0.01, 0.03])
    # a rate captured as a Python constant is part of the program: another value is another program
    for lr in (0.02, 0.04):
        init, step, ev = _linen_functions(lr_const=lr)
        gridrun.fit_loop(init, step, (x[:240], y[:240]), hparams={"learning_rate": 0.0}, eval_step=ev, **kw)
    assert L.TRACE_COUNTS["epoch"] == before + 2


def _bad(fn_init=None, fn_step=None, fn_eval=None, data=None, **kw):
    x, y = _blobs(n=64)
    init, step, ev = _linen_functions()
    kw.setdefault("hparams", {"learning_rate": 0.01})
    return gridrun.fit_loop(fn_init or init, fn_step or step, data if data is not None else (x, y),
                            eval_step=fn_eval, epochs=1, batch_size=16, **kw)


def test_clear_errors_before_the_first_epoch():
    init, step, ev = _linen_functions()
    x, y = _blobs(n=64)
    with pytest.raises(GridrunError, match=r"train_step returned .* expects \(state, metrics\)"):
        _bad(fn_step=lambda s, b, hp, k: step(s, b, hp, k)[0])
    with pytest.raises(GridrunError, match=r"train_step returned .* expects \(state, metrics\) with metrics a dict"):
        _bad(fn_step=lambda s, b, hp, k: (step(s, b, hp, k)[0], step(s, b, hp, k)[1]["loss"]))
    with pytest.raises(GridrunError, match="not scalars"):
        _bad(fn_step=lambda s, b, hp, k: (step(s, b, hp, k)[0], {"loss": jnp.zeros(3)}))
    with pytest.raises(GridrunError, match="train_step returned a state whose tree differs"):
        _bad(fn_step=lambda s, b, hp, k: (step(s, b, hp, k)[0][0], step(s, b, hp, k)[1]))
    with pytest.raises(GridrunError, match=r"train_step changes the state leaf state\[0\]\[.Dense_1.\]\[.bias.\] from float32\[16\] to float32\[17\]"):
        def growing(s, b, hp, k):
            (params, opt), m = step(s, b, hp, k)
            params = dict(params, Dense_1=dict(params["Dense_1"], bias=jnp.zeros(17)))
            return (params, opt), m
        _bad(fn_step=growing)
    with pytest.raises(GridrunError, match=r"hyperparameter 'units' decides a shape"):
        _bad(fn_init=lambda key, hp: (jnp.zeros((hp["units"], 3)),),
             fn_step=lambda s, b, hp, k: (s, {"loss": jnp.sum(s[0])}), hparams={"units": 4})
    with pytest.raises(GridrunError, match=r"train_step\(state, batch, hp, key\) turns a traced value into a Python value"):
        def printing(s, b, hp, k):
            new, m = step(s, b, hp, k)
            print("loss", float(m["loss"]))
            return new, m
        _bad(fn_step=printing)
    with pytest.raises(GridrunError, match="different numbers of rows"):
        _bad(data=(x, y[:50]))
    with pytest.raises(GridrunError, match="validation_data entry 0 is int32"):
        _bad(validation_data=(x.astype(np.int32), y), fn_eval=ev)
    with pytest.raises(GridrunError, match="needs an eval_step"):
        _bad(validation_data=(x, y))
    with pytest.raises(GridrunError, match=r"EarlyStopping\(monitor='val_loss'\): no such metric"):
        _bad(callbacks=[gridrun.EarlyStopping()])
    with pytest.raises(GridrunError, match="eval_step returned"):
        _bad(validation_data=(x, y), fn_eval=lambda s, b, hp: 1.0)
    with pytest.raises(GridrunError, match="hparams\\['opt'\\] = 'adam' is not a number"):
        _bad(hparams={"learning_rate": 0.01, "opt": "adam"})


# --------------------------------------------------------------------------------------------------
# Sweeps


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_loop")
    (root / "train.py").write_text(LINEN_SCRIPT)
    return root


GRID = {"lr": [0.001, 0.003, 0.01, 0.03], "stop_at": [-1, 2]}


@pytest.fixture(scope="module")
def runs(project):
    return {mode: gridrun.tuning_run(project / "train.py", flags=GRID, runs_dir=project / mode, quiet=True,
                                     seed=1, population=(mode == "pop")) for mode in ("seq", "pop")}


def _by_flags(df):
    return {(r.flag_lr, r.flag_stop_at): r for r in df.itertuples()}


def test_population_of_fit_loop_trials_matches_sequential_per_epoch(runs):
    seq, pop = _by_flags(runs["seq"]), _by_flags(runs["pop"])
    assert set(seq) == set(pop) and len(pop) == 8
    for key, s in seq.items():
        p = pop[key]
        assert s.status == p.status == "completed"
        ms, mp = read_json(f"{s.run_dir}/metrics.json"), read_json(f"{p.run_dir}/metrics.json")
        assert set(ms) == set(mp) == {"loss", "val_loss", "val_acc", "lr"}
        for name in ms:
            np.testing.assert_allclose(mp[name], ms[name], rtol=1e-4, atol=1e-6, err_msg=f"{key} {name}")
        props = read_json(f"{p.run_dir}/properties.json")
        assert props["population"]["size"] == 8 and "population_notice" not in props


def test_stopper_and_early_stopping_stop_the_right_trial_at_the_right_epoch_in_a_population(runs):
    pop = _by_flags(runs["pop"])
    for (lr, stop_at), row in pop.items():
        vl = read_json(f"{row.run_dir}/metrics.json")["val_loss"]
        if stop_at == 2:
            assert row.epochs_completed == 2, (lr, vl)  # the scripted stopper (a pruner's decision)
        # EarlyStopping(patience=1, min_delta=0.05): the first epoch improving by < 0.05 ends the trial
        gains = [a - b for a, b in zip(vl, vl[1:])]
        first_flat = next((i + 2 for i, g in enumerate(gains) if g < 0.05), None)
        want = min(x for x in (first_flat, 6, 2 if stop_at == 2 else None) if x is not None)
        assert row.epochs_completed == want, (lr, stop_at, vl)
    assert len({r.epochs_completed for r in pop.values()}) >= 3  # stopped at different epochs, one program


NO_FIT_SCRIPT = '''
import gridrun
FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.1, "learning rate"))
print("training by hand with lr", FLAGS.lr)
gridrun.log_metrics(epoch=1, loss=1.0 / (1.0 + FLAGS.lr))
'''


def test_population_says_when_a_trial_never_reaches_a_vectorizable_call(tmp_path):
    script = tmp_path / "by_hand.py"
    script.write_text(NO_FIT_SCRIPT)
    df = gridrun.tuning_run(script, flags={"lr": [0.1, 0.2]}, runs_dir=tmp_path / "runs", quiet=True, population=True)
    for row in df.itertuples():
        assert row.status == "completed"
        log = open(f"{row.run_dir}/output.log").read()
        assert "training by hand" in log
        assert log.count("finished without calling gridrun.fit or gridrun.fit_loop") == 1
        assert "gridrun.fit_loop(" in log  # the fix
        props = read_json(f"{row.run_dir}/properties.json")
        assert "finished without calling gridrun.fit" in props["population_notice"]


def test_population_notices_are_exposed_by_the_coordinator(tmp_path):
    from gridrun.runner import execute
    from gridrun.train.population import NOTICE, Population, trial_ending

    script = tmp_path / "by_hand.py"
    script.write_text(NO_FIT_SCRIPT)
    runs = [tmp_path / f"r{i}" for i in range(2)]
    for r in [*runs, tmp_path / "alone"]:
        r.mkdir()
    pop = Population()
    results = pop.run([lambda r=r: execute(script, r, {"lr": 0.3}, capture_output=True, on_exit=trial_ending)
                       for r in runs])
    assert [p["status"] for p in results] == ["completed", "completed"]
    assert sorted(folder for folder, _ in pop.notices) == sorted(str(r) for r in runs)
    assert all(text == NOTICE for _, text in pop.notices)
    # outside a population nothing is said
    execute(script, tmp_path / "alone", {"lr": 0.3}, capture_output=True, on_exit=trial_ending)
    assert "population_notice" not in read_json(tmp_path / "alone" / "properties.json")


LOGGING_SCRIPT = '''
import logging
from absl import logging as absl_logging
import gridrun
FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.1, "learning rate"))
absl_logging.warning("absl line of trial %s", FLAGS.lr)
logging.getLogger("train").warning("logging line of trial %s", FLAGS.lr)
'''

LOGGING_DRIVER = '''
import sys
from absl import flags as absl_flags, logging as absl_logging  # as a JAX/Flax program: absl first
absl_flags.FLAGS.mark_as_parsed()  # as after app.run: absl writes to the stream it bound at import
import gridrun
df = gridrun.tuning_run(sys.argv[1], flags={"lr": [0.1, 0.2, 0.3]}, runs_dir=sys.argv[2], quiet=True,
                        population=True)
print("RUNDIRS", *[f"{r.flag_lr}={r.run_dir}" for r in df.itertuples()])
'''


def test_absl_and_logging_lines_of_population_trials_land_in_their_own_output_log(tmp_path):
    script = tmp_path / "logs.py"
    script.write_text(LOGGING_SCRIPT)
    driver = tmp_path / "driver.py"
    driver.write_text(LOGGING_DRIVER)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, str(driver), str(script), str(tmp_path / "runs")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "line of trial" not in proc.stderr + proc.stdout.split("RUNDIRS")[0]  # nothing on the console
    dirs = dict(item.split("=", 1) for item in proc.stdout.split("RUNDIRS")[1].split())
    assert len(dirs) == 3
    for lr, folder in dirs.items():
        log = open(f"{folder}/output.log").read()
        assert f"absl line of trial {lr}" in log and f"logging line of trial {lr}" in log, log
        others = [v for v in dirs if v != lr]
        assert not any(f"trial {v}" in log for v in others), log


SHARD_DRIVER = '''
import json, sys
import jax
import gridrun
from gridrun._io import read_json
df = gridrun.tuning_run(sys.argv[1], flags={"lr": [0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05],
                        "stop_at": [-1]}, runs_dir=sys.argv[2], quiet=True, seed=1, population=True)
out = {"devices": len(jax.devices()), "runs": {}}
for r in df.itertuples():
    out["runs"][str(r.flag_lr)] = {"metrics": read_json(f"{r.run_dir}/metrics.json"), "status": r.status,
                                   "population": read_json(f"{r.run_dir}/properties.json")["population"]}
print("RESULT", json.dumps(out))
'''


def test_a_population_of_8_sharded_over_4_host_devices_matches_one_device(project, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(SHARD_DRIVER)
    results = {}
    for label, extra in (("sharded", {}), ("one", {"GRIDRUN_POPULATION_DEVICES": "1"})):
        env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=4",
                   JAX_PLATFORMS="cpu", **extra)
        proc = subprocess.run([sys.executable, str(driver), str(project / "train.py"), str(tmp_path / label)],
                              env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[label] = json.loads(proc.stdout.split("RESULT", 1)[1])
    sharded, one = results["sharded"], results["one"]
    assert sharded["devices"] == one["devices"] == 4
    for lr, run in sharded["runs"].items():
        assert run["status"] == "completed"
        assert run["population"] == {"size": 8, "devices": 4}  # measured from the trained arrays' sharding
        assert one["runs"][lr]["population"] == {"size": 8}
        for name, values in run["metrics"].items():
            np.testing.assert_allclose(values, one["runs"][lr]["metrics"][name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"lr={lr} {name}")
