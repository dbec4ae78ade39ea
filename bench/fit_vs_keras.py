"""gridrun.fit vs Keras 3 (JAX backend): seconds per epoch on the chapter's tuned model, same process.

Model: Dense 256-128-64 (relu) + BatchNorm + Dropout .4/.3/.2, softmax output, Adam, batch 128,
Fashion-MNIST 60k with validation_split=0.2 (48k train / 12k validation), as in the chapter.

    python bench/fit_vs_keras.py [--epochs 3] [--quick] [--no-keras] [--reference PATH]

Prints s/epoch for both (the first epoch, which includes compilation, is reported apart; the rest
give the median and the minimum; with --rounds R the two frameworks alternate R times, so both see
the same machine load), the ratio gridrun / Keras (goal: <= 0.6), and the matmul GFLOP/s reached vs
numpy's own matmul GFLOP/s.
Keras is optional (`pip install keras`); without it only gridrun is timed. When the project's
reference benchmark is present (../shared/reference/jax_reference_bench.py, or --reference PATH), its
plain `lax.scan` epoch of the same model (one jitted epoch, threefry dropout, no callbacks) is timed
in the same rounds too, as the "what plain JAX gives" baseline.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

SIZES = (256, 128, 64)
DROPS = (0.4, 0.3, 0.2)


def load(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n Fashion-MNIST training images, x / 255 and one-hot labels (gridrun's IDX reader: the
    Debian package's folder, or GRIDRUN_DATA / GRIDRUN_FASHION_MNIST)."""
    from gridrun.datasets import load_fashion_mnist

    (x, y), _ = load_fashion_mnist()
    x = x.reshape(len(x), -1)[:n].astype(np.float32) / 255.0
    return x, np.eye(10, dtype=np.float32)[y[:n]]


def epoch_flops(n_train: int, n_val: int) -> float:
    macs = 784 * 256 + 256 * 128 + 128 * 64 + 64 * 10
    return 2 * macs * (3 * n_train + n_val)  # forward + backward (~3x forward) on train, forward on val


def numpy_gflops() -> dict[str, float]:
    """numpy matmul speed: a large square product, and the model's batch-128 first layer."""
    out = {}
    for name, (m, k, n), reps in (("numpy_1024", (1024, 1024, 1024), 5), ("numpy_batch128", (128, 784, 256), 200)):
        a = np.random.rand(m, k).astype(np.float32)
        b = np.random.rand(k, n).astype(np.float32)
        a @ b
        best = float("inf")
        for _ in range(5):  # best of 5: the machine may be shared
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = min(best, time.perf_counter() - t)
        out[name] = 2 * m * k * n * reps / best / 1e9
    return out


def time_epochs(run_epoch_fn, epochs: int) -> list[float]:
    stamps: list[float] = []
    t0 = time.perf_counter()
    run_epoch_fn(epochs, lambda: stamps.append(time.perf_counter()))
    return [float(d) for d in np.diff([t0, *stamps])]


def bench_gridrun(x: np.ndarray, y: np.ndarray, epochs: int) -> tuple[list[float], float]:
    import gridrun

    def model() -> gridrun.Sequential:
        layers: list = []
        for units, rate in zip(SIZES, DROPS):
            layers += [gridrun.Dense(units, activation="relu"), gridrun.BatchNorm(), gridrun.Dropout(rate)]
        return gridrun.Sequential([*layers, gridrun.Dense(10, activation="softmax")])

    result = {}

    def run(n: int, tick) -> None:
        result["h"] = gridrun.fit(
            model(), x, y, loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"], epochs=n,
            batch_size=128, validation_split=0.2, callbacks=[gridrun.LambdaCallback(on_epoch_end=lambda e, logs: tick())],
        )

    times = time_epochs(run, epochs)
    return times, result["h"].history["val_acc"][-1]


