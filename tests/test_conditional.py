"""Conditional flags (`when=`): declaration checks, grids without duplicates, random / TPE draws that
give a flag only where it applies, population grouping, NA in the runs table, and the --dry-run tree."""

import itertools
import random

import pytest
from _util import run_cli

import gridrun
from gridrun.errors import FlagError
from gridrun.flagspec import _collect, declared_flags, flag_integer, flag_numeric, flag_string
from gridrun.grid import build_grid, sample_grid
from gridrun.sweep.groups import Grouper
from gridrun.sweep.samplers import make_sampler
from gridrun.sweep.state import Trial
from gridrun.sweep.trial import TrialTask

SCRIPT = """
import gridrun
FLAGS = gridrun.flags(
    gridrun.flag_integer("layers", 2, values=[2, 3, 4]),
    gridrun.flag_integer("nodes3", 64, values=[32, 64, 128], when={"layers": [3, 4]}),
    gridrun.flag_string("optimizer", "adam", values=["adam", "sgd"]),
    gridrun.flag_numeric("momentum", 0.9, values=gridrun.uniform(0.0, 0.99), when={"optimizer": "sgd"}),
)
gridrun.write_properties(nodes3_seen=FLAGS.nodes3, nodes3_applies=FLAGS.applies("nodes3"))
loss = 1.0 / FLAGS.layers + (0.01 * FLAGS.momentum if FLAGS.applies("momentum") else 0.0)
gridrun.log_metrics(loss=loss, val_loss=loss)
"""


def _specs(*extra):
    return _collect((
        flag_integer("layers", 2, values=[2, 3, 4]),
        flag_integer("nodes3", 64, values=[32, 64, 128], when={"layers": [3, 4]}),
        flag_integer("nodes4", 64, values=[32, 64], when={"layers": 4}),
        flag_string("optimizer", "adam", values=["adam", "sgd", "rmsprop"]),
        flag_numeric("momentum", 0.9, values=[0.5, 0.9], when={"optimizer": ["sgd", "rmsprop"]}),
        *extra,
    ), {})


def _brute_force(specs):
    """Every combination, by hand: the product of all values, each flag that does not apply dropped."""
    out = set()
    names = list(specs)
    for combo in itertools.product(*(specs[n].values for n in names)):
        values = dict(zip(names, combo))
        kept = {n: v for n, v in values.items()
                if all(values[p] in vals for p, vals in specs[n].when or ())}
        out.add(tuple(sorted(kept.items())))
    return out


# -- declarations -------------------------------------------------------------------------------------


