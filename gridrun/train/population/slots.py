"""Slot refilling: a group larger than its program trains in a program of `size` slots, each slot
refilled with the next waiting trial as soon as its trial ends, and the program shrinks for its last
survivors when that pays. Each trial's epochs go through its `Member` (train/driver.py)."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from ...checkpoint import release_held
from ...pbt import PBTConfig
from ..driver import TrainingProgram
from .config import PopulationStats
from .program import EpochStates, vmapped
from .request import FitRequest


def can_refill(requests: list[FitRequest]) -> bool:
    """Slot refilling needs one program for all: equal engines, or width-compatible Sequential engines
    (trained padded to the group's widest, train/widths.py), and weights initialized by an engine (not
    nnx modules' own states). (Whether to refill at all is PopulationConfig.slot_refill: off, a group
    trains in chunks of its program's size and an ended trial's slot stays frozen until its chunk ends.)"""
    from .. import widths

    if any(r.initial is not None for r in requests):
        return False
    first = requests[0].engine.config
    if all(r.engine.config == first for r in requests):
        return True
    key = widths.merge_key(first)
    return widths.mergeable(first) and all(widths.merge_key(r.engine.config) == key for r in requests)


# A program shrinks for its last survivors (nobody waits, slots are empty) when the time the empty slots
# would cost over the survivors' remaining epochs exceeds the cost of compiling the smaller program, or
# at once when that program was compiled before in this process. Before any compilation was measured,
# one is assumed to cost this many seconds (an epoch program's compilation on a 2-core CPU: 5-7 s cold,
# about 1.5 s from the persistent compilation cache).
COMPILE_SECONDS_GUESS = 3.0


def ladder(size: int) -> list[int]:
    """The program sizes a refilled group of `size` slots may shrink to: halvings down to two. (A lone
    survivor stays in a program of two: on a 2-core CPU an epoch of one slot costs 84 ms against 102 ms
    for two, less than a compilation of one more program is worth.)"""
    out = [size]
    while out[-1] > 2:
        out.append((out[-1] + 1) // 2)
    return out


def shrink_pays(slot_seconds: float, slots: int, smaller: int, epochs_left: int, compiled: bool,
                compile_seconds: float) -> bool:
    """Whether a program of `slots` slots should go on as one of `smaller`: at once when that program is
    compiled already, otherwise when the empty slots' time over the survivors' remaining epochs (at most)
    exceeds a compilation."""
    if smaller >= slots:
        return False
    return compiled or slot_seconds * (slots - smaller) * epochs_left > compile_seconds


# per engine (kept as long as the engine is): the compiled pieces of its refilled programs, the sizes of
# the epoch programs compiled in this process and what a compilation cost here
_COMPILED: weakref.WeakKeyDictionary[TrainingProgram, dict[str, Any]] = weakref.WeakKeyDictionary()
_COMPILED_LOCK = threading.Lock()


class _SlotPrograms:
    """The pieces of a refilled group: the vmapped epoch (with each slot's epoch key folded in, one
    program per size), the finalized states of the trials that ended at an epoch, the refill of any set
    of slots in place (one call: every new trial initialized from its own keys and hyperparameters), and
    the rows kept when a program shrinks. On the CPU backend, where device memory is host memory, rows
    are cut with numpy: no program to compile per size. Elsewhere they are cut by small compiled
    programs, on the device (`host_rows` forces either). The sizes of epoch programs compiled in this
    process, and what a compilation cost here, are kept per engine, so the decision to shrink a program
    knows what it would pay."""

    def __init__(self, engine: TrainingProgram, host_rows: bool | None = None) -> None:
        import jax
        import jax.numpy as jnp

        from ..engine import compiler_options, epoch_key, jit

        self.engine = engine
        self.vinit = vmapped(engine)[0]
        self.on_host = jax.default_backend() == "cpu" if host_rows is None else host_rows
        self.slot_seconds = 0.0  # the last epoch's seconds per slot that compiled nothing
        with _COMPILED_LOCK:
            cache = _COMPILED.setdefault(engine, {})
        if not cache:
            def epoch(state: Any, hparams: Any, data: Any, k_train: Any, ep: Any) -> Any:
                keys = jax.vmap(epoch_key)(k_train, ep)
                return jax.vmap(engine.epoch, in_axes=(0, 0, None, 0))(state, hparams, data, keys)

            def rows(state: Any) -> tuple[Any, ...]:
                final = jax.vmap(engine.finalize)(state)
                n = jax.tree_util.tree_leaves(state)[0].shape[0]
                return tuple(jax.tree_util.tree_map(lambda a, i=i: a[i], final) for i in range(n))

            def refill(state: Any, take: Any, hparams: Any, k_init: Any) -> Any:
                fresh = jax.vmap(engine.init)(hparams, k_init)
                return jax.tree_util.tree_map(
                    lambda new, old: jnp.where(take.reshape((-1,) + (1,) * (old.ndim - 1)), new, old), fresh, state)

            cache["epoch"] = jit(epoch)
            cache["rows"] = jit(rows)
            cache["refill"] = jax.jit(refill, donate_argnums=0, compiler_options=compiler_options())
            cache["take"] = jax.jit(lambda tree, idx: jax.tree_util.tree_map(lambda a: a[idx], tree))
            cache["put"] = jax.jit(lambda state, take, fresh: jax.tree_util.tree_map(  # padded refills
                lambda new, old: jnp.where(take.reshape((-1,) + (1,) * (old.ndim - 1)), new, old), fresh, state),
                donate_argnums=0, compiler_options=compiler_options())
            cache["sizes"] = set()  # sizes of the epoch programs compiled in this process
            cache["compile_s"] = None  # the last measured compilation of an epoch program, seconds
        self.cache = cache

    def compiled(self, n: int) -> bool:
        return n in self.cache["sizes"]

    def compile_seconds(self) -> float:
        measured = self.cache["compile_s"]
        return COMPILE_SECONDS_GUESS if measured is None else float(measured)

    def epoch(self, state: Any, hparams: Any, data: Any, k_train: Any, ep: np.ndarray) -> tuple[Any, Any, float]:
        """One epoch of every slot; returns (state, host logs, seconds). An epoch that compiled nothing
        sets `slot_seconds` (its seconds per slot); the first epoch of a size not compiled before, minus
        the next one at that size, is taken as the compilation's cost (`compile_seconds`)."""
        import time

        import jax

        n = len(ep)
        t0 = time.perf_counter()
        state, logs = self.cache["epoch"](state, hparams, data, k_train, ep.copy())
        release_held()  # the last epoch's checkpoints are written while this one computes
        logs = jax.device_get(logs)
        seconds = time.perf_counter() - t0
        if n not in self.cache["sizes"]:
            self.cache["sizes"].add(n)
            self.cache["first"] = (n, seconds)
            return state, logs, seconds
        first = self.cache.pop("first", None)
        if first is not None and first[0] == n:
            self.cache["compile_s"] = max(0.0, first[1] - seconds)
        self.slot_seconds = seconds / n
        return state, logs, seconds

    def released(self, state: Any, slots: list[int]) -> dict[int, Any]:
        """The finalized (unbatched) train states of the given slots."""
        import jax

        if self.on_host:  # a copy, not views: the refill that follows donates (reuses) the state's buffers
            host = jax.device_get(state)
            return {i: self.engine.jit_finalize(jax.tree_util.tree_map(lambda a, i=i: a[i], host)) for i in slots}
        rows = self.cache["rows"](state)
        return {i: rows[i] for i in slots}

    def take(self, tree: Any, rows: list[int]) -> Any:
        """The given rows (slots) of a stacked tree."""
        import jax

        idx = np.asarray(rows, np.int32)
        if self.on_host:
            return jax.device_put(jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], tree))
        return self.cache["take"](tree, idx)

    def refill(self, state: Any, take: np.ndarray, hparams: Any, k_init: Any) -> Any:
        return self.cache["refill"](state, take, hparams, k_init)

    def put(self, state: Any, take: np.ndarray, fresh: Any) -> Any:
        """`state` with the slots in `take` replaced by those rows of `fresh` (same shapes), in place."""
        return self.cache["put"](state, take, fresh)


