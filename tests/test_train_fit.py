"""gridrun.fit end to end on small synthetic data: recording, compilation reuse, population equivalence."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gridrun
from gridrun import rundir
from gridrun.errors import GridrunError
from gridrun.train import engine as E
from gridrun.train import optimizer


def _data(n=240, d=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, (k, d))
    y = rng.integers(0, k, n)
    x = (centers[y] + rng.normal(0, 1.0, (n, d))).astype(np.float32)
    return x, y, np.eye(k, dtype=np.float32)[y]


def _model(drop=0.2, l2=0.001):
    return gridrun.Sequential([
        gridrun.Dense(16, activation="relu", kernel_regularizer=gridrun.l2(l2)),
        gridrun.BatchNorm(),
        gridrun.Dropout(drop),
        gridrun.Dense(3, activation="softmax"),
    ])


def test_fit_learns_and_history_has_keras_names() -> None:
    x, y, Y = _data()
    h = gridrun.fit(_model(), x, Y, loss="categorical_crossentropy", optimizer=optimizer("adam", learning_rate=0.01),
                    metrics=["accuracy"], epochs=8, batch_size=32, validation_split=0.25)
    assert set(h.history) == {"loss", "acc", "val_loss", "val_acc", "lr"}
    assert len(h.history["loss"]) == 8
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert h.history["val_acc"][-1] > 0.8
    text = str(h)
    assert text.startswith("Trained on 180 samples, validated on 60 samples (batch_size=32, epochs=8)")
    assert "Final epoch (plot to see history):" in text
    assert text.splitlines()[2].strip().startswith("val_loss:")
    probs = gridrun.predict(h, x[:5])
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    # evaluate on the validation part reproduces the last val_loss (same eval-mode computation)
    scores = gridrun.evaluate(h, x[180:], Y[180:])
    assert scores["loss"] == pytest.approx(h.history["val_loss"][-1], rel=1e-4)
    assert scores["acc"] == pytest.approx(h.history["val_acc"][-1], rel=1e-4)


def test_sparse_labels_and_regression() -> None:
    x, y, _ = _data()
    h = gridrun.fit(_model(), x, y, loss="sparse_categorical_crossentropy", metrics="accuracy", epochs=3, batch_size=64)
    assert set(h.history) == {"loss", "acc", "lr"}
    target = (x @ np.linspace(-1, 1, x.shape[1])).astype(np.float32)
    reg = gridrun.Sequential([gridrun.Dense(16, activation="relu"), gridrun.Dense(1)])
    h2 = gridrun.fit(reg, x, target, loss="mse", optimizer="adam", metrics=["mae"], epochs=20, batch_size=32,
                     validation_data=(x[:50], target[:50]))
    assert h2.history["val_mae"][-1] < h2.history["val_mae"][0]


def test_l2_adds_twice_lambda_w_to_the_kernel_gradient() -> None:
    x, _, Y = _data(n=64)
    grads = {}
    for lam in (0.0, 0.1):
        config, hp = E.prepare(_model(drop=0.0, l2=lam), loss="categorical_crossentropy", optimizer="sgd", metrics=(),
                               callbacks=(), batch_size=64, x_shape=x.shape, n_val=0)
        eng = E.get_engine(config)
        state = eng.jit_init(hp, jax.random.PRNGKey(0))

        def loss(p, eng=eng, state=state, hp=hp):
            return eng._losses(p, state["extra"], hp, jnp.asarray(x), jnp.asarray(Y), True, jnp.uint32(0))[0]

        grads[lam] = (jax.jit(jax.grad(loss))(state["params"]), state["params"])
    g0, p = grads[0.0]
    g1, _ = grads[0.1]
    np.testing.assert_allclose(g1["Dense_0"]["kernel"] - g0["Dense_0"]["kernel"], 0.2 * p["Dense_0"]["kernel"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g1["Dense_1"]["kernel"], g0["Dense_1"]["kernel"], rtol=1e-5, atol=1e-7)  # not regularized


def test_no_recompilation_when_only_traced_hyperparameters_change() -> None:
    x, _, Y = _data()
    kw = dict(loss="categorical_crossentropy", metrics=["accuracy"], epochs=2, batch_size=32, validation_split=0.25,
              callbacks=[gridrun.EarlyStopping(patience=3), gridrun.ReduceLROnPlateau(factor=0.5)])
    h1 = gridrun.fit(_model(drop=0.2, l2=0.001), x, Y, optimizer=optimizer("adam", learning_rate=1e-3), **kw)
    before = E.TRACE_COUNTS["epoch"]
    kw["callbacks"] = [gridrun.EarlyStopping(patience=1, min_delta=0.01), gridrun.ReduceLROnPlateau(factor=0.1, patience=2)]
    h2 = gridrun.fit(_model(drop=0.5, l2=0.01), x, Y, optimizer=optimizer("adam", learning_rate=1e-2, beta_1=0.8), seed=3, **kw)
    assert E.TRACE_COUNTS["epoch"] == before  # same compiled epoch program
    assert h2.history["lr"][0] == pytest.approx(1e-2) and h1.history["lr"][0] == pytest.approx(1e-3)
    assert h1.history["loss"] != h2.history["loss"]
    # a structural change does compile a new program (the counter works)
    odd = gridrun.Sequential([gridrun.Dense(13, activation="tanh"), gridrun.Dropout(0.1), gridrun.Dense(3, activation="softmax")])
    gridrun.fit(odd, x, Y, optimizer="rmsprop", **kw)
    assert E.TRACE_COUNTS["epoch"] == before + 1


def test_fit_records_metrics_properties_evaluation_and_plot_in_the_active_run(tmp_path) -> None:
    x, _, Y = _data()
    ctx = rundir.RunContext(run_dir=tmp_path)
    with rundir.activate(ctx):
        h = gridrun.fit(_model(), x, Y, loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"],
                        epochs=3, batch_size=32, validation_split=0.25)
        gridrun.evaluate(h, x[:40], Y[:40])
        png = h.plot()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(h.history["val_loss"])
    assert set(metrics) == {"loss", "acc", "val_loss", "val_acc", "lr", "n_params"}  # n_params: issue 21
    assert metrics["n_params"] == [259 - 2 * 16] * 3  # every epoch: trainable only (not the BatchNorm moving stats)
    props = json.loads((tmp_path / "properties.json").read_text())
    assert props["samples"] == 180 and props["validation_samples"] == 60
    assert props["batch_size"] == 32 and props["epochs"] == 3 and props["epochs_completed"] == 3
    assert props["loss_function"] == "categorical_crossentropy" and props["optimizer"] == "rmsprop"
    assert props["learning_rate"] == pytest.approx(0.001)
    assert "dense (Dense)" in props["model"] and "Total params: 259" in props["model"]  # 8*16+16 + 4*16 + 16*3+3
    ev = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(ev) == {"loss", "acc"}
    assert png.startswith(str(tmp_path / "artifacts")) and (tmp_path / "artifacts" / "history.png").stat().st_size > 1000


def test_early_stopping_in_fit_stops_and_restores_best_weights() -> None:
    x, _, Y = _data()
    seen = []
    h = gridrun.fit(_model(), x, Y, loss="categorical_crossentropy", optimizer=optimizer("sgd", learning_rate=5.0),
                    metrics=["accuracy"], epochs=40, batch_size=32, validation_split=0.25, seed=1,
                    callbacks=[gridrun.EarlyStopping(patience=2, restore_best_weights=True),
                               gridrun.LambdaCallback(on_epoch_end=lambda e, logs: seen.append((e, logs["val_loss"])))])
    vl = h.history["val_loss"]
    assert len(vl) < 40 and [e for e, _ in seen] == list(range(len(vl)))
    best = int(np.argmin(vl))
    assert len(vl) - 1 - best == 2  # stopped exactly `patience` epochs after the best one
    assert gridrun.evaluate(h, x[180:], Y[180:], record=False)["loss"] == pytest.approx(vl[best], rel=1e-4)


def test_clear_errors_for_bad_input() -> None:
    x, y, Y = _data()
    with pytest.raises(GridrunError, match="sparse_categorical_crossentropy"):
        gridrun.fit(_model(), x, y, loss="categorical_crossentropy")
    with pytest.raises(GridrunError, match="validation"):
        gridrun.fit(_model(), x, Y, loss="categorical_crossentropy", callbacks=[gridrun.EarlyStopping()])
    with pytest.raises(GridrunError, match="units"):
        gridrun.fit(_model(), x, np.eye(4)[y], loss="categorical_crossentropy")
    with pytest.raises(GridrunError, match="loss"):
        gridrun.fit(_model(), x, Y)


def test_vmapped_population_of_three_equals_three_separate_runs() -> None:
    x, _, Y = _data()
    settings = [(1e-3, 0.1, 0), (5e-3, 0.3, 1), (5e-2, 0.0, 2)]  # (lr, dropout, seed)
    cbs = [gridrun.EarlyStopping(patience=1, min_delta=0.02), gridrun.ReduceLROnPlateau(factor=0.5, patience=1)]
    kw = dict(loss="categorical_crossentropy", metrics=["accuracy"], batch_size=32, callbacks=cbs)
    epochs = 8
    alone = [gridrun.fit(_model(drop=d), x, Y, optimizer=optimizer("adam", learning_rate=lr), epochs=epochs,
                         validation_split=0.25, seed=s, **kw).history for lr, d, s in settings]
    prepared = [E.prepare(_model(drop=d), optimizer=optimizer("adam", learning_rate=lr), x_shape=(180, 8), n_val=60, **kw)
                for lr, d, _ in settings]
    assert len({c for c, _ in prepared}) == 1  # one static configuration
    eng = E.get_engine(prepared[0][0])
    hps = E.stack([h for _, h in prepared])
    keys = [E.seed_keys(s) for _, _, s in settings]
    states = jax.vmap(eng.init)(hps, jnp.stack([k[0] for k in keys]))
    data = {"x": jnp.asarray(x[:180]), "y": jnp.asarray(Y[:180]), "x_val": jnp.asarray(x[180:]), "y_val": jnp.asarray(Y[180:])}
    vepoch = jax.jit(jax.vmap(eng.epoch, in_axes=(0, 0, None, 0)))
    pop = {k: [[] for _ in settings] for k in alone[0]}
    for e in range(epochs):
        states, logs = vepoch(states, hps, data, jnp.stack([E.epoch_key(k[1], e) for k in keys]))
        for i in range(len(settings)):
            if bool(logs["active"][i]):
                for k in pop:
                    pop[k][i].append(float(logs[k][i]))
    assert min(len(h["loss"]) for h in alone) < epochs  # one trial stopped early: frozen inside the population
    assert len({round(h["lr"][-1], 6) for h in alone}) == 3
    for i, h in enumerate(alone):
        assert len(pop["loss"][i]) == len(h["loss"])
        for k in h:
            np.testing.assert_allclose(pop[k][i], h[k], rtol=2e-4, atol=1e-5, err_msg=f"trial {i} metric {k}")


def test_fit_accepts_a_flax_linen_module() -> None:
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.relu(nn.Dense(16)(x))
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(0.2, deterministic=not train)(x)
            return nn.softmax(nn.Dense(3)(x))

    x, y, Y = _data()
    h = gridrun.fit(MLP(), x, y, loss="sparse_categorical_crossentropy", optimizer=optimizer("adam", learning_rate=0.01),
                    metrics=["accuracy"], epochs=6, batch_size=32, validation_split=0.25)
    assert h.history["val_acc"][-1] > 0.8
    assert 'Model: "MLP"' in h.params["model"] and "Total params: 259" in h.params["model"]
    p = gridrun.predict(h, x[:4])
    np.testing.assert_allclose(p, gridrun.predict(h, x[:4]))  # inference is deterministic


def test_history_plots_from_many_threads_at_once(tmp_path) -> None:
    """Population trials are threads that all call history.plot() at the end; matplotlib's text layout
    (mathtext, used by the log-scale lr axis) is shared state, so unguarded plots failed at random."""
    import threading

    from gridrun.train.history import History

    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        h = History({"samples": 10})
        h.history = {"loss": [1.0, 0.5, 0.4, 0.3], "val_loss": [1.1, 0.6, 0.5, 0.45], "lr": [1e-3, 2e-4, 4e-5, 8e-6]}
        barrier.wait()
        try:
            for k in range(3):
                h.plot(tmp_path / f"h{i}-{k}.png")
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(list(tmp_path.glob("h*.png"))) == 24


def test_early_stopping_records_the_best_epoch_as_properties_and_columns(tmp_path) -> None:
    x, _, Y = _data()
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    with rundir.activate(rundir.RunContext(run_dir=run)):
        h = gridrun.fit(_model(), x, Y, loss="categorical_crossentropy", optimizer=optimizer("sgd", learning_rate=5.0),
                        metrics=["accuracy"], epochs=40, batch_size=32, validation_split=0.25, seed=1,
                        callbacks=[gridrun.EarlyStopping(monitor="val_acc", patience=3)])
    accs = h.history["val_acc"]
    want = int(np.argmax(accs)) + 1  # the first epoch reaching the maximum, as Keras counts an improvement
    props = json.loads((run / "properties.json").read_text())
    assert len(accs) < 40 and props["best_epoch"] == want < len(accs)
    assert props["best_val_acc"] == pytest.approx(max(accs))
    assert h.params["best_epoch"] == want
    table = gridrun.ls_runs(runs_dir=tmp_path / "runs")
    assert table.loc[0, "best_epoch"] == want and table.loc[0, "best_val_acc"] == pytest.approx(max(accs))
    assert str(table["best_epoch"].dtype) == "Int64"


@pytest.fixture
def puts(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of the 2-d host arrays put on the device from now on (engine.on_device's cache empty)."""
    shapes: list[tuple[int, ...]] = []
    real = E.jnp.asarray

    def counting(a, *args, **kwargs):
        if isinstance(a, np.ndarray) and a.ndim == 2:
            shapes.append(a.shape)
        return real(a, *args, **kwargs)

    monkeypatch.setattr(E.jnp, "asarray", counting)
    monkeypatch.setattr(E, "_DEVICE", type(E._DEVICE)())
    return shapes