def test_when_is_read_statically_and_typed(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    specs = declared_flags(path)
    assert specs["nodes3"].conditions == {"layers": (3, 4)}
    assert specs["momentum"].conditions == {"optimizer": ("sgd",)}
    assert specs["layers"].when is None


@pytest.mark.parametrize(("when", "match"), [
    ({"layer": [3]}, "names 'layer' \\(did you mean 'layers'\\?\\), which is not declared"),
    ({"layers": [5]}, "gives 'layers' the value 5, which is not one of its values"),
    ({"layers": ["three"]}, "cannot take 'three'"),
    ({"nodes3": [64]}, "names the flag itself"),
    ({"layers": []}, "never holds"),
    ([3, 4], "takes a mapping"),
])
def test_bad_when_is_a_one_line_error(when, match):
    with pytest.raises(FlagError, match=match) as err:
        _collect((flag_integer("layers", 2, values=[2, 3, 4]),
                  flag_integer("nodes3", 64, values=[32, 64], when=when)), {})
    assert "\n" not in str(err.value)


def test_a_cycle_of_when_is_an_error():
    with pytest.raises(FlagError, match="cycle through when= \\((a -> b -> a|b -> a -> b)\\)"):
        _collect((flag_integer("a", 1, values=[1, 2], when={"b": 1}),
                  flag_integer("b", 1, values=[1, 2], when={"a": 2})), {})


def test_when_on_a_range_is_an_error():
    with pytest.raises(FlagError, match="draws from the range"):
        _collect((flag_numeric("lr", 0.1, values=gridrun.loguniform(1e-3, 1.0)),
                  flag_integer("n", 1, when={"lr": 0.1})), {})


def test_bad_when_in_a_script_fails_before_anything_runs(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT.replace('when={"layers": [3, 4]}', 'when={"layers": [3, 5]}'))
    proc = run_cli("tuning-run", path, "--runs-dir", tmp_path / "runs", "--sample", "3", cwd=tmp_path)
    assert proc.returncode == 2
    assert "gives 'layers' the value 5" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


# -- grids --------------------------------------------------------------------------------------------


def test_grid_is_a_union_without_duplicates_and_exact_len():
    specs = _specs()
    grid = build_grid({n: list(s.values) for n, s in specs.items()}, specs)
    combos = [grid[i] for i in range(len(grid))]
    keys = [tuple(sorted(c.items())) for c in combos]
    assert len(set(keys)) == len(keys) == len(grid)
    assert set(keys) == _brute_force(specs)
    # layers 2: 1, 3: 3 (nodes3), 4: 3 x 2 (nodes3, nodes4); optimizer adam: 1, sgd/rmsprop: 2 each
    assert len(grid) == (1 + 3 + 6) * (1 + 2 + 2)
    assert all("nodes3" not in c for c in combos if c["layers"] == 2)
    assert all("momentum" not in c for c in combos if c["optimizer"] == "adam")
    with pytest.raises(IndexError):
        grid[len(grid)]
    frame = grid.to_frame()
    assert frame.loc[frame.layers == 2, "nodes3"].isna().all()


def test_unconditional_grid_keeps_tfruns_order():
    specs = _collect((flag_integer("a", 1, values=[1, 2]), flag_string("b", "x", values=["x", "y", "z"])), {})
    grid = build_grid({"a": [1, 2], "b": ["x", "y", "z"]}, specs)
    assert [grid[i] for i in range(6)] == [{"a": a, "b": b} for b in "xyz" for a in (1, 2)]
    assert "when" not in grid.describe()


def test_big_conditional_grid_is_indexed_lazily():
    specs = _collect((
        flag_integer("depth", 1, values=[1, 2]),
        *(flag_integer(f"w{i}", 1, values=list(range(1, 31))) for i in range(6)),
        flag_integer("extra", 1, values=list(range(1, 101)), when={"depth": 2}),
    ), {})
    grid = build_grid({n: list(s.values) for n, s in specs.items()}, specs)
    assert len(grid) == 30**6 * (1 + 100)
    last = grid[len(grid) - 1]
    assert last["depth"] == 2 and last["extra"] == 100
    drawn = sample_grid(grid, 50, seed=1)
    assert len({tuple(sorted(grid[i].items())) for i in drawn}) == 50


def test_condition_on_a_flag_outside_the_grid_uses_its_default():
    specs = _specs()
    grid = build_grid({"nodes3": [32, 64], "optimizer": ["adam"]}, specs)  # layers stays at 2
    assert "nodes3" in grid.never and len(grid) == 1 and grid[0] == {"optimizer": "adam"}
    assert any("nodes3: applies in no combination" in line for line in grid.tree_lines())


def test_manifest_description_rebuilds_the_same_grid():
    specs = _specs()
    grid = build_grid({n: list(s.values) for n, s in specs.items()}, specs)
    desc = grid.describe()
    again = build_grid(desc["flags"], when=desc["when"])
    assert [again[i] for i in range(len(again))] == [grid[i] for i in range(len(grid))]


def test_random_draws_only_flags_that_apply():
    specs = _specs(flag_numeric("lr", 0.1, values=gridrun.loguniform(1e-4, 1e-1), when={"layers": [3, 4]}))
    grid = build_grid({n: s.values if isinstance(s.values, gridrun.space.Range) else list(s.values)
                       for n, s in specs.items()}, specs)
    rng = random.Random(0)
    draws = [grid.draw(rng) for _ in range(300)]
    for d in draws:
        assert ("nodes3" in d) == (d["layers"] in (3, 4)) and ("lr" in d) == (d["layers"] in (3, 4))
        assert ("nodes4" in d) == (d["layers"] == 4)
        assert ("momentum" in d) == (d["optimizer"] != "adam")
    assert {d["layers"] for d in draws} == {2, 3, 4}


@pytest.mark.parametrize("name", ["tpe", "cmaes"])
def test_optuna_samplers_suggest_a_flag_only_where_it_applies(name):
    pytest.importorskip("optuna")
    if name == "cmaes":
        pytest.importorskip("cmaes")
    specs = _specs(flag_numeric("lr", 0.1, values=gridrun.loguniform(1e-4, 1e-1)))
    grid = build_grid({n: s.values if isinstance(s.values, gridrun.space.Range) else list(s.values)
                       for n, s in specs.items()}, specs)
    sampler = make_sampler(name, grid, seed=0, metric="val_loss", mode=None, options={"n_startup_trials": 3})
    seen = []
    for i in range(12):
        t = Trial(trial=i, flags={})
        t.flags = sampler.ask(t)
        seen.append(t.flags)
        ot = sampler.live[i]
        assert set(ot.params) == set(t.flags)  # Optuna itself was asked only for the flags that apply
        t.status, t.metrics = gridrun.record.Status.COMPLETED, {"val_loss": float(i % 5)}
        sampler.tell(t)
    for f in seen:
        assert ("nodes3" in f) == (f["layers"] in (3, 4)) and ("momentum" in f) == (f["optimizer"] != "adam")


def test_population_grouping_keys_a_flag_that_does_not_apply_as_absent():
    grouper = Grouper(["optimizer", "act3"], config=None)

    def task(i, flags):
        return TrialTask(script="x.py", flags=flags, sweep="s", trial=i, attempt=0, run_dir=None)

    tasks = [task(0, {"optimizer": "adam", "layers": 2}), task(1, {"optimizer": "adam", "layers": 3, "act3": "relu"}),
             task(2, {"optimizer": "adam", "layers": 2}), task(3, {"optimizer": "adam", "layers": 3, "act3": "tanh"})]
    groups = grouper.groups(tasks)
    members = sorted(sorted(t.trial for t in g.tasks) for g in groups)
    assert members == [[0, 2], [1], [3]]


# -- sweeps -------------------------------------------------------------------------------------------


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_sweep_gives_children_only_where_they_apply_and_ls_runs_shows_na(script, tmp_path, sampler):
    if sampler == "tpe":
        pytest.importorskip("optuna")
    runs_dir = tmp_path / "runs"
    df = gridrun.tuning_run(script, sample=12, seed=3, runs_dir=runs_dir, quiet=True, sampler=sampler,
                            backend="inprocess")
    assert len(df) == 12 and (df.status == "completed").all()
    m = gridrun.sweep.Manifest.load(runs_dir, df.attrs["sweep"])
    for t in m.trials:
        assert ("nodes3" in t.flags) == (t.flags["layers"] in (3, 4))
        assert ("momentum" in t.flags) == (t.flags["optimizer"] == "sgd")
    two = df[df.flag_layers == 2]
    deep = df[df.flag_layers != 2]
    assert len(two) and len(deep)
    assert two.flag_nodes3.isna().all() and deep.flag_nodes3.notna().all()
    assert (two.nodes3_seen == 64).all() and not two.nodes3_applies.any()  # the script gets the default
    assert df.loc[df.flag_optimizer == "adam", "flag_momentum"].isna().all()
    assert df.loc[df.flag_optimizer == "sgd", "flag_momentum"].notna().all()
    listed = gridrun.ls_runs(runs_dir)
    assert listed.loc[listed.flag_layers == 2, "flag_nodes3"].isna().all()


def test_grid_sweep_runs_each_combination_once(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT.replace('values=gridrun.uniform(0.0, 0.99)', 'values=[0.5, 0.9]'))
    runs_dir = tmp_path / "runs"
    df = gridrun.tuning_run(path, runs_dir=runs_dir, quiet=True, seed=1)
    assert len(df) == (1 + 3 + 3) * (1 + 2)
    keys = {tuple(sorted((k, v) for k, v in r.items() if k.startswith("flag_") and v == v and v is not None))
            for r in df.astype(object).where(df.notna(), None).to_dict("records")}
    assert len(keys) == len(df)


def test_dry_run_shows_the_tree(script, tmp_path):
    proc = run_cli("tuning-run", script, "--sample", "4", "--seed", "1", "--dry-run", "--runs-dir", tmp_path / "runs",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "  layers: 2, 3, 4\n    if layers in (3, 4):\n      nodes3: 32, 64, 128\n" in out
    assert "  optimizer: adam, sgd\n    if optimizer == 'sgd':\n      momentum: uniform(0, 0.99)\n" in out
    assert not (tmp_path / "runs").exists()


def test_help_says_when_a_flag_applies(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, check=True).stdout
    assert "(applies only if layers in (3, 4))" in out


def test_flags_applies_at_run_time():
    """`when` only decides which flags apply; a script run by hand still resolves every flag."""
    flags = gridrun.flags(
        gridrun.flag_integer("layers", 2, values=[2, 3]),
        gridrun.flag_integer("nodes3", 64, when={"layers": 3}),
        arguments=["--layers", "3"],
    )
    assert flags.applies("nodes3") and flags.nodes3 == 64
    flags = gridrun.flags(gridrun.flag_integer("layers", 2, values=[2, 3]),
                          gridrun.flag_integer("nodes3", 64, when={"layers": 3}), arguments=[])
    assert not flags.applies("nodes3") and flags.nodes3 == 64
    with pytest.raises(FlagError, match="did you mean 'nodes3'"):
        flags.applies("nodes9")


def test_resumed_tpe_sweep_rebuilds_the_conditional_space_and_learns_the_past(script, tmp_path):
    pytest.importorskip("optuna")
    from gridrun.sweep.tuning import _manifest_grid

    runs_dir = tmp_path / "runs"
    df = gridrun.tuning_run(script, sample=5, seed=4, runs_dir=runs_dir, quiet=True, sampler="tpe")
    m = gridrun.sweep.Manifest.load(runs_dir, df.attrs["sweep"])
    assert m.data["grid"]["when"] == {"nodes3": {"layers": [3, 4]}, "momentum": {"optimizer": ["sgd"]}}
    grid = _manifest_grid(m)
    assert grid.when == {"nodes3": {"layers": (3, 4)}, "momentum": {"optimizer": ("sgd",)}}
    sampler = make_sampler("tpe", grid, seed=4, metric="val_loss", mode=None)
    for t in m.trials:  # what a resume's replay does: each ended trial, with only the flags that applied
        sampler.tell(t)
    assert len(sampler.study.trials) == 5
    assert [set(ot.params) for ot in sampler.study.trials] == [set(t.flags) for t in m.trials]
    again = gridrun.tuning_run(resume=df.attrs["sweep"], runs_dir=runs_dir, quiet=True)
    assert again.attrs["trials_ended"] == 5
