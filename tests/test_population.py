"""Population mode: trials trained together as one vmapped program behave exactly as trained alone."""

import numpy as np
import pytest

import gridrun
from gridrun._io import read_json

SCRIPT = """
import gridrun
from gridrun import BatchNorm, Dense, Dropout, EarlyStopping, ReduceLROnPlateau, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_numeric("lr", 0.01, "learning rate"),
    gridrun.flag_numeric("dropout", 0.2, "dropout rate"),
    gridrun.flag_numeric("factor", 0.5, "ReduceLROnPlateau factor"),
    gridrun.flag_integer("units", 16, "hidden units"),
    gridrun.flag_integer("seed", 0, "seed"),
    gridrun.flag_integer("epochs", 8, "epochs"),
)
(x, y), (xt, yt) = load_prepared("digits")
model = Sequential([Dense(FLAGS.units, activation="relu"), BatchNorm(), Dropout(FLAGS.dropout),
                    Dense(10, activation="softmax")])
history = gridrun.fit(model, x, y, loss="categorical_crossentropy", metrics=("accuracy",),
                      optimizer=gridrun.train.optimizer("adam", learning_rate=FLAGS.lr),
                      epochs=FLAGS.epochs, batch_size=64, validation_split=0.2, seed=FLAGS.seed,
                      callbacks=[EarlyStopping(patience=2, min_delta=0.01),
                                 ReduceLROnPlateau(factor=FLAGS.factor, patience=1)])
scores = gridrun.evaluate(history, xt, yt)
print("test accuracy", scores["acc"])
"""

GRID = {"lr": [1e-5, 1e-4, 3e-4, 1e-3], "dropout": [0.1, 0.4], "seed": [0], "units": [16]}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("population")
    (root / "train.py").write_text(SCRIPT)
    return root


def sweep(project, name, **kw):
    return gridrun.tuning_run(project / "train.py", flags=kw.pop("flags", GRID), runs_dir=project / name,
                              quiet=True, seed=1, **kw)


@pytest.fixture(scope="module")
def runs(project):
    return {"seq": sweep(project, "seq"), "pop": sweep(project, "pop", population=True)}


def by_flags(df):
    return {(r.flag_lr, r.flag_dropout): r for r in df.itertuples()}


def metrics(row):
    return read_json(f"{row.run_dir}/metrics.json")


def test_population_matches_sequential_per_epoch(runs):
    seq, pop = by_flags(runs["seq"]), by_flags(runs["pop"])
    assert len(pop) == 8 and set(pop) == set(seq)
    for key, s in seq.items():
        p = pop[key]
        assert p.status == s.status == "completed"
        ms, mp = metrics(s), metrics(p)
        assert set(ms) == set(mp) == {"loss", "acc", "val_loss", "val_acc", "lr", "n_params"}  # n_params: issue 21
        for name in ms:
            assert len(ms[name]) == len(mp[name]), (key, name)
            # losses agree to float rounding; an accuracy may differ by one sample whose argmax is a tie
            tol = {"rtol": 1e-4, "atol": 1e-6} if "acc" not in name else {"rtol": 0, "atol": 1.01 / 287}
            np.testing.assert_allclose(mp[name], ms[name], err_msg=f"{key} {name}", **tol)
        assert p.eval_acc == pytest.approx(s.eval_acc, abs=1.01 / 360)
        assert p.best_epoch == s.best_epoch and p.best_val_loss == pytest.approx(s.best_val_loss, rel=1e-4)


def test_trials_trained_as_one_program_with_own_early_stopping(runs):
    pop = runs["pop"]
    assert set(pop["context"]) == {"population"}
    for row in pop.itertuples():
        props = read_json(f"{row.run_dir}/properties.json")
        assert props["population"]["size"] == 8  # the eight trials differ only in numeric flags
    epochs = pop["epochs_completed"].tolist()
    assert len(set(epochs)) > 1, epochs  # EarlyStopping stopped trials at different epochs
    assert (pop["epochs_completed"] <= 8).all()


