"""Width merging: trials that differ only in hidden widths train as one padded program, and each one
gets the same results as trained alone (gridrun/train/widths.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gridrun
from gridrun import BatchNorm, Dense, Dropout, EarlyStopping, Sequential
from gridrun._io import read_json
from gridrun.datasets import load_prepared
from gridrun.train import engine as E
from gridrun.train import widths
from gridrun.train.population import Population, PopulationConfig

EPOCHS = 6


@pytest.fixture(scope="module")
def digits():
    return load_prepared("digits")


def make_model(units, dropout, units2=12):
    return Sequential([
        Dense(units, activation="relu", kernel_regularizer=gridrun.l2(1e-3)),
        BatchNorm(),
        Dropout(dropout),
        Dense(units2, activation="tanh", kernel_regularizer=gridrun.l1_l2(1e-4, 1e-3)),
        Dropout(dropout / 2),
        Dense(10, activation="softmax"),
    ])


def train(data, units, dropout, units2=12, seed=3):
    (x, y), _ = data
    return gridrun.fit(make_model(units, dropout, units2), x, y, loss="categorical_crossentropy",
                       metrics=("accuracy",), optimizer=gridrun.train.optimizer("rmsprop", learning_rate=0.003),
                       epochs=EPOCHS, batch_size=64, validation_split=0.2, seed=seed,
                       callbacks=[EarlyStopping(patience=1, min_delta=0.15, restore_best_weights=True)])


SETTINGS = [(u, d, u2) for u in (8, 16, 32) for d in (0.1, 0.4) for u2 in ((12,) if d < 0.3 else (6,))]


@pytest.fixture(scope="module")
def trained(digits):
    alone = [train(digits, *s) for s in SETTINGS]
    pop = Population(PopulationConfig(parallel=1))  # one padded program, not lone trials side by side
    together = pop.run([lambda s=s: train(digits, *s) for s in SETTINGS])
    return alone, together, pop


def assert_same_history(a, b, n_val=360):
    assert a.history.keys() == b.history.keys()
    for name in a.history:
        assert len(a.history[name]) == len(b.history[name]), name
        # losses agree to float rounding; an accuracy may differ by one sample whose argmax is a tie
        tol = {"rtol": 1e-4, "atol": 1e-6} if "acc" not in name else {"rtol": 0, "atol": 1.01 / n_val}
        np.testing.assert_allclose(b.history[name], a.history[name], err_msg=name, **tol)


def test_widths_train_as_one_group_with_the_results_of_training_alone(trained):
    alone, together, pop = trained
    assert pop.groups_trained == [len(SETTINGS)]  # 3 first-layer x 2 second-layer widths: one program
    for a, b in zip(alone, together, strict=True):
        assert not isinstance(b, BaseException), b
        assert_same_history(a, b, n_val=287)
    assert len({a.epochs_completed for a in alone}) > 1  # EarlyStopping stopped trials at different epochs


def test_states_come_back_at_their_true_shapes_and_evaluate_alike(trained, digits):
    alone, together, _ = trained
    _, (xt, yt) = digits
    for a, b in zip(alone, together, strict=True):
        assert b.engine is a.engine  # the trial's own, unpadded engine
        shapes = jax.tree_util.tree_map(jnp.shape, a.state)
        assert jax.tree_util.tree_map(jnp.shape, b.state) == shapes
        sa = gridrun.evaluate(a, xt, yt, record=False)
        sb = gridrun.evaluate(b, xt, yt, record=False)
        assert sb["loss"] == pytest.approx(sa["loss"], rel=1e-4)
        assert sb["acc"] == pytest.approx(sa["acc"], abs=1.01 / len(xt))
        np.testing.assert_allclose(gridrun.predict(b, xt), gridrun.predict(a, xt), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("opt", ["adam", "rmsprop"])
def test_padded_parameters_stay_exactly_zero_and_real_ones_match(digits, opt):
    (x, y), _ = digits
    x, y = x[:512], y[:512]

    def prepared(units, batch_size=32):
        config, hp = E.prepare(make_model(units, 0.3, units2=units // 2), loss="categorical_crossentropy",
                               optimizer=gridrun.train.optimizer(opt, learning_rate=0.003), metrics=("accuracy",),
                               callbacks=[EarlyStopping(monitor="loss", restore_best_weights=True)],
                               batch_size=batch_size, x_shape=x.shape, n_val=0)
        return E.get_engine(config), hp

    narrow, hp = prepared(8)
    wide_cfg = widths.padded_config([narrow.config, prepared(32)[0].config])
    assert widths.hidden_units(wide_cfg) == (32, 16)
    assert widths.merge_key(wide_cfg) == widths.merge_key(narrow.config)
    assert widths.merge_key(prepared(8, batch_size=16)[0].config) != widths.merge_key(narrow.config)
    wide = E.get_engine(wide_cfg)
    hp_wide = widths.with_masks(hp, narrow.config, wide_cfg)
    data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    k_init, k_train = E.seed_keys(5)
    s_narrow = narrow.jit_init(hp, k_init)
    s_wide = widths.pad(s_narrow, jax.eval_shape(wide.init, hp_wide, k_init))
    for e in range(3):
        s_narrow, log_n = narrow.jit_epoch(s_narrow, hp, data, E.epoch_key(k_train, e))
        s_wide, log_w = wide.jit_epoch(s_wide, hp_wide, data, E.epoch_key(k_train, e))
        if opt == "rmsprop":  # (Adam magnifies rounding differences of near-zero gradients; see the docs)
            np.testing.assert_allclose(log_w["loss"], log_n["loss"], rtol=1e-5)
    # every parameter, optimizer moment and best-weights copy outside the real block is exactly 0
    inside = widths.pad(jax.tree_util.tree_map(jnp.ones_like, s_narrow), s_wide)
    for part in ("params", "opt_state", "best"):
        outside = jax.tree_util.tree_map(lambda a, m: jnp.where(m == 0, a, 0), s_wide[part], inside[part])
        assert all(not bool(jnp.any(leaf != 0)) for leaf in jax.tree_util.tree_leaves(outside)), part
    assert int(s_wide["params"]["Dense_0"]["kernel"].shape[1]) == 32
    assert bool(jnp.any(s_wide["params"]["Dense_0"]["kernel"][:, :8] != s_narrow["params"]["Dense_0"]["kernel"] * 0))
    if opt == "rmsprop":  # and the real block is the unpadded training's state, up to float rounding
        back = widths.crop(s_wide, s_narrow)
        for got, want in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(s_narrow), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_dropout_bits_do_not_depend_on_the_padding():
    from gridrun.train.layers import dropout_keep_mask

    seed, keep = jnp.uint32(11), jnp.float32(0.6)
    narrow = dropout_keep_mask(seed, (50, 8), keep)
    padded = dropout_keep_mask(seed, (50, 32), keep, width=jnp.float32(8))
    np.testing.assert_array_equal(padded[:, :8], narrow)
    assert not np.array_equal(dropout_keep_mask(seed, (50, 32), keep)[:, :8], narrow)  # not by chance
    assert abs(float(padded.mean()) - 0.6) < 0.05


def test_user_modules_and_equal_widths_are_not_padded():
    import flax.linen as nn

    cfg = E.EngineConfig(model=E.ByIdentity(nn.Dense(3)), loss="mse", optimizer=("sgd", ()), metrics=(),
                         early_stopping=None, reduce_lr=None, batch_size=8, n_train=16, n_val=0, input_shape=(4,))
    assert widths.merge_key(cfg) == cfg and widths.hidden_units(cfg) == ()
    assert widths.padded_config([cfg, cfg]) is cfg


SCRIPT = """
import gridrun
from gridrun import BatchNorm, Dense, Dropout, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_integer("units", 16, "hidden units"),
    gridrun.flag_numeric("lr", 0.01, "learning rate"),
    gridrun.flag_integer("epochs", 3, "epochs"),
)
(x, y), (xt, yt) = load_prepared("digits")
model = Sequential([Dense(FLAGS.units, activation="relu"), BatchNorm(), Dropout(0.2), Dense(10, activation="softmax")])
history = gridrun.fit(model, x, y, loss="categorical_crossentropy", metrics=("accuracy",),
                      optimizer=gridrun.train.optimizer("rmsprop", learning_rate=FLAGS.lr),
                      epochs=FLAGS.epochs, batch_size=64, validation_split=0.2, seed=1)
gridrun.evaluate(history, xt, yt)
"""


def test_tuning_run_with_width_flags_trains_one_group(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    grid = {"units": [8, 16, 32], "lr": [0.001, 0.003]}
    runs = {}
    for name, population in (("seq", False), ("pop", True)):
        df = gridrun.tuning_run(tmp_path / "train.py", flags=grid, runs_dir=tmp_path / name, quiet=True,
                                population=population)
        runs[name] = {(r.flag_units, r.flag_lr): r for r in df.itertuples()}
    assert len(runs["pop"]) == 6
    for key, p in runs["pop"].items():
        s = runs["seq"][key]
        props = read_json(f"{p.run_dir}/properties.json")
        assert props["population"] == {"size": 6, "padded_units": [32]}
        assert props["model"] == read_json(f"{s.run_dir}/properties.json")["model"]  # the true summary
        mp, ms = read_json(f"{p.run_dir}/metrics.json"), read_json(f"{s.run_dir}/metrics.json")
        np.testing.assert_allclose(mp["val_loss"], ms["val_loss"], rtol=1e-4, atol=1e-6)
        assert p.eval_acc == pytest.approx(s.eval_acc, abs=1.01 / 360)
