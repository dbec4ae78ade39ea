"""PBT outside a population (gridrun/sweep/pbt_rounds.py): `--pbt` without `--population` runs trials in
rounds of --pbt-interval epochs through checkpoints and takes the very decisions population PBT takes
for the same metrics; in-process, local workers, resumed; a diverged trial is replaced."""

import json
from pathlib import Path

import numpy as np
import pytest

import gridrun
from gridrun import cli
from gridrun.sweep.manifest import Manifest, list_sweeps

SCRIPT = """
import os
import gridrun
from gridrun import Dense, Dropout, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_numeric("lr", 1e-3, "learning rate", values=gridrun.loguniform(1e-4, 3e-2)),
    gridrun.flag_numeric("dropout", 0.1, "dropout", values=gridrun.uniform(0.0, 0.5)),
    gridrun.flag_string("act", "relu", "activation"),
    gridrun.flag_string("marker", "", "Ctrl-C once at epoch 3 when this file does not exist"),
)


def end(epoch, logs):
    if FLAGS.marker and epoch + 1 == 3 and not os.path.exists(FLAGS.marker):
        open(FLAGS.marker, "w").close()
        raise KeyboardInterrupt


(x, y), _ = load_prepared("digits")
model = Sequential([Dense(16, activation=FLAGS.act), Dropout(FLAGS.dropout), Dense(10, activation="softmax")])
gridrun.fit(model, x[:400], y[:400], loss="categorical_crossentropy", metrics=("accuracy",),
            optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), epochs=4, batch_size=50,
            validation_split=0.25, seed=0, verbose=0, callbacks=[gridrun.LambdaCallback(on_epoch_end=end)])
"""

ARGS = ["--sample", "6", "--seed", "11", "--pbt", "--pbt-interval", "1", "--pbt-quantile", "0.5", "--quiet"]


def _read(run_dir, name):
    return json.loads((Path(run_dir) / name).read_text())


def _sweep(script, runs, *extra):
    assert cli.main(["tuning-run", str(script), *ARGS, "--runs-dir", str(runs), *extra]) == 0
    return _stories(runs)


def _stories(runs):
    """{trial: (its lineage as (epoch, copied_from, values), its metrics)} of a sweep's run dirs."""
    df = gridrun.ls_runs(runs)
    out = {}
    for r in df.itertuples():
        props = _read(r.run_dir, "properties.json")
        out[props["trial"]] = ([(e["epoch"], e["copied_from"], e["values"]) for e in props["pbt"]],
                               _read(r.run_dir, "metrics.json"), props, r)
    return out


def _same_lineage(a, b):
    assert sorted(a) == sorted(b)
    for t in a:
        la, lb = a[t][0], b[t][0]
        assert [(e, c) for e, c, _ in la] == [(e, c) for e, c, _ in lb], t
        for (_, _, va), (_, _, vb) in zip(la, lb, strict=True):
            assert va == pytest.approx(vb, rel=1e-9), t


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seqpbt")
    script = tmp / "train.py"
    script.write_text(SCRIPT)
    return script, tmp, _sweep(script, tmp / "seq"), _sweep(script, tmp / "pop", "--population")


def test_sequential_pbt_takes_the_decisions_population_pbt_takes(sweeps):
    """The equal-decisions test: the same sweep (seed, trials, settings) as one population and as
    sequential trials through checkpoints: the same lineage (who copied whom after which epoch, the same
    explored values), and the same training (metrics to the population's tolerance)."""
    _, _, seq, pop = sweeps
    _same_lineage(seq, pop)
    assert sum(len(v[0]) for v in seq.values()) == 3 * 3  # quantile 0.5 of 6: 3 copies after each of epochs 1-3
    for t in seq:
        for name in ("loss", "val_loss", "hp_lr", "hp_dropout", "lr"):
            np.testing.assert_allclose(seq[t][1][name], pop[t][1][name], rtol=2e-4, atol=1e-6, err_msg=f"{t} {name}")


