"""Search beyond the grid: ranges, flag-declared values, the sweep metric, pruners, samplers."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _util import manifest

import gridrun
from gridrun import space
from gridrun.errors import FlagError, GridrunError
from gridrun.flagspec import declared_flags
from gridrun.grid import build_grid
from gridrun.sweep import list_sweeps
from gridrun.sweep.manifest import plan_sweep
from gridrun.sweep.pruners import ASHA, MedianPruner

ROOT = Path(__file__).resolve().parents[1]

# a custom training loop whose loss at epoch e is q * (1 + 1/e): a smaller q is a better trial
LOOP = textwrap.dedent("""
    import gridrun
    FLAGS = gridrun.flags(
        gridrun.flag_numeric("q", 0.5, "quality: lower is better", values=[0.1, 0.5, 0.9, 0.3]),
        gridrun.flag_integer("epochs", 8, "epochs"),
        gridrun.flag_boolean("log_acc", False, "log val_acc = 1 - q"),
    )
    for e in range(1, FLAGS.epochs + 1):
        logs = {"loss": FLAGS.q * (1 + 1 / e), "val_loss": FLAGS.q * (1 + 1 / e)}
        if FLAGS.log_acc:
            logs["val_acc"] = 1 - FLAGS.q / e
        try:
            gridrun.log_metrics(epoch=e, **logs)
        except Exception:  # a script that swallows errors still gets pruned
            print("swallowed")
    print("finished", FLAGS.q)