def make_reference_bench(path: str):
    """A function(x, y, epochs) -> (epoch times, val_acc) for the reference's plain scan epoch, or None."""
    import importlib.util

    if not os.path.exists(path):
        print(f"no reference benchmark at {path}: skipping the plain-scan baseline")
        return None
    spec = importlib.util.spec_from_file_location("jax_reference_bench", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    import jax
    import jax.numpy as jnp

    opt, _, epoch = ref.make()
    run_epoch = jax.jit(epoch)

    def bench(x: np.ndarray, y: np.ndarray, epochs: int) -> tuple[list[float], float]:
        split = int(np.ceil(len(x) * 0.8))
        labels = y.argmax(1).astype(np.int32)
        data = [jnp.asarray(a) for a in (x[:split], labels[:split], x[split:], labels[split:])]
        params = ref.init(jax.random.PRNGKey(0))
        carry = (params, opt.init(params), jax.random.PRNGKey(1))
        drops, lr = jnp.asarray(DROPS, jnp.float32), jnp.float32(1e-3)
        result = {}

        def run(n: int, tick) -> None:
            nonlocal carry
            for _ in range(n):
                params, state, key, _, _, va = run_epoch(*carry, drops, lr, *data)
                carry = (params, state, key)
                result["va"] = float(va)  # waits for the epoch
                tick()

        times = time_epochs(run, epochs)
        return times, result["va"]

    return bench


def make_keras_bench():
    """A function(x, y, epochs) -> (epoch times, val_acc) training one Keras model, or None."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError:
        print("keras is not installed (pip install keras): skipping the Keras side")
        return None
    if keras.backend.backend() != "jax":
        print(f"keras runs on {keras.backend.backend()!r}, not jax: skipping (set KERAS_BACKEND=jax)")
        return None
    keras.utils.set_random_seed(0)
    layers: list = [keras.Input((784,))]
    for units, rate in zip(SIZES, DROPS):
        layers += [keras.layers.Dense(units, activation="relu"), keras.layers.BatchNormalization(), keras.layers.Dropout(rate)]
    model = keras.Sequential([*layers, keras.layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(), metrics=["accuracy"])
    result = {}

    class Tick(keras.callbacks.Callback):
        def __init__(self, tick) -> None:
            super().__init__()
            self.tick = tick

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.tick()

    def run(x: np.ndarray, y: np.ndarray, n: int, tick) -> None:
        result["h"] = model.fit(x, y, epochs=n, batch_size=128, validation_split=0.2, verbose=0, callbacks=[Tick(tick)])

    def bench(x: np.ndarray, y: np.ndarray, epochs: int) -> tuple[list[float], float]:
        times = time_epochs(lambda n, tick: run(x, y, n, tick), epochs)
        return times, result["h"].history["val_accuracy"][-1]

    return bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4, help="epochs per framework (the first includes compilation)")
    ap.add_argument("--quick", action="store_true", help="12k samples instead of 60k, 3 epochs")
    ap.add_argument("--no-keras", action="store_true", help="time gridrun only")
    ap.add_argument("--rounds", type=int, default=2, help="alternate gridrun and Keras this many times")
    ap.add_argument("--reference", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference",
                                                        "jax_reference_bench.py"),
                    help="the project's plain-JAX reference benchmark (skipped when absent)")
    args = ap.parse_args()
    n = 12000 if args.quick else 60000
    epochs = 3 if args.quick else max(2, args.epochs)
    x, y = load(n)
    n_train = int(np.ceil(n * 0.8))
    import jax

    print(f"data: {n_train} train / {n - n_train} validation, batch 128, {epochs} epochs, device {jax.devices()[0].device_kind}, "
          f"{os.cpu_count()} CPUs")
    keras_bench = None if args.no_keras else make_keras_bench()
    reference_bench = make_reference_bench(args.reference)
    results: dict[str, list[list[float]]] = {"gridrun.fit": [], "keras (jax)": [], "plain scan": []}
    accs: dict[str, float] = {}
    for _ in range(max(1, args.rounds)):
        times, accs["gridrun.fit"] = bench_gridrun(x, y, epochs)
        results["gridrun.fit"].append(times)
        if keras_bench is not None:
            times, accs["keras (jax)"] = keras_bench(x, y, epochs)
            results["keras (jax)"].append(times)
        if reference_bench is not None:
            times, accs["plain scan"] = reference_bench(x, y, epochs)
            results["plain scan"].append(times)
    flops = epoch_flops(n_train, n - n_train)
    per: dict[str, float] = {}
    for name, runs in results.items():
        if not runs:
            continue
        steady = [t for times in runs for t in times[1:]]
        per[name] = float(np.median(steady))
        print(f"{name:<12}: first epoch {runs[0][0]:.2f} s (compile), {per[name]:.3f} s/epoch median, {min(steady):.3f} min, "
              f"{flops / per[name] / 1e9:.1f} GFLOP/s, val_acc {accs[name]:.4f}")
    best = {name: min(t for times in runs for t in times[1:]) for name, runs in results.items() if runs}
    for other, goal in (("keras (jax)", " (goal <= 0.6x)"), ("plain scan", "")):
        if other in per:
            print(f"ratio gridrun/{other} s/epoch: {per['gridrun.fit'] / per[other]:.2f}x median, "
                  f"{best['gridrun.fit'] / best[other]:.2f}x fastest epochs{goal}")
    ref = numpy_gflops()
    print("numpy matmul: " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in ref.items())
          + f"; gridrun.fit reaches {flops / per['gridrun.fit'] / 1e9 / ref['numpy_1024']:.0%} of numpy_1024")


if __name__ == "__main__":
    main()
