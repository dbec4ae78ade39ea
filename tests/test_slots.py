"""Slot refilling: a population of 4 slots over 12 trials, trials ending at different epochs (their
own EarlyStopping, a Stopper standing for the sweep's pruner, their epoch budget): each trial gets the
per-epoch metrics it gets when trained alone, and the slots stay full while trials wait."""

import numpy as np
import pytest
from _util import DIGITS_SWEEP_SCRIPT

import gridrun
from gridrun import Dense, Dropout, EarlyStopping, Sequential
from gridrun.train.population import Population, PopulationConfig

EPOCHS = 6


@pytest.fixture(scope="module")
def digits():
    from gridrun.datasets import load_prepared

    (x, y), _ = load_prepared("digits")
    return x[:600], y[:600]


def settings():
    # (lr, dropout, epochs, stop_at): stop_at is the epoch after which a Stopper ends the trial (the pruner's
    # role), None for none; EarlyStopping with a large min_delta ends some trials on its own
    out = []
    for k in range(12):
        lr = [3e-4, 1e-3, 3e-3, 1e-2][k % 4]
        stop_at = {1: 1, 5: 2, 9: 0}.get(k)
        out.append((lr, 0.1 + 0.05 * (k % 3), 3 + (k % 4), stop_at))
    return out


def train(data, lr, dropout, epochs, stop_at, seed):
    x, y = data
    callbacks = [EarlyStopping(patience=0, min_delta=0.05)]
    if stop_at is not None:
        callbacks.append(gridrun.Stopper(lambda e, logs, s=stop_at: e >= s))
    model = Sequential([Dense(24, activation="relu"), Dropout(dropout), Dense(10, activation="softmax")])
    return gridrun.fit(model, x, y, loss="categorical_crossentropy", metrics=("accuracy",),
                       optimizer=gridrun.optimizer("adam", learning_rate=lr), epochs=epochs, batch_size=64,
                       validation_split=0.25, seed=seed, callbacks=callbacks, verbose=0)


@pytest.fixture(scope="module")
def trained(digits):
    runs = settings()
    alone = [train(digits, *s, seed=i) for i, s in enumerate(runs)]
    pop = Population(max_size=4)
    together = pop.run([lambda s=s, i=i: train(digits, *s, seed=i) for i, s in enumerate(runs)])
    return alone, together, pop


def test_each_trial_trains_as_alone_in_a_refilled_slot(trained):
    alone, together, pop = trained
    assert pop.groups_trained == [4] and len(pop.slot_activity) == 1
    for a, b in zip(alone, together, strict=True):
        assert not isinstance(b, BaseException), b
        assert a.history.keys() == b.history.keys()
        for name in a.history:
            assert len(a.history[name]) == len(b.history[name]), name
            tol = {"rtol": 1e-4, "atol": 1e-6} if "acc" not in name else {"rtol": 0, "atol": 1.01 / 150}
            np.testing.assert_allclose(b.history[name], a.history[name], err_msg=name, **tol)
    lengths = [a.epochs_completed for a in alone]
    assert len(set(lengths)) > 2  # trials really ended at different epochs
    assert lengths[9] == 1 and lengths[1] <= 2  # the Stoppers ended those trials where they said


def test_slots_stay_full_while_trials_wait(trained):
    _, _, pop = trained
    activity = pop.slot_activity[0]
    assert all(active == 4 for active, waiting, _ in activity if waiting > 0)
    total = sum(active for active, _, _ in activity)
    alone, _, _ = trained
    assert total == sum(a.epochs_completed for a in alone)  # no epoch trained twice, none lost




