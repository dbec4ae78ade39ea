"""Keras-style layer specs (`Sequential`, `Dense`, `BatchNorm`, `Dropout`, `l1`/`l2`/`l1_l2`) and the
linen module they build.

A `Sequential` is a plain Python description. `split_model` cuts it into
- a hashable *structure* (units, activations, which layers exist): changing it changes array shapes or
  the program, so it is part of the compile-cache key, and
- float *hyperparameters* (dropout rates, L1/L2 strengths): traced inputs of the compiled program, so
  a fit with other values reuses the compiled code, and a population can vmap over them.

`SequentialNet(structure)` is the linen module; dropout rates arrive as a call argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..errors import GridrunError
from .shuffle import lowbias32

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softmax": jax.nn.softmax,
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "linear": lambda z: z,
}


# --------------------------------------------------------------------------------------------------
# Regularizers


@dataclass(frozen=True)
class Regularizer:
    """Kernel penalty `l1 * sum(|w|) + l2 * sum(w**2)`, added to the training loss (as in Keras)."""

    l1: float = 0.0
    l2: float = 0.0


def l1(l: float = 0.01) -> Regularizer:  # noqa: E741 - Keras' name
    return Regularizer(l1=float(l))


def l2(l: float = 0.01) -> Regularizer:  # noqa: E741
    return Regularizer(l2=float(l))


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> Regularizer:
    return Regularizer(l1=float(l1), l2=float(l2))


# --------------------------------------------------------------------------------------------------
# Layer specs


@dataclass(frozen=True)
class Dense:
    units: int
    activation: str | None = None
    kernel_regularizer: Regularizer | None = None
    use_bias: bool = True
    input_shape: tuple[int, ...] | None = None  # accepted for Keras familiarity; the data decides

    def __post_init__(self) -> None:
        if int(self.units) <= 0:
            raise GridrunError(f"Dense(units={self.units!r}): units must be a positive integer")
        act = self.activation or "linear"
        if act not in ACTIVATIONS:
            raise GridrunError(
                f"Dense(activation={self.activation!r}) is not supported; use one of {sorted(ACTIVATIONS)}"
            )
        if self.kernel_regularizer is not None and not isinstance(self.kernel_regularizer, Regularizer):
            raise GridrunError("kernel_regularizer must be gridrun.l1(...), gridrun.l2(...) or gridrun.l1_l2(...)")


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalization with Keras defaults; running statistics are used at evaluation."""

    momentum: float = 0.99
    epsilon: float = 1e-3


@dataclass(frozen=True)
class Dropout:
    rate: float

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.rate) < 1.0:
            raise GridrunError(f"Dropout(rate={self.rate!r}): the rate must be in [0, 1)")


Layer = Dense | BatchNorm | Dropout


class Sequential:
    """A stack of layers, as `keras_model_sequential()`. `add(layer)` appends and returns self."""

    def __init__(self, layers: list[Layer] | tuple[Layer, ...] = (), name: str = "sequential") -> None:
        self.layers: list[Layer] = []
        self.name = name
        for layer in layers:
            self.add(layer)

    def add(self, layer: Layer) -> Sequential:
        if not isinstance(layer, (Dense, BatchNorm, Dropout)):
            raise GridrunError(
                f"Sequential takes gridrun.Dense / BatchNorm / Dropout layers, got {type(layer).__name__}; "
                "for anything else pass your own flax.linen.Module to gridrun.fit"
            )
        self.layers.append(layer)
        return self

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r})"


# --------------------------------------------------------------------------------------------------
# Structure / hyperparameter split


def split_model(model: Sequential) -> tuple[tuple[tuple[Any, ...], ...], dict[str, list[float]]]:
    """(structure, hparams): the static layer tuples and the traced floats.

    structure entries: ("dense", units, activation, use_bias, has_regularizer) | ("batchnorm", momentum,
    epsilon) | ("dropout",). hparams: {"dropout": [rate per Dropout], "l1": [...], "l2": [...] per
    regularized Dense}.
    """
    if not model.layers or not any(isinstance(lay, Dense) for lay in model.layers):
        raise GridrunError("the Sequential model has no Dense layer: add at least an output Dense(units)")
    structure: list[tuple[Any, ...]] = []
    hp: dict[str, list[float]] = {"dropout": [], "l1": [], "l2": []}
    for layer in model.layers:
        if isinstance(layer, Dense):
            reg = layer.kernel_regularizer
            structure.append(("dense", int(layer.units), layer.activation or "linear", bool(layer.use_bias), reg is not None))
            if reg is not None:
                hp["l1"].append(reg.l1)
                hp["l2"].append(reg.l2)
        elif isinstance(layer, BatchNorm):
            structure.append(("batchnorm", float(layer.momentum), float(layer.epsilon)))
        else:
            structure.append(("dropout",))
            hp["dropout"].append(float(layer.rate))
    return tuple(structure), hp