def test_population_run_dirs_look_like_sequential_ones(runs):
    seq, pop = runs["seq"], runs["pop"]
    assert list(seq.columns) == list(pop.columns)
    for df in (seq, pop):
        for row in df.itertuples():
            assert "test accuracy" in open(f"{row.run_dir}/output.log").read()
            props = read_json(f"{row.run_dir}/properties.json")
            assert props["samples"] == 1150 and props["validation_samples"] == 287 and props["model"]
            assert props["sweep"] == df.attrs["sweep"]
    assert pop["metric_val_loss"].notna().all()


def test_chunking_gives_the_same_results(project, runs):
    chunked = by_flags(sweep(project, "chunked", population=True, population_size=3))
    pop = by_flags(runs["pop"])
    for key, c in chunked.items():
        np.testing.assert_allclose(metrics(c)["val_loss"], metrics(pop[key])["val_loss"], rtol=2e-4, atol=1e-6)
        assert read_json(f"{c.run_dir}/properties.json")["population"]["size"] <= 3


def test_nan_trial_fails_alone_and_others_continue(project):
    df = sweep(project, "nan", population=True, flags={"lr": [0.003, float("nan")], "seed": [0]})
    status = {("nan" if np.isnan(r.flag_lr) else "ok"): r for r in df.itertuples()}
    assert status["nan"].status == "failed" and "nan" in status["nan"].error_message.lower()
    assert status["ok"].status == "completed" and status["ok"].epochs_completed >= 2
    assert len(metrics(status["nan"])["loss"]) == 1  # frozen after the first NaN epoch


def test_width_flags_no_longer_split_groups(project):
    # integer flags that only change hidden widths are merged by padding (tests/test_width_merge.py)
    df = sweep(project, "static", population=True, flags={"units": [8, 16], "lr": [0.01, 0.02], "epochs": [2]})
    info = [read_json(f"{r.run_dir}/properties.json")["population"] for r in df.itertuples()]
    assert info == [{"size": 4, "padded_units": [16]}] * 4 and set(df["status"]) == {"completed"}


def test_different_programs_split_groups_without_width_merging(project, monkeypatch):
    monkeypatch.setenv("GRIDRUN_WIDTH_MERGE", "0")
    df = sweep(project, "static_off", population=True, flags={"units": [8, 16], "lr": [0.01, 0.02], "epochs": [2]})
    sizes = [read_json(f"{r.run_dir}/properties.json")["population"]["size"] for r in df.itertuples()]
    assert sorted(sizes) == [2, 2, 2, 2] and set(df["status"]) == {"completed"}


def test_group_of_one_runs_the_sequential_program(project, runs):
    lone = by_flags(sweep(project, "lone", population=True, population_size=1,
                          flags={"lr": [1e-4, 1e-3], "dropout": [0.1], "seed": [0], "units": [16]}))
    seq = by_flags(runs["seq"])
    for key, row in lone.items():
        assert read_json(f"{row.run_dir}/properties.json")["population"]["size"] == 1
        assert metrics(row)["val_loss"] == metrics(seq[key])["val_loss"]  # the very same program: bit-equal


def test_optax_object_per_trial_trains_alone_and_says_why(tmp_path):
    script = tmp_path / "own_optax.py"
    script.write_text(SCRIPT.replace('optimizer=gridrun.train.optimizer("adam", learning_rate=FLAGS.lr)',
                                     "optimizer=__import__('optax').adam(FLAGS.lr)"))
    df = gridrun.tuning_run(script, flags={"lr": [1e-3, 2e-3], "epochs": [1]}, runs_dir=tmp_path / "runs",
                            quiet=True, population=True)
    for row in df.itertuples():
        assert row.status == "completed"
        assert read_json(f"{row.run_dir}/properties.json")["population"]["size"] == 1
        assert "pass the optimizer by name" in open(f"{row.run_dir}/output.log").read()