class _Padding:
    """A width-merged refilled group (train/widths.py): the padded engine, and per trial its masked
    hyperparameters, its own initial state zero-padded to the wide shapes, and its true shapes."""

    def __init__(self, requests: list[FitRequest]) -> None:
        import jax

        from .. import widths
        from ..engine import get_engine

        self.engine = get_engine(widths.padded_config([r.engine.config for r in requests]))
        self.units = widths.hidden_units(self.engine.config)
        r0 = requests[0]
        self.wide = jax.eval_shape(self.engine.init, self.hparams(r0), r0.k_init)
        self.shapes: dict[int, Any] = {}  # id(request) -> its true state shapes

    def hparams(self, r: FitRequest) -> Any:
        from .. import widths

        return widths.with_masks(r.hparams, r.engine.config, self.engine.config)

    def initial(self, r: FitRequest) -> Any:
        """The trial's own initial state (its own engine's compiled init and keys, as sequential fit
        runs it), zero-padded into the wide shapes."""
        import jax

        from .. import widths

        own = r.engine.jit_init(r.hparams, r.k_init)
        r.padded_units = self.units
        self.shapes[id(r)] = jax.eval_shape(lambda: own)
        return widths.pad(own, self.wide)

    def fresh(self, news: dict[int, FitRequest], n: int) -> Any:
        """A stacked state of `n` rows: the padded initial states of `news` (slot -> trial), zeros elsewhere."""
        import jax

        rows = {i: jax.device_get(self.initial(r)) for i, r in news.items()}  # padded on the host
        zero = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), self.wide)
        return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *[rows.get(i, zero) for i in range(n)])

    def own(self, r: FitRequest, state: Any) -> Any:
        """A padded (unbatched) state of a live trial cut to its true shapes (for the epoch's observers)."""
        from .. import widths

        return widths.crop(state, self.shapes[id(r)])

    def release(self, r: FitRequest, final: Any) -> Any:
        """The trial's finalized padded state cropped to its true shapes; `r.padded` keeps the padded one
        (its script's evaluate/predict use the group's compiled padded engine, as train_group's)."""
        from .. import widths

        r.padded = (self.engine, final, self.hparams(r))
        return widths.crop(final, self.shapes.pop(id(r)))


