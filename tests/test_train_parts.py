"""gridrun.train building blocks: losses, metrics, layers, optimizers, and the pure callback updates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gridrun.errors import GridrunError
from gridrun.train import callbacks as cbs
from gridrun.train import shuffle
from gridrun.train.layers import (
    BatchNorm,
    Dense,
    Dropout,
    Sequential,
    SequentialNet,
    dropout_keep_mask,
    l2,
    split_model,
)
from gridrun.train.losses import per_example_loss, per_example_metric
from gridrun.train.optimizers import optimizer

# -- losses and metrics -----------------------------------------------------------------------------


def test_categorical_crossentropy_from_logits_matches_hand_computation() -> None:
    z = jnp.array([[2.0, 1.0, 0.1], [0.0, 0.0, 3.0]])
    y = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = np.exp(np.asarray(z)) / np.exp(np.asarray(z)).sum(1, keepdims=True)
    want = [-np.log(p[0, 0]), -np.log(p[1, 1])]
    np.testing.assert_allclose(per_example_loss("categorical_crossentropy", y, z, "softmax"), want, rtol=1e-6)
    sparse = per_example_loss("sparse_categorical_crossentropy", jnp.array([0, 1]), z, "softmax")
    np.testing.assert_allclose(sparse, want, rtol=1e-6)
    # a linear output is taken as probabilities, clipped as Keras does
    probs = jnp.array([[0.5, 0.5, 0.0]])
    got = per_example_loss("categorical_crossentropy", jnp.array([[0.0, 0.0, 1.0]]), probs, "linear")
    np.testing.assert_allclose(got, [-np.log(1e-7)], rtol=1e-4)


def test_binary_crossentropy_and_mse() -> None:
    z = jnp.array([[0.0], [2.0]])
    y = jnp.array([[1.0], [0.0]])
    p = 1 / (1 + np.exp(-np.array([0.0, 2.0])))
    want = [-np.log(p[0]), -np.log(1 - p[1])]
    np.testing.assert_allclose(per_example_loss("binary_crossentropy", y, z, "sigmoid"), want, rtol=1e-6)
    np.testing.assert_allclose(per_example_loss("mean_squared_error", jnp.array([[1.0, 3.0]]), jnp.array([[2.0, 1.0]]), "linear"), [2.5])
    np.testing.assert_allclose(per_example_metric("mae", "mean_squared_error", jnp.array([[1.0, 3.0]]), jnp.array([[2.0, 1.0]]), "linear"), [1.5])


def test_accuracy_one_hot_sparse_and_binary() -> None:
    z = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    onehot = jnp.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(per_example_metric("acc", "categorical_crossentropy", onehot, z, "linear"), [1, 0, 1])
    np.testing.assert_allclose(per_example_metric("acc", "sparse_categorical_crossentropy", jnp.array([1, 0, 0]), z, "linear"), [1, 1, 0])
    zb = jnp.array([[2.0], [-1.0]])
    np.testing.assert_allclose(per_example_metric("acc", "binary_crossentropy", jnp.array([[1.0], [1.0]]), zb, "sigmoid"), [1, 0])


def test_callable_loss_gets_activated_outputs() -> None:
    def my_loss(y_true, y_pred):
        return jnp.sum(jnp.abs(y_true - y_pred), -1)

    z = jnp.array([[0.0, 0.0]])
    np.testing.assert_allclose(per_example_loss(my_loss, jnp.array([[1.0, 0.0]]), z, "softmax"), [1.0])


# -- layers -----------------------------------------------------------------------------------------


def _net(structure):
    return SequentialNet(structure)


def test_batchnorm_uses_batch_stats_in_training_and_running_stats_at_eval() -> None:
    structure, _ = split_model(Sequential([Dense(3), BatchNorm(momentum=0.9), Dense(2)]))
    net = _net(structure)
    x = jax.random.normal(jax.random.PRNGKey(1), (64, 5)) * 3 + 2
    rates = jnp.zeros(0)
    v = net.init(jax.random.PRNGKey(0), x[:1], rates, False)
    # training: the normalized hidden layer has batch mean 0 / var ~1, and running stats move by 1 - momentum
    hidden = jax.lax.stop_gradient(x @ v["params"]["Dense_0"]["kernel"] + v["params"]["Dense_0"]["bias"])
    _, upd = net.apply(v, x, rates, True, jnp.uint32(0), mutable=["batch_stats"])
    np.testing.assert_allclose(upd["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * hidden.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(upd["batch_stats"]["BatchNorm_0"]["var"], 0.9 + 0.1 * hidden.var(0), rtol=1e-5)
    # eval: y = (h - running_mean) / sqrt(running_var + eps) * scale + bias, per example (batch independent)
    v2 = {"params": v["params"], "batch_stats": upd["batch_stats"]}
    out_eval = net.apply(v2, x, rates, False)
    bs = upd["batch_stats"]["BatchNorm_0"]
    normed = (hidden - bs["mean"]) / jnp.sqrt(bs["var"] + 1e-3)
    want = normed @ v["params"]["Dense_1"]["kernel"] + v["params"]["Dense_1"]["bias"]
    np.testing.assert_allclose(out_eval, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.apply(v2, x[:1], rates, False), out_eval[:1], rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training_and_scaled() -> None:
    structure, hp = split_model(Sequential([Dense(400), Dropout(0.5), Dense(1)]))
    net = _net(structure)
    x = jnp.ones((8, 4))
    v = net.init(jax.random.PRNGKey(0), x, jnp.asarray(hp["dropout"]), False)
    a = net.apply(v, x, jnp.asarray(hp["dropout"]), False)
    b = net.apply(v, x, jnp.asarray(hp["dropout"]), False)
    np.testing.assert_array_equal(a, b)
    t1 = net.apply(v, x, jnp.asarray(hp["dropout"]), True, jnp.uint32(1))
    t2 = net.apply(v, x, jnp.asarray(hp["dropout"]), True, jnp.uint32(2))
    assert not np.allclose(t1, a) and not np.allclose(t1, t2)
    mask = dropout_keep_mask(jnp.uint32(7), (200, 500), jnp.float32(0.7))
    assert abs(float(mask.mean()) - 0.7) < 0.01
    assert bool(dropout_keep_mask(jnp.uint32(7), (10, 10), jnp.float32(1.0)).all())


def test_split_model_separates_structure_from_traced_floats() -> None:
    m1 = Sequential([Dense(8, activation="relu", kernel_regularizer=l2(0.01)), Dropout(0.2), Dense(2, activation="softmax")])
    m2 = Sequential([Dense(8, activation="relu", kernel_regularizer=l2(0.5)), Dropout(0.4), Dense(2, activation="softmax")])
    s1, h1 = split_model(m1)
    s2, h2 = split_model(m2)
    assert s1 == s2 and hash(s1) == hash(s2)
    assert h1["dropout"] == [0.2] and h2["l2"] == [0.5]
    with pytest.raises(GridrunError, match="activation"):
        Dense(3, activation="bogus")
    with pytest.raises(GridrunError, match="rate"):
        Dropout(1.5)


# -- optimizers --------------------------------------------------------------------------------------


def test_named_optimizers_have_keras_defaults_and_rmsprop_matches_keras_formula() -> None:
    spec = optimizer("rmsprop")
    assert spec.hparams == {"learning_rate": 0.001, "decay": 0.9, "eps": 1e-7}
    assert optimizer("adam", beta_1=0.8).hparams["b1"] == 0.8
    assert optimizer("sgd").learning_rate == 0.01
    tx = spec.build()
    w = {"w": jnp.array([1.0, -2.0])}
    g = {"w": jnp.array([0.5, 0.1])}
    upd, _ = tx.update(g, tx.init(w), w)
    v = 0.1 * np.array([0.5, 0.1]) ** 2  # Keras: v = rho v + (1 - rho) g^2; step = lr g / sqrt(v + eps)
    np.testing.assert_allclose(upd["w"], -0.001 * np.array([0.5, 0.1]) / np.sqrt(v + 1e-7), rtol=1e-5)
    with pytest.raises(GridrunError, match="unknown optimizer"):
        optimizer("adamw2")
    with pytest.raises(GridrunError, match="no setting"):
        optimizer("adam", rho=0.5)
    assert isinstance(optimizer("adagrad").build(), optax.GradientTransformation)


# -- callbacks (pure updates) -------------------------------------------------------------------------


def _run_es(values, **kw):
    es = cbs.EarlyStopping(**kw)
    state = cbs.early_stopping_init()
    for epoch, v in enumerate(values):
        state = cbs.early_stopping_update(state, jnp.float32(v), epoch, es.hparams(), es.sign)
        if bool(state["stopped"]):
            return epoch, int(state["best_epoch"])
    return None, int(state["best_epoch"])


def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    seq = [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.69, 0.9]
    assert _run_es(seq, patience=2) == (4, 2)  # epochs 3 and 4 do not beat 0.7 -> stop at 4
    assert _run_es(seq, patience=3) == (5, 2)
    assert _run_es(seq, patience=4) == (None, 6)  # 0.69 at epoch 6 resets the wait
    assert _run_es(seq, patience=3, min_delta=0.05) == (5, 2)  # improvements must exceed 0.05
    assert _run_es(seq, patience=0) == (3, 2)
    assert _run_es([0.5, 0.6, 0.55, 0.58], monitor="val_acc", patience=1) == (2, 1)  # auto -> max for acc


def test_reduce_lr_on_plateau_multiplies_lr_after_patience_and_respects_cooldown_and_min_lr() -> None:
    cb = cbs.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.02)
    state, lr, lrs = cbs.reduce_lr_init(), jnp.float32(0.1), []
    for v in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        state, lr = cbs.reduce_lr_update(state, jnp.float32(v), lr, cb.hparams(), cb.sign)
        lrs.append(round(float(lr), 6))
    # Keras: wait 1, 2 -> reduce at epoch 2; epoch 3 ends the cooldown and counts wait 1; epoch 4 reduces;
    # epoch 6 would give 0.0125 but min_lr floors it at 0.02; at min_lr it stays
    assert lrs == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02]
    cb2 = cbs.ReduceLROnPlateau(factor=0.1, patience=1)
    state, lr = cbs.reduce_lr_init(), jnp.float32(1.0)
    for v in [1.0, 0.5, 0.25]:  # always improving: never reduced
        state, lr = cbs.reduce_lr_update(state, jnp.float32(v), lr, cb2.hparams(), cb2.sign)
    assert float(lr) == 1.0



# -- shuffles -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 17, 64, 65, 1000, 4097, 48000])
def test_feistel_permutation_is_a_permutation_of_range_n(n: int) -> None:
    for seed in range(3):
        perm = np.asarray(shuffle.permutation(jax.random.PRNGKey(seed), n))
        assert perm.dtype == np.int32 and perm.shape == (n,)
        np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    assert shuffle.permutation(jax.random.PRNGKey(0), 0).shape == (0,)
    with pytest.raises(GridrunError, match="2\\*\\*31"):
        shuffle.permutation(jax.random.PRNGKey(0), 2**31)


def test_feistel_shuffles_look_uniform_and_depend_on_the_key() -> None:
    n, trials = 50, 4000
    perms = np.asarray(jax.vmap(lambda k: shuffle.permutation(k, n))(jax.random.split(jax.random.PRNGKey(1), trials)))
    assert len({p.tobytes() for p in perms}) == trials  # different keys, different orders
    # where each row lands: uniform over the n positions (chi-square, 49 dof: p < 1e-4 above ~90)
    counts = np.zeros((n, n))
    np.add.at(counts, (perms, np.broadcast_to(np.arange(n), perms.shape)), 1)
    chi2 = ((counts - trials / n) ** 2 / (trials / n)).sum(1)
    assert chi2.max() < 95, chi2.max()
    assert abs((perms == np.arange(n)).sum(1).mean() - 1.0) < 0.1  # a random permutation has 1 fixed point on average
    # neighbouring rows are not kept together (a weak shuffle would keep runs)
    adjacent = np.abs(np.diff(np.argsort(perms, 1), axis=1)) == 1
    assert abs(adjacent.mean() - 2 / n) < 0.01


def test_adam_is_keras_adam() -> None:
    """Keras 3's Adam: m, v without bias correction; step = lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)."""
    spec = optimizer("adam", learning_rate=0.01, epsilon=1e-3)
    tx = spec.build()
    w = {"w": jnp.array([1.0, -2.0, 0.0])}
    state = tx.init(w)
    m = v = np.zeros(3)
    for t, g in enumerate(([0.5, 0.1, -1e-4], [0.3, -0.2, 2e-4], [-0.1, 0.4, 1e-4]), start=1):
        g = np.array(g)
        upd, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, w)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        want = -0.01 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-3)
        np.testing.assert_allclose(upd["w"], want, rtol=1e-5)
    # optax.adam puts eps on the corrected root: with this large eps the two differ measurably
    ref = optax.adam(0.01, eps=1e-3)
    ref_upd, _ = ref.update({"w": jnp.array([0.5, 0.1, -1e-4])}, ref.init(w), w)
    first, _ = tx.update({"w": jnp.array([0.5, 0.1, -1e-4])}, tx.init(w), w)
    assert not np.allclose(first["w"], ref_upd["w"], rtol=1e-3)
