"""Keras-like model summary text: layer, output shape, parameter count, totals."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

RULE = "_" * 65
DOUBLE = "=" * 65


def _count(tree: Any) -> int:
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def count_params(tree: Any) -> int:
    """The number of parameters in `tree`: the elements of its floating-point leaves (arrays, or the
    shape structs of `jax.eval_shape`); integer leaves (step counters, keys) are not parameters."""
    n = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and jax.numpy.issubdtype(dtype, jax.numpy.floating):
            n += int(np.prod(np.shape(leaf)))
    return n


def user_params(state: Any, nnx_split: bool = False) -> Any:
    """The parameters inside a `fit_loop` state (or its shapes), when they can be told apart from the
    optimizer's state: `state["params"]` (a dict state), `state.params` (flax's TrainState), or an nnx
    state's `nnx.Param` variables (`nnx_split`: the state is what `nnx.split` gave); None otherwise (a
    tuple `(params, opt_state)` is not guessed at)."""
    if nnx_split:
        from flax import nnx

        try:
            if hasattr(nnx, "filter_state"):  # flax >= 0.11 (State.filter is deprecated there)
                return nnx.filter_state(state, nnx.Param)
            return state.filter(nnx.Param)
        except Exception:  # noqa: BLE001 - not an nnx State after all
            return None
    if isinstance(state, dict) and "params" in state:
        return state["params"]
    params = getattr(state, "params", None)
    return None if params is None or callable(params) else params


def summary_text(structure: tuple[tuple[Any, ...], ...] | None, params: Any, extra: Any, input_shape: tuple[int, ...], name: str = "sequential") -> str:
    """The summary of a Sequential structure (per layer), or of any linen module (per top-level submodule)."""
    rows: list[tuple[str, str, int]] = []
    if structure is not None:
        seen: dict[str, int] = {}
        width = int(np.prod(input_shape))
        for layer in structure:
            kind = layer[0]
            base, typ = {"dense": ("dense", "Dense"), "batchnorm": ("batch_normalization", "BatchNormalization"), "dropout": ("dropout", "Dropout")}[kind]
            k = seen.get(base, 0)
            seen[base] = k + 1
            label = f"{base}{'' if k == 0 else f'_{k}'} ({typ})"
            if kind == "dense":
                units, use_bias = layer[1], layer[3]
                n = width * units + (units if use_bias else 0)
                width = units
            elif kind == "batchnorm":
                n = 4 * width
            else:
                n = 0
            rows.append((label, f"(None, {width})", n))
    else:
        for key in params:
            sub = {"params": params[key], **{c: v[key] for c, v in extra.items() if key in v}}
            rows.append((key, "", _count(sub)))
    trainable, total = _count(params), _count(params) + _count(extra)
    w = max([28, *(len(r[0]) + 2 for r in rows)])
    lines = [f'Model: "{name}"', RULE, f" {'Layer (type)':<{w}}{'Output Shape':<16}{'Param #':>12}", DOUBLE]
    for i, (label, shape, n) in enumerate(rows):
        lines.append(f" {label:<{w}}{shape:<16}{n:>12,}")
        if i < len(rows) - 1:
            lines.append(RULE)
    lines += [DOUBLE, f"Total params: {total:,}", f"Trainable params: {trainable:,}", f"Non-trainable params: {total - trainable:,}", RULE]
    return "\n".join(lines)