def train_slots(requests: list[FitRequest], size: int, stats: PopulationStats | None = None,
                host_rows: bool | None = None, pbt: PBTConfig | None = None) -> list[tuple[int, int, int]]:
    """Train more trials than the program has slots: `size` slots, each refilled with the next waiting
    trial as soon as its trial ends (EarlyStopping, a Stopper such as the sweep's pruner, a non-finite
    loss, or its last epoch), so the compiled program keeps training a full population instead of
    carrying dead members. A refilled slot is initialized in place from the new trial's own keys and
    hyperparameters and counts its own epochs, so each trial sees exactly the initialization, data order
    and dropout masks it gets when trained alone. The trials that end at an epoch are finalized together
    and released (their scripts go on) at once; their slots are refilled together in one call. Once
    nobody waits, the program shrinks for its survivors along `ladder(size)` when that pays (see
    COMPILE_SECONDS_GUESS). With `pbt`, a trial at a multiple of the PBT interval may continue from a
    better slot's state with perturbed hyperparameters (train/population/exploit.py). Returns (active
    slots, trials waiting, program slots) after each epoch."""
    import time
    from collections import deque

    import jax
    import jax.numpy as jnp

    from ..engine import stack

    configs = [r.engine.config for r in requests]
    padding = _Padding(requests) if any(c != configs[0] for c in configs) else None  # width-merged
    engine = requests[0].engine if padding is None else padding.engine
    names = engine.config.log_names
    progs = _SlotPrograms(engine, host_rows)
    stats = stats or PopulationStats()
    data = {k: jnp.asarray(v) for k, v in requests[0].arrays.items()}
    waiting = deque(requests)
    slots: list[FitRequest | None] = [waiting.popleft() for _ in range(min(size, len(waiting)))]
    first = [r for r in slots if r is not None]
    # each slot's hyperparameters and keys (a freed slot keeps its last)
    hp_rows = [r.hparams if padding is None else padding.hparams(r) for r in first]
    k_init_rows = [r.k_init for r in first]
    k_train_rows = [r.k_train for r in first]
    hparams, k_train = stack(hp_rows), jnp.stack(k_train_rows)
    if padding is None:
        state = progs.vinit(hparams, jnp.stack(k_init_rows))
    else:  # each trial's own initial weights, zero-padded into the wide shapes
        state = jax.device_put(padding.fresh(dict(enumerate(first)), len(first)))
    ep = np.zeros(len(slots), np.int32)  # epochs trained by each slot's current trial
    stop = np.array([r.epochs <= 0 for r in first])
    state = _continue_rows(state, list(enumerate(first)), ep, stop, padding)
    activity: list[tuple[int, int, int]] = []
    from .exploit import GroupPBT

    group_pbt = GroupPBT.create(pbt, requests, stats=stats)
    while any(r is not None for r in slots):
        t_release = time.perf_counter()
        ended = [i for i, r in enumerate(slots) if r is not None and stop[i]]
        if ended:  # release the trials that ended (one finalize for all), refill their slots (one call)
            finals = progs.released(state, ended)
            take = np.zeros(len(slots), bool)
            news: dict[int, FitRequest] = {}
            for i in ended:
                r = slots[i]
                assert r is not None
                r.state = finals[i] if padding is None else padding.release(r, finals[i])
                r.group_size, r.refilled = size, True
                r.done.set()
                new = slots[i] = waiting.popleft() if waiting else None
                if new is not None:
                    take[i] = True
                    news[i] = new
                    hp_rows[i] = new.hparams if padding is None else padding.hparams(new)
                    k_init_rows[i], k_train_rows[i] = new.k_init, new.k_train
                    ep[i], stop[i] = 0, new.epochs <= 0
            del finals
            if take.any():
                hparams, k_train = stack(hp_rows), jnp.stack(k_train_rows)
                if padding is None:
                    state = progs.refill(state, take, hparams, jnp.stack(k_init_rows))
                else:  # new trials of any width take padded slots, each with its own initial weights
                    state = progs.put(state, take, padding.fresh(news, len(slots)))
                state = _continue_rows(state, [(i, slots[i]) for i in np.flatnonzero(take)], ep, stop, padding)
            stats.count(release_seconds=time.perf_counter() - t_release)
            if not any(r is not None for r in slots):
                break
            if any(stop[i] for i, r in enumerate(slots) if r is not None):
                continue  # a refilled trial with no epochs to train ends at once
        live = [i for i, r in enumerate(slots) if r is not None]
        if not waiting and len(live) < len(slots):
            smaller = min(m for m in ladder(size) if m >= len(live))
            if smaller < len(slots):
                left = max(slots[i].epochs - int(ep[i]) for i in live)  # type: ignore[union-attr]
                if shrink_pays(progs.slot_seconds, len(slots), smaller, left, progs.compiled(smaller),
                               progs.compile_seconds()):
                    keep = live + [i for i, r in enumerate(slots) if r is None][: smaller - len(live)]
                    t_shrink = time.perf_counter()
                    state, hparams, k_train = progs.take((state, hparams, k_train), keep)
                    stats.count(release_seconds=time.perf_counter() - t_shrink)
                    ep, stop, slots = ep[keep], stop[keep], [slots[i] for i in keep]
                    hp_rows, k_init_rows, k_train_rows = ([col[i] for i in keep]
                                                          for col in (hp_rows, k_init_rows, k_train_rows))
        n = len(slots)
        state["stopped"] = jnp.asarray(stop | np.array([r is None for r in slots]))
        state, logs, seconds = progs.epoch(state, hparams, data, k_train, ep)
        stop = np.asarray(logs["stopped"]).copy()
        active = 0
        host = EpochStates(state)
        for i, r in enumerate(slots):
            if r is None or not logs["active"][i]:
                continue
            active += 1
            ep[i] += 1
            r.member.record({k: logs[k][i] for k in names}, bool(logs["stopped"][i]),
                            lambda i=i, r=r, host=host: host.slot(i, None if padding is None else padding.shapes[id(r)]))
            stop[i] = r.member.stop is not None
        if group_pbt is not None:  # PBT across the slots: exploit and explore the trials at their interval
            state, hparams, changed = group_pbt.after_epoch(
                len(activity) + 1, slots, ep, logs, [r is not None and bool(logs["active"][i]) for i, r in enumerate(slots)],
                state, hparams)
            for i, row in changed.items():
                hp_rows[i] = row
        activity.append((active, len(waiting), n))
        stats.count(active, n, epoch_seconds=seconds)
    return activity


def _continue_rows(state: Any, placed: list[tuple[int, Any]], ep: np.ndarray, stop: np.ndarray,
                   padding: _Padding | None = None) -> Any:
    """Trials just placed in slots that continue an interrupted attempt (a sweep's --resume: their
    Member has `resume`): their row of `state` becomes their last checkpoint's state and their epoch
    counter its epoch (Member.start_from), so they train on with the keys of the epochs that follow.
    In a width-merged program the checkpoint (the trial's own shapes) is loaded cropped and padded back."""
    import jax

    from .. import widths
    from ..engine import unstack

    for i, r in placed:
        if r is None or not r.member.resume:
            continue
        i = int(i)
        if padding is None:
            row = r.member.start_from(unstack(state, i), r.k_train)
        else:
            row = widths.pad(r.member.start_from(padding.own(r, unstack(state, i)), r.k_train), padding.wide)
        state = jax.tree_util.tree_map(lambda a, v, i=i: a.at[i].set(v), state, row)
        ep[i], stop[i] = r.member.completed, r.member.stop is not None
    return state
