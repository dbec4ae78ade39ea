"""Optimizers by Keras name with Keras' defaults, built with `optax.inject_hyperparams` so that every
float setting (learning rate included) lives in the optimizer state and is a traced input of the
compiled epoch: another learning rate does not recompile, and a population can vmap over it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ..errors import GridrunError


def keras_adam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-7) -> optax.GradientTransformation:
    """Adam as Keras computes it (equal to float rounding), which is also the cheaper form (Kingma & Ba,
    section 2):

        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        step = -lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    optax.adam divides m and v by their bias corrections element by element and adds eps to the
    corrected square root: two more divisions per parameter and step (about 12 ms of a 0.45 s epoch of
    the chapter's model on a 2-core CPU), and a slightly different eps. The state is optax's
    ScaleByAdamState, so tools that read optax's Adam state read this one too.
    """

    def init(params: Any) -> optax.ScaleByAdamState:
        zeros = optax.tree_utils.tree_zeros_like
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros(params), nu=zeros(params))

    def update(updates: Any, state: optax.ScaleByAdamState, params: Any = None) -> tuple[Any, optax.ScaleByAdamState]:
        del params
        count = optax.safe_increment(state.count)
        mu = optax.tree_utils.tree_update_moment(updates, state.mu, b1, 1)
        nu = optax.tree_utils.tree_update_moment(updates, state.nu, b2, 2)
        t = count.astype(jnp.float32)
        alpha = learning_rate * jnp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        steps = jax.tree_util.tree_map(lambda m, v: -alpha * m / (jnp.sqrt(v) + eps), mu, nu)
        return steps, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)

# name -> (optax factory, Keras defaults; keys are the optax argument names)
DEFAULTS: dict[str, dict[str, float]] = {
    "rmsprop": {"learning_rate": 0.001, "decay": 0.9, "eps": 1e-7},
    "adam": {"learning_rate": 0.001, "b1": 0.9, "b2": 0.999, "eps": 1e-7},
    "sgd": {"learning_rate": 0.01},
    "adagrad": {"learning_rate": 0.001, "eps": 1e-7},
}
# Keras argument names accepted as synonyms
KERAS_NAMES = {"lr": "learning_rate", "rho": "decay", "beta_1": "b1", "beta_2": "b2", "epsilon": "eps"}
STATIC_OPTIONS = {"sgd": {"momentum", "nesterov"}, "adagrad": {"initial_accumulator_value"}}


@dataclass(frozen=True)
class OptimizerSpec:
    """A named optimizer: `name`, traced float `hparams`, and `static` options that change the program."""

    name: str
    hparams: dict[str, float] = field(default_factory=dict)
    static: tuple[tuple[str, Any], ...] = ()

    @property
    def learning_rate(self) -> float:
        return self.hparams["learning_rate"]

    def build(self) -> optax.GradientTransformation:
        """The optax transformation (hyperparameter values are placeholders, set from hparams)."""
        static = dict(self.static)
        if self.name == "rmsprop":
            factory = optax.rmsprop  # eps inside the sqrt, zero initial scale, not centered: as Keras
        elif self.name == "adam":
            factory = keras_adam
        elif self.name == "adagrad":
            acc = static.get("initial_accumulator_value", 0.1)

            def factory(learning_rate: float, eps: float) -> optax.GradientTransformation:
                return optax.adagrad(learning_rate, initial_accumulator_value=acc, eps=eps)
        else:
            momentum = static.get("momentum")
            nesterov = bool(static.get("nesterov", False))

            def factory(learning_rate: float, momentum_value: float = 0.0) -> optax.GradientTransformation:
                return optax.sgd(learning_rate, momentum=momentum_value if momentum else None, nesterov=nesterov)

        return optax.inject_hyperparams(factory)(**self.hparams)

    def describe(self) -> str:
        return self.name


def optimizer(name: str, **kwargs: Any) -> OptimizerSpec:
    """`optimizer("adam", learning_rate=1e-4)`: a named optimizer with Keras defaults for what is not given.

    Accepts optax or Keras argument names (`lr`, `rho`, `beta_1`, `beta_2`, `epsilon`).
    """
    key = str(name).lower()
    if key not in DEFAULTS:
        raise GridrunError(f"unknown optimizer {name!r}; use one of {sorted(DEFAULTS)} or an optax.GradientTransformation")
    hp = dict(DEFAULTS[key])
    static: dict[str, Any] = {}
    for arg, value in kwargs.items():
        arg = KERAS_NAMES.get(arg, arg)
        if arg in STATIC_OPTIONS.get(key, ()):
            if key == "sgd" and arg == "momentum":
                static["momentum"] = bool(value)
                hp["momentum_value"] = float(value)
            else:
                static[arg] = value
        elif arg in hp:
            hp[arg] = float(value)
        else:
            allowed = sorted(set(hp) | STATIC_OPTIONS.get(key, set()))
            raise GridrunError(f"optimizer {key!r} has no setting {arg!r}; it takes {allowed}")
    return OptimizerSpec(key, hp, tuple(sorted(static.items())))


def resolve_optimizer(opt: Any) -> OptimizerSpec | optax.GradientTransformation:
    if isinstance(opt, OptimizerSpec):
        return opt
    if isinstance(opt, str):
        return optimizer(opt)
    if isinstance(opt, optax.GradientTransformation):
        return opt
    raise GridrunError(
        f"optimizer must be a name ('rmsprop', 'adam', 'sgd', 'adagrad'), gridrun.train.optimizer(...) or an "
        f"optax.GradientTransformation, got {type(opt).__name__}"
    )
