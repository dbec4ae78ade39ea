"""`fit`, `evaluate`, `predict`: the Keras-style front end on top of the engine.

Training runs through the epoch driver (train/driver.py): each epoch is one call of the compiled
epoch; the driver records its scalars (History, the active run's metrics, the progress line), runs the
Python callbacks and applies the one stop rule (non-finite loss, EarlyStopping, the sweep's pruner, a
Stopper, the epoch budget). In population mode the coordinator trains the trial with its group and
hands each epoch's row to the same driver.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import checkpoint as ckpt
from .. import rundir
from ..errors import GridrunError
from . import engine as E
from . import population, restore
from ._jaxcache import enable_persistent_cache
from .callbacks import split_callbacks
from .driver import Member, short, train_alone
from .history import History
from .layers import Sequential
from .losses import resolve_loss
from .optimizers import OptimizerSpec, resolve_optimizer
from .progressbar import EpochProgress
from .summary import count_params, summary_text


def _as_x(x: Any, model: Any, what: str = "x") -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if arr.ndim < 2:
        raise GridrunError(f"{what} has shape {arr.shape}: give a 2-d array (samples, features)")
    if isinstance(model, Sequential) and arr.ndim > 2:
        raise GridrunError(
            f"{what} has shape {arr.shape}, but Dense layers need (samples, features): use {what}.reshape(len({what}), -1)"
        )
    return arr


def _as_y(y: Any, loss: Any, n: int, what: str = "y") -> np.ndarray:
    arr = np.asarray(y)
    if arr.shape[0] != n:
        raise GridrunError(f"{what} has {arr.shape[0]} rows but x has {n}: give one label per sample")
    if loss == "sparse_categorical_crossentropy":
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise GridrunError(
                f"sparse_categorical_crossentropy needs integer labels of shape (n,), got {arr.shape}; "
                "for one-hot labels use loss='categorical_crossentropy'"
            )
        return arr.astype(np.int32, copy=False)
    if loss == "categorical_crossentropy" and arr.ndim == 1:
        raise GridrunError(
            "categorical_crossentropy needs one-hot labels (n, classes), got integer labels of shape "
            f"{arr.shape}; use loss='sparse_categorical_crossentropy' or one-hot encode them (np.eye(k)[y])"
        )
    arr = arr.astype(np.float32, copy=False)
    return arr[:, None] if arr.ndim == 1 else arr


def _check_output(model: Any, y: np.ndarray, loss: Any) -> None:
    if not isinstance(model, Sequential):
        return
    from .layers import Dense

    last = [lay for lay in model.layers if isinstance(lay, Dense)][-1]
    want = None if y.ndim == 1 else y.shape[1]
    if want is not None and last.units != want:
        raise GridrunError(f"the last Dense layer has {last.units} units but y has {want} columns: make them equal")


def _describe_loss(loss: Any) -> str:
    return loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)


def fit(
    model: Any,
    x: Any,
    y: Any,
    *,
    loss: str | Callable[..., Any] | None = None,
    optimizer: Any = "rmsprop",
    metrics: Any = (),
    epochs: int = 1,
    batch_size: int = 32,
    validation_split: float = 0.0,
    validation_data: tuple[Any, Any] | None = None,
    callbacks: Any = (),
    verbose: int | str = "auto",
    seed: int = 0,
    checkpoint: Any = "both",
) -> History:
    """Train `model` (a gridrun.Sequential, a flax.linen.Module or a flax.nnx.Module) Keras-style; see docs/fit.md.

    `verbose="auto"` (the default, as in Keras) is 1: a progress bar over the epochs on a terminal, one
    plain line per epoch elsewhere (a run's output.log, pipes); 0 is silent. `checkpoint` ("both",
    "best", "last", None, every=N as an int): what a recorded run keeps of its training state in
    checkpoints/ (gridrun/checkpoint.py; nothing outside a run)."""
    if verbose == "auto":
        verbose = 1
    if loss is None:
        raise GridrunError("fit needs a loss, e.g. loss='categorical_crossentropy' (or 'sparse_categorical_crossentropy', 'mse')")
    loss_r = resolve_loss(loss)
    x = _as_x(x, model)
    y = _as_y(y, loss_r, len(x))
    if validation_data is not None:
        xv = _as_x(validation_data[0], model, "validation x")
        yv = _as_y(validation_data[1], loss_r, len(xv), "validation y")
    elif validation_split:
        if not 0.0 < float(validation_split) < 1.0:
            raise GridrunError(f"validation_split={validation_split!r}: use a fraction in (0, 1) such as 0.2")
        split_at = int(math.ceil(len(x) * (1.0 - float(validation_split))))  # Keras: the last fraction
        x, xv, y, yv = x[:split_at], x[split_at:], y[:split_at], y[split_at:]
    else:
        xv = yv = None
    if int(epochs) < 0:
        raise GridrunError(f"epochs={epochs!r}: use a non-negative integer")
    _check_output(model, y, loss_r)
    n_val = 0 if xv is None else len(xv)

    enable_persistent_cache()
    config, hparams = E.prepare(
        model, loss=loss_r, optimizer=optimizer, metrics=metrics, callbacks=callbacks,
        batch_size=batch_size, x_shape=x.shape, n_val=n_val,
    )
    eng = E.get_engine(config)
    _, _, lambdas = split_callbacks(callbacks)
    k_init, k_train = E.seed_keys(seed)
    pop = population.active()
    initial = None
    if eng.nnx is not None:  # the module's own weights are the initial state (its nnx.Rngs decided them)
        _, nnx_params, nnx_extra = E.nnx_parts(model)
        initial = eng.jit_state_from(nnx_params, nnx_extra, hparams)
    if pop is None:
        data = {"x": E.on_device(x), "y": E.on_device(y)}
        if n_val:
            data["x_val"], data["y_val"] = E.on_device(xv), E.on_device(yv)
        state = initial if initial is not None else eng.jit_init(hparams, k_init)
    else:  # population mode: shapes only here; the coordinator trains this trial with its group
        state = initial if initial is not None else jax.eval_shape(eng.init, hparams, k_init)

    opt = resolve_optimizer(optimizer)
    params = {
        "samples": len(x),
        "validation_samples": n_val,
        "batch_size": int(batch_size),
        "epochs": int(epochs),
        "epochs_completed": 0,
        "model": _summary(eng, state, config, model),
        "loss_function": _describe_loss(loss),
        "optimizer": opt.describe() if isinstance(opt, OptimizerSpec) else "optax",
        "learning_rate": opt.learning_rate if isinstance(opt, OptimizerSpec) else None,
        "n_params": count_params(state["params"]),  # trainable parameters (the summary's "Trainable params")
    }
    history = History(params, eng, state if pop is None else None, hparams)
    if restore.restoring():  # gridrun.load_model reruns the script: restore the saved state, train nothing
        restore.restore(history, {"state": state, "rng": k_train}, lambda tree: _restored(model, eng, history, tree))
    ctx = rundir.current()
    saver = ckpt.for_run(ctx, checkpoint)  # alone or in a population: the trial's own state, its own run dir
    observers = [ckpt.CheckpointObserver(saver, k_train)] if saver is not None else []
    if ctx is not None:  # written with the run's next properties (its first checkpoint's, or its end)
        ctx.note_properties(**params)
    progress = EpochProgress(int(epochs)) if verbose and pop is None else None
    member = Member.for_trial(int(epochs), config.log_names, history, ctx, lambdas, progress, observers)
    member.constants["n_params"] = params["n_params"]  # a metric too: --metric n_params (docs/analysis.md)

    if pop is not None:
        lone = [what for what, key in (("optimizer", config.optimizer), ("model", config.model))
                if isinstance(key, E.ByIdentity)]
        if lone:  # grouping by object identity: trials that each build their own object train alone
            print(f"gridrun population mode: this trial's {' and '.join(lone)} is a Python object, so it can only "
                  "train together with trials that share that very object; pass the optimizer by name "
                  "(optimizer='adam' or gridrun.optimizer('adam', learning_rate=...)) and build the model "
                  "with gridrun.Sequential to train it with the other trials", flush=True)
        arrays = {"x": x, "y": y} if not n_val else {"x": x, "y": y, "x_val": xv, "y_val": yv}
        request = population.FitRequest(eng, hparams, arrays, k_init, k_train, member, initial=initial)
        history.state = pop.submit(request)  # trained and finalized with its group
        history.padded = request.padded
        params["epochs_completed"] = history.epochs_completed
        if ctx is not None:
            ctx.write_properties(epochs_completed=history.epochs_completed, population=request.population_info())
        if verbose:
            print(f"Trained in a population of {request.group_size}: {history.epochs_completed} epochs", flush=True)
    else:
        try:
            history.state = train_alone(eng, state, hparams, data, k_train, member)
        finally:
            params["epochs_completed"] = history.epochs_completed
            if ctx is not None:  # with the best epoch's values below, or the run's end
                ctx.note_properties(epochs_completed=history.epochs_completed)
    if eng.nnx is not None:  # Keras-like: the user's module now holds the trained weights
        from flax import nnx

        nnx.update(model, history.state["params"], history.state["extra"])
    best = _best_epoch(history, config)
    params.update(best or {})
    if ctx is not None:
        ctx.write_properties(**(best or {}))
    final = {k: v[-1] for k, v in history.history.items()}
    for cb in lambdas:
        if getattr(cb, "on_train_end", None) is not None:
            cb.on_train_end(final)
    return history


def _summary(eng: Any, state: Any, config: Any, model: Any) -> str:
    name = model.name if isinstance(model, Sequential) else type(model).__name__
    params, extra = state["params"], state["extra"]
    if eng.nnx is not None:  # per top-level attribute, as for linen submodules
        params, extra = _pure(params), {"state": _pure(extra)}
    return summary_text(eng.structure, params, extra, config.input_shape, name)


def _pure(state: Any) -> Any:
    from flax import nnx

    return nnx.to_pure_dict(state)


def _best_epoch(history: History, config: Any) -> dict[str, Any]:
    """With EarlyStopping: the epoch it judged best (1-based) and the monitored value there, recorded
    as properties `best_epoch` and `best_<monitor>` (ls_runs columns). The metric_* columns are the
    last epoch's, as in tfruns; with restore_best_weights the model (and eval_*) is the best epoch's."""
    if config.early_stopping is None or not isinstance(history.state, dict) or "es" not in history.state:
        return {}
    monitor = config.early_stopping[0]
    index = int(jax.device_get(history.state["es"]["best_epoch"]))
    values = history.history.get(monitor, [])
    if not 0 <= index < len(values):
        return {}
    return {"best_epoch": index + 1, f"best_{monitor}": values[index]}


def _restored(model: Any, eng: Any, history: History, tree: Any) -> Any:
    """Restore mode: the History and the user's nnx module get the checkpoint's state."""
    history.state = tree["state"]
    if eng.nnx is not None:
        from flax import nnx

        nnx.update(model, tree["state"]["params"], tree["state"]["extra"])
    return model


def _trained(history: Any) -> History:
    if isinstance(history, restore.TrainedModel):  # what gridrun.load_model returns
        history = history.history
    if not isinstance(history, History) or history.state is None:
        raise GridrunError("evaluate/predict take the History returned by gridrun.fit (history = gridrun.fit(...)) "
                           "or a model from gridrun.load_model(run)")
    if not isinstance(history.engine, E.Engine):
        raise GridrunError("evaluate/predict work on what gridrun.fit returns; after gridrun.fit_loop, call your own "
                           "eval function on history.state (on model.state for gridrun.load_model of a fit_loop run)")
    return history


def evaluate(history: Any, x: Any, y: Any, *, record: bool = True) -> dict[str, float]:
    """Loss and metrics on (x, y) in inference mode; also written to evaluation.json of the active run.
    `history`: what gridrun.fit returns, or a model from gridrun.load_model."""
    h = _trained(history)
    cfg = h.engine.config
    xa = _as_x(x, None)
    ya = _as_y(y, cfg.loss, len(xa))
    eng, state, hp = h.evaluator()
    out = jax.device_get(eng.jit_evaluate(state, hp, jnp.asarray(xa), jnp.asarray(ya)))
    scores = {k: short(v) for k, v in out.items()}
    if record:
        rundir.write_evaluation(**scores)
    return scores


def predict(history: Any, x: Any) -> np.ndarray:
    """Model outputs (e.g. softmax probabilities) for x; `history` as for evaluate."""
    h = _trained(history)
    eng, state, hp = h.evaluator()
    return np.asarray(eng.jit_predict(state, hp, jnp.asarray(_as_x(x, None))))
