"""The group program: trials of one configuration (or of hidden widths merged by padding) trained as
one `jax.vmap` of the engine's epoch, sharded along the trial axis over the local devices; each
trial's epochs go through its `Member` (train/driver.py), which records them and decides its stop."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ...checkpoint import release_held
from ...pbt import PBTConfig
from ..driver import TrainingProgram
from .config import PopulationStats
from .request import FitRequest


def population_devices(cap: int | None = None) -> int:
    """How many local devices a population group may be sharded over along its trial axis: all of the
    default backend's, at most `cap` (PopulationConfig.devices; 1: no sharding)."""
    import jax

    n = len(jax.local_devices())
    return n if cap is None else min(n, max(1, int(cap)))


def _trial_sharding(n_trials: int, cap: int | None = None) -> tuple[Any, Any, int]:
    """(sharding along the trial axis, replicated sharding, device count) for a group of `n_trials`: the
    largest device count <= population_devices(cap) that divides the group, so every device holds as
    many trials; (None, None, 1) on one device."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    avail = min(population_devices(cap), n_trials)
    d = max(k for k in range(1, avail + 1) if n_trials % k == 0)
    if d <= 1:
        return None, None, 1
    mesh = Mesh(np.array(jax.local_devices()[:d]), ("trials",))
    return NamedSharding(mesh, PartitionSpec("trials")), NamedSharding(mesh, PartitionSpec()), d


Fns = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]
# per engine (kept as long as the engine is): its vmapped, jitted init / epoch / finalize
_VMAPPED: weakref.WeakKeyDictionary[TrainingProgram, Fns] = weakref.WeakKeyDictionary()
_SINGLE: weakref.WeakKeyDictionary[TrainingProgram, Fns] = weakref.WeakKeyDictionary()  # a group of one's
_VMAPPED_LOCK = threading.Lock()


def vmapped(engine: TrainingProgram) -> Fns:
    """The engine's init / epoch / finalize vmapped over trials and jitted, built once per engine."""
    with _VMAPPED_LOCK:
        fns = _VMAPPED.get(engine)
        if fns is None:
            import jax

            from ..engine import jit

            fns = _VMAPPED[engine] = (
                jit(jax.vmap(engine.init)),
                jit(jax.vmap(engine.epoch, in_axes=(0, 0, None, 0))),
                jit(jax.vmap(engine.finalize)),
            )
        return fns


def _single(engine: TrainingProgram) -> Fns:
    """A group of one needs no vmap: the engine's own compiled init and finalize (the programs sequential
    fit uses) behind a batch axis of length 1, and its epoch jitted with that axis cut and put back
    inside the program, built once per engine. (Cut and put back eagerly, leaf by leaf, the axis cost
    about 60 dispatches an epoch: 72 ms against 50 ms for an epoch of the 64-unit --modes MLP on the
    2-core CPU.)"""
    with _VMAPPED_LOCK:
        fns = _SINGLE.get(engine)
        if fns is None:
            import jax

            from ..engine import jit

            def add(tree: Any) -> Any:
                return jax.tree_util.tree_map(lambda a: a[None], tree)

            def first(tree: Any) -> Any:
                return jax.tree_util.tree_map(lambda a: a[0], tree)

            def init(hp: Any, k: Any) -> Any:
                return add(engine.jit_init(first(hp), k[0]))

            def epoch(state: Any, hp: Any, data: Any, k: Any) -> Any:
                new, logs = engine.epoch(first(state), first(hp), data, k[0])
                return add(new), add(logs)

            def final(state: Any) -> Any:
                return add(engine.jit_finalize(first(state)))

            fns = _SINGLE[engine] = (init, jit(epoch), final)
        return fns


def padded_request(requests: list[FitRequest]) -> FitRequest:
    """A request standing for the group's widest trial (for sizing): the padded engine, or the first request."""
    from .. import widths
    from ..engine import get_engine

    configs = [r.engine.config for r in requests]
    if all(c == configs[0] for c in configs):
        return requests[0]
    first = requests[0]
    return FitRequest(get_engine(widths.padded_config(configs)), first.hparams, first.arrays, first.k_init,
                      first.k_train, first.member, first.initial)


def _rows(state: Any, n: int) -> list[Any]:
    """Each trial's row of a stacked state. On the CPU backend (device memory is host memory) cut with
    numpy and put back one transfer per trial; elsewhere by indexing on the device."""
    import jax

    from .. import widths

    leaves = jax.tree_util.tree_leaves(state)
    if jax.default_backend() != "cpu" or widths._typed_keys(state) or len(leaves[0].sharding.device_set) > 1:
        return [jax.tree_util.tree_map(lambda a, i=i: a[i], state) for i in range(n)]
    host = jax.device_get(state)
    return [jax.device_put(jax.tree_util.tree_map(lambda a, i=i: np.array(a[i]), host)) for i in range(n)]


