"""Your own loop at gridrun's speed: the Flax NNX MLP example on Fashion-MNIST, side by side in one process.

    python bench/own_loop.py                  # this 2-core CPU: 12,000 training rows, 2,000 validation rows
    python bench/own_loop.py --samples 60000  # an accelerator (bench/device_check.sh)

Cases, each on the same model (784-256-256-10 MLP, ReLU, Adam, batch 64, the NNX example's layers):

- `example`: the NNX example's own loop: an `nnx.jit` train step called per batch from a Python loop over
  host batches of a per-epoch permutation, an `nnx.jit` eval step per validation batch;
- `fit_loop`: the same model, loss and step handed to `gridrun.fit_loop` (init returns the model and its
  nnx.Optimizer; the learning rate a traced hyperparameter);
- `fit`: the same nnx module through `gridrun.fit(model, x, y, loss=..., optimizer="adam")`;
- `pop_fit_loop`, `pop_fit`: populations of P (16) trials with different learning rates through each,
  trained by the real population coordinator (one thread per trial, one vmapped program).

Printed (JSON lines): s/epoch of each case (median over the timed epochs of all rounds; in each round the
cases run in turns, populations right after the sequential run of the same API, so that load from other
processes hits all alike), ratios to the example, s per trial-epoch of
the populations and their ratio to the sequential run of the same API, backend compilations of trials
2 and 3 of a float-only sweep (fresh functions and classes per trial, as a re-run script defines them),
and achieved GFLOP/s against numpy's matmul on this machine. Targets on the 2-core CPU: fit_loop <= 0.75x
the example per epoch; population per trial-epoch <= 1.05x sequential; 0 compilations after trial 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import numpy as np
import optax
from flax import nnx

import gridrun
from gridrun.train.population import Population

HIDDEN = (256, 256)
BATCH = 64


def out(**kw) -> None:
    kw["device"] = str(jax.devices()[0].device_kind)
    print(json.dumps(kw), flush=True)


def make_model_class():
    """The example's MLP, defined anew per call (as every trial's script run defines it)."""

    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.linear1 = nnx.Linear(784, HIDDEN[0], rngs=rngs)
            self.linear2 = nnx.Linear(HIDDEN[0], HIDDEN[1], rngs=rngs)
            self.linear3 = nnx.Linear(HIDDEN[1], 10, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.linear1(x))
            x = nnx.relu(self.linear2(x))
            return self.linear3(x)

    return MLP


def loss_fn(model, batch):
    logits = model(batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(), logits


# -- the example's own loop ----------------------------------------------------------------------------


def example_run(x, y, xv, yv, epochs: int, lr: float, seed: int = 0) -> list[float]:
    """The NNX example as written: nnx.jit steps, a Python loop over batches. Returns seconds per epoch."""
    MLP = make_model_class()
    model = MLP(nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, batch):
        (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def eval_step(model, batch):
        loss, logits = loss_fn(model, batch)
        return loss, (logits.argmax(-1) == batch[1]).mean()

    rng = np.random.default_rng(seed)
    nb = len(x) // BATCH
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        perm = rng.permutation(len(x))
        losses = [train_step(model, optimizer, (x[idx], y[idx])) for idx in perm[: nb * BATCH].reshape(nb, BATCH)]
        evals = [eval_step(model, (xv[i:i + 1000], yv[i:i + 1000])) for i in range(0, len(xv), 1000)]
        float(np.mean(jax.device_get(losses))), jax.device_get(evals)
        times.append(time.perf_counter() - t)
    return times


# -- the same model through gridrun -----------------------------------------------------------------


def loop_functions():
    """The example ported to fit_loop: the same model, loss and step, as pure functions of (state, batch, hp)."""
    MLP = make_model_class()

    def init(key, hp):
        model = MLP(nnx.Rngs(key))
        tx = optax.inject_hyperparams(optax.adam)(learning_rate=hp["learning_rate"])
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    def train_step(state, batch, hp, key):
        model, optimizer = state
        (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
        optimizer.update(model, grads)
        return (model, optimizer), {"loss": loss}

    def eval_step(state, batch, hp):
        loss, logits = loss_fn(state[0], batch)
        return {"loss": loss, "accuracy": (logits.argmax(-1) == batch[1]).mean()}

    return init, train_step, eval_step


class EpochClock:
    """A LambdaCallback that stamps each epoch's end (the first trial's, in a population)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.start = time.perf_counter()

    def callback(self) -> gridrun.LambdaCallback:
        def stamp(epoch: int, logs) -> None:
            if len(self.stamps) == epoch:
                self.stamps.append(time.perf_counter())

        return gridrun.LambdaCallback(on_epoch_end=stamp)

    def epoch_times(self) -> list[float]:
        edges = [self.start, *self.stamps]
        return [b - a for a, b in zip(edges[:-1], edges[1:])][1:]  # the first includes compilation