def test_asha_in_a_refilled_population_gives_each_trial_its_alone_metrics(tmp_path, monkeypatch):
    """A sweep of 12 trials in population mode with 4 slots and ASHA: pruned trials free their slots for
    waiting ones, and every trial's per-epoch metrics are those of training it alone, for the epochs
    it was granted. (On a CPU pruned trials train one after another unless asked: asked here.)"""
    import json

    monkeypatch.setenv("GRIDRUN_POPULATION_PRUNED", "1")

    script = tmp_path / "train.py"
    script.write_text(DIGITS_SWEEP_SCRIPT)
    pop = gridrun.tuning_run(script, ordered=True, sample=1.0, population=True, population_size=4,
                             prune="asha", prune_options={"grace": 1, "reduction": 2}, runs_dir=tmp_path / "pop",
                             quiet=True)
    alone = gridrun.tuning_run(script, ordered=True, sample=1.0, runs_dir=tmp_path / "alone", quiet=True)
    assert set(pop["status"]) == {"completed", "pruned"}  # which ones, depends on the order trials reach rungs
    full = {(r.flag_lr, r.flag_dropout): json.loads(open(f"{r.run_dir}/metrics.json").read())
            for r in alone.itertuples()}
    for r in pop.itertuples():
        got = json.loads(open(f"{r.run_dir}/metrics.json").read())
        want = full[(r.flag_lr, r.flag_dropout)]
        n = len(got["val_loss"])
        assert n == r.epochs_completed and (n < 6) == (r.status == "pruned")
        for name in ("loss", "val_loss"):
            np.testing.assert_allclose(got[name], want[name][:n], rtol=1e-4, atol=1e-6, err_msg=name)
        props = json.loads(open(f"{r.run_dir}/properties.json").read())
        assert props["population"] == {"size": 4, "slot_refill": True}  # trained in the refilled 4-slot program


