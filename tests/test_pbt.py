"""Population-based training: the decisions (gridrun/pbt.py), the exploit/explore step inside a
population's program (train/population/exploit.py) and an end-to-end `--population --pbt` sweep whose
run dirs record each trial's schedule and lineage."""

import json
import math

import numpy as np
import pytest
from _util import LINEN_MLP

import gridrun
from gridrun import cli
from gridrun.errors import GridrunError
from gridrun.pbt import MutableFlag, PBTConfig, decide, explore, mutable_flags, quantile_count, rng
from gridrun.space import loguniform, randint, uniform

FLAGS = (MutableFlag("lr", range=loguniform(1e-4, 3e-2)), MutableFlag("dropout", range=uniform(0.0, 0.5)),
         MutableFlag("patience", "integer", range=randint(1, 6)), MutableFlag("l2", range=uniform(0.0, 0.1, step=0.01)),
         MutableFlag("batch", "integer", values=(16, 32, 64)))


# -- decisions ---------------------------------------------------------------------------------------
def test_decisions_are_determined_by_the_seed_and_epoch():
    values = np.random.default_rng(0).normal(size=16)
    a = decide(values, "min", 0.25, rng(7, 4))
    assert a == decide(values, "min", 0.25, rng(7, 4))
    others = [decide(values, "min", 0.25, rng(s, e)) for s, e in ((8, 4), (7, 6), (9, 2), (1, 1))]
    assert any(o != a for o in others)  # the donors drawn depend on the seed and the epoch
    start = {"lr": 1e-3, "dropout": 0.2, "patience": 3, "l2": 0.05, "batch": 32}
    assert explore(start, FLAGS, 0.25, rng(7, 4)) == explore(start, FLAGS, 0.25, rng(7, 4))


@pytest.mark.parametrize("mode", ["min", "max"])
def test_bottom_quantile_copies_the_top_quantile(mode):
    values = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4]  # 8 members: quantile 0.25 -> 2 each way
    moves = decide(values, mode, 0.25, rng(0, 1))
    order = np.argsort(values)
    best, worst = (order[:2], order[-2:]) if mode == "min" else (order[-2:], order[:2])
    assert set(moves) == set(worst.tolist())
    assert set(moves.values()) <= set(best.tolist())


def test_quantile_edge_cases():
    assert [quantile_count(n, 0.25) for n in (1, 2, 3, 4, 5, 8, 9)] == [0, 1, 1, 1, 2, 2, 3]
    assert quantile_count(3, 0.5) == 1 and quantile_count(4, 0.5) == 2  # never more than half
    g = rng(0, 1)
    assert decide([0.3], "min", 0.25, g) == {}  # one member: nothing to copy
    assert decide([0.3, 0.1], "min", 0.25, g) == {0: 1}  # two: the worse copies the better
    assert decide([], "min", 0.25, g) == {}
    assert decide([float("nan")] * 4, "min", 0.25, g) == {}  # nobody to copy from
    ties = decide([0.2] * 4, "min", 0.5, g)  # ties are broken by position
    assert set(ties) == {2, 3} and set(ties.values()) <= {0, 1}
    assert decide([float("nan"), 0.3], "min", 0.25, g) == {0: 1}  # a NaN member copies even below the quantile


def test_non_finite_members_are_replaced_and_never_copied():
    values = [0.4, float("nan"), 0.1, float("inf"), 0.3, float("nan"), 0.2, 0.5]
    for epoch in range(20):
        moves = decide(values, "min", 0.25, rng(3, epoch))
        assert {1, 3, 5} <= set(moves)  # every non-finite member is replaced, beyond the quantile
        assert all(math.isfinite(values[d]) for d in moves.values())
        assert set(moves.values()) <= {2, 6}  # the top quantile (2 of 8)
    assert set(decide(values, "max", 0.25, rng(3, 0)).values()) <= {7, 0}  # NaN is the worst either way


def test_eligible_limits_who_is_replaced_now():
    values = [0.9, 0.8, 0.1, 0.2]
    assert set(decide(values, "min", 0.5, rng(0, 0), eligible=[False, True, True, True])) == {1}