def test_each_run_dir_tells_its_trials_story(sweeps):
    """One run dir per trial, as population mode's: hp_* per epoch (the optimizer's lr follows them), the
    lineage with the donor's run dir, the settings, and the final values in ls_runs()."""
    _, tmp, seq, pop = sweeps
    assert len(gridrun.ls_runs(tmp / "seq")) == 6
    for _t, (lineage, metrics, props, row) in seq.items():
        assert props["status"] == "completed" and props["pbt_settings"]["flags"] == ["dropout", "lr"]
        assert props["pbt_settings"]["interval"] == 1 and props["pbt_settings"]["quantile"] == 0.5
        assert len(metrics["hp_lr"]) == len(metrics["loss"]) == 4
        np.testing.assert_allclose(metrics["lr"], metrics["hp_lr"], rtol=1e-6)  # the optimizer ran with them
        for epoch, donor, values in lineage:
            assert props["pbt"][[e["epoch"] for e in props["pbt"]].index(epoch)]["run"] == Path(seq[donor][3].run_dir).name
            assert metrics["hp_lr"][epoch] == pytest.approx(values["lr"])  # the next epoch ran with the new value
        assert row.metric_hp_lr == pytest.approx(metrics["hp_lr"][-1])
        assert row.flag_lr == pytest.approx(metrics["hp_lr"][0])  # flags.json: the values it started with
    assert {k: v for k, v in seq[0][2]["pbt_settings"].items() if k not in ("paths", "sequential")} == \
        {k: v for k, v in pop[0][2]["pbt_settings"].items() if k != "paths"}


def test_the_sweep_report_draws_a_sequential_pbt_sweep(sweeps):
    from gridrun.report.pbt_charts import sweep_charts
    from gridrun.report.sweepdata import find_sweep_runs, load_sweep

    _, tmp, seq, _ = sweeps
    sweep = seq[0][2]["sweep"]
    data = load_sweep(sweep, find_sweep_runs(sweep, tmp / "seq"))
    charts = sweep_charts(data)
    assert [c.id for c in charts][:1] == ["pbt-lineage"] and "9 copies" in charts[0].title
    assert {c.id for c in charts[1:]} == {"pbt-schedule-lr", "pbt-schedule-dropout"}


def test_local_workers_take_the_same_decisions(sweeps):
    script, tmp, seq, _ = sweeps
    jobs = _sweep(script, tmp / "jobs", "--jobs", "2")
    _same_lineage(jobs, seq)
    for t in seq:
        np.testing.assert_allclose(jobs[t][1]["val_loss"], seq[t][1]["val_loss"], rtol=1e-5, atol=1e-6)


def test_resume_of_an_interrupted_sequential_pbt_sweep_continues_with_the_same_lineage(sweeps):
    """Ctrl-C in epoch 3 of the first trial to get there: the others wait paused at epoch 2 (their round's
    decisions taken); a resume (no --pbt needed) continues them from their checkpoints, the interrupted one
    from its last, and the lineage and metrics are those of the uninterrupted sweep."""
    script, tmp, _, _ = sweeps
    runs, marker, exists = tmp / "resumed", tmp / "stopped", tmp / "exists"
    exists.touch()  # the same sweep (the marker flag too), never interrupted
    seq = _sweep(script, tmp / "whole", "--flag", f"marker={exists}")
    with pytest.raises(KeyboardInterrupt):
        gridrun.tuning_run(script, {"marker": [str(marker)]}, sample=6, seed=11, pbt={"interval": 1, "quantile": 0.5},
                           runs_dir=runs, quiet=True)
    (path,) = list_sweeps(runs)
    data = json.loads(path.read_text())
    assert {t["status"] for t in data["trials"]} == {"paused", "interrupted"}
    assert cli.main(["tuning-run", "--resume", data["id"], "--runs-dir", str(runs), "--quiet"]) == 0
    m = Manifest.load(runs, data["id"])
    assert m.data["status"] == "completed" and m.data["settings"]["population"] is False
    got = _stories(runs)
    _same_lineage(got, seq)
    for t in seq:
        np.testing.assert_allclose(got[t][1]["val_loss"], seq[t][1]["val_loss"], rtol=1e-5, atol=1e-6)


