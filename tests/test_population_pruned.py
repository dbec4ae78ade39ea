"""Issue 22 item 8: with a pruner, population mode on the CPU lost to sequential training (the asha case
of bench/population.py --modes: 1.76x; refilled slots, idle slots and more epochs granted). There the
group's trials now train one after another, as in a sequential sweep, said in one line; the same
ASHA decisions and metrics as the sequential sweep. GRIDRUN_POPULATION_PRUNED=1 trains them together."""

from __future__ import annotations

import json

import jax
import pytest
from _util import DIGITS_SWEEP_SCRIPT

import gridrun
from gridrun.sweep.groups import PRUNED_ALONE, pruned_together
from gridrun.train.population import PopulationConfig

CPU = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's cost model")


def test_the_setting_overrides_the_backends_cost_model():
    assert pruned_together(PopulationConfig(pruned_together=True)) is True
    assert pruned_together(PopulationConfig(pruned_together=False)) is False
    assert PopulationConfig.from_env({"GRIDRUN_POPULATION_PRUNED": "1"}).pruned_together is True
    assert PopulationConfig.from_env({"GRIDRUN_POPULATION_PRUNED": "off"}).pruned_together is False
    assert PopulationConfig.from_env({}).pruned_together is None


def sweep(script, runs, **kw):
    return gridrun.tuning_run(script, ordered=True, sample=1.0, prune="asha",
                              prune_options={"grace": 1, "reduction": 2}, runs_dir=runs, quiet=True, **kw)


def by_lr(df):
    out = {}
    for r in df.itertuples():
        props = json.loads(open(f"{r.run_dir}/properties.json").read())
        metrics = json.loads(open(f"{r.run_dir}/metrics.json").read())
        out[(r.flag_lr, r.flag_dropout)] = (r.status, r.epochs_completed, metrics["val_loss"], props.get("population"))
    return out


@CPU
def test_pruned_population_trials_train_as_the_sequential_sweep_on_the_cpu(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("GRIDRUN_POPULATION_PRUNED", raising=False)
    script = tmp_path / "train.py"
    script.write_text(DIGITS_SWEEP_SCRIPT)
    pop = by_lr(sweep(script, tmp_path / "pop", population=True, population_size=4))
    err = capfd.readouterr().err
    assert err.count(PRUNED_ALONE) == 1  # said once, for the group
    seq = by_lr(sweep(script, tmp_path / "seq"))
    assert pop.keys() == seq.keys() and len(pop) == 12
    for k, (status, epochs, val_loss, population) in pop.items():
        assert population is None  # trained alone, not in a population program
        assert (status, epochs) == seq[k][:2]  # the same ASHA decisions as the sequential sweep
        assert val_loss == pytest.approx(seq[k][2], rel=1e-5)
    assert {s for s, *_ in pop.values()} == {"completed", "pruned"}

    monkeypatch.setenv("GRIDRUN_POPULATION_PRUNED", "1")  # asked for: together, in refilled slots
    together = by_lr(sweep(script, tmp_path / "together", population=True, population_size=4))
    assert PRUNED_ALONE not in capfd.readouterr().err
    assert all(p == {"size": 4, "slot_refill": True} for *_, p in together.values())