""")


@pytest.fixture
def loop_script(tmp_path):
    path = tmp_path / "loop.py"
    path.write_text(LOOP)
    return path


# --------------------------------------------------------------------------------------------------
# Distributions


def test_ranges_draw_typed_values_within_bounds_reproducibly():
    rng = random.Random(0)
    lr = [space.loguniform(1e-5, 1e-1).sample(rng) for _ in range(2000)]
    assert all(1e-5 <= v <= 1e-1 for v in lr) and all(isinstance(v, float) for v in lr)
    import math
    below = sum(v < 1e-3 for v in lr) / len(lr)  # half of the log range lies below 1e-3
    assert 0.45 < below < 0.55
    ints = [space.randint(32, 512).sample(rng) for _ in range(2000)]
    assert all(isinstance(v, int) and 32 <= v <= 512 for v in ints) and {32, 512} <= set(ints)
    stepped = {space.randint(32, 512, step=32).sample(rng) for _ in range(500)}
    assert stepped <= set(range(32, 513, 32)) and len(stepped) > 10
    logint = [space.randint(16, 1024, log=True).sample(rng) for _ in range(2000)]
    assert sum(v < 128 for v in logint) / len(logint) == pytest.approx(math.log(128 / 16) / math.log(1024 / 16),
                                                                         abs=0.06)
    u = space.uniform(0, 0.5)
    assert u.sample(random.Random(7), "integer") in (0,)  # an integer flag gets integers from any range
    a = [space.uniform(0, 0.5).sample(random.Random(3)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


@pytest.mark.parametrize("text,message", [
    ("loguniform(0,1)", "log scale needs low > 0"),
    ("uniform(1,0)", "greater than high"),
    ("normal(0,1)", "unknown distribution"),
    ("randint(1.5,4)", "whole numbers"),
    ("uniform(a,1)", "not a number"),
    ("uniform(1)", "write uniform"),
])
def test_bad_range_specs_are_one_line_errors(text, message):
    with pytest.raises(GridrunError, match=message):
        space.parse_range(text)


def test_range_forms_agree_and_record_exactly():
    a = space.parse_range("loguniform(1e-5, 1e-1)")
    b = space.from_yaml({"loguniform": [1e-5, 1e-1]})
    assert a == b == gridrun.loguniform(1e-5, 1e-1)
    assert space.from_yaml(a.to_json()) == a and str(space.randint(32, 512, step=32)) == "randint(32, 512, step=32)"
    assert space.parse_range("64,128") is None  # a plain list


def test_a_range_on_a_string_or_boolean_flag_is_refused():
    specs = {"opt": gridrun.flag_string("opt", "adam"), "bn": gridrun.flag_boolean("bn", True)}
    for name in specs:
        with pytest.raises(GridrunError, match="cannot take the range"):
            build_grid({name: space.uniform(0, 1)}, specs)
    with pytest.raises(GridrunError, match="cannot take the range"):
        gridrun.flag_string("opt", "adam", values=gridrun.uniform(0, 1))


# --------------------------------------------------------------------------------------------------
# The script's flag definitions give the grid


def test_chapter_script_declares_its_grid_and_sample_gives_146():
    specs = declared_flags(ROOT / "scripts" / "mnist_grid_search.py")
    assert specs["nodes1"].values == (64, 128, 256) and specs["optimizer"].values == ("rmsprop", "adam")
    from gridrun.sweep.tuning import _search_space

    grid = _search_space(ROOT / "scripts" / "mnist_grid_search.py", None, None)
    assert len(grid) == 2916
    m = plan_sweep(ROOT / "scripts" / "mnist_grid_search.py", grid, sample=0.05, seed=1, ordered=False,
                   runs_dir="/nonexistent")
    assert len(m.trials) == 146 and len({t.combination for t in m.trials}) == 146
    # --flag overrides one flag's values; the others stay declared
    grid = _search_space(ROOT / "scripts" / "mnist_grid_search.py", {"nodes1": [128]}, None)
    assert len(grid) == 972


def test_declared_ranges_are_read_statically(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import gridrun\nFLAGS = gridrun.flags(\n"
                      "    gridrun.flag_numeric('lr', 0.01, values=gridrun.loguniform(1e-4, 1e-1)),\n"
                      "    gridrun.flag_integer('units', 64, values=gridrun.randint(16, 256, step=16)),\n)\n")
    specs = declared_flags(script)
    assert specs["lr"].values == space.loguniform(1e-4, 1e-1)
    assert specs["units"].values == space.randint(16, 256, step=16)
    bad = tmp_path / "bad.py"
    bad.write_text("import gridrun\nFLAGS = gridrun.flags(gridrun.flag_numeric('lr', 0.01, values=gridrun.loguniform(0, 1)))\n")
    with pytest.raises(GridrunError, match="log scale"):
        declared_flags(bad)
    worse = tmp_path / "worse.py"
    worse.write_text("import gridrun\nFLAGS = gridrun.flags(gridrun.flag_string('o', 'a', values=gridrun.uniform(0, 1)))\n")
    with pytest.raises(FlagError, match="cannot take the range"):
        declared_flags(worse)


def test_sample_on_a_script_without_values_is_an_error(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("import gridrun\nFLAGS = gridrun.flags(gridrun.flag_numeric('lr', 0.1))\n")
    with pytest.raises(GridrunError, match="declares no values to search"):
        gridrun.tuning_run(script, sample=0.5, runs_dir=tmp_path / "runs", quiet=True)


def test_ranges_need_a_count_and_draw_reproducibly_and_resume_the_same(loop_script, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(GridrunError, match="whole count"):
        gridrun.tuning_run(loop_script, {"q": gridrun.uniform(0.1, 0.9)}, sample=0.5, runs_dir=runs, quiet=True)
    df = gridrun.tuning_run(loop_script, {"q": gridrun.uniform(0.1, 0.9), "epochs": [2]}, sample=4, seed=11,
                            runs_dir=runs, quiet=True)
    m = manifest(runs)
    qs = sorted(t["flags"]["q"] for t in m["trials"])
    assert len(df) == 4 and len(set(qs)) == 4 and all(0.1 <= q <= 0.9 for q in qs)
    assert m["sampler"] == "random" and m["grid"]["ranges"] == {"q": {"uniform": [0.1, 0.9]}}
    # recorded exactly: the run's flags.json holds the very float the manifest holds
    for t in m["trials"]:
        flags = json.loads((runs / t["run_dir"] / "flags.json").read_text())
        assert flags["q"] == t["flags"]["q"]
    runs2 = tmp_path / "runs2"
    gridrun.tuning_run(loop_script, {"q": gridrun.uniform(0.1, 0.9), "epochs": [2]}, sample=4, seed=11,
                       runs_dir=runs2, quiet=True)
    assert sorted(t["flags"]["q"] for t in manifest(runs2)["trials"]) == qs


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    out = gridrun.tuning_run(ROOT / "scripts" / "mnist_grid_search.py", sample=0.05, seed=1, runs_dir=runs,
                             dry_run=True)
    text = capsys.readouterr().out
    assert out is None and not runs.exists()
    assert "2,916 total combinations of flags (sampled to 146 combinations)" in text
    assert "trial 0: nodes1=" in text and "Dry run" in text


# --------------------------------------------------------------------------------------------------
# The metric a sweep optimizes


def test_metric_max_end_to_end_is_recorded_and_ranks(loop_script, tmp_path, capsys):
    runs = tmp_path / "runs"
    gridrun.tuning_run(loop_script, {"epochs": [2], "log_acc": [True]}, metric="val_acc", runs_dir=runs,
                       ordered=True)
    out = capsys.readouterr().out
    m = manifest(runs)
    assert m["metric"] == "val_acc" and m["mode"] is None
    best = out.split("Best trials by val_acc:")[1].splitlines()[1]
    assert "q=0.1" in best  # the highest val_acc, not the lowest
    from gridrun.report.sweepdata import find_sweep_runs, load_sweep

    data = load_sweep(m["id"], find_sweep_runs(m["id"], runs), metric="val_acc")
    assert data.maximize and data.trials[data.best].run.flags["q"] == 0.1
    assert f"gridrun ls --sweep {m['id']} --order metric_val_acc" in out
    # sweep-report needs not be told the metric again: it is in the manifest
    page = Path(gridrun.sweep_report(m["id"], runs_dir=runs, open_browser=False)).read_text()
    import re

    data_json = re.search(r'<script type="application/json" id="gridrun-page">(.*?)</script>', page, re.S)
    assert json.loads(data_json.group(1))["metric"] == "val_acc"


def test_a_metric_the_script_never_logs_is_an_error_naming_what_it_logged(loop_script, tmp_path):
    with pytest.raises(GridrunError, match=r"'val_auc'.*it logged: loss, val_loss"):
        gridrun.tuning_run(loop_script, {"epochs": [1]}, metric="val_auc", runs_dir=tmp_path / "runs", quiet=True)


# --------------------------------------------------------------------------------------------------
# Pruners, on scripted metric sequences


def test_asha_rungs_and_decisions():
    asha = ASHA(grace=1, reduction=3)
    assert [e for e in range(1, 30) if asha.is_rung(e)] == [1, 3, 9, 27]
    assert [e for e in range(1, 30) if ASHA(grace=2, reduction=2, max_epochs=16).is_rung(e)] == [2, 4, 8]
    # trial values (lower is better) at rung 1, arriving one after another
    decisions = [asha(t, 1, v) for t, v in enumerate([0.5, 0.4, 0.9, 0.3, 0.6, 0.2])]
    # 0.5 alone: goes on; 0.4 vs [0.4, 0.5]: best 1/3 -> keep best 1 -> goes on; 0.9: stops; 0.3 best: on;
    # 0.6: stops; 0.2: best of 6 -> keep 2 -> goes on
    assert decisions == [False, False, True, False, True, False]
    assert asha(0, 2, 99.0) is False  # not a rung: no decision
    assert asha(7, 1, float("nan")) is False  # a diverged value is not the pruner's to judge


def test_hyperband_brackets_judge_their_own_trials():
    from gridrun.sweep.pruners import Hyperband, make_pruner

    hb = Hyperband(grace=1, reduction=2, max_epochs=8)  # brackets of grace 1, 2 and 4 (8 is not below 8)
    assert [b.grace for b in hb.brackets] == [1, 2, 4] and hb.describe()["brackets"] == [1, 2, 4]
    assert [b.grace for b in Hyperband(grace=1, reduction=4).brackets] == [1, 4, 16]  # unbounded: 3 brackets
    # trials 0 and 3 share bracket 0 (rungs 1, 2, 4): 3 is worse at epoch 1 and stops there
    assert hb(0, 1, 0.5) is False and hb(3, 1, 0.9) is True
    # trial 1 (bracket 1, rungs 2, 4) is not judged at epoch 1, however bad; trial 4 of that bracket
    # is judged at epoch 2 against trial 1 only
    assert hb(1, 1, 5.0) is False and hb(1, 2, 0.4) is False and hb(4, 2, 0.6) is True
    assert hb(2, 2, 9.0) is False  # bracket 2: first rung at 4
    assert isinstance(make_pruner("hyperband", grace=2, reduction=3), Hyperband)
    with pytest.raises(GridrunError, match="reduction"):
        make_pruner("hyperband", reduction=1)


def test_median_pruner_decisions():
    med = MedianPruner(warmup=1, startup=2)
    assert med(0, 2, 1.0) is False and med(1, 2, 3.0) is False  # not enough others yet
    assert med(2, 2, 2.5) is True  # median of 1.0, 3.0 is 2.0
    assert med(3, 2, 1.5) is False
    assert med(4, 1, 9.0) is False  # within warm-up


def _pruned_sweep(loop_script, runs, **kw):
    return gridrun.tuning_run(loop_script, {"q": [0.1, 0.5, 0.9, 0.3], "epochs": [8]}, ordered=True,
                              prune="asha", prune_options={"grace": 1, "reduction": 2}, runs_dir=runs,
                              quiet=True, **kw)


def _check_pruned(runs):
    m = manifest(runs)
    status = {t["flags"]["q"]: t["status"] for t in m["trials"]}
    assert status[0.1] == "completed"
    assert status[0.9] == "pruned" and status[0.5] == "pruned"
    df = gridrun.ls_runs(runs, sweep=m["id"])
    by_q = {row.flag_q: row for row in df.itertuples()}
    assert by_q[0.1].epochs_completed == 8 and by_q[0.9].epochs_completed == 1 and by_q[0.5].epochs_completed == 1
    assert by_q[0.9].status == "pruned" and "pruned at epoch 1" in by_q[0.9].error_message
    assert "finished" not in by_q[0.9].output and "swallowed" not in by_q[0.9].output
    assert m["counts"]["failed"] == 0 and m["pruner"]["name"] == "asha"
    return m


def test_asha_prunes_custom_loop_trials_in_process(loop_script, tmp_path):
    runs = tmp_path / "runs"
    df = _pruned_sweep(loop_script, runs)
    m = _check_pruned(runs)
    assert df.attrs["trials_ended"] == 4
    # the sweep report shows pruned trials in their own colour and the best-so-far chart
    page = Path(gridrun.sweep_report(m["id"], runs_dir=runs)).read_text()
    assert "status-pruned" in page and "best val_loss against trial-epochs spent" in page
    # pruned trials are final: a resume runs nothing again
    gridrun.tuning_run(resume=m["id"], runs_dir=runs, quiet=True)
    assert sum(len(t["attempts"]) for t in manifest(runs)["trials"]) == 4


def test_hyperband_from_the_command_line(loop_script, tmp_path, capsys):
    from gridrun import cli

    runs = tmp_path / "runs"
    args = ["tuning-run", str(loop_script), "--flag", "q=0.1,0.5,0.9,0.3", "--flag", "epochs=4", "--ordered",
            "--prune", "hyperband", "--prune-reduction", "2", "--runs-dir", str(runs), "-q"]
    assert cli.main(args) == 0
    m = manifest(runs)
    assert m["pruner"]["name"] == "hyperband" and m["pruner"]["brackets"] == [1, 2, 4]
    status = {t["flags"]["q"]: t["status"] for t in m["trials"]}
    # trial 3 (q=0.3) shares bracket 0 with trial 0 (q=0.1) and is worse at its rung 1; trials 1 and 2
    # are alone in brackets whose rungs start at 2 and 4: nothing to be worse than
    assert status == {0.1: "completed", 0.5: "completed", 0.9: "completed", 0.3: "pruned"}
    assert cli.main(args + ["--prune-warmup", "2"]) == 2
    assert "--prune-warmup do not apply to --prune hyperband" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["local", "dask", "ray"])
def test_asha_prunes_on_workers(loop_script, tmp_path, backend):
    """Remote backends (dask, ray) share no files with the client here: trials run in worker temp dirs."""
    if backend in ("dask", "ray"):
        pytest.importorskip({"dask": "distributed", "ray": "ray"}[backend])
    runs = tmp_path / "runs"
    # one worker so that the arrival order (and so the decisions) is the trial order
    _pruned_sweep(loop_script, runs, backend=backend, jobs=1)
    _check_pruned(runs)


FIT = textwrap.dedent("""
    import gridrun
    from gridrun.datasets import load_prepared
    FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.01, values=[0.01, 1e-6]))  # 1e-6 learns nothing
    (x, y), _ = load_prepared("digits")
    model = gridrun.Sequential([gridrun.Dense(16, activation="relu"), gridrun.Dense(10, activation="softmax")])
    history = gridrun.fit(model, x[:300], y[:300], loss="categorical_crossentropy",
                          optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), epochs=EPOCHS,
                          batch_size=64, validation_split=0.2, verbose=0)
    print("fit returned after", history.epochs_completed, "epochs; pruned:", gridrun.is_pruned())
