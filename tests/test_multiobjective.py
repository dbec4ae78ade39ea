"""Sweeps with more than one objective (issue 21): metric lists in the manifest, the Pareto front in the
summary and `ls --pareto`, nsga2 and multi-objective TPE, pruning by one named metric, and the
parameter count that gridrun.fit and fit_loop record as the metric `n_params`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _util import manifest, run_cli

import gridrun
from gridrun.errors import GridrunError
from gridrun.grid import build_grid
from gridrun.record import Status
from gridrun.sweep.samplers import REGISTRY, make_sampler
from gridrun.sweep.state import Trial

pytest.importorskip("optuna")

# a trade-off without JAX: a larger model (size) reaches a lower loss; `noise` makes some trials worse on
# both metrics, so they are dominated. val_loss at epoch e is (1 / size + noise) * (1 + 1/e).
TRADE = textwrap.dedent("""
    import gridrun
    FLAGS = gridrun.flags(
        gridrun.flag_integer("size", 4, "model size", values=[1, 2, 4, 8]),
        gridrun.flag_numeric("noise", 0.0, "extra loss", values=[0.0, 0.5]),
        gridrun.flag_integer("epochs", 3, "epochs"),
        gridrun.flag_boolean("log_size", True, "log n_params"),
    )
    for e in range(1, FLAGS.epochs + 1):
        logs = {"loss": (1 / FLAGS.size + FLAGS.noise) * (1 + 1 / e)}
        logs["val_loss"] = logs["loss"]
        if FLAGS.log_size:
            logs["n_params"] = 100 * FLAGS.size
        gridrun.log_metrics(epoch=e, **logs)
""")

# gridrun.fit on scikit-learn's digits (64 features, 10 classes): a Dense(units) hidden layer
DIGITS = textwrap.dedent("""
    import gridrun
    from gridrun.datasets import load_prepared
    FLAGS = gridrun.flags(
        gridrun.flag_integer("units", 16, "hidden units", values=[8, 32]),
        gridrun.flag_numeric("lr", 0.01, "learning rate", values=gridrun.loguniform(1e-3, 3e-2)),
        gridrun.flag_integer("epochs", 1, "epochs"),
    )
    (x, y), _ = load_prepared("digits")
    model = gridrun.Sequential([gridrun.Dense(FLAGS.units, activation="relu"),
                                gridrun.Dense(10, activation="softmax")])
    gridrun.fit(model, x[:400], y[:400], loss="categorical_crossentropy",
                optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), epochs=FLAGS.epochs,
                batch_size=64, validation_split=0.25, verbose=0)
