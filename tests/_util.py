"""Helpers shared by tests (import as `from _util import run_cli`)."""

import os
import sys


def run_cli(*args, cwd=None, env=None, timeout=120, check=False):
    """Run `python -m gridrun.cli ARGS` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    full_env = dict(os.environ)
    full_env.pop("GRIDRUN_RUN_DIR", None)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "gridrun.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"gridrun {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def manifest(runs):
    """The latest sweep manifest in runs dir `runs`, as a dict."""
    import json

    from gridrun.sweep.manifest import list_sweeps

    return json.loads(list_sweeps(runs)[-1].read_text())


# a sweep of 12 small fits on load_digits (6 learning rates x 2 dropout rates, 6 epochs): slot refilling,
# pruned population trials
DIGITS_SWEEP_SCRIPT = """
import gridrun
from gridrun import Dense, Dropout, Sequential
from gridrun.datasets import load_prepared

FLAGS = gridrun.flags(
    gridrun.flag_numeric("lr", 1e-3, "learning rate", values=[1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]),
    gridrun.flag_numeric("dropout", 0.1, "dropout", values=[0.1, 0.3]),
)
(x, y), _ = load_prepared("digits")
model = Sequential([Dense(24, activation="relu"), Dropout(FLAGS.dropout), Dense(10, activation="softmax")])
gridrun.fit(model, x[:600], y[:600], loss="categorical_crossentropy", metrics=("accuracy",),
            optimizer=gridrun.optimizer("adam", learning_rate=FLAGS.lr), epochs=6, batch_size=64,
            validation_split=0.25, seed=0, verbose=0)
"""


# an own training loop's model and step (flax.linen, optax): 3 Gaussian blobs in 8 dimensions, a 16-unit MLP,
# Adam built from the traced hp; a script adds its flags before and eval_step and fit_loop after
LINEN_MLP = """rng = np.random.default_rng(0)
centers = rng.normal(0, 2.0, (3, 8))
y = rng.integers(0, 3, 300)
x = (centers[y] + rng.normal(0, 1.0, (300, 8))).astype(np.float32)


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


model = MLP()


def init(key, hp):
    params = model.init(key, jnp.zeros((1, 8)))["params"]
    return params, optax.adam(hp["learning_rate"]).init(params)


def train_step(state, batch, hp, key):
    params, opt_state = state
    xb, yb = batch

    def loss_fn(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, xb), yb).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optax.adam(hp["learning_rate"]).update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), {"loss": loss}
"""
