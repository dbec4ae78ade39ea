"""Losses and metrics by Keras name, as per-example functions of (y_true, z) where z is the model's
output *before* its final activation (so softmax / sigmoid cross-entropies are computed from logits,
which is stable); `act` is that final activation's name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ..errors import GridrunError
from .layers import ACTIVATIONS

EPS = 1e-7  # Keras' backend epsilon, for cross-entropies computed from probabilities

LOSS_ALIASES = {
    "categorical_crossentropy": "categorical_crossentropy",
    "sparse_categorical_crossentropy": "sparse_categorical_crossentropy",
    "binary_crossentropy": "binary_crossentropy",
    "mse": "mean_squared_error",
    "mean_squared_error": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mean_absolute_error": "mean_absolute_error",
}
METRIC_NAMES = {"accuracy": "acc", "acc": "acc", "mae": "mae", "mean_absolute_error": "mae", "mse": "mse"}


def resolve_loss(loss: str | Callable[..., Any]) -> str | Callable[..., Any]:
    if callable(loss):
        return loss
    name = LOSS_ALIASES.get(str(loss))
    if name is None:
        raise GridrunError(f"unknown loss {loss!r}; use one of {sorted(LOSS_ALIASES)} or a callable(y_true, y_pred)")
    return name


def resolve_metrics(metrics: Any) -> tuple[str, ...]:
    if metrics is None:
        return ()
    if isinstance(metrics, str):
        metrics = (metrics,)
    out = []
    for m in metrics:
        name = METRIC_NAMES.get(str(m))
        if name is None:
            raise GridrunError(f"unknown metric {m!r}; use one of {sorted(METRIC_NAMES)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def per_example_loss(loss: str | Callable[..., Any], y: jax.Array, z: jax.Array, act: str) -> jax.Array:
    """Loss of each example, shape (batch,)."""
    if callable(loss):
        out = loss(y, ACTIVATIONS[act](z))
        return out.reshape(out.shape[0], -1).mean(-1) if out.ndim > 1 else out
    if loss == "categorical_crossentropy":
        if act == "softmax":
            return optax.softmax_cross_entropy(z, y)
        p = ACTIVATIONS[act](z)
        p = jnp.clip(p / jnp.sum(p, -1, keepdims=True), EPS, 1 - EPS)
        return -jnp.sum(y * jnp.log(p), -1)
    if loss == "sparse_categorical_crossentropy":
        if act == "softmax":
            return optax.softmax_cross_entropy_with_integer_labels(z, y)
        p = jnp.clip(ACTIVATIONS[act](z), EPS, 1 - EPS)
        p = p / jnp.sum(p, -1, keepdims=True)
        return -jnp.log(jnp.take_along_axis(p, y[:, None], -1)[:, 0])
    if loss == "binary_crossentropy":
        if act == "sigmoid":
            return optax.sigmoid_binary_cross_entropy(z, y).mean(-1)
        p = jnp.clip(ACTIVATIONS[act](z), EPS, 1 - EPS)
        return -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)).mean(-1)
    pred = ACTIVATIONS[act](z)
    if loss == "mean_squared_error":
        return jnp.square(pred - y).mean(-1)
    return jnp.abs(pred - y).mean(-1)  # mean_absolute_error


def per_example_metric(name: str, loss: Any, y: jax.Array, z: jax.Array, act: str) -> jax.Array:
    """Metric of each example, shape (batch,). `acc` follows Keras' choice by loss and label shape."""
    pred = ACTIVATIONS[act](z)
    if name == "acc":
        if loss == "sparse_categorical_crossentropy" or y.ndim == 1:
            return (jnp.argmax(pred, -1) == y).astype(jnp.float32)
        if loss == "binary_crossentropy" or pred.shape[-1] == 1:
            return ((pred > 0.5) == (y > 0.5)).astype(jnp.float32).mean(-1)
        return (jnp.argmax(pred, -1) == jnp.argmax(y, -1)).astype(jnp.float32)
    if name == "mae":
        return jnp.abs(pred - y).mean(-1)
    return jnp.square(pred - y).mean(-1)  # mse