""")


def n_params_by_hand(units: int, features: int = 64, classes: int = 10) -> int:
    """Dense(units) on `features` inputs, then Dense(classes): weights and biases of both layers."""
    return features * units + units + units * classes + classes


@pytest.fixture
def trade_script(tmp_path):
    path = tmp_path / "trade.py"
    path.write_text(TRADE)
    return path


def brute_front(points):
    """Indices of the points (every coordinate minimized) that no other point dominates."""
    out = set()
    for i, p in enumerate(points):
        if not any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
                   for j, q in enumerate(points) if j != i):
            out.add(i)
    return out


# --------------------------------------------------------------------------------------------------
# A two-metric sweep: the manifest, the summary, ls --pareto, gridrun.pareto


def test_a_two_metric_sweep_records_lists_shows_the_front_and_ls_pareto_uses_it(trade_script, tmp_path, capsys):
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(trade_script, sampler="random", metric=["val_loss", "n_params"], mode="min,min",
                            seed=3, runs_dir=runs)
    m = manifest(runs)
    assert m["metric"] == ["val_loss", "n_params"] and m["mode"] == ["min", "min"]
    assert len(df) == 8 and m["counts"]["completed"] == 8
    trials = [t for t in m["trials"] if t["status"] == "completed"]
    points = [(t["metrics"]["val_loss"], t["metrics"]["n_params"]) for t in trials]
    expected = {trials[i]["run_dir"] for i in brute_front(points)}
    assert {t["run_dir"] for t in trials if t["flags"]["noise"] == 0.0} == expected  # the noise-free ones

    out = capsys.readouterr().out
    assert "Pareto front of val_loss (min) and n_params (min): 4 of 8 completed trials" in out
    assert "Best trials by" not in out
    front_lines = [line for line in out.splitlines() if line.startswith("  ") and "size=" in line]
    assert {next(w for w in line.split() if w.endswith("Z")) for line in front_lines} == expected
    first = front_lines[0].split()
    assert first[0] == f"{min(v for v, _ in points):.4g}"  # sorted by the first metric, best first
    assert f"gridrun ls --sweep {m['id']} --pareto" in out

    front = gridrun.pareto(m["id"], runs_dir=runs)  # the sweep's metrics are the default
    assert front.attrs["metrics"] == ["val_loss", "n_params"] and front.attrs["modes"] == ["min", "min"]
    assert {p.rsplit("/", 1)[-1] for p in front["run_dir"]} == expected

    proc = run_cli("ls", "--sweep", m["id"], "--pareto", "--format", "csv", "--runs-dir", runs, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("run_dir,status,metric_val_loss,metric_n_params")
    assert {line.split(",")[0].rsplit("/", 1)[-1] for line in lines[1:]} == expected

    # the sweep report draws the front (checked in headless Chromium by hand: docs/analysis.md) and
    # ranks the trials by the first metric
    page = Path(gridrun.sweep_report(m["id"], runs_dir=runs, open_browser=False)).read_text()
    assert 'id="analysis-pareto"' in page and "Pareto front of val_loss and n_params" in page


def test_a_one_metric_sweep_still_records_strings(trade_script, tmp_path):
    runs = tmp_path / "runs"
    gridrun.tuning_run(trade_script, {"size": [1, 2]}, metric=["val_loss"], mode=["min"], runs_dir=runs, quiet=True)
    m = manifest(runs)
    assert m["metric"] == "val_loss" and m["mode"] == "min"


def test_maximized_and_minimized_metrics_together(trade_script, tmp_path, capsys):
    """mode per metric: minimizing val_loss and maximizing n_params puts only the largest model on the
    front (it is the best on both)."""
    runs = tmp_path / "runs"
    gridrun.tuning_run(trade_script, {"noise": [0.0]}, metric=["val_loss", "n_params"], mode=["min", "max"],
                       runs_dir=runs)
    out = capsys.readouterr().out
    assert "Pareto front of val_loss (min) and n_params (max): 1 of 4 completed trials" in out
    front = gridrun.pareto(manifest(runs)["id"], runs_dir=runs)
    assert list(front["flag_size"]) == [8]


@pytest.mark.parametrize("kw, message", [
    ({"metric": ["val_loss", "n_params"], "mode": ["min"]}, "2 metric(s) and 1 modes"),
    ({"metric": ["val_loss", "val_loss"]}, "--metric val_loss is given twice"),
    ({"metric": ["val_loss", "n_params"], "mode": "min,sideways"}, "--mode 'sideways'"),
    ({"metric": ["val_loss", "n_params"], "sampler": "cmaes"}, "--sampler cmaes optimizes one metric"),
    ({"metric": ["val_loss", "n_params"], "prune": "asha"}, "--prune needs one metric"),
    ({"metric": ["val_loss", "n_params"], "prune": "asha", "prune_metric": "val_acc"}, "is not one of the sweep's"),
    ({"metric": ["val_loss", "n_params"], "prune_metric": "val_loss"}, "goes with --prune"),
    ({"metric": "val_loss", "prune": "asha", "prune_metric": "loss"}, "give --metric loss"),
])
def test_bad_objectives_are_one_line_errors_before_anything_runs(trade_script, tmp_path, kw, message):
    runs = tmp_path / "runs"
    with pytest.raises(GridrunError) as err:
        gridrun.tuning_run(trade_script, runs_dir=runs, quiet=True, **kw)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not runs.exists()


def test_a_metric_the_first_trial_did_not_log_stops_the_sweep(trade_script, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(GridrunError, match=r"did not log 'n_params' \(it logged: loss, val_loss\)"):
        gridrun.tuning_run(trade_script, {"log_size": [False]}, metric=["val_loss", "n_params"], runs_dir=runs,
                           quiet=True)
    assert sum(t["status"] == "completed" for t in manifest(runs)["trials"]) == 1  # stopped after the first


# --------------------------------------------------------------------------------------------------
# Pruning needs one metric


def test_prune_with_two_metrics_is_an_error_on_the_command_line(trade_script, tmp_path):
    proc = run_cli("tuning-run", trade_script, "--metric", "val_loss", "--metric", "n_params", "--prune", "asha",
                   "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "--prune needs one metric" in err[0] and "--prune-metric" in err[0]


def test_prune_metric_names_the_metric_the_pruner_judges(trade_script, tmp_path, capsys):
    """ASHA judges by --prune-metric (val_loss, min): at the first rung (grace 1, reduction 2, trials in
    grid order) a trial worse than the median of those before it stops; the front is of completed trials."""
    runs = tmp_path / "runs"
    gridrun.tuning_run(trade_script, {"size": [8, 4, 2, 1], "noise": [0.0], "epochs": [4]}, ordered=True,
                       metric=["n_params", "val_loss"], prune="asha", prune_metric="val_loss",
                       prune_options={"grace": 1, "reduction": 2}, runs_dir=runs)
    m = manifest(runs)
    assert m["pruner"]["metric"] == "val_loss" and m["metric"] == ["n_params", "val_loss"]
    status = {t["flags"]["size"]: t["status"] for t in m["trials"]}
    # judged by val_loss: size 8 (the best loss) goes on; the smaller models, worse on val_loss, stop.
    # Judged by n_params (the first metric) it would be the other way round.
    assert status[8] == "completed" and status[4] == "pruned" and status[1] == "pruned"
    out = capsys.readouterr().out
    assert "Pareto front of n_params (min) and val_loss (min)" in out
    assert "pruned trials stopped early and are not on it" in out
    # a resume builds the pruner again with its metric
    gridrun.tuning_run(resume=m["id"], runs_dir=runs, quiet=True)
    assert manifest(runs)["pruner"]["metric"] == "val_loss"


# --------------------------------------------------------------------------------------------------
# nsga2 and multi-objective TPE


def test_nsga2_is_registered_with_its_options():
    assert "nsga2" in REGISTRY.names()
    assert set(REGISTRY.parameters("nsga2")) == {"population_size", "mutation_prob", "crossover_prob",
                                                 "swapping_prob"}
    with pytest.raises(GridrunError, match="population_size=1 must be at least 2"):
        REGISTRY.create("nsga2", {"population_size": "1"})


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_a_multi_objective_optuna_sampler_is_told_completed_pruned_and_failed_trials(sampler):
    """A study with two directions: completed trials are told both values; pruned ones are told as
    pruned without values (Optuna's multi-objective Trial.report refuses intermediate values); after a
    resume the same trials are added to a fresh study, and both go on asking."""
    import optuna

    grid = build_grid({"x": gridrun.uniform(0.0, 1.0), "k": ["a", "b"]})
    options = {"population_size": 2} if sampler == "nsga2" else {"n_startup_trials": 2}
    s = make_sampler(sampler, grid, 0, ["val_loss", "val_acc"], None, options)
    assert s.multi_objective and s.modes == ["min", "max"]
    assert s.study.directions == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    ended = []
    for i in range(10):
        t = Trial(trial=i, flags={})
        t.flags = s.ask(t)
        status = Status.PRUNED if i % 4 == 3 else Status.FAILED if i == 5 else Status.COMPLETED
        t.status = status
        x = t.flags["x"]
        t.history = {"val_loss": [x, x], "val_acc": [1 - x, 1 - x]}
        t.metrics = {} if status == Status.FAILED else {"val_loss": x, "val_acc": (1 - x) ** 2}
        s.tell(t)
        ended.append(t)
    states = [ft.state.name for ft in s.study.trials]
    assert states.count("COMPLETE") == 7 and states.count("PRUNED") == 2 and states.count("FAIL") == 1
    assert all(ft.values == [ended[ft.number].metrics["val_loss"], ended[ft.number].metrics["val_acc"]]
               for ft in s.study.trials if ft.state.name == "COMPLETE")
    fresh = make_sampler(sampler, grid, 0, ["val_loss", "val_acc"], None, options)
    for t in ended:
        fresh.tell(t)
    assert [ft.state.name for ft in fresh.study.trials] == states
    nxt = fresh.ask(Trial(trial=10, flags={}))
    assert 0.0 <= nxt["x"] <= 1.0 and nxt["k"] in ("a", "b")


@pytest.mark.parametrize("sampler, options", [("nsga2", {"population_size": 3}), ("tpe", {"n_startup_trials": 3})])
def test_nsga2_and_tpe_sweeps_on_digits_end_to_end(tmp_path, capsys, sampler, options):
    script = tmp_path / "digits.py"
    script.write_text(DIGITS)
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, sample=6, seed=0, sampler=sampler, sampler_options=options,
                            metric=["val_loss", "n_params"], runs_dir=runs)
    m = manifest(runs)
    assert m["sampler"] == sampler and m["metric"] == ["val_loss", "n_params"]
    assert m["counts"]["completed"] == 6
    for row in df.itertuples():
        assert row.metric_n_params == n_params_by_hand(row.flag_units) == row.n_params
    out = capsys.readouterr().out
    assert "Pareto front of val_loss (min) and n_params (min)" in out
    front = gridrun.pareto(m["id"], runs_dir=runs)
    vals = df[["metric_val_loss", "metric_n_params"]].to_numpy()
    expected = {df["run_dir"].iloc[i] for i in brute_front(vals.tolist())}
    assert set(front["run_dir"]) == expected
    # the smallest model on the front is the trial with the lowest val_loss among the small ones
    small = df[df["flag_units"] == 8]
    if len(small):
        assert small["metric_val_loss"].min() in set(front["metric_val_loss"])


# --------------------------------------------------------------------------------------------------
# n_params: what gridrun.fit and fit_loop record


def test_fit_records_n_params_as_a_property_and_a_metric(tmp_path):
    script = tmp_path / "digits.py"
    script.write_text(DIGITS)
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"units": [12], "lr": [0.01], "epochs": [2]}, runs_dir=runs, quiet=True)
    metrics = json.loads((runs / df["run_dir"].iloc[0].rsplit("/", 1)[-1] / "metrics.json").read_text())
    assert metrics["n_params"] == [n_params_by_hand(12)] * 2  # one value per epoch, the same
    assert len(metrics["loss"]) == 2  # no extra epoch
    assert df["metric_n_params"].iloc[0] == n_params_by_hand(12) == df["n_params"].iloc[0]


def test_fit_n_params_counts_trainable_parameters_only():
    """As the model summary's "Trainable params": BatchNorm's scale and offset count, its moving mean and
    variance do not; Dropout has none. Not in the History (it is not a training metric)."""
    x = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, size=32)
    model = gridrun.Sequential([gridrun.Dense(5, activation="relu"), gridrun.BatchNorm(), gridrun.Dropout(0.1),
                                gridrun.Dense(3, activation="softmax")])
    history = gridrun.fit(model, x, y, loss="sparse_categorical_crossentropy", epochs=1, batch_size=16, verbose=0)
    by_hand = (6 * 5 + 5) + 2 * 5 + (5 * 3 + 3)
    assert history.params["n_params"] == by_hand
    assert f"Trainable params: {by_hand:,}" in history.params["model"]
    assert "n_params" not in history.history


def test_fit_loop_counts_params_of_a_dict_state_and_not_of_a_tuple(tmp_path):
    import jax
    import jax.numpy as jnp
    import optax

    x = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    y = x @ np.arange(5, dtype=np.float32)

    def loss_fn(p, xb, yb):
        return jnp.mean((xb @ p["w"] + p["b"] - yb) ** 2)

    def init_dict(key, hp):
        p = {"w": jax.random.normal(key, (5,)), "b": jnp.zeros(())}
        return {"params": p, "opt": optax.sgd(hp["lr"]).init(p), "step": jnp.array(0)}

    def step_dict(state, batch, hp, key):
        loss, g = jax.value_and_grad(loss_fn)(state["params"], *batch)
        upd, opt = optax.sgd(hp["lr"]).update(g, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], upd), "opt": opt, "step": state["step"] + 1}, \
            {"loss": loss}

    def init_tuple(key, hp):
        s = init_dict(key, hp)
        return s["params"], s["opt"]

    def step_tuple(state, batch, hp, key):
        new, logs = step_dict({"params": state[0], "opt": state[1], "step": jnp.array(0)}, batch, hp, key)
        return (new["params"], new["opt"]), logs

    for init, step, expected in ((init_dict, step_dict, 6), (init_tuple, step_tuple, None)):
        history = gridrun.fit_loop(init, step, (x, y), hparams={"lr": 0.01}, epochs=2, batch_size=16)
        assert history.params.get("n_params") == expected


def test_fit_loop_counts_the_nnx_params_of_a_model_and_its_optimizer():
    """An nnx state (model, nnx.Optimizer): the model's nnx.Param variables count once (the optimizer
    refers to the same model), the Adam moments and BatchNorm's running statistics do not."""
    import optax
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(5, 4, rngs=rngs)
            self.bn = nnx.BatchNorm(4, rngs=rngs)
            self.l2 = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.l2(self.bn(nnx.relu(self.l1(x))))

    def init(key, hp):
        model = MLP(nnx.Rngs(key))
        return model, nnx.Optimizer(model, optax.inject_hyperparams(optax.adam)(learning_rate=hp["lr"]), wrt=nnx.Param)

    def step(state, batch, hp, key):
        model, optimizer = state
        model.train()
        loss, grads = nnx.value_and_grad(lambda m: ((m(batch[0])[:, 0] - batch[1]) ** 2).mean())(model)
        optimizer.update(model, grads)
        return (model, optimizer), {"loss": loss}

    x = np.random.default_rng(0).normal(size=(32, 5)).astype(np.float32)
    history = gridrun.fit_loop(init, step, (x, x[:, 0]), hparams={"lr": 0.01}, epochs=1, batch_size=16)
    assert history.params["n_params"] == (5 * 4 + 4) + 2 * 4 + (4 * 2 + 2)