def test_compiled_programs_are_reused_across_segments(sweeps, tmp_path):
    """In-process, every segment of every trial reuses the compiled training program: a second sequential
    PBT sweep (other trials, other decisions: 24 segments, continued from own and donors' checkpoints)
    compiles nothing."""
    import jax
    import jax.numpy as jnp
    from jax import monitoring

    script, tmp, _, _ = sweeps
    count = [0]

    def listen(name, duration, **kw):
        if name == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    monitoring.register_event_duration_secs_listener(listen)
    try:
        _sweep(script, tmp_path / "warm", "--backend", "inprocess")
        jax.jit(lambda v: v * 3.0 + 1.0)(jnp.ones(7))  # the listener does count compilations
        assert count[0] >= 1
        before = count[0]
        assert cli.main(["tuning-run", str(script), "--sample", "6", "--seed", "12", "--pbt", "--pbt-interval", "1",
                         "--pbt-quantile", "0.5", "--quiet", "--runs-dir", str(tmp_path / "again")]) == 0
        again = _stories(tmp_path / "again")
    finally:
        monitoring.unregister_event_duration_listener(listen)
    assert sum(len(v[0]) for v in again.values()) == 9
    assert count[0] == before, f"{count[0] - before} compilation(s) in the second sweep"


def test_errors_say_what_to_change(sweeps, tmp_path, capsys):
    script, _, _, _ = sweeps
    code = cli.main(["tuning-run", str(script), "--flag", "act=relu,tanh", "--flag", "lr=0.001", "--flag", "dropout=0.1",
                     "--pbt", "--runs-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "nothing to mutate" in err and "act" in err  # population mode's message, unchanged
    code = cli.main(["tuning-run", str(script), "--sample", "2", "--pbt", "--prune", "asha", "--runs-dir", str(tmp_path),
                     "--quiet"])
    assert code == 2 and "drop --prune" in capsys.readouterr().err
    code = cli.main(["tuning-run", str(script), "--sample", "2", "--pbt", "--checkpoints", "best",
                     "--runs-dir", str(tmp_path), "--quiet"])
    assert code == 2 and "last checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()


def test_a_sequential_pbt_winner_replays_as_a_schedule(sweeps, tmp_path):
    script, _, seq, _ = sweeps
    trial = max(seq, key=lambda t: len(seq[t][0]))
    run_dir = seq[trial][3].run_dir
    assert cli.main(["training-run", str(script), "--schedule", run_dir, "--runs-dir", str(tmp_path), "--quiet"]) == 0
    replay = gridrun.ls_runs(tmp_path).iloc[0]["run_dir"]
    got, want = _read(replay, "metrics.json"), seq[trial][1]
    assert got["hp_lr"] == pytest.approx(want["hp_lr"], rel=1e-6) and len(set(np.round(got["hp_lr"], 9))) > 1
    np.testing.assert_allclose(got["lr"], got["hp_lr"], rtol=1e-6)


OWN_LOOP = """
import jax
import jax.numpy as jnp
import numpy as np
import gridrun

FLAGS = gridrun.flags(
    gridrun.flag_numeric("lr", 0.1, "learning rate", values=gridrun.uniform(0.05, 0.3)),
    gridrun.flag_numeric("bad", 0.0, "above 0.9 the validation loss is NaN", values=gridrun.uniform(0.0, 1.0)),
)
x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
y = 3 * x


def init(key, hp):
    return {"w": jnp.zeros((1, 1))}


def train_step(state, batch, hp, key):
    xb, yb = batch
    loss, g = jax.value_and_grad(lambda w: jnp.mean((xb @ w - yb) ** 2))(state["w"])
    return {"w": state["w"] - hp["lr"] * g}, {"loss": loss}


def eval_step(state, batch, hp):
    loss = jnp.mean((batch[0] @ state["w"] - batch[1]) ** 2)
    return {"loss": jnp.where(hp["bad"] > 0.9, jnp.nan, loss)}


gridrun.fit_loop(init, train_step, (x, y), hparams={"lr": FLAGS.lr, "bad": FLAGS.bad}, eval_step=eval_step,
                 validation_data=(x, y), epochs=4, batch_size=16, seed=0)
"""


def test_a_diverged_trial_is_replaced_not_propagated(tmp_path):
    """An own loop whose val_loss is NaN for bad > 0.9: that trial pauses at once, is replaced at its
    round's end by a top trial's state and perturbed values (never a donor), and completes; no trial
    ever copies a NaN."""
    script = tmp_path / "loop.py"
    script.write_text(OWN_LOOP)
    seed = next(s for s in range(200) if _one_bad(script, s))
    df = gridrun.tuning_run(script, sample=4, seed=seed, pbt={"interval": 2, "resample": 0.0}, runs_dir=tmp_path / "r",
                            quiet=True)
    assert set(df["status"]) == {"completed"}, df[["status"]]
    stories = {_read(r.run_dir, "properties.json")["trial"]: (r, _read(r.run_dir, "properties.json"),
                                                             _read(r.run_dir, "metrics.json")) for r in df.itertuples()}
    (bad,) = [t for t, (_, _, m) in stories.items() if m["val_loss"][0] is None]
    _, props, metrics = stories[bad]
    assert metrics["val_loss"][:2] == [None, None]  # its diverged epoch, and the one it did not train
    assert all(np.isfinite(metrics["val_loss"][2:]))
    event = props["pbt"][0]
    assert event["epoch"] == 2 and event["copied_from"] != bad and event["values"]["bad"] <= 0.9
    assert metrics["hp_bad"][2] == pytest.approx(event["values"]["bad"])
    for t, (_, p, m) in stories.items():
        assert all(e["copied_from"] != bad for e in p["pbt"])
        if t != bad:
            assert all(v is not None and np.isfinite(v) for v in m["val_loss"])


def _one_bad(script, seed):
    """Does the sweep of 4 trials seeded `seed` have exactly one trial with bad > 0.9, and the others low
    enough that x1.2 keeps them at or below 0.9?"""
    from gridrun.sweep.samplers import make_sampler
    from gridrun.sweep.state import Trial
    from gridrun.sweep.tuning import _search_space

    grid = _search_space(script, None, None)
    sampler = make_sampler("random", grid, seed, None, None)
    bad = [sampler.ask(Trial(trial=i, flags={}))["bad"] for i in range(4)]
    return sum(b > 0.9 for b in bad) == 1 and all(b <= 0.75 or b > 0.9 for b in bad)


def test_dask_workers_take_the_same_decisions(sweeps):
    """On a Dask cluster (no shared file system assumed) a trial's checkpoint and metrics travel with its
    task, and back with its result: the same lineage and metrics as in-process."""
    distributed = pytest.importorskip("distributed")
    script, tmp, seq, _ = sweeps
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        got = _sweep(script, tmp / "dask", "--backend", "dask", "--scheduler", cluster.scheduler_address)
    _same_lineage(got, seq)
    for t in seq:
        np.testing.assert_allclose(got[t][1]["val_loss"], seq[t][1]["val_loss"], rtol=1e-5, atol=1e-6)
        assert got[t][2]["worker"] and got[t][2]["status"] == "completed"


def test_ray_workers_take_the_same_decisions(sweeps):
    pytest.importorskip("ray")
    script, tmp, seq, _ = sweeps
    got = _sweep(script, tmp / "ray", "--backend", "ray", "--jobs", "2")
    _same_lineage(got, seq)
    for t in seq:
        np.testing.assert_allclose(got[t][1]["val_loss"], seq[t][1]["val_loss"], rtol=1e-5, atol=1e-6)
        assert got[t][2]["context"] == "ray" and got[t][2]["status"] == "completed"


def test_the_default_interval_comes_from_the_trials_epochs(tmp_path):
    """No --pbt-interval: max(1, epochs // 10) of the epochs the trials' fit_loop reports (4 here: every epoch)."""
    script = tmp_path / "loop.py"
    script.write_text(OWN_LOOP.replace("values=gridrun.uniform(0.0, 1.0)", "values=gridrun.uniform(0.0, 0.5)"))
    df = gridrun.tuning_run(script, sample=4, seed=0, pbt=True, runs_dir=tmp_path / "r", quiet=True)
    props = [_read(d, "properties.json") for d in df["run_dir"]]
    assert set(df["status"]) == {"completed"} and {p["pbt_settings"]["interval"] for p in props} == {1}
    assert sorted(e["epoch"] for p in props for e in p["pbt"]) == [1, 2, 3]  # 1 of 4 copies after epochs 1-3