def test_explore_stays_in_range_and_type():
    start = {"lr": 3e-2, "dropout": 0.0, "patience": 6, "l2": 0.1, "batch": 64}
    seen: dict[str, set] = {k: set() for k in start}
    for epoch in range(200):
        out = explore(start, FLAGS, 0.25, rng(1, epoch))
        assert 1e-4 <= out["lr"] <= 3e-2 and isinstance(out["lr"], float)
        assert 0.0 <= out["dropout"] <= 0.5 and isinstance(out["dropout"], float)
        assert out["patience"] in range(1, 7) and isinstance(out["patience"], int)
        assert out["l2"] in [round(0.01 * k, 10) for k in range(11)] or min(abs(out["l2"] - 0.01 * k) for k in range(11)) < 1e-12
        assert out["batch"] in (16, 32, 64)
        for k, v in out.items():
            seen[k].add(v)
    assert seen["lr"] >= {3e-2, 3e-2 * 0.8}  # kept at the top (1.2 clipped) or lowered by 0.8
    assert len(seen["lr"]) > 3  # and resampled
    assert seen["batch"] >= {32, 64}  # a list flag moves to a neighbour (or is resampled)
    assert seen["patience"] >= {5, 6}  # an integer perturbed by at least one step


def test_explore_perturbs_by_the_factors():
    out = [explore({"dropout": 0.25}, FLAGS[1:2], 0.0, rng(2, e))["dropout"] for e in range(40)]
    assert set(np.round(out, 12)) == {0.2, 0.3}


def test_mutable_flags_leave_out_static_and_non_numeric_flags():
    flags = mutable_flags({"lr": loguniform(1e-4, 1e-1), "units": randint(8, 64)},
                          {"optimizer": ["adam", "sgd"], "dropout": [0.1, 0.3], "fixed": [0.5]},
                          {"lr": "numeric", "units": "integer", "optimizer": "string", "dropout": "numeric"},
                          static=["units"])
    assert [f.name for f in flags] == ["lr", "dropout"]


def test_settings_are_checked():
    for bad in (dict(interval=0), dict(quantile=0.6), dict(quantile=0), dict(resample=1.5), dict(mode="best")):
        with pytest.raises(GridrunError):
            PBTConfig(**bad)
    # the default: a tenth of the epochs, at least 1 (bench/pbt.py: shorter intervals found better models)
    assert PBTConfig().interval_for(20) == 2 and PBTConfig().interval_for(40) == 4 and PBTConfig().interval_for(3) == 1
    assert PBTConfig(interval=4).interval_for(20) == 4


# -- exploit/explore inside the program ----------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    from gridrun.datasets import load_prepared

    (x, y), _ = load_prepared("digits")
    return x[:400], y[:400]


def _requests(tmp_path, digits, lrs, dropouts, early_stopping=False):
    """Four fit requests as a population receives them, each with its own run dir and flags."""

    from gridrun import Dense, Dropout, EarlyStopping, Sequential
    from gridrun.rundir import RunContext
    from gridrun.train.driver import Member
    from gridrun.train.engine import get_engine, prepare, seed_keys
    from gridrun.train.population import FitRequest

    x, y = digits
    out = []
    for i, (lr, dr) in enumerate(zip(lrs, dropouts)):
        model = Sequential([Dense(16, activation="relu"), Dropout(dr), Dense(10, activation="softmax")])
        cbs = [EarlyStopping(patience=3, restore_best_weights=True)] if early_stopping else []
        config, hp = prepare(model, loss="categorical_crossentropy", optimizer=gridrun.optimizer("adam", learning_rate=lr),
                             metrics=("accuracy",), callbacks=cbs, batch_size=50, x_shape=(300, 64), n_val=100)
        eng = get_engine(config)
        run = tmp_path / f"run{i}"
        run.mkdir()
        ctx = RunContext.open(run, {"lr": lr, "dropout": dr})
        ctx.write_properties(trial=i + 1)
        k_init, k_train = seed_keys(i)
        member = Member(4, config.log_names, ctx=ctx)
        arrays = {"x": x[:300], "y": y[:300], "x_val": x[300:], "y_val": y[300:]}
        out.append(FitRequest(eng, hp, arrays, k_init, k_train, member))
    return out