""")


def test_a_pruned_fit_trial_returns_early_and_ends_pruned(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(FIT.replace("EPOCHS", "6"))
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, ordered=True, sample=1.0, prune="asha", prune_options={"grace": 2, "reduction": 2},
                       runs_dir=runs, quiet=True)
    m = manifest(runs)
    slow = next(t for t in m["trials"] if t["flags"]["lr"] == 1e-6)
    fast = next(t for t in m["trials"] if t["flags"]["lr"] == 0.01)
    assert fast["status"] == "completed" and slow["status"] == "pruned"
    out = (runs / slow["run_dir"] / "output.log").read_text()
    assert "fit returned after 2 epochs; pruned: True" in out  # the script went on after fit, and stayed pruned
    assert "fit returned after 6 epochs; pruned: False" in (runs / fast["run_dir"] / "output.log").read_text()
    props = json.loads((runs / slow["run_dir"] / "properties.json").read_text())
    assert props["status"] == "pruned" and props["pruned_epoch"] == 2


def test_a_rung_at_the_last_epoch_stops_nothing(tmp_path):
    """With one epoch and grace 1 the only rung is the trials' last epoch: the worse trial's value is
    judged there, but a stop would save nothing, so both trials complete (they were marked pruned)."""
    script = tmp_path / "fit.py"
    script.write_text(FIT.replace("EPOCHS", "1"))
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, ordered=True, sample=1.0, prune="asha", prune_options={"grace": 1, "reduction": 2},
                            runs_dir=runs, quiet=True)
    assert sorted(df["status"]) == ["completed", "completed"]
    assert all("after 1 epochs; pruned: False" in out for out in df["output"])
    assert len(manifest(runs)["trials"]) == 2


# --------------------------------------------------------------------------------------------------
# TPE


def test_tpe_sampler_runs_asks_and_resumes_after_kill(loop_script, tmp_path):
    pytest.importorskip("optuna")
    runs = tmp_path / "runs"
    slow = tmp_path / "slow.py"
    slow.write_text(LOOP.replace('print("finished", FLAGS.q)', "import time; time.sleep(1.5)"))
    cmd = [sys.executable, "-m", "gridrun.cli", "tuning-run", str(slow), "--flag", "q=uniform(0.05,0.95)",
           "--flag", "epochs=1", "--sample", "8", "--sampler", "tpe", "--seed", "5", "--runs-dir", str(runs), "-q"]
    proc = subprocess.Popen(cmd)
    import time

    def completed_dirs() -> set[str]:
        out = set()
        for d in runs.glob("2*"):
            try:
                if json.loads((d / "properties.json").read_text()).get("status") == "completed":
                    out.add(d.name)
            except (OSError, ValueError):
                pass
        return out

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(completed_dirs()) < 3:  # kill -9 the client after 3 trials
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    before = manifest(runs)
    completed_before = completed_dirs()
    assert 3 <= len(completed_before) < 8, "the sweep should be killed midway"
    subprocess.run(cmd[:4] + ["--resume", before["id"], "--runs-dir", str(runs), "-q"], check=True)
    after = manifest(runs)
    assert after["status"] == "completed" and after["sampler"] == "tpe"
    assert len(after["trials"]) == 8 and all(t["status"] == "completed" for t in after["trials"])
    # nothing run twice: each completed run dir belongs to exactly one trial, and earlier ones were kept
    recorded = {t["run_dir"] for t in after["trials"]}
    assert len(recorded) == 8 and completed_before <= recorded
    assert completed_dirs() == recorded  # no trial completed twice
    qs = [t["flags"]["q"] for t in after["trials"]]
    assert len(set(qs)) == 8 and all(0.05 <= q <= 0.95 for q in qs)


def test_cmaes_sweep_end_to_end(loop_script, tmp_path):
    pytest.importorskip("optuna")
    pytest.importorskip("cmaes")
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(loop_script, {"q": gridrun.uniform(0.1, 0.9), "epochs": [2]}, sample=6, seed=3,
                            sampler="cmaes", runs_dir=runs, quiet=True)
    assert sorted(df["status"]) == ["completed"] * 6
    assert all(0.1 <= q <= 0.9 for q in df["flag_q"]) and df["flag_q"].nunique() == 6
    assert manifest(runs)["sampler"] == "cmaes"


@pytest.mark.parametrize("name", ["tpe", "cmaes"])
def test_optuna_samplers_take_several_asks_in_flight_and_learn_from_tells(name):
    pytest.importorskip("optuna")
    from gridrun.record import Status
    from gridrun.sweep.samplers import make_sampler
    from gridrun.sweep.state import Trial

    if name == "cmaes":
        pytest.importorskip("cmaes")
    specs = {"x": gridrun.flag_numeric("x", 0.0), "k": gridrun.flag_string("k", "a"),
             "n": gridrun.flag_integer("n", 1)}
    grid = build_grid({"x": gridrun.uniform(-1, 1), "k": ["a", "b"], "n": gridrun.randint(1, 9)}, specs)
    sampler = make_sampler(name, grid, seed=0, metric="val_loss", mode=None)
    assert sampler.name == name
    losses = []
    for start in range(0, 36, 4):  # four asks in flight before any tell, as with --jobs 4
        batch = [Trial(trial=i, flags={}) for i in range(start, start + 4)]
        for t in batch:
            t.flags = sampler.ask(t)
            assert isinstance(t.flags["n"], int) and 1 <= t.flags["n"] <= 9 and -1 <= t.flags["x"] <= 1
        for t in batch:
            t.status = Status.COMPLETED
            t.metrics = {"val_loss": (t.flags["x"] - 0.5) ** 2 + (0.5 if t.flags["k"] == "b" else 0.0)}
            losses.append(t.metrics["val_loss"])
            sampler.tell(t)
    assert len(sampler.study.trials) == 36 and not sampler.live
    first, last = sorted(losses[:12]), sorted(losses[-12:])
    assert statistics.median(last) < statistics.median(first)  # it learned where the good values are


# --------------------------------------------------------------------------------------------------
# Resuming a pruned sweep; what TPE learns from pruned trials

STOPPABLE = LOOP.replace("for e in range(1, FLAGS.epochs + 1):", textwrap.dedent("""\
    import os
    stop = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stop")
    if FLAGS.q == 0.5 and os.path.exists(stop):  # Ctrl-C halfway through the sweep, once
        os.remove(stop)
        raise KeyboardInterrupt
    for e in range(1, FLAGS.epochs + 1):"""))
QS = [0.1, 0.9, 0.2, 0.8, 0.5, 0.6, 0.3, 0.7]


def _decisions(runs):
    m = manifest(runs)
    out = {}
    for t in m["trials"]:
        p = json.loads((runs / t["run_dir"] / "properties.json").read_text())
        out[t["flags"]["q"]] = (t["status"], p.get("pruned_epoch"))
    return out


def test_a_resumed_sweep_prunes_as_the_same_sweep_uninterrupted(tmp_path):
    """The fresh pruner of a resumed sweep hears every ended trial's history again (from its run dir):
    without that, trial q=0.5, the first after the resume, met empty rungs and ran to the end."""
    script = tmp_path / "loop.py"
    script.write_text(STOPPABLE)
    kw = dict(ordered=True, prune="asha", prune_options={"grace": 1, "reduction": 2}, quiet=True)
    space = {"q": QS, "epochs": [8]}
    gridrun.tuning_run(script, space, runs_dir=tmp_path / "whole", **kw)
    whole = _decisions(tmp_path / "whole")
    assert whole[0.5] == ("pruned", 1) and whole[0.1] == ("completed", None)

    (tmp_path / "stop").touch()
    with pytest.raises(KeyboardInterrupt):
        gridrun.tuning_run(script, space, runs_dir=tmp_path / "halves", **kw)
    m = manifest(tmp_path / "halves")
    assert [t["status"] for t in m["trials"]][:5] == ["completed", "pruned", "pruned", "pruned", "interrupted"]
    gridrun.tuning_run(script, space, runs_dir=tmp_path / "halves", resume=m["id"], quiet=True)
    assert _decisions(tmp_path / "halves") == whole


def _tpe_grid():
    specs = {"q": gridrun.flag_numeric("q", 0.5)}
    return build_grid({"q": gridrun.uniform(0.05, 0.95)}, specs)


def test_tpe_is_told_a_pruned_trials_intermediate_values():
    """As Optuna's own pruning loop does: trial.report(value, epoch) for each epoch, then PRUNED."""
    pytest.importorskip("optuna")
    from gridrun.record import Status
    from gridrun.sweep.samplers import make_sampler
    from gridrun.sweep.state import Trial

    sampler = make_sampler("tpe", _tpe_grid(), seed=0, metric="val_loss", mode=None)
    t = Trial(trial=0, flags={})
    t.flags = sampler.ask(t)
    t.status, t.metrics = Status.PRUNED, {"val_loss": 0.7}
    t.history = {"val_loss": [0.9, None, 0.7], "loss": [1.0, 0.9, 0.8]}
    sampler.tell(t)
    (ot,) = sampler.study.trials
    assert ot.state.name == "PRUNED" and ot.intermediate_values == {1: 0.9, 2: 0.7}
    # a pruned trial that ended before a resume is added to the fresh study the same way
    again = make_sampler("tpe", _tpe_grid(), seed=0, metric="val_loss", mode=None)
    old = Trial(trial=0, flags=dict(t.flags), status=Status.PRUNED, metrics={"val_loss": 0.7})
    old.history = {"val_loss": [0.9, 0.7]}
    again.tell(old)
    (ot,) = again.study.trials
    assert ot.state.name == "PRUNED" and ot.intermediate_values == {1: 0.9, 2: 0.7} and ot.value == 0.7