@pytest.mark.parametrize("host_rows", [True, False], ids=["rows-on-host", "rows-on-device"])
def test_a_compacted_program_trains_its_survivors_as_alone(digits, monkeypatch, host_rows):
    """Once nobody waits and half the slots are empty, the program shrinks (4 -> 2 slots here): the
    survivors' metrics stay those of training alone, with rows cut by numpy (the CPU backend's way) or
    by compiled programs (an accelerator's)."""
    from gridrun.train import population

    monkeypatch.setattr(population._SlotPrograms, "compile_seconds", lambda self: 0.0)  # always worth it
    runs = [(1e-3, 0.1, 6, None), (3e-3, 0.2, 2, None), (1e-2, 0.1, 1, None), (3e-4, 0.2, 2, 0),
            (1e-3, 0.15, 3, None), (3e-3, 0.1, 1, None)]
    alone = [train(digits, *s, seed=10 + i) for i, s in enumerate(runs)]
    pop = Population(PopulationConfig(max_size=4, host_rows=host_rows))
    together = pop.run([lambda s=s, i=i: train(digits, *s, seed=10 + i) for i, s in enumerate(runs)])
    programs = [slots for _, _, slots in pop.slot_activity[0]]
    assert programs[0] == 4 and programs[-1] == 2  # 4 slots, then 2
    for a, b in zip(alone, together, strict=True):
        assert not isinstance(b, BaseException), b
        for name in ("loss", "val_loss"):
            np.testing.assert_allclose(b.history[name], a.history[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_a_program_shrinks_only_when_it_pays():
    from gridrun.train.population import ladder, shrink_pays

    assert ladder(8) == [8, 4, 2] and ladder(6) == [6, 3, 2] and ladder(2) == [2]
    # 6 empty slots of 0.05 s for 9 epochs (2.7 s) repay a 2 s compilation, not a 5 s one
    assert shrink_pays(0.05, 8, 2, 9, False, 2.0) and not shrink_pays(0.05, 8, 2, 9, False, 5.0)
    assert shrink_pays(0.05, 8, 2, 1, True, 5.0)  # a program compiled before costs nothing to switch to
    assert not shrink_pays(0.05, 4, 4, 9, True, 0.0)  # nothing smaller to go to


def test_trials_ending_together_are_released_and_refilled_in_one_call(digits, monkeypatch):
    """Eight trials of two epochs in four slots: the first four end at the same epoch, and their
    release and the refill of their four slots are one call each, not one per trial."""
    from gridrun.train import population

    calls: dict[str, list[int]] = {"released": [], "refill": []}
    released, refill = population._SlotPrograms.released, population._SlotPrograms.refill

    def count_released(self, state, slots):
        calls["released"].append(len(slots))
        return released(self, state, slots)

    def count_refill(self, state, take, hparams, k_init):
        calls["refill"].append(int(take.sum()))
        return refill(self, state, take, hparams, k_init)

    monkeypatch.setattr(population._SlotPrograms, "released", count_released)
    monkeypatch.setattr(population._SlotPrograms, "refill", count_refill)
    runs = [(1e-3, 0.1, 2, None)] * 8
    pop = Population(max_size=4)
    out = pop.run([lambda s=s, i=i: train(digits, *s, seed=20 + i) for i, s in enumerate(runs)])
    assert all(h.epochs_completed == 2 for h in out)
    assert calls == {"released": [4, 4], "refill": [4]}


def test_the_population_configuration_is_read_from_the_environment_once_and_travels(monkeypatch):
    """The sweep builds one PopulationConfig (environment read there, once) and sends it with its
    group tasks: a worker whose environment says otherwise trains as the client planned."""
    import pickle

    from gridrun.errors import GridrunError
    from gridrun.sweep.groups import Grouper, run_group
    from gridrun.sweep.trial import TrialTask

    env = {"GRIDRUN_SLOT_REFILL": "0", "GRIDRUN_WIDTH_MERGE": "off", "GRIDRUN_POPULATION_SIZE": "7",
           "GRIDRUN_POPULATION_DEVICES": "1"}
    config = PopulationConfig.from_env(env, max_size=3)
    assert config == PopulationConfig(max_size=3, slot_refill=False, merge_widths=False, size_cap=7, devices=1)
    assert pickle.loads(pickle.dumps(config)) == config
    with pytest.raises(GridrunError, match="GRIDRUN_POPULATION_SIZE='many': use a positive integer"):
        PopulationConfig.from_env({"GRIDRUN_POPULATION_SIZE": "many"})
    with pytest.raises(GridrunError, match="no setting 'size'"):
        PopulationConfig.from_env({}, size=3)

    tasks = [TrialTask("train.py", {"lr": 0.1 * k}, "s", k) for k in range(6)]
    refilled = Grouper([], PopulationConfig(max_size=2), workers=1).groups(tasks)
    chunked = Grouper([], PopulationConfig(max_size=2, slot_refill=False), workers=1).groups(tasks)
    assert [len(g.tasks) for g in refilled] == [6] and [len(g.tasks) for g in chunked] == [2, 2, 2]
    monkeypatch.setenv("GRIDRUN_SLOT_REFILL", "0")  # the worker's own environment: not read
    assert [len(g.tasks) for g in Grouper([], PopulationConfig(max_size=2)).groups(tasks)] == [6]
    task = pickle.loads(pickle.dumps(refilled[0]))
    assert task.config == PopulationConfig(max_size=2) and Grouper([], None).config == PopulationConfig()
    assert run_group.__module__ == "gridrun.sweep.groups"


def test_a_worker_refills_slots_as_its_config_says_whatever_its_environment(digits, monkeypatch):
    monkeypatch.setenv("GRIDRUN_SLOT_REFILL", "0")
    runs = [(1e-3, 0.1, 2, None)] * 4
    pop = Population(PopulationConfig(max_size=2))
    out = pop.run([lambda s=s, i=i: train(digits, *s, seed=30 + i) for i, s in enumerate(runs)])
    assert all(h.epochs_completed == 2 for h in out)
    assert pop.groups_trained == [2] and len(pop.slot_activity) == 1  # refilled, as configured
    assert pop.stats.trial_epochs == 8 and pop.stats.slot_epochs == 8 and pop.stats.train_seconds > 0
    off = Population(PopulationConfig(max_size=2, slot_refill=False))
    off.run([lambda s=s, i=i: train(digits, *s, seed=30 + i) for i, s in enumerate(runs)])
    assert off.groups_trained == [2, 2] and not off.slot_activity  # chunks of two


def test_population_stats_are_appended_to_the_configured_file_and_summed(tmp_path):
    from gridrun.train.population import PopulationStats

    path = str(tmp_path / "stats.jsonl")
    assert PopulationStats.read_totals(path)["trial_epochs"] == 0  # nothing yet
    for k in (1, 2):
        stats = PopulationStats()
        stats.count(trial_epochs=3 * k, slot_epochs=4 * k, epoch_seconds=0.5, train_seconds=1.0)
        stats.append_to(path)
    assert PopulationStats.read_totals(path) == {"train_seconds": 2.0, "trial_epochs": 9, "slot_epochs": 12,
                                                 "epoch_seconds": 1.0, "release_seconds": 0.0, "pbt_seconds": 0.0}


WIDTH_SWEEP_SCRIPT = """
import gridrun
from gridrun import Dense, Dropout, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_integer("units", 16, "hidden units", values=[8, 16, 32]),
    gridrun.flag_numeric("lr", 1e-3, "learning rate", values=[1e-4, 1e-3, 3e-3, 1e-2]),
)
(x, y), _ = load_prepared("digits")
model = Sequential([Dense(FLAGS.units, activation="relu"), Dropout(0.2), Dense(10, activation="softmax")])
gridrun.fit(model, x[:600], y[:600], loss="categorical_crossentropy", metrics=("accuracy",),
            optimizer=gridrun.optimizer("rmsprop", learning_rate=FLAGS.lr), epochs=6, batch_size=64,
            validation_split=0.25, seed=0, verbose=0)
"""


def test_a_searched_width_with_asha_refills_padded_slots_with_alone_metrics(tmp_path, monkeypatch):
    """Issue 20: with a width searched (units 8/16/32), ASHA and 4 slots, the 12 trials are width-merged
    into ONE program of 4 padded slots that is refilled as trials end (no chunks whose pruned slots stay
    frozen): each trial records that it trained in a refilled, padded slot, and its per-epoch metrics are
    those of training it alone for the epochs it was granted."""
    import json

    monkeypatch.setenv("GRIDRUN_POPULATION_PRUNED", "1")  # together, also on a CPU

    script = tmp_path / "train.py"
    script.write_text(WIDTH_SWEEP_SCRIPT)
    pop = gridrun.tuning_run(script, ordered=True, sample=1.0, population=True, population_size=4,
                             prune="asha", prune_options={"grace": 1, "reduction": 2}, runs_dir=tmp_path / "pop",
                             quiet=True)
    alone = gridrun.tuning_run(script, ordered=True, sample=1.0, runs_dir=tmp_path / "alone", quiet=True)
    assert len(pop) == 12 and set(pop["status"]) == {"completed", "pruned"}
    full = {(r.flag_units, r.flag_lr): json.loads(open(f"{r.run_dir}/metrics.json").read())
            for r in alone.itertuples()}
    for r in pop.itertuples():
        got = json.loads(open(f"{r.run_dir}/metrics.json").read())
        want = full[(r.flag_units, r.flag_lr)]
        n = len(got["val_loss"])
        assert n == r.epochs_completed and (n < 6) == (r.status == "pruned")
        for name in ("loss", "val_loss"):
            np.testing.assert_allclose(got[name], want[name][:n], rtol=1e-4, atol=1e-6, err_msg=name)
        props = json.loads(open(f"{r.run_dir}/properties.json").read())
        # one 4-slot program for all 12 trials of three widths: 8 of them took a freed, padded slot
        assert props["population"] == {"size": 4, "slot_refill": True, "padded_units": [32]}


def test_width_merged_slots_refill_in_process_with_alone_metrics(digits):
    """The same in one Population: 10 trials of widths 8..40 in 3 slots, trials ending at different epochs."""
    def run(units, lr, epochs, stop_at, seed):
        x, y = digits
        callbacks = [] if stop_at is None else [gridrun.Stopper(lambda e, logs, s=stop_at: e >= s)]
        model = Sequential([Dense(units, activation="relu"), Dropout(0.1), Dense(10, activation="softmax")])
        return gridrun.fit(model, x, y, loss="categorical_crossentropy", metrics=("accuracy",),
                           optimizer=gridrun.optimizer("rmsprop", learning_rate=lr), epochs=epochs, batch_size=64,
                           validation_split=0.25, seed=seed, callbacks=callbacks, verbose=0)

    runs = [(8 * (1 + k % 5), [1e-3, 3e-3][k % 2], 2 + k % 3, {2: 0, 7: 1}.get(k)) for k in range(10)]
    alone = [run(*s, seed=40 + i) for i, s in enumerate(runs)]
    pop = Population(PopulationConfig(max_size=3, parallel=1))  # (vmapped slots, not lone trials side by side)
    together = pop.run([lambda s=s, i=i: run(*s, seed=40 + i) for i, s in enumerate(runs)])
    assert pop.groups_trained == [3] and len(pop.slot_activity) == 1
    activity = pop.slot_activity[0]
    assert all(active == 3 for active, waiting, _ in activity if waiting > 0)  # no dead slot while trials wait
    for a, b in zip(alone, together, strict=True):
        assert not isinstance(b, BaseException), b
        assert b.state["params"].keys() == a.state["params"].keys()
        for name in ("loss", "val_loss"):
            np.testing.assert_allclose(b.history[name], a.history[name], rtol=1e-4, atol=1e-6, err_msg=name)
        ea = gridrun.evaluate(a, *digits)
        eb = gridrun.evaluate(b, *digits)
        assert eb["loss"] == pytest.approx(ea["loss"], rel=1e-4)
