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

from .._io import process_cores as cores  # (a local worker's block of cores: executors/local.py pins it)
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


def _pad_leaf(leaf: Any, like: Any) -> np.ndarray:
    leaf = np.asarray(leaf)
    if leaf.shape == tuple(like.shape):
        return leaf
    return np.pad(leaf, [(0, w - s) for s, w in zip(leaf.shape, like.shape, strict=True)])


def _typed_keys(tree: Any) -> bool:
    return any(jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) for a in jax.tree_util.tree_leaves(tree))


def pad(tree: Any, like: Any) -> Any:
    """Zero-pad every leaf of `tree` at the end of each axis to the shape of the matching leaf of `like`.
    On the host (numpy) and put back in one transfer: eager jnp.pad dispatches (and on a busy CPU
    compiles) one small program per leaf."""
    if _typed_keys(tree):  # key arrays have no numpy form: pad on the device
        return jax.tree_util.tree_map(
            lambda a, r: a if a.shape == tuple(r.shape) else jnp.pad(a, [(0, w - s) for s, w in zip(a.shape, r.shape)]),
            tree, like)
    return jax.device_put(jax.tree_util.tree_map(_pad_leaf, jax.device_get(tree), like))


def crop(tree: Any, like: Any) -> Any:
    """Every leaf of `tree` cut to the shape of the matching leaf of `like` (the inverse of `pad`), on the
    host and put back in one transfer."""
    if _typed_keys(tree):
        return jax.tree_util.tree_map(lambda leaf, ref: leaf[tuple(slice(0, s) for s in ref.shape)], tree, like)
    host = jax.device_get(tree)
    return jax.device_put(jax.tree_util.tree_map(
        lambda leaf, ref: np.asarray(leaf)[tuple(slice(0, s) for s in ref.shape)], host, like))


def crop_host(tree: Any, like: Any) -> Any:
    """`crop` of a tree already on the host (NumPy leaves), left there: views, no transfer."""
    return jax.tree_util.tree_map(lambda leaf, ref: leaf[tuple(slice(0, s) for s in ref.shape)], tree, like)


# -- cost-aware merging ------------------------------------------------------------------------------------
# Merging trades arithmetic for programs: a merged group computes every trial at the group's widest widths
# (9x64, 7x128, 8x256 units padded to 256 is 1.75x the FLOPs of the true widths) but compiles one program
# and dispatches one step for all its trials. Where the arithmetic dominates (a CPU, wide layers, many
# epochs) one vmapped group per width is faster; where programs dominate (an accelerator, small models,
# short sweeps over many widths) merging is. `plan` picks, by the modelled cost below, which widths train
# as one padded program.


@dataclasses.dataclass(frozen=True)
class Costs:
    """The modelled cost of training on one backend, in seconds: a program's arithmetic at
    `flops_per_second` (a vmapped program of several trials `vmap_speedup` times faster per FLOP), a fixed
    `step_seconds` per batch step of any program (dispatch, the scan's loop, small ops),
    `compile_seconds` per compiled epoch program, `group_seconds` more for a vmapped group (tracing
    the vmap, stacking the trials' states, cutting them apart at the end), and `merge_seconds` more per
    width beyond the first in a width-merged program (each width's own init compiled, its trials' states
    padded, a masked program that compiles longer)."""

    flops_per_second: float
    vmap_speedup: float
    step_seconds: float
    compile_seconds: float
    group_seconds: float
    merge_seconds: float = 0.0
    # With a sweep's pruner stopping trials at its rungs (ASHA, Hyperband, median), trials train a few epochs
    # each and a refilled program spends its time on slot refills and on slots idle while the pruner
    # decides; where that loses to sequential training (a CPU: bench/population.py --modes, the asha case),
    # pruned trials train one after another, as in a sequential sweep.
    pruned_together: bool = True
    # Trials that train alone train `parallel_trials` at a time where this is above 1 (threads of one
    # process: XLA runs their programs side by side), that many times faster in throughput than one after
    # another. A lone trial of a small model leaves a CPU's second core mostly idle; a vmapped program
    # does not, but gains nothing per FLOP there (bench/population.py --calibrate measures both).
    parallel_speedup: float = 1.0
    # A vmapped program's speed per FLOP in a process that runs on one core (a `--jobs N` worker pinned
    # to its block), where that differs: on a CPU a vmapped group gains by the cores a lone trial leaves
    # idle, and on one core it has none (`taskset -c 0 python bench/population.py --calibrate`).
    one_core_vmap_speedup: float | None = None


