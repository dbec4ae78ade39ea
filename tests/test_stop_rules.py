"""One stop rule for every training path (train/driver.py): the same scripted trials (a loss that turns
non-finite at epoch 3, EarlyStopping, a pruner stopping at a rung, the epoch budget) end the same way,
at the same epoch, with the same records (metrics.json rows, status, message), whether trained by
`fit` or `fit_loop`, alone, in a population group, in a refilled slot of a smaller program, or alone
side by side on the population's threads (where its cost model says vmapping would lose)."""

import re

import numpy as np
import pytest

from gridrun.rundir import read_metrics_file
from gridrun.runner import execute
from gridrun.sweep.trial import PruneHook
from gridrun.train.driver import Member, Stop, TrainingProgram, stop_rule
from gridrun.train.population import Population

DATA = """
import numpy as np
rng = np.random.default_rng(0)
x = rng.uniform(0.9, 1.1, size=(48, 1)).astype(np.float32)
y = (2.0 * x + 0.1 * rng.normal(size=(48, 1))).astype(np.float32)
"""

# A linear model under plain SGD: lr=2500 grows the weights ~1e4-fold a step, so with two batches an
# epoch the loss is finite for two epochs and overflows in the third, in every path alike.
FIT_SCRIPT = DATA + """
import gridrun
FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.01, "learning rate"), gridrun.flag_integer("epochs", 6, "epochs"),
                      gridrun.flag_numeric("min_delta", 0.0, "EarlyStopping min_delta"),
                      gridrun.flag_integer("patience", 100, "EarlyStopping patience"))
model = gridrun.Sequential([gridrun.Dense(1)])
gridrun.fit(model, x, y, loss="mse", optimizer=gridrun.optimizer("sgd", learning_rate=FLAGS.lr), epochs=FLAGS.epochs,
            batch_size=18, validation_split=0.25, verbose=0,
            callbacks=[gridrun.EarlyStopping(patience=FLAGS.patience, min_delta=FLAGS.min_delta)])
"""

LOOP_SCRIPT = DATA + """
import jax
import jax.numpy as jnp
import gridrun
FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.01, "learning rate"), gridrun.flag_integer("epochs", 6, "epochs"),
                      gridrun.flag_numeric("min_delta", 0.0, "EarlyStopping min_delta"),
                      gridrun.flag_integer("patience", 100, "EarlyStopping patience"))

def init(key, hp):
    return {"w": jnp.zeros((1, 1)), "b": jnp.zeros((1,))}

def loss_of(p, batch):
    xb, yb = batch
    return jnp.mean((xb @ p["w"] + p["b"] - yb) ** 2)

def train_step(p, batch, hp, key):
    loss, g = jax.value_and_grad(loss_of)(p, batch)
    return jax.tree_util.tree_map(lambda a, d: a - hp["learning_rate"] * d, p, g), {"loss": loss}

def eval_step(p, batch, hp):
    return {"loss": loss_of(p, batch)}

gridrun.fit_loop(init, train_step, (x[:36], y[:36]), hparams={"learning_rate": FLAGS.lr}, eval_step=eval_step,
                 validation_data=(x[36:], y[36:]), epochs=FLAGS.epochs, batch_size=18,
                 callbacks=[gridrun.EarlyStopping(patience=FLAGS.patience, min_delta=FLAGS.min_delta)])
"""

# name: (flags, prune at this epoch or None, expected (status, epochs recorded))
TRIALS = {
    "nan": ({"lr": 2500.0}, None, ("failed", 3)),
    "early": ({"min_delta": 10.0, "patience": 0}, None, ("completed", 2)),
    "pruned": ({}, 2, ("pruned", 2)),
    "budget": ({"epochs": 4}, None, ("completed", 4)),
}


def prune_at(rung: int) -> PruneHook:
    """The sweep's pruner hook, with a pruner that stops the trial at epoch `rung`."""
    return PruneHook(lambda report: report["epoch"] >= rung, 0, None)


# A hidden layer makes the model width-mergeable, so a population's plan may train it alone, side by
# side (the linear Dense(2)-Dense(1) grows quadratically: lr=0.35 overflows in the third epoch)
HIDDEN_SCRIPT = FIT_SCRIPT.replace("gridrun.Sequential([gridrun.Dense(1)])",
                                   "gridrun.Sequential([gridrun.Dense(2), gridrun.Dense(1)])")
HIDDEN_TRIALS = dict(TRIALS, nan=({"lr": 0.35}, None, ("failed", 3)))


def run_all(script, root, how, trials=TRIALS, population=None):
    """Run every scripted trial of `script` sequentially, as one population group, or in a population
    of 2 refilled slots; return {trial: (status, message, metrics)} and the population (or None)."""
    dirs = {name: root / how / name for name in trials}
    for d in dirs.values():
        d.mkdir(parents=True)

    def job(name):
        flags, rung, _ = trials[name]
        hook = prune_at(rung) if rung is not None else None
        return execute(script, dirs[name], flags, capture_output=True, epoch_hook=hook)

    pop = None
    if how == "alone":
        props = [job(name) for name in trials]
    else:
        pop = population or Population(max_size=None if how == "group" else 2)
        props = pop.run([lambda n=n: job(n) for n in trials])
    out = {}
    for name, p in zip(trials, props, strict=True):
        assert not isinstance(p, BaseException), p
        out[name] = (p["status"], p.get("error_message"), read_metrics_file(dirs[name] / "metrics.json"))
    return out, pop