def test_a_tpe_asha_sweep_reports_pruned_trials_to_optuna_and_on_resume(loop_script, tmp_path):
    pytest.importorskip("optuna")
    from gridrun.sweep.samplers import TPESampler

    runs = tmp_path / "runs"
    sampler = TPESampler(n_startup_trials=3)
    gridrun.tuning_run(loop_script, {"q": gridrun.uniform(0.05, 0.95), "epochs": [4]}, sample=8, seed=1,
                       sampler=sampler, prune="asha", prune_options={"reduction": 2}, runs_dir=runs, quiet=True)
    m = manifest(runs)
    assert m["sampler"] == "tpe" and m["sampler_options"] == {"n_startup_trials": 3}
    pruned = [ot for ot in sampler.study.trials if ot.state.name == "PRUNED"]
    assert pruned and len(sampler.study.trials) == 8
    by_q = {t["flags"]["q"]: t for t in m["trials"]}
    for ot in pruned:
        series = json.loads((runs / by_q[ot.params["q"]]["run_dir"] / "metrics.json").read_text())["val_loss"]
        assert ot.intermediate_values == {e + 1: v for e, v in enumerate(series)}
    # a resume (nothing left to run) rebuilds the study from the run dirs, intermediate values included
    from gridrun.sweep.loop import replay
    from gridrun.sweep.manifest import Manifest
    from gridrun.sweep.samplers import make_sampler
    from gridrun.sweep.tuning import _manifest_grid

    mf = Manifest.load(runs, m["id"])
    fresh = make_sampler("tpe", _manifest_grid(mf), m["seed"], None, None, m["sampler_options"])
    replay(mf, runs, fresh, None)
    assert sorted(map(str, (ot.intermediate_values for ot in fresh.study.trials if ot.state.name == "PRUNED"))) == \
        sorted(map(str, (ot.intermediate_values for ot in pruned)))