def test_exploit_copies_the_whole_state_and_explore_sets_the_traced_values(tmp_path, digits):
    import jax
    import jax.numpy as jnp

    from gridrun.train.engine import stack
    from gridrun.train.population import vmapped
    from gridrun.train.population.exploit import GroupPBT

    lrs, drs = [1e-3, 3e-3, 1e-2, 3e-4], [0.1, 0.2, 0.3, 0.4]
    reqs = _requests(tmp_path, digits, lrs, drs, early_stopping=True)
    config = PBTConfig(interval=1, quantile=0.25, resample=0.0, metric="val_loss", mode="min", seed=5,
                       flags=(MutableFlag("lr", range=loguniform(1e-4, 3e-2)), MutableFlag("dropout", range=uniform(0, 0.5))))
    pbt = GroupPBT.create(config, reqs)
    assert pbt is not None and sorted(pbt.positions) == ["dropout", "lr"]
    vinit, vepoch, _ = vmapped(reqs[0].engine)
    hparams = stack([r.hparams for r in reqs])
    state = vinit(hparams, jnp.stack([r.k_init for r in reqs]))
    data = {k: jnp.asarray(v) for k, v in reqs[0].arrays.items()}
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(jnp.stack([r.k_train for r in reqs]), 0)
    state, logs = vepoch(state, hparams, data, keys)
    logs = jax.device_get(logs)
    for i, r in enumerate(reqs):
        r.member.record({k: logs[k][i] for k in r.member.names}, False)
    logs = dict(logs, val_loss=np.array([0.5, 0.2, np.nan, 0.9]))  # member 2: NaN (worst), member 3: the worst
    before = jax.device_get(state)
    new_state, new_hp, changed = pbt.after_epoch(1, reqs, [1, 1, 1, 1], logs, [True] * 4, state, hparams)
    after = jax.device_get(new_state)
    assert sorted(changed) == [2, 3]  # the NaN member and the worst are replaced (quantile: 1 of 4, plus NaN)
    for i in range(4):
        j = 1 if i in (2, 3) else i  # the best member (val_loss 0.2) is the only donor
        for (path, leaf), src in zip(jax.tree_util.tree_flatten_with_path(after)[0], jax.tree_util.tree_leaves(before),
                                     strict=True):
            name = jax.tree_util.keystr(path)
            if name in ("['epoch']", "['stopped']"):
                np.testing.assert_array_equal(leaf[i], src[i], err_msg=name)  # its own
            elif name == "['lr']":
                continue
            else:
                np.testing.assert_array_equal(leaf[i], src[j], err_msg=name)  # bit-exact copy, leaf by leaf
    hp = jax.device_get(new_hp)
    for i in (2, 3):
        event = reqs[i].member.ctx.properties["pbt"][-1]
        assert event["copied_from"] == 2 and event["run"] == "run1" and event["epoch"] == 1
        v = event["values"]
        assert v["lr"] in (pytest.approx(3e-3 * 0.8), pytest.approx(3e-3 * 1.2))
        assert v["dropout"] in (pytest.approx(0.2 * 0.8), pytest.approx(0.2 * 1.2))
        assert hp["opt"]["learning_rate"][i] == np.float32(v["lr"])
        assert hp["model"]["dropout"][i][0] == np.float32(v["dropout"])
        assert after["lr"][i] == pytest.approx(v["lr"], rel=1e-6)  # the state's current lr follows
        assert reqs[i].member.ctx.metrics["hp_lr"] == [lrs[i]]  # epoch 1 ran with its own value
    for i in (0, 1):
        assert hp["opt"]["learning_rate"][i] == np.float32(lrs[i]) and not reqs[i].member.ctx.properties["pbt"]


def test_a_flag_that_reaches_no_traced_value_is_an_error(tmp_path, digits):
    from gridrun.train.population.exploit import GroupPBT

    reqs = _requests(tmp_path, digits, [1e-3] * 4, [0.1] * 4)
    for i, r in enumerate(reqs):
        r.member.ctx.flags["lr_exp"] = -3 - i  # varies, but fit got 10 ** lr_exp, not the flag
    config = PBTConfig(flags=(MutableFlag("lr_exp", range=uniform(-4, -1)),))
    with pytest.raises(GridrunError, match="lr_exp reach no traced hyperparameter"):
        GroupPBT.create(config, reqs)
    missing = PBTConfig(metric="val_auc", flags=config.flags)
    with pytest.raises(GridrunError, match="val_auc"):
        GroupPBT.create(missing, reqs)