@pytest.fixture(scope="module", params=["fit", "fit_loop"])
def outcomes(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    script = root / "train.py"
    script.write_text(FIT_SCRIPT if request.param == "fit" else LOOP_SCRIPT)
    results = {}
    for how in ("alone", "group", "slot"):
        results[how], pop = run_all(script, root, how)
        if how == "group":
            assert pop.groups_trained == [4] and not pop.slot_activity  # one vmapped program of all four
        if how == "slot":
            assert pop.groups_trained == [2] and len(pop.slot_activity) == 1  # two slots, refilled
    return results


def check_rules(outcome, how, trials=TRIALS):
    for name, (status, message, metrics) in outcome.items():
        want_status, want_epochs = trials[name][2]
        assert status == want_status, (how, name, message)
        assert all(len(v) == want_epochs for v in metrics.values()), (how, name, metrics)
    _, message, metrics = outcome["nan"]
    assert re.fullmatch(r"(val_)?loss became (nan|inf) at epoch 3", message), message
    assert all(np.isfinite(metrics["loss"][:2])) and not np.isfinite(metrics["loss"][2])
    assert re.fullmatch(r"pruned at epoch 2 \(val_loss=\S+\)", outcome["pruned"][1])


def check_same(outcome, alone):
    for name, (status, message, metrics) in outcome.items():
        a_status, a_message, a_metrics = alone[name]
        assert status == a_status and metrics.keys() == a_metrics.keys(), name
        number = re.compile(r"=\S+\)")
        assert number.sub("", message or "") == number.sub("", a_message or ""), name
        for k in metrics:
            np.testing.assert_allclose(metrics[k], a_metrics[k], rtol=1e-4, atol=1e-6, err_msg=f"{name} {k}")


@pytest.mark.parametrize("how", ["alone", "group", "slot"])
def test_each_trial_ends_by_its_rule_at_its_epoch(outcomes, how):
    check_rules(outcomes[how], how)


@pytest.mark.parametrize("how", ["group", "slot"])
def test_a_population_records_what_training_alone_records(outcomes, how):
    check_same(outcomes[how], outcomes["alone"])


def test_trials_a_population_trains_alone_side_by_side_end_by_the_same_rule(tmp_path, monkeypatch):
    """The population's lone path (widths.plan says a vmapped program would lose; two at a time on its
    threads, driver.train_alone): the same scripted trials end as they do alone, with the same records."""
    import dataclasses

    from gridrun.train import widths
    from gridrun.train.population import PopulationConfig

    script = tmp_path / "train.py"
    script.write_text(HIDDEN_SCRIPT)
    alone, _ = run_all(script, tmp_path, "alone", HIDDEN_TRIALS)
    check_rules(alone, "alone", HIDDEN_TRIALS)
    monkeypatch.setattr(widths, "costs", lambda backend=None: dataclasses.replace(
        widths.COSTS["cpu"], flops_per_second=1e3, vmap_speedup=0.5))  # (vmapping modelled to lose)
    side, pop = run_all(script, tmp_path, "side", HIDDEN_TRIALS, Population(PopulationConfig(parallel=2)))
    assert pop.plans[0].sequential and pop.plans[0].parallel == 2 and pop.groups_trained == [1, 1, 1, 1]
    check_rules(side, "side", HIDDEN_TRIALS)
    check_same(side, alone)


def test_both_engines_are_training_programs():
    import jax.numpy as jnp

    import gridrun

    x, y = np.ones((8, 1), np.float32), np.ones((8, 1), np.float32)
    fitted = gridrun.fit(gridrun.Sequential([gridrun.Dense(1)]), x, y, loss="mse", epochs=1, verbose=0)
    looped = gridrun.fit_loop(lambda key, hp: {"w": jnp.zeros(())},
                              lambda s, b, hp, key: (s, {"loss": jnp.mean(b[0]) * s["w"]}), (x, y), epochs=1)
    for history in (fitted, looped):
        assert isinstance(history.engine, TrainingProgram), type(history.engine)


def test_the_stop_rule_names_the_first_reason_that_holds():
    finite, nan = {"loss": 0.5, "val_loss": 0.4}, {"loss": float("nan"), "val_loss": 0.4}
    assert stop_rule(nan, True, True, True, 5, 6) is Stop.DIVERGED
    assert stop_rule(finite, True, True, True, 5, 6) is Stop.EARLY_STOPPING
    assert stop_rule(finite, False, True, True, 5, 6) is Stop.PRUNED
    assert stop_rule(finite, False, False, True, 5, 6) is Stop.STOPPER
    assert stop_rule(finite, False, False, False, 5, 6) is Stop.BUDGET
    assert stop_rule(finite, False, False, False, 4, 6) is None
    assert stop_rule({"acc": float("nan"), "loss": 1.0}, False, False, False, 0, 6) is None  # only losses count


def test_observers_see_every_recorded_epoch_with_the_state():
    seen = []
    member = Member(3, ("loss",), observers=[lambda e, m, state: seen.append((e, m, state()))])
    for e in range(3):
        member.record({"loss": np.float32(1.0 / (e + 1))}, False, lambda e=e: {"step": e})
    assert seen == [(0, {"loss": 1.0}, {"step": 0}), (1, {"loss": 0.5}, {"step": 1}), (2, {"loss": 0.33333334}, {"step": 2})]
    assert member.stop is Stop.BUDGET and Member(0, ("loss",)).stop is Stop.BUDGET
