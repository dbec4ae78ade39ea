"""Width merging: population trials whose Sequential models differ only in hidden layer widths train
together as one program of the widest structure, zero-padded and masked.

Two configurations are *width-compatible* when they are equal except for the `units` of hidden Dense
layers (every Dense but the last): same layers in the same order, activations, biases, regularizers,
BatchNorm/Dropout positions, output units, loss, optimizer, callbacks and data sizes. `merge_key` is the
configuration with those units erased; `padded_config` takes the largest units of each hidden layer.

Each trial keeps its own true model:
- its state is initialized by its own engine (same keys, so the same weights as when trained alone)
  and zero-padded into the wide shapes (`pad`): real weights in the top-left block, zeros elsewhere;
- `unit_masks` (1 for its real units, 0 for padding, one vector per hidden layer) travel as traced
  hyperparameters, so one compiled program serves every width; SequentialNet multiplies each hidden
  layer's outputs by them (after the activation and after BatchNorm), so padded units are exactly 0;
- hence padded parameters get exactly zero gradients (the next layer's padded input rows see zero
  inputs; L2 of 0 and the L1 subgradient sign(0) are 0), and the optimizers leave them at 0;
- dropout bits hash (seed, row * real width + unit), so real units drop exactly as in the unpadded run;
- after training the state is cropped back to the trial's true shapes (`crop`), so evaluate/predict in
  the trial's script use its own engine.
The results equal unpadded training up to float rounding (dot products over more, zero, terms).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .engine import ByIdentity, EngineConfig

Structure = tuple[tuple[Any, ...], ...]


def hidden_dense(structure: Structure) -> list[int]:
    """Positions (in `structure`) of the hidden Dense layers: every Dense but the last one."""
    dense = [i for i, layer in enumerate(structure) if layer[0] == "dense"]
    return dense[:-1]


def mergeable(config: EngineConfig) -> bool:
    """Whether the configuration is a gridrun.Sequential with at least one hidden Dense layer."""
    return (isinstance(config, EngineConfig) and isinstance(config.model, tuple)
            and not isinstance(config.model, ByIdentity) and bool(hidden_dense(config.model)))


def hidden_units(config: EngineConfig) -> tuple[int, ...]:
    """The units of the hidden Dense layers (empty for a user linen module)."""
    if not mergeable(config):
        return ()
    return tuple(int(config.model[i][1]) for i in hidden_dense(config.model))


def merge_key(config: EngineConfig) -> Hashable:
    """The configuration with hidden units erased: equal keys train together (see the module docstring)."""
    if not mergeable(config):
        return config
    hidden = set(hidden_dense(config.model))
    model = tuple((layer[0], None, *layer[2:]) if i in hidden else layer for i, layer in enumerate(config.model))
    return dataclasses.replace(config, model=model)


def padded_config(configs: Sequence[EngineConfig]) -> EngineConfig:
    """The configuration of width-compatible `configs` with each hidden layer at its largest units."""
    first = configs[0]
    if not mergeable(first):
        return first
    widest = np.max([hidden_units(c) for c in configs], axis=0)
    model = list(first.model)
    for k, i in enumerate(hidden_dense(first.model)):
        model[i] = (model[i][0], int(widest[k]), *model[i][2:])
    return dataclasses.replace(first, model=tuple(model))


def unit_masks(config: EngineConfig, padded: EngineConfig) -> list[np.ndarray]:
    """Per hidden layer of `padded`: float32 1 for the units `config` really has, 0 for padding."""
    return [(np.arange(wide) < real).astype(np.float32)
            for real, wide in zip(hidden_units(config), hidden_units(padded), strict=True)]


def with_masks(hparams: Any, config: EngineConfig, padded: EngineConfig) -> Any:
    """A copy of a trial's hparams with its `unit_masks` for the padded engine."""
    model = dict(hparams["model"], unit_masks=[jnp.asarray(m) for m in unit_masks(config, padded)])
    return dict(hparams, model=model)


def _pad_leaf(leaf: Any, like: Any) -> jax.Array:
    leaf = jnp.asarray(leaf)
    if leaf.shape == tuple(like.shape):
        return leaf
    return jnp.pad(leaf, [(0, w - s) for s, w in zip(leaf.shape, like.shape, strict=True)])


def pad(tree: Any, like: Any) -> Any:
    """Zero-pad every leaf of `tree` at the end of each axis to the shape of the matching leaf of `like`."""
    return jax.tree_util.tree_map(_pad_leaf, tree, like)


def crop(tree: Any, like: Any) -> Any:
    """Every leaf of `tree` cut to the shape of the matching leaf of `like` (the inverse of `pad`)."""
    return jax.tree_util.tree_map(lambda leaf, ref: leaf[tuple(slice(0, s) for s in ref.shape)], tree, like)