def output_activation(structure: tuple[tuple[Any, ...], ...]) -> str:
    """The last layer's activation when it is a Dense (applied outside the net so losses can use logits)."""
    last = structure[-1]
    return last[2] if last[0] == "dense" else "linear"


def dropout_keep_mask(seed: jax.Array, shape: tuple[int, ...], keep: jax.Array, width: jax.Array | None = None) -> jax.Array:
    """Bernoulli(keep) mask from a counter-based hash of (seed, element index).

    About 8x cheaper on CPU than threefry bits (which cost ~40% of an epoch of the chapter's model),
    statistically ample for dropout, and a pure function of its inputs, so it vmaps like anything else.
    `width` (a traced scalar; width merging, gridrun/train/widths.py): the layer's real number of units
    when `shape` (rows, units) is zero-padded; element (row, unit) then gets index row * width + unit,
    as in the unpadded layer, so the real units drop exactly as they would unpadded.
    """
    if width is None:
        size = 1
        for d in shape:
            size *= d
        idx = jax.lax.iota(jnp.uint32, size).reshape(shape)
    else:
        rows, units = shape
        idx = jax.lax.iota(jnp.uint32, rows)[:, None] * width.astype(jnp.uint32) + jax.lax.iota(jnp.uint32, units)[None, :]
    bits = lowbias32(idx * jnp.uint32(0x9E3779B9) + lowbias32(seed.astype(jnp.uint32)))
    threshold = jnp.minimum(keep * 4294967296.0, 4294967040.0).astype(jnp.uint32)
    return jnp.logical_or(bits < threshold, keep >= 1.0)


class SequentialNet(nn.Module):
    """The linen module of a `Sequential` structure. Returns the last Dense's pre-activation when it is
    the last layer (see `output_activation`); dropout rates and the dropout seed (a uint32 scalar) are
    call arguments.

    `unit_masks` (width merging, gridrun/train/widths.py): one 0/1 float vector per hidden Dense layer;
    the layer's outputs (after its activation, and after a following BatchNorm) are multiplied by it,
    so zero-padded units stay exactly 0 and their parameters get zero gradients."""

    structure: tuple[tuple[Any, ...], ...]

    @nn.compact
    def __call__(self, x: jax.Array, dropout_rates: jax.Array, train: bool, seed: jax.Array | None = None,
                 unit_masks: Any = None) -> jax.Array:
        n = len(self.structure)
        i_drop = 0
        k_dense = 0
        mask = None  # the unit mask of the current width (None: no padding)
        for i, layer in enumerate(self.structure):
            kind = layer[0]
            if kind == "dense":
                _, units, act, use_bias, _ = layer
                x = nn.Dense(units, use_bias=use_bias, kernel_init=nn.initializers.glorot_uniform())(x)
                if i < n - 1:
                    x = ACTIVATIONS[act](x)
                mask = unit_masks[k_dense] if unit_masks is not None and k_dense < len(unit_masks) else None
                k_dense += 1
            elif kind == "batchnorm":
                _, momentum, eps = layer
                x = nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=eps)(x)
            else:
                if train:
                    rate = dropout_rates[i_drop]
                    keep = 1.0 - rate
                    width = None if mask is None else jnp.sum(mask)  # the real units (exact: a sum of 0/1)
                    drop = dropout_keep_mask(seed + jnp.uint32(i_drop) * jnp.uint32(0x632BE5AB), x.shape, keep, width)
                    x = jnp.where(drop, x / keep, 0.0)
                i_drop += 1
            if mask is not None and kind != "dropout":
                x = x * mask
        return x


def kernel_penalty(params: Any, structure: tuple[tuple[Any, ...], ...], l1s: jax.Array, l2s: jax.Array) -> jax.Array:
    """Sum of the L1/L2 kernel penalties of the regularized Dense layers (linen names them Dense_<k>)."""
    total = jnp.zeros((), jnp.float32)
    k_dense, k_reg = 0, 0
    for layer in structure:
        if layer[0] != "dense":
            continue
        if layer[4]:
            w = params[f"Dense_{k_dense}"]["kernel"]
            # w * sign(w) == |w|, with gradient sign(0) = 0 at 0 (as TensorFlow's abs; jnp.abs gives 1), so
            # zero-padded weights (width merging) get no L1 pull
            total = total + l1s[k_reg] * jnp.sum(w * jnp.sign(w)) + l2s[k_reg] * jnp.sum(jnp.square(w))
            k_reg += 1
        k_dense += 1
    return total