# --------------------------------------------------------------------------------------------------
# What a new user trips over (issue 22)

TUTORIAL_LOOP = textwrap.dedent("""
    import gridrun
    FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.1, values=[0.1, 0.2, 0.3]))
    for e in range(1, 4):
        gridrun.log_metrics(epoch=e, train_loss=FLAGS.lr / e, test_loss=2 * FLAGS.lr / e)
""")

TUTORIAL_FIT_LOOP = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, optax
    import gridrun
    FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.1, values=[0.1, 0.2, 0.3]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x @ np.arange(4.0)).astype(np.float32)

    def init(key, hp):
        w = jnp.zeros(4)
        return w, optax.sgd(hp["learning_rate"]).init(w)

    def train_step(state, batch, hp, key):
        w, opt = state
        loss, g = jax.value_and_grad(lambda w: jnp.mean((batch[0] @ w - batch[1]) ** 2))(w)
        upd, opt = optax.sgd(hp["learning_rate"]).update(g, opt, w)
        return (optax.apply_updates(w, upd), opt), {"train_loss": loss}

    gridrun.fit_loop(init, train_step, (x, y), hparams={"learning_rate": FLAGS.lr}, epochs=3, batch_size=16)
""")


@pytest.fixture(params=["log_metrics", "fit_loop"])
def tutorial_script(request, tmp_path):
    path = tmp_path / "tutorial.py"
    path.write_text(TUTORIAL_LOOP if request.param == "log_metrics" else TUTORIAL_FIT_LOOP)
    return path


def test_a_pruner_whose_metric_the_first_trial_did_not_log_stops_the_sweep(tutorial_script, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(GridrunError, match=r"--prune asha judges trials by val_loss \(else loss\), but trial 0 did "
                                           r"not log it \(it logged: .*train_loss.*\): pass --metric "):
        gridrun.tuning_run(tutorial_script, ordered=True, prune="asha", runs_dir=runs, quiet=True)
    m = manifest(runs)
    assert m["status"] == "interrupted" and [t["status"] for t in m["trials"]] == ["completed", "pending", "pending"]
    with pytest.raises(GridrunError, match=r"the sweep optimizes 'val_acc', but trial 0 did not log it"):
        gridrun.tuning_run(tutorial_script, ordered=True, metric="val_acc", runs_dir=runs, quiet=True)


def test_the_default_metric_missing_is_a_warning_once_and_in_the_summary(tutorial_script, tmp_path, capsys):
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(tutorial_script, ordered=True, runs_dir=runs)
    assert sorted(df["status"]) == ["completed"] * 3
    out, err = capsys.readouterr()
    hint = "--metric test_loss" if "test_loss" in df.columns or "metric_test_loss" in df.columns else "--metric train_loss"
    assert err.count("warning: the sweep ranks trials by val_loss (else loss), but trial 0 logged neither") == 1
    assert hint in err
    assert "warning: the sweep ranks trials by val_loss" in out and "Best trials" not in out  # the summary says why
    # with the metric given, the sweep ranks its trials
    gridrun.tuning_run(tutorial_script, ordered=True, metric="train_loss", runs_dir=runs)
    out, err = capsys.readouterr()
    assert "warning" not in err and "Best trials by train_loss:" in out


def test_resume_dry_run_prints_what_would_run_and_runs_nothing(tmp_path, capsys):
    from gridrun import cli

    script = tmp_path / "loop.py"
    script.write_text(STOPPABLE)
    runs = tmp_path / "runs"
    (tmp_path / "stop").touch()
    with pytest.raises(KeyboardInterrupt):
        gridrun.tuning_run(script, {"q": QS, "epochs": [8]}, ordered=True, prune="asha",
                           prune_options={"grace": 1, "reduction": 2}, runs_dir=runs, quiet=True)
    before = list_sweeps(runs)[-1].read_bytes()
    dirs = sorted(p.name for p in runs.iterdir())
    capsys.readouterr()
    assert cli.main(["tuning-run", "--resume", manifest(runs)["id"], "--dry-run", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "4 of 8 trials ended, 4 would run" in out
    assert "trial 4 (interrupted, 1 attempt(s) so far): q=0.5, epochs=8" in out and "trial 7 (pending" in out
    assert "Pruner: {'name': 'asha', 'grace': 1, 'reduction': 2.0" in out
    assert "rungs epoch 1: 4 value(s), epoch 2: 1 value(s), epoch 4: 1 value(s)" in out
    assert "told 1 completed, 3 pruned" in out and "Dry run: nothing was run or written." in out
    assert list_sweeps(runs)[-1].read_bytes() == before and sorted(p.name for p in runs.iterdir()) == dirs


def test_a_sweep_too_small_for_its_pruner_says_so_before_it_starts(loop_script, tmp_path, capsys):
    runs = tmp_path / "runs"
    six = {"q": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "epochs": [4]}
    gridrun.tuning_run(loop_script, six, prune="asha", runs_dir=runs)
    out = capsys.readouterr().out
    note = out.index("note: 6 trials are few for --prune asha (grace 1, reduction 4)")
    assert note < out.index("Sweep ") and "--prune-grace E" in out and "--prune-reduction 2" in out
    assert out.count("note: 6 trials are few") == 1
    gridrun.tuning_run(loop_script, six, prune="asha", prune_options={"reduction": 2}, runs_dir=runs, dry_run=True)
    assert "are few" not in capsys.readouterr().out  # 6 >= 2 * 2: rungs above the first have trials to compare
    gridrun.tuning_run(loop_script, six, prune="median", runs_dir=runs, dry_run=True)
    assert "note: 6 trials" not in capsys.readouterr().out
    gridrun.tuning_run(loop_script, six, prune="median", prune_options={"startup": 6}, runs_dir=runs, dry_run=True)
    assert "6 trials are too few for --prune median" in capsys.readouterr().out


def test_the_best_trials_show_a_better_pruned_trial_with_its_status(loop_script, tmp_path, capsys):
    from gridrun.sweep.pruners import Pruner

    class StopTrialZero(Pruner):  # a pruner that stops the best trial (q=0.1) at epoch 1
        name = "stop-zero"

        def report(self, trial, epoch, value):
            return trial == 0

    runs = tmp_path / "runs"
    gridrun.tuning_run(loop_script, {"q": [0.1, 0.5, 0.9], "epochs": [8]}, ordered=True, prune=StopTrialZero(),
                       runs_dir=runs)
    out = capsys.readouterr().out
    lines = out.split("Best trials by val_loss (the value each reached; a pruned trial's at the epoch it stopped):")[1]
    rows = lines.strip().splitlines()
    assert rows[0].split()[:5] == ["0.2", "pruned", "at", "epoch", "1"] and rows[0].endswith("q=0.1, epochs=8")
    assert rows[1].split()[:2] == ["0.5625", "completed"] and rows[2].split()[:2] == ["1.012", "completed"]
    assert ("note: pruned trial 0 reached val_loss 0.2 when it stopped (pruned at epoch 1), better than the best "
            "completed trial's 0.5625 (trial 1)") in out
    assert "gridrun training-run loop.py --flag q=0.1 --flag epochs=8" in out
    view = next(line for line in out.splitlines() if line.startswith("View a run"))
    assert manifest(runs)["trials"][1]["run_dir"] in view  # the best completed trial
