"""Callbacks with Keras semantics, as pure state-update functions.

`EarlyStopping` and `ReduceLROnPlateau` keep their state (best value, wait counter, cooldown, stopped
flag) in the train-state pytree and are updated by jnp code inside the compiled epoch, so a vmapped
population runs them per trial with nothing on the Python side. Their numeric settings (patience,
min_delta, factor, ...) are traced hyperparameters; only `monitor`, `mode` and `restore_best_weights`
are static. `LambdaCallback` runs in Python after each epoch with the logs dict.

Modes are handled by a sign: in "max" mode values are negated and the "min" rules apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp

from .. import scoring
from ..errors import GridrunError


def _mode_sign(mode: str, monitor: str) -> float:
    """"auto" follows gridrun's one scoring rule (gridrun/scoring.py): accuracy-like metrics maximize."""
    if mode not in ("min", "max", "auto"):
        raise GridrunError(f"mode={mode!r}: use 'min', 'max' or 'auto'")
    return scoring.sign(monitor, mode)


@dataclass(frozen=True)
class EarlyStopping:
    monitor: str = "val_loss"
    min_delta: float = 0.0
    patience: int = 0
    mode: str = "auto"
    restore_best_weights: bool = False

    @property
    def sign(self) -> float:
        return _mode_sign(self.mode, self.monitor)

    def hparams(self) -> dict[str, float]:
        return {"patience": float(self.patience), "min_delta": abs(float(self.min_delta))}


@dataclass(frozen=True)
class ReduceLROnPlateau:
    monitor: str = "val_loss"
    factor: float = 0.1
    patience: int = 10
    mode: str = "auto"
    min_delta: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if float(self.factor) >= 1.0:
            raise GridrunError(f"ReduceLROnPlateau(factor={self.factor}): the factor must be < 1, e.g. 0.1")

    @property
    def sign(self) -> float:
        return _mode_sign(self.mode, self.monitor)

    def hparams(self) -> dict[str, float]:
        return {
            "factor": float(self.factor),
            "patience": float(self.patience),
            "min_delta": float(self.min_delta),
            "cooldown": float(self.cooldown),
            "min_lr": float(self.min_lr),
        }


@dataclass(frozen=True)
class LambdaCallback:
    """Python hook: `on_epoch_end(epoch, logs)` after each epoch (epoch is 0-based, as in Keras)."""

    on_epoch_end: Callable[[int, dict[str, float]], Any] | None = None
    on_train_end: Callable[[dict[str, float]], Any] | None = None


@dataclass(frozen=True)
class Stopper:
    """Per-trial stop decision in Python: `should_stop(epoch, logs) -> bool` after each epoch (epoch
    0-based); True stops this trial after that epoch. It sets the same per-trial stop mask EarlyStopping
    uses, so in a population only that trial is frozen; a sweep's pruner plugs in here."""

    should_stop: Callable[[int, dict[str, float]], Any]


# --------------------------------------------------------------------------------------------------
# Pure updates (work on Python floats, numpy or traced jnp values alike)


def early_stopping_init() -> dict[str, Any]:
    return {
        "best": jnp.array(jnp.inf, jnp.float32),
        "wait": jnp.array(0, jnp.int32),
        "best_epoch": jnp.array(-1, jnp.int32),
        "stopped": jnp.array(False),
    }


def early_stopping_update(state: dict[str, Any], value: Any, epoch: Any, hp: dict[str, Any], sign: float) -> dict[str, Any]:
    """Keras' EarlyStopping.on_epoch_end. `epoch` 0-based; returns the new state (`improved` included).

    wait += 1; improvement (value - min_delta beats best) -> best = value, wait = 0;
    else stop when wait >= patience and epoch > 0.
    """
    v = sign * value
    wait = state["wait"] + 1
    improved = v + hp["min_delta"] < state["best"]
    best = jnp.where(improved, v, state["best"])
    wait = jnp.where(improved, 0, wait)
    stop = jnp.logical_and(jnp.logical_not(improved), jnp.logical_and(wait >= hp["patience"], epoch > 0))
    return {
        "best": best.astype(jnp.float32),
        "wait": wait.astype(jnp.int32),
        "best_epoch": jnp.where(improved, epoch, state["best_epoch"]).astype(jnp.int32),
        "stopped": jnp.logical_or(state["stopped"], stop),
        "improved": improved,
    }


def reduce_lr_init() -> dict[str, Any]:
    return {
        "best": jnp.array(jnp.inf, jnp.float32),
        "wait": jnp.array(0, jnp.int32),
        "cooldown": jnp.array(0, jnp.int32),
    }


def reduce_lr_update(state: dict[str, Any], value: Any, lr: Any, hp: dict[str, Any], sign: float) -> tuple[dict[str, Any], Any]:
    """Keras' ReduceLROnPlateau.on_epoch_end: returns (new state, new learning rate)."""
    v = sign * value
    in_cooldown = state["cooldown"] > 0
    cooldown = jnp.where(in_cooldown, state["cooldown"] - 1, state["cooldown"])
    wait = jnp.where(in_cooldown, 0, state["wait"])
    improved = v < state["best"] - hp["min_delta"]
    best = jnp.where(improved, v, state["best"])
    still_cooling = cooldown > 0
    counting = jnp.logical_and(jnp.logical_not(improved), jnp.logical_not(still_cooling))
    wait = jnp.where(improved, 0, jnp.where(counting, wait + 1, wait))
    reduce = jnp.logical_and(counting, wait >= hp["patience"])
    can = lr > jnp.float32(hp["min_lr"])
    do = jnp.logical_and(reduce, can)
    new_lr = jnp.where(do, jnp.maximum(lr * hp["factor"], hp["min_lr"]), lr)
    cooldown = jnp.where(do, jnp.asarray(hp["cooldown"]).astype(jnp.int32), cooldown)
    wait = jnp.where(do, 0, wait)
    new = {"best": best.astype(jnp.float32), "wait": wait.astype(jnp.int32), "cooldown": cooldown.astype(jnp.int32)}
    return new, jnp.asarray(new_lr, jnp.float32)


def split_callbacks(callbacks: Any) -> tuple[EarlyStopping | None, ReduceLROnPlateau | None, list[LambdaCallback | Stopper]]:
    """(EarlyStopping, ReduceLROnPlateau, Python callbacks: LambdaCallbacks and Stoppers in order)."""
    es: EarlyStopping | None = None
    rlr: ReduceLROnPlateau | None = None
    lambdas: list[LambdaCallback | Stopper] = []
    for cb in callbacks or ():
        if isinstance(cb, EarlyStopping):
            if es is not None:
                raise GridrunError("give at most one EarlyStopping callback")
            es = cb
        elif isinstance(cb, ReduceLROnPlateau):
            if rlr is not None:
                raise GridrunError("give at most one ReduceLROnPlateau callback")
            rlr = cb
        elif isinstance(cb, (LambdaCallback, Stopper)):
            lambdas.append(cb)
        elif callable(cb):
            lambdas.append(LambdaCallback(on_epoch_end=cb))
        else:
            raise GridrunError(
                f"unsupported callback {cb!r}: use EarlyStopping, ReduceLROnPlateau, LambdaCallback, Stopper or a function(epoch, logs)"
            )
    return es, rlr, lambdas