# Measured on the project's 2-core CPU (`python bench/population.py --calibrate`, idle, session 9: the
# chapter-style MLP 784-u-u/2-10 at 64/128/256 units, warm, alone and as vmapped groups of 8): 1.5e11
# FLOP/s for one MLP, 0.16 ms per batch step, and a vmapped group only 1.04x faster per FLOP (its 0.81x
# per trial-epoch is mostly the steps it shares; a rerun the same day fitted 1.8e11, 0.33 ms and 0.85x:
# rough figures on this VM); about 3 s a compilation (init and epoch programs, cold)
# and about 0.5 s more to set up a vmapped group; a program merging two widths took 5.9 s from its start
# to the end of its first epoch's compilation against 3.1 s for one of a single width (timed inside
# train_group, cold), so 2.5 s more per merged width. (Before session 9 the model said 1e11 FLOP/s, 0.3 ms a
# step and 1.2x per FLOP, and modelled 0.77x sequential for the grid, where `--modes` measured
# 1.00x.) Lone trials side by side (session 10, same command): two at a time trained 1.5x the trial-epochs
# per second of one at a time (thr.py-style timings of 4 trials per width: 0.60-0.74x the wall time), since
# a lone trial of that MLP leaves the second core mostly idle; under `taskset -c 0` (one core, as a
# `--jobs 2` worker) the same command fitted a vmapped group 0.82x per FLOP (one_core_vmap_speedup), so a
# one-core worker trains its trials alone. The accelerator figures are modelled, not measured here: small programs there are bound by
# dispatch and compilation, so merging and grouping pay almost always.
COSTS: dict[str, Costs] = {
    "cpu": Costs(flops_per_second=1.5e11, vmap_speedup=1.05, step_seconds=1.6e-4, compile_seconds=3.0,
                 group_seconds=0.5, merge_seconds=2.5, pruned_together=False, parallel_speedup=1.5,
                 one_core_vmap_speedup=0.82),
    "gpu": Costs(flops_per_second=2.0e13, vmap_speedup=1.0, step_seconds=1e-4, compile_seconds=8.0,
                 group_seconds=1.0, merge_seconds=1.0),
    "tpu": Costs(flops_per_second=5.0e13, vmap_speedup=1.0, step_seconds=1e-4, compile_seconds=15.0,
                 group_seconds=1.0, merge_seconds=1.0),
}


MAX_PARALLEL = 4  # lone trials at a time at most (measured with 2, on 2 cores; more is not measured)


def parallel_trials(model: Costs | None = None) -> int:
    """How many lone trials train at a time: the cores this process may run on, at most MAX_PARALLEL,
    where the backend's model says that pays (`parallel_speedup` > 1: the CPU), else 1. A local worker
    pinned to one core (`--jobs N`, executors/local.py) trains one at a time."""
    model = model or costs()
    if model.parallel_speedup <= 1.0:
        return 1
    return max(1, min(MAX_PARALLEL, cores()))


def costs(backend: str | None = None) -> Costs:
    """The cost model of `backend` (default: JAX's default backend; unknown ones are modelled as GPUs),
    for this process: on one core, with the backend's `one_core_vmap_speedup`."""
    if backend is None:
        backend = jax.default_backend()
    model = COSTS.get(backend, COSTS["gpu"])
    if model.one_core_vmap_speedup is not None and cores() == 1:
        model = dataclasses.replace(model, vmap_speedup=model.one_core_vmap_speedup)
    return model


def epoch_flops(config: EngineConfig, units: Sequence[int] | None = None) -> float:
    """FLOPs of one epoch of a Sequential trial (its dense layers: forward and backward over the training
    rows, forward over the validation rows), with the hidden layers at `units` (default: its own)."""
    if not mergeable(config):
        return 0.0
    hidden = list(hidden_units(config) if units is None else units)
    dense = hidden_dense(config.model)
    fan_in = int(np.prod(config.input_shape))
    macs = 0
    for i, layer in enumerate(config.model):
        if layer[0] == "dense":
            out = hidden[dense.index(i)] if i in dense else int(layer[1])
            macs += fan_in * out
            fan_in = out
    return 6.0 * macs * config.n_train + 2.0 * macs * config.n_val