def test_fit_puts_prepared_data_on_the_device_once_per_view(puts) -> None:
    """Slices of load_prepared's read-only arrays reach the device once and are reused by the next fit
    (a sequential sweep's trials); a user's own arrays, writable or not, are put afresh every time."""
    from gridrun.datasets import load_prepared

    (x, y), _ = load_prepared("digits")

    def train(xs, ys):
        model = gridrun.Sequential([gridrun.Dense(8, activation="relu"), gridrun.Dense(10, activation="softmax")])
        return gridrun.fit(model, xs, ys, loss="categorical_crossentropy", epochs=1, batch_size=64,
                           validation_split=0.25, verbose=0)

    first = train(x[:400], y[:400])
    assert len(puts) == 4  # x, y and the validation pair
    second = train(x[:400], y[:400])
    assert len(puts) == 4  # the same views: nothing put again
    assert first.history["loss"] == second.history["loss"]
    train(x[:300], y[:300])
    assert len(puts) == 8  # other rows: other device arrays
    mine_x, mine_y = np.array(x[:400]), np.array(y[:400])
    mine_x.setflags(write=False)  # read-only, but the caller owns its memory: never kept
    train(mine_x, mine_y)
    train(mine_x, mine_y)
    assert len(puts) == 16


def test_fit_loop_puts_prepared_data_on_the_device_once_per_view(puts) -> None:
    """fit_loop shares fit's device copies of load_prepared's views (engine.on_device)."""
    import flax.linen as nn
    import optax

    from gridrun.datasets import load_prepared

    (x, y), _ = load_prepared("digits")
    model = nn.Dense(10)

    def init(key, hp):
        params = model.init(key, jnp.zeros((1, 64)))["params"]
        return params, optax.sgd(hp["lr"]).init(params)

    def step(state, batch, hp, key):
        params, opt = state

        def loss_fn(p):
            return optax.softmax_cross_entropy(model.apply({"params": p}, batch[0]), batch[1]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = optax.sgd(hp["lr"]).update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), {"loss": loss}

    runs = [gridrun.fit_loop(init, step, (x[:320], y[:320]), hparams={"lr": 0.1}, epochs=1, batch_size=64)
            for _ in range(2)]
    assert len(puts) == 2  # x and y, put once for both calls
    assert runs[0].history["loss"] == runs[1].history["loss"]