# -- a sweep ----------------------------------------------------------------------------------------
SCRIPT = """
import gridrun
from gridrun import Dense, Dropout, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_numeric("lr", 1e-3, "learning rate", values=gridrun.loguniform(1e-4, 3e-2)),
    gridrun.flag_numeric("dropout", 0.1, "dropout", values=gridrun.uniform(0.0, 0.5)),
    gridrun.flag_string("act", "relu", "activation"),
)
(x, y), _ = load_prepared("digits")
model = Sequential([Dense(16, activation=FLAGS.act), Dropout(FLAGS.dropout), Dense(10, activation="softmax")])
gridrun.fit(model, x[:400], y[:400], loss="categorical_crossentropy", metrics=("accuracy",),
            optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), epochs=4, batch_size=50,
            validation_split=0.25, seed=0, verbose=0)
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pbt")
    script = tmp / "train.py"
    script.write_text(SCRIPT)
    out = []
    for name in ("a", "b"):  # the same sweep twice: PBT is deterministic for a fixed seed
        code = cli.main(["tuning-run", str(script), "--sample", "6", "--seed", "11", "--population", "--pbt",
                         "--pbt-interval", "1", "--pbt-quantile", "0.5", "--runs-dir", str(tmp / name), "--quiet"])
        assert code == 0
        out.append(gridrun.ls_runs(tmp / name).sort_values("flag_lr"))
    return script, tmp, out


def _read(run_dir, name):
    return json.loads(open(f"{run_dir}/{name}").read())


def _check_stories(df, epochs=4):
    """Every run dir tells its trial's story: hp_* per epoch (the values the optimizer ran with), the
    lineage in properties (donor, epoch, values perturbed from the donor's), the final values in ls_runs.
    Returns the number of exploits recorded."""
    by_trial = {_read(r.run_dir, "properties.json")["trial"]: r.run_dir for r in df.itertuples()}
    events = 0
    for r in df.itertuples():
        props, metrics = _read(r.run_dir, "properties.json"), _read(r.run_dir, "metrics.json")
        assert props["pbt_settings"]["flags"] == ["dropout", "lr"]
        flags = _read(r.run_dir, "flags.json")
        hp_lr, hp_dr = metrics["hp_lr"], metrics["hp_dropout"]
        assert len(hp_lr) == len(metrics["loss"]) == epochs and hp_lr[0] == pytest.approx(flags["lr"])
        np.testing.assert_allclose(metrics["lr"], hp_lr, rtol=1e-6)  # the optimizer ran with the recorded lr
        expected_lr, expected_dr = [flags["lr"]], [flags["dropout"]]
        for e in range(1, epochs):  # each epoch's values: the last exploit's, else the trial's own
            ev = [x for x in props["pbt"] if x["epoch"] == e]
            expected_lr.append(ev[0]["values"]["lr"] if ev else expected_lr[-1])
            expected_dr.append(ev[0]["values"]["dropout"] if ev else expected_dr[-1])
        assert hp_lr == pytest.approx(expected_lr) and hp_dr == pytest.approx(expected_dr)
        for ev in props["pbt"]:
            events += 1
            donor = by_trial[ev["copied_from"]]
            assert ev["run"] == donor.split("/")[-1] and donor != r.run_dir
            assert 1e-4 <= ev["values"]["lr"] <= 3e-2 and 0 <= ev["values"]["dropout"] <= 0.5
        assert r.metric_hp_lr == pytest.approx(hp_lr[-1])  # ls_runs shows the final values
    return events


def test_a_pbt_sweep_records_each_trials_schedule_and_lineage(sweep):
    _, _, (df, _) = sweep
    assert set(df["status"]) == {"completed"} and len(df) == 6
    assert _check_stories(df) == 3 * 3  # quantile 0.5 of 6: 3 members copied after each of epochs 1-3
    perturbed = 0
    for r in df.itertuples():
        for ev in _read(r.run_dir, "properties.json")["pbt"]:
            d = _read(next(x.run_dir for x in df.itertuples() if x.run_dir.endswith(ev["run"])), "metrics.json")
            was = d["hp_lr"][ev["epoch"] - 1]  # the donor's value when it was copied
            perturbed += any(ev["values"]["lr"] == pytest.approx(was * f) for f in (0.8, 1.2))
    assert perturbed >= 3  # most values are the donor's times 0.8 or 1.2 (resample: 1 in 4)


def test_pbt_across_refilled_slots(sweep):
    """--population-size 3 for 6 trials: PBT among the trials that share the program's slots."""
    script, tmp, _ = sweep
    code = cli.main(["tuning-run", str(script), "--sample", "6", "--seed", "11", "--population", "--pbt",
                     "--pbt-interval", "2", "--pbt-quantile", "0.5", "--population-size", "3",
                     "--runs-dir", str(tmp / "slots"), "--quiet"])
    assert code == 0
    df = gridrun.ls_runs(tmp / "slots")
    assert all(_read(r.run_dir, "properties.json")["population"].get("slot_refill") for r in df.itertuples())
    assert _check_stories(df) >= 2  # at epoch 2 of each wave of 3 trials, one copies


def test_a_pbt_sweep_is_deterministic_for_its_seed(sweep):
    _, _, (a, b) = sweep
    for ra, rb in zip(a.itertuples(), b.itertuples(), strict=True):
        pa, pb = _read(ra.run_dir, "properties.json"), _read(rb.run_dir, "properties.json")
        assert [(e["epoch"], e["copied_from"], e["values"]) for e in pa["pbt"]] == \
               [(e["epoch"], e["copied_from"], e["values"]) for e in pb["pbt"]]
        np.testing.assert_allclose(_read(ra.run_dir, "metrics.json")["val_loss"],
                                   _read(rb.run_dir, "metrics.json")["val_loss"], rtol=1e-5)


def test_pbt_needs_something_to_mutate(sweep, tmp_path, capsys):
    script, _, _ = sweep
    code = cli.main(["tuning-run", str(script), "--flag", "act=relu,tanh", "--flag", "lr=0.001", "--flag", "dropout=0.1",
                     "--population", "--pbt", "--runs-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "nothing to mutate" in err and "act" in err
    code = cli.main(["tuning-run", str(script), "--sample", "2", "--population", "--pbt-interval", "2",
                     "--runs-dir", str(tmp_path), "--quiet"])
    assert code == 2 and "--pbt-interval need --pbt" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()  # nothing was planned



def test_resume_of_a_pbt_sweep_needs_no_pbt_again(sweep, tmp_path):
    """The manifest records PBT's options: a resume runs the remaining trials as a PBT population again."""
    import shutil

    _, tmp, _ = sweep
    runs = tmp_path / "runs"
    shutil.copytree(tmp / "a", runs)
    (path,) = list((runs / "sweeps").glob("*.json"))
    data = json.loads(path.read_text())
    assert data["pbt"] == {"interval": 1, "quantile": 0.5}
    for t in data["trials"][3:]:  # as if interrupted before these three ran
        shutil.rmtree(runs / t["run_dir"])
        t.update(status="pending", run_dir=None, attempts=[])
    data["client"] = {"pid": 999999, "hostname": "gone", "heartbeat": "2020-01-01T00:00:00Z"}
    path.write_text(json.dumps(data))
    assert cli.main(["tuning-run", "--resume", data["id"], "--runs-dir", str(runs), "--quiet"]) == 0
    m = json.loads(path.read_text())
    assert [t["status"] for t in m["trials"]] == ["completed"] * 6 and m["pbt"] == data["pbt"]
    events = 0
    for t in m["trials"][3:]:
        props = _read(runs / t["run_dir"], "properties.json")
        assert props["pbt_settings"]["quantile"] == 0.5 and props["pbt_settings"]["interval"] == 1
        assert props["population"]["size"] == 3  # the resumed trials trained together, as a population
        assert len(_read(runs / t["run_dir"], "metrics.json")["hp_lr"]) == 4
        events += len(props["pbt"])
    assert events == 3  # 1 of the 3 resumed trials copied after each of epochs 1-3

def test_schedule_reads_the_per_epoch_values_back(sweep):
    from gridrun.pbt import schedule

    _, _, (df, _) = sweep
    r = df.iloc[0]
    got = schedule(r["run_dir"])
    assert sorted(got) == ["dropout", "lr"] and got["lr"][-1] == pytest.approx(r["metric_hp_lr"])
    assert len(got["lr"]) == 4 and schedule(df.iloc[0]["run_dir"] + "-missing") == {}



# -- replaying a trial's schedule in a plain training-run --------------------------------------------
def _replay(script, run_dir, runs, *extra):
    code = cli.main(["training-run", str(script), "--schedule", run_dir, *extra, "--runs-dir", str(runs), "--quiet"])
    assert code == 0
    df = gridrun.ls_runs(runs)
    return df.sort_values("start").iloc[-1]["run_dir"] if "start" in df else df.iloc[0]["run_dir"]


def test_replaying_a_trials_schedule_trains_each_epoch_with_its_values(sweep, tmp_path):
    """The trial copied most often: the replay trains epoch by epoch with its recorded hp_* values (the
    optimizer's logged lr follows), from its starting flags; until its first copy it is the same training
    (the same metrics), after it the values changed: it departs from a plain run of the starting flags."""
    script, _, (df, _) = sweep
    stories = {r.run_dir: _read(r.run_dir, "properties.json")["pbt"] for r in df.itertuples()}
    trial = max(stories, key=lambda d: (len(stories[d]), -min([e["epoch"] for e in stories[d]] or [9])))
    first = min(e["epoch"] for e in stories[trial])
    assert 1 <= first < 4
    want = _read(trial, "metrics.json")
    replay = _replay(script, trial, tmp_path / "replay")
    got, props = _read(replay, "metrics.json"), _read(replay, "properties.json")
    assert props["status"] == "completed" and props["pbt_schedule"]["run"].endswith(trial.split("/")[-1])
    assert _read(replay, "flags.json")["lr"] == pytest.approx(_read(trial, "flags.json")["lr"])
    for flag in ("lr", "dropout"):
        assert got[f"hp_{flag}"] == pytest.approx(want[f"hp_{flag}"], rel=1e-6)
    assert len(set(np.round(got["hp_lr"], 9))) > 1  # the values do change per epoch
    np.testing.assert_allclose(got["lr"], got["hp_lr"], rtol=1e-6)  # the optimizer ran with them
    np.testing.assert_allclose(got["val_loss"][:first], want["val_loss"][:first], rtol=2e-4, atol=1e-6)
    flags = _read(trial, "flags.json")
    code = cli.main(["training-run", str(script), "--flag", f"lr={flags['lr']}", "--flag", f"dropout={flags['dropout']}",
                     "--runs-dir", str(tmp_path / "plain"), "--quiet"])
    assert code == 0
    plain = _read(gridrun.ls_runs(tmp_path / "plain").iloc[0]["run_dir"], "metrics.json")
    np.testing.assert_allclose(plain["val_loss"][:first], got["val_loss"][:first], rtol=2e-4, atol=1e-6)
    assert not np.allclose(plain["val_loss"][first:], got["val_loss"][first:], rtol=1e-3)


def test_replaying_a_trial_that_never_copied_reproduces_its_metrics(sweep, tmp_path):
    script, _, (df, _) = sweep
    never = [r.run_dir for r in df.itertuples() if not _read(r.run_dir, "properties.json")["pbt"]]
    assert never  # the top of the population is never replaced
    want = _read(never[0], "metrics.json")
    got = _read(_replay(script, never[0], tmp_path / "replay"), "metrics.json")
    for name in ("loss", "val_loss", "val_acc", "hp_lr", "hp_dropout"):
        np.testing.assert_allclose(got[name], want[name], rtol=2e-4, atol=1e-6, err_msg=name)


def test_schedule_needs_a_pbt_trial_and_owns_its_flags(sweep, tmp_path, capsys):
    script, _, (df, _) = sweep
    plain = tmp_path / "plain"
    plain.mkdir()
    code = cli.main(["training-run", str(script), "--schedule", str(plain), "--runs-dir", str(tmp_path / "r"), "--quiet"])
    assert code == 2 and "no PBT schedule" in capsys.readouterr().err
    code = cli.main(["training-run", str(script), "--schedule", df.iloc[0]["run_dir"], "--flag", "lr=0.01",
                     "--runs-dir", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--flag lr" in err and "follows the schedule" in err

WIDE = """
import gridrun
from gridrun import BatchNorm, Dense, Dropout, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_numeric("lr", 1e-3, "learning rate", values=gridrun.loguniform(1e-4, 3e-2)),
    gridrun.flag_numeric("dropout", 0.1, "dropout", values=gridrun.uniform(0.0, 0.5)),
    gridrun.flag_integer("units", 16, "units", values=[16, 32]),
)
(x, y), _ = load_prepared("digits")
model = Sequential([Dense(FLAGS.units, activation="relu"), BatchNorm(), Dropout(FLAGS.dropout),
                    Dense(10, activation="softmax")])
gridrun.fit(model, x[:400], y[:400], loss="categorical_crossentropy", metrics=("accuracy",),
            optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), epochs=4, batch_size=50,
            validation_split=0.25, seed=0, verbose=0,
            callbacks=[gridrun.EarlyStopping(patience=2, restore_best_weights=True)])
"""


def test_pbt_in_a_width_merged_group_copies_only_trials_of_the_same_widths(tmp_path):
    script = tmp_path / "wide.py"
    script.write_text(WIDE)
    df = gridrun.tuning_run(script, sample=8, seed=3, population=True, pbt={"interval": 1, "quantile": 0.5},
                            runs_dir=tmp_path / "runs", quiet=True)
    assert set(df["status"]) == {"completed"}
    units = {_read(r.run_dir, "properties.json")["trial"]: r.flag_units for r in df.itertuples()}
    assert len(set(units.values())) == 2
    events = 0
    for r in df.itertuples():
        props = _read(r.run_dir, "properties.json")
        assert props["population"]["padded_units"] == [32]  # one program for both widths
        for ev in props["pbt"]:
            events += 1
            assert units[ev["copied_from"]] == r.flag_units  # a width never mutates
    assert events > 0


OWN_LOOP = """
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import gridrun

FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 1e-2, "learning rate", values=gridrun.loguniform(1e-3, 1e-1)))
""" + LINEN_MLP + """

def eval_step(state, batch, hp):
    logits = model.apply({"params": state[0]}, batch[0])
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()}


gridrun.fit_loop(init, train_step, (x[:240], y[:240]), hparams={"learning_rate": FLAGS.lr}, eval_step=eval_step,
                 validation_data=(x[240:], y[240:]), epochs=4, batch_size=32, seed=0)
"""


def test_pbt_with_fit_loop(tmp_path):
    """An own training loop's traced hyperparameters mutate too; its logged lr follows the schedule."""
    script = tmp_path / "loop.py"
    script.write_text(OWN_LOOP)
    df = gridrun.tuning_run(script, sample=4, seed=2, population=True, pbt={"interval": 1, "quantile": 0.5},
                            runs_dir=tmp_path / "runs", quiet=True)
    assert set(df["status"]) == {"completed"}
    events = 0
    for r in df.itertuples():
        metrics, props = _read(r.run_dir, "metrics.json"), _read(r.run_dir, "properties.json")
        np.testing.assert_allclose(metrics["lr"], metrics["hp_lr"], rtol=1e-6)
        events += len(props["pbt"])
    assert events == 2 * 3  # 2 of 4 copied after each of epochs 1-3
    copied = next(r.run_dir for r in df.itertuples() if _read(r.run_dir, "properties.json")["pbt"])
    want = _read(copied, "metrics.json")
    got = _read(_replay(script, copied, tmp_path / "replay"), "metrics.json")  # its schedule, in a plain run
    assert got["hp_lr"] == pytest.approx(want["hp_lr"], rel=1e-6)
    np.testing.assert_allclose(got["lr"], want["hp_lr"], rtol=1e-6)  # the own loop's hp["learning_rate"] followed