def fit_loop_run(x, y, xv, yv, epochs: int, lr: float, seed: int = 0, clock: EpochClock | None = None):
    init, step, ev = loop_functions()
    cbs = [clock.callback()] if clock else []
    return gridrun.fit_loop(init, step, (x, y), hparams={"learning_rate": lr}, eval_step=ev,
                            validation_data=(xv, yv), epochs=epochs, batch_size=BATCH, seed=seed,
                            eval_batch_size=1000, callbacks=cbs)


def fit_run(x, y, xv, yv, epochs: int, lr: float, seed: int = 0, clock: EpochClock | None = None):
    model = make_model_class()(nnx.Rngs(seed))
    cbs = [clock.callback()] if clock else []
    return gridrun.fit(model, x, y, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                       optimizer=gridrun.optimizer("adam", learning_rate=lr), epochs=epochs, batch_size=BATCH,
                       validation_data=(xv, yv), seed=seed, callbacks=cbs)


def timed(run, data, epochs: int) -> list[float]:
    clock = EpochClock()
    run(*data, epochs + 1, 1e-3, clock=clock)
    return clock.epoch_times()


def population_times(run, data, P: int, epochs: int) -> list[float]:
    """Seconds per group epoch of P trials (different learning rates) trained as one population."""
    clock = EpochClock()
    lrs = np.geomspace(3e-4, 3e-3, P)

    def job(i: int):
        return run(*data, epochs + 1, float(lrs[i]), seed=i, clock=clock if i == 0 else None)

    results = Population().run([lambda i=i: job(i) for i in range(P)])
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    return clock.epoch_times()


class CompileCounter:
    """Counts XLA backend compilations (jax.monitoring's compile-duration events)."""

    def __init__(self) -> None:
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on)

    def _on(self, event: str, duration: float, **kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


def compilations_after_first(run, data, counter: CompileCounter) -> list[int]:
    """Backend compilations of trials 2 and 3 of a float-only sweep (fresh functions per trial)."""
    counts = []
    for i, lr in enumerate((1e-3, 2e-3, 3e-3)):
        before = counter.count
        run(*data, 1, lr, seed=i)
        if i:
            counts.append(counter.count - before)
    return counts


def numpy_gflops() -> float:
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    return 10 * 2 * 1024**3 / (time.perf_counter() - t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=12000, help="training rows (Fashion-MNIST, subsampled)")
    ap.add_argument("--val", type=int, default=2000, help="validation rows")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per case and round")
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    (x_all, y_all), _ = gridrun.datasets.load_fashion_mnist()
    x_all = (x_all.reshape(len(x_all), -1) / 255.0).astype(np.float32)
    y_all = y_all.astype(np.int32)
    x, y = x_all[: args.samples], y_all[: args.samples]
    xv, yv = x_all[-args.val:], y_all[-args.val:]
    data = (x, y, xv, yv)
    dims = (784, *HIDDEN, 10)
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    n_used = (len(x) // BATCH) * BATCH
    flops = 3 * 2 * macs * n_used + 2 * macs * len(xv)  # train (forward + backward) + validation
    out(case="setup", samples=len(x), val=len(xv), batch=BATCH, model="784-256-256-10 NNX MLP",
        numpy_matmul_gflops=round(numpy_gflops(), 1), cpu_note="shared CPU: compare ratios, not absolute times")

    counter = CompileCounter()
    example_run(*data, 1, 1e-3)  # compile the example's steps once
    P = args.population
    cases = {"example": [], "fit_loop": [], "fit": [], "pop_fit_loop": [], "pop_fit": []}
    for _ in range(args.rounds):  # in turns, so that other load hits every case alike
        cases["example"] += example_run(*data, args.epochs + 1, 1e-3)[1:]
        for name, run in (("fit_loop", fit_loop_run), ("fit", fit_run)):
            cases[name] += timed(run, data, args.epochs)
            cases[f"pop_{name}"] += [t / P for t in population_times(run, data, P, args.epochs)]
    sec = {k: statistics.median(v) for k, v in cases.items()}
    for k in ("example", "fit_loop", "fit"):
        out(case=k, s_per_epoch=round(sec[k], 4), ratio_to_example=round(sec[k] / sec["example"], 3),
            gflops=round(flops / sec[k] / 1e9, 2))
    out(case="target_fit_loop_vs_example", ratio=round(sec["fit_loop"] / sec["example"], 3), target="<= 0.75")
    for name in ("fit_loop", "fit"):
        per_trial = sec[f"pop_{name}"]
        out(case=f"pop_{name}", P=P, s_per_trial_epoch=round(per_trial, 4),
            ratio_to_sequential=round(per_trial / sec[name], 3), target="<= 1.05",
            gflops=round(flops / per_trial / 1e9, 2))

    for name, run in (("example", lambda *a, seed=0, **k: example_run(*a[:4], 1, a[5], seed)),
                      ("fit_loop", fit_loop_run), ("fit", fit_run)):
        counts = compilations_after_first(run, data, counter)
        out(case=f"compilations_{name}", trials_2_and_3=counts, target="0 for fit_loop and fit")


if __name__ == "__main__":
    main()