SPAWN_SCRIPT = """
import gridrun
from gridrun.datasets import load_prepared
FLAGS = gridrun.flags(gridrun.flag_integer("epochs", 1, "epochs"))
(x, y), _ = load_prepared("digits")
model = gridrun.Sequential([gridrun.Dense(8, activation="relu"), gridrun.Dense(10, activation="softmax")])
gridrun.fit(model, x[:200], y[:200], loss="categorical_crossentropy", epochs=FLAGS.epochs, batch_size=50,
            validation_split=0.2, verbose=0)
"""


def _pid() -> int:
    import os

    return os.getpid()


def test_a_population_sweep_leaves_the_main_module_as_it_found_it(tmp_path):
    """Trial threads run their scripts as __main__ at the same time, and runpy's swaps of
    sys.modules["__main__"] interleave; none may outlive the sweep. Left pointing at a trial's script,
    the next multiprocessing "spawn" child of the session (a Dask worker, a process pool) would run that
    script as its main module, and die on the session's own arguments (see test_faults.py)."""
    import multiprocessing as mp
    import sys

    script = tmp_path / "train.py"
    script.write_text(SPAWN_SCRIPT)
    main = sys.modules["__main__"]
    # the first trial to start is the first to end: the last to end restores the module of the one before
    df = gridrun.tuning_run(script, {"epochs": [1, 2, 3, 4]}, ordered=True, population=True,
                            runs_dir=tmp_path / "runs", quiet=True)
    assert list(df["status"]) == ["completed"] * 4
    assert sys.modules["__main__"] is main
    with mp.get_context("spawn").Pool(1) as pool:
        assert pool.apply_async(_pid).get(timeout=120) != _pid()


def _leaves(tree):
    import jax

    return jax.tree_util.tree_leaves_with_path(tree)


def _assert_same_checkpoints(seq_row, pop_row):
    for which in ("best", "last"):
        s = gridrun.load_state(seq_row.run_dir, which)
        p = gridrun.load_state(pop_row.run_dir, which)
        ls, lp = _leaves(s), _leaves(p)
        assert [k for k, _ in ls] == [k for k, _ in lp], which
        for (path, a), (_, b) in zip(ls, lp, strict=True):
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape and a.dtype == b.dtype, (which, path)
            if np.issubdtype(a.dtype, np.floating):
                # float rounding (a vmapped program sums in another order), grown over the epochs: weights
                # and statistics to 0.1% of the leaf's scale, the optimizer's moments (running averages of
                # small gradients) to 1%
                scale = float(np.abs(a).max(initial=0.0))
                atol = (1e-2 if "opt_state" in str(path) else 1e-3) * scale + 1e-7
                np.testing.assert_allclose(b, a, rtol=1e-4, atol=atol, err_msg=f"{which} {path}")
            else:
                np.testing.assert_array_equal(b, a, err_msg=f"{which} {path}")


def test_a_population_trial_saves_what_it_saves_alone(runs):
    """Each slot's state is cut from the vmapped state into its own trial's run dir: leaf by leaf the
    same checkpoints (best and last, same epochs) as the trial trained alone."""
    seq, pop = by_flags(runs["seq"]), by_flags(runs["pop"])
    for key, s in seq.items():
        p = pop[key]
        assert p.checkpoint_epoch == s.checkpoint_epoch and p.checkpoint_last_epoch == s.checkpoint_last_epoch, key
        _assert_same_checkpoints(s, p)


def test_a_width_merged_trial_saves_its_own_shapes(project):
    """Trials of different widths train padded to the widest; each checkpoint holds the trial's own
    (cropped) shapes and equals the alone-trained one."""
    flags = {"lr": [1e-3], "dropout": [0.1], "units": [8, 16], "epochs": [3]}
    seq = by_flags(sweep(project, "wseq", flags=flags))
    pop_df = sweep(project, "wpop", flags=flags, population=True)
    assert {tuple(read_json(f"{r.run_dir}/properties.json")["population"].get("padded_units", ()))
            for r in pop_df.itertuples()} == {(16,)}
    pop = {(r.flag_units,): r for r in pop_df.itertuples()}
    for s in seq.values():
        _assert_same_checkpoints(s, pop[(s.flag_units,)])