def train_group(requests: list[FitRequest], stats: PopulationStats | None = None, devices: int | None = None,
                pbt: PBTConfig | None = None) -> None:
    """Train `requests` (width-compatible engines, same data) together; fill each request's `state`.

    With equal engines the states are initialized inside the vmapped program. With different hidden
    widths (see gridrun/train/widths.py) each trial is initialized by its own engine, zero-padded to the
    widest structure, trained with its unit masks, and cropped back to its own shapes at the end. The
    group's arrays are sharded over at most `devices` local devices; `stats` counts what it trained.
    With `pbt`, every PBT interval the bottom members continue from the top members' states with
    perturbed hyperparameters (train/population/exploit.py)."""
    import jax
    import jax.numpy as jnp

    from .. import widths
    from ..engine import epoch_key, get_engine, stack

    configs = [r.engine.config for r in requests]
    merged = any(c != configs[0] for c in configs)
    engine = get_engine(widths.padded_config(configs)) if merged else requests[0].engine
    names = engine.config.log_names
    vinit, vepoch, vfinal = _single(engine) if len(requests) == 1 else vmapped(engine)
    shard, replicated, n_dev = _trial_sharding(len(requests), devices)
    stats = stats or PopulationStats()

    def put(tree: Any, sharding: Any) -> Any:  # trial axis split over devices; data replicated
        return tree if sharding is None else jax.device_put(tree, sharding)

    data = put({k: jnp.asarray(v) for k, v in requests[0].arrays.items()}, replicated)  # one copy per device
    trial_hparams = [widths.with_masks(r.hparams, r.engine.config, engine.config) if merged else r.hparams
                     for r in requests]
    hparams = put(stack(trial_hparams), shard)
    k_init = put(jnp.stack([r.k_init for r in requests]), shard)
    k_train = put(jnp.stack([r.k_train for r in requests]), shard)
    limits = np.array([r.epochs for r in requests])
    if merged:  # each trial's own initial weights, zero-padded into the wide shapes
        wide = jax.eval_shape(engine.init, trial_hparams[0], requests[0].k_init)
        # by each trial's own compiled init (the one sequential fit runs; one compilation per width): run
        # eagerly, op by op, an init cost seconds per trial on a busy CPU
        own = [r.engine.jit_init(r.hparams, r.k_init) for r in requests]
        true_shapes = [jax.eval_shape(lambda s=s: s) for s in own]
        state = stack([widths.pad(s, wide) for s in own])
    elif requests[0].initial is not None:  # nnx modules: each trial's own initial weights
        state = stack([r.initial for r in requests])
    else:
        state = vinit(hparams, k_init)
    state = put(state, shard)
    state["stopped"] = put(jnp.asarray(limits <= 0), shard)
    fold = jax.jit(jax.vmap(epoch_key, in_axes=(0, None)))
    from time import perf_counter

    from .exploit import GroupPBT

    group_pbt = GroupPBT.create(pbt, requests, trial_hparams, stats)
    for e in range(int(limits.max(initial=0))):
        t_epoch = perf_counter()
        state, logs = vepoch(state, hparams, data, fold(k_train, e))
        release_held()  # the last epoch's checkpoints are written while this one computes
        logs = jax.device_get(logs)
        stats.count(int(np.sum(logs["active"])), len(requests), epoch_seconds=perf_counter() - t_epoch)
        host = EpochStates(state, copy=False)  # (no program here donates the state's buffers)
        for i, r in enumerate(requests):
            if logs["active"][i]:
                r.member.record({k: logs[k][i] for k in names}, bool(logs["stopped"][i]),
                                lambda i=i, host=host: host.slot(i, true_shapes[i] if merged else None))
        if group_pbt is not None:  # PBT: exploit (one gather on the device) and explore, at its interval
            state, hparams, _ = group_pbt.after_epoch(
                e + 1, requests, [r.member.completed for r in requests], logs,
                [bool(a) for a in logs["active"]], state, hparams, lambda tree: put(tree, shard))
        stop = np.array([r.member.stop is not None for r in requests])
        if stop.all():
            break
        state["stopped"] = put(jnp.asarray(stop), shard)
    n_dev = len(jax.tree_util.tree_leaves(state)[0].sharding.device_set)  # measured, not intended
    state = vfinal(state)
    padded_units = widths.hidden_units(engine.config) if merged else None
    rows = _rows(state, len(requests))
    for i, r in enumerate(requests):
        r.state = rows[i]
        if merged:
            r.padded = (engine, r.state, trial_hparams[i])
            r.state = widths.crop(r.state, true_shapes[i])
        r.group_size = len(requests)
        r.padded_units = padded_units
        r.devices = n_dev


class EpochStates:
    """A group's state after one epoch, as each trial's observers (its checkpoints) ask for their slot.

    The first ask brings the whole stacked state to the host in one transfer; each slot is then a view
    of it, cut to the trial's true shapes where widths were merged. `copy`: a copy, for a caller whose
    next step donates (reuses) the state's buffers while a background writer still holds a slot
    (slots.py's refill); without it, on the CPU, the host state is the device buffers themselves
    (`np.asarray`, no copy: 11-20 ms an epoch for 16 of the chapter's models, bench/checkpoint.py part 4),
    kept alive by the views as long as a writer holds one. (Cutting each slot on the
    device was one dispatch a leaf and a transfer a slot: 16 slots of the chapter's model cost more than
    their writes.) States with typed PRNG keys, which have no NumPy form, are cut on the device."""

    def __init__(self, state: Any, copy: bool = True) -> None:
        self.state = state
        self.copy = copy
        self._host: Any = None

    def slot(self, i: int, like: Any = None) -> Any:
        """Slot `i`'s state; `like`: the trial's true shapes (a width-merged group), else the slot as is."""
        import jax

        from .. import widths
        from ..engine import unstack

        if widths._typed_keys(self.state):
            one = unstack(self.state, i)
            return one if like is None else widths.crop(one, like)
        if self._host is None:
            self._host = jax.tree_util.tree_map(np.array if self.copy else np.asarray, self.state)
        one = jax.tree_util.tree_map(lambda leaf: leaf[i], self._host)
        return one if like is None else widths.crop_host(one, like)