def _steps(config: EngineConfig) -> int:
    return -(-config.n_train // max(1, config.batch_size)) + (1 if config.n_val else 0)


def program_seconds(configs: Sequence[EngineConfig], epochs: Sequence[int], slots: int | None,
                    model: Costs) -> float:
    """Modelled seconds of training `configs` (width-compatible; each for its `epochs`) as ONE vmapped
    program of the widest structure with at most `slots` trials at a time (refilled): one compilation and
    group set-up, the steps of its epochs, and every trial's epochs at the padded FLOPs."""
    wide = padded_config(configs)
    n = len(configs)
    s = min(slots or n, n)
    program_epochs = max(max(epochs, default=0), -(-sum(epochs) // s))
    rate = model.flops_per_second * (model.vmap_speedup if s > 1 else 1.0)
    merged = len({hidden_units(c) for c in configs}) - 1
    return (model.compile_seconds + (model.group_seconds if s > 1 else 0.0) + merged * model.merge_seconds
            + program_epochs * _steps(wide) * model.step_seconds + sum(epochs) * epoch_flops(wide) / rate)


def sequential_seconds(configs: Sequence[EngineConfig], epochs: Sequence[int], model: Costs) -> float:
    """Modelled seconds of training `configs` one after another, each alone: one compilation per distinct
    configuration, each trial's epochs at its own FLOPs."""
    own = sum(e * (_steps(c) * model.step_seconds + epoch_flops(c) / model.flops_per_second)
              for c, e in zip(configs, epochs, strict=True))
    return model.compile_seconds * len(set(configs)) + own


# A width's trials fall back to training alone only when that is modelled to be faster AND the group's
# work is worth choosing for: below this many modelled seconds (all its trials one after another) the
# population trains them together as asked.
MIN_FALLBACK_SECONDS = 10.0


@dataclasses.dataclass
class Plan:
    """How a width-compatible group trains: `parts`, each (indices into the group's trials, together),
    where together means one vmapped program (padded to the part's widest trial when widths differ) and
    not together means each trial alone, one after another, as in a sequential sweep; with the modelled
    seconds of this plan, of one program padded to the widest, and of sequential training."""

    parts: list[tuple[list[int], bool]]
    seconds: float
    merged_seconds: float
    sequential_seconds: float
    parallel: int = 1  # lone trials at a time (parallel_trials)

    def describe(self) -> str:
        """One line: what the plan does and why (for the sweep's output and the trials' properties)."""
        if self.sequential:
            if self.parallel > 1:
                return (f"trained alone, {self.parallel} at a time (the programs a sequential sweep runs, side by "
                        f"side): modelled {self.seconds:.1f} s against {self.merged_seconds:.1f} s as one "
                        f"population program and {self.sequential_seconds:.1f} s one after another")
            return (f"trained one after another, as in a sequential sweep: modelled {self.sequential_seconds:.1f} s "
                    f"alone against {self.merged_seconds:.1f} s as one population program")
        merged = [idx for idx, together in self.parts if together]
        alone = sum(len(idx) for idx, together in self.parts if not together)
        return (f"{len(merged)} program(s) of {', '.join(str(len(i)) for i in merged)} trials"
                + (f" and {alone} trial(s) alone, {self.parallel} at a time" if alone and self.parallel > 1
                   else f" and {alone} trial(s) alone" if alone else "")
                + f": modelled {self.seconds:.1f} s against {self.merged_seconds:.1f} s padded to the widest and "
                f"{self.sequential_seconds:.1f} s sequential")

    @property
    def sequential(self) -> bool:
        """Every trial trains alone (the population falls back to sequential training)."""
        return not any(together for _, together in self.parts)


def plan(configs: Sequence[EngineConfig], epochs: Sequence[int], slots: int | None = None,
         model: Costs | None = None, parallel: int | None = None) -> Plan:
    """How the width-compatible `configs` (one per trial, each for its `epochs`) train, by the modelled
    cost: trials of equal widths share a program (or train alone where a vmapped group would not pay for
    its set-up; `parallel` at a time, default `parallel_trials(model)`, at `parallel_speedup`);
    consecutive widths (ordered by FLOPs) are merged into one padded program where the padded arithmetic
    costs less than the programs it saves. Dynamic programming over the distinct widths."""
    model = model or costs()
    parallel = parallel_trials(model) if parallel is None else max(1, parallel)
    speedup = model.parallel_speedup if parallel > 1 else 1.0
    one_by_one = sequential_seconds(configs, epochs, model)
    worth = one_by_one > MIN_FALLBACK_SECONDS  # (the whole group's work)
    by_width: dict[tuple[int, ...], list[int]] = {}
    for i, c in enumerate(configs):
        by_width.setdefault(hidden_units(c), []).append(i)
    keys = sorted(by_width, key=lambda w: (epoch_flops(configs[by_width[w][0]]), w))
    k = len(keys)
    best: list[float] = [0.0] + [float("inf")] * k
    choice: list[tuple[int, bool]] = [(0, True)] * (k + 1)
    for j in range(1, k + 1):
        for i in range(j):
            idx = [m for w in keys[i:j] for m in by_width[w]]
            cs, es = [configs[m] for m in idx], [epochs[m] for m in idx]
            options = [(program_seconds(cs, es, slots, model), True)]
            if j == i + 1 and worth:  # one width: or alone
                options.append((sequential_seconds(cs, es, model) / speedup, False))
            cost, together = min(options, key=lambda o: o[0])
            if best[i] + cost < best[j]:
                best[j], choice[j] = best[i] + cost, (i, together)
    parts: list[tuple[list[int], bool]] = []
    j = k
    while j > 0:
        i, together = choice[j]
        parts.append(([m for w in keys[i:j] for m in by_width[w]], together))
        j = i
    return Plan(parts[::-1], best[k], program_seconds(configs, epochs, slots, model), one_by_one, parallel)
