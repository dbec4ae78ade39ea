"""Slot refilling: a group larger than its program trains in a program of `size` slots, each slot
refilled with the next waiting trial as soon as its trial ends, and the program shrinks for its last
survivors when that pays. Each trial's epochs go through its `Member` (train/driver.py)."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from ..driver import TrainingProgram
from .config import PopulationStats
from .program import vmapped
from .request import FitRequest


def can_refill(requests: list[FitRequest]) -> bool:
    """Slot refilling needs one program for all: equal engines (no width merging) and weights
    initialized by the engine. (Whether to refill at all is PopulationConfig.slot_refill: off, a group
    trains in chunks of its program's size and an ended trial's slot stays frozen until its chunk ends.)"""
    first = requests[0].engine.config
    return all(r.engine.config == first and r.initial is None for r in requests)


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


def train_slots(requests: list[FitRequest], size: int, stats: PopulationStats | None = None,
                host_rows: bool | None = None) -> list[tuple[int, int, int]]:
    """Train more trials than the program has slots: `size` slots, each refilled with the next waiting
    trial as soon as its trial ends (EarlyStopping, a Stopper such as the sweep's pruner, a non-finite
    loss, or its last epoch), so the compiled program keeps training a full population instead of
    carrying dead members. A refilled slot is initialized in place from the new trial's own keys and
    hyperparameters and counts its own epochs, so each trial sees exactly the initialization, data order
    and dropout masks it gets when trained alone. The trials that end at an epoch are finalized together
    and released (their scripts go on) at once; their slots are refilled together in one call. Once
    nobody waits, the program shrinks for its survivors along `ladder(size)` when that pays (see
    COMPILE_SECONDS_GUESS). Returns (active slots, trials waiting, program slots) after each epoch."""
    import time
    from collections import deque

    import jax.numpy as jnp

    from ..engine import stack, unstack

    engine = requests[0].engine
    names = engine.config.log_names
    progs = _SlotPrograms(engine, host_rows)
    stats = stats or PopulationStats()
    data = {k: jnp.asarray(v) for k, v in requests[0].arrays.items()}
    waiting = deque(requests)
    slots: list[FitRequest | None] = [waiting.popleft() for _ in range(min(size, len(waiting)))]
    first = [r for r in slots if r is not None]
    hp_rows = [r.hparams for r in first]  # each slot's hyperparameters and keys (a freed slot keeps its last)
    k_init_rows = [r.k_init for r in first]
    k_train_rows = [r.k_train for r in first]
    hparams, k_train = stack(hp_rows), jnp.stack(k_train_rows)
    state = progs.vinit(hparams, jnp.stack(k_init_rows))
    ep = np.zeros(len(slots), np.int32)  # epochs trained by each slot's current trial
    stop = np.array([r.epochs <= 0 for r in first])
    state = _continue_rows(state, list(enumerate(first)), ep, stop)
    activity: list[tuple[int, int, int]] = []
    while any(r is not None for r in slots):
        t_release = time.perf_counter()
        ended = [i for i, r in enumerate(slots) if r is not None and stop[i]]
        if ended:  # release the trials that ended (one finalize for all), refill their slots (one call)
            finals = progs.released(state, ended)
            take = np.zeros(len(slots), bool)
            for i in ended:
                r = slots[i]
                assert r is not None
                r.state = finals[i]
                r.group_size, r.refilled = size, True
                r.done.set()
                new = slots[i] = waiting.popleft() if waiting else None
                if new is not None:
                    take[i] = True
                    hp_rows[i], k_init_rows[i], k_train_rows[i] = new.hparams, new.k_init, new.k_train
                    ep[i], stop[i] = 0, new.epochs <= 0
            del finals
            if take.any():
                hparams, k_train = stack(hp_rows), jnp.stack(k_train_rows)
                state = progs.refill(state, take, hparams, jnp.stack(k_init_rows))
                state = _continue_rows(state, [(i, slots[i]) for i in np.flatnonzero(take)], ep, stop)
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
        for i, r in enumerate(slots):
            if r is None or not logs["active"][i]:
                continue
            active += 1
            ep[i] += 1
            r.member.record({k: logs[k][i] for k in names}, bool(logs["stopped"][i]),
                            lambda i=i, state=state: unstack(state, i))
            stop[i] = r.member.stop is not None
        activity.append((active, len(waiting), n))
        stats.count(active, n, epoch_seconds=seconds)
    return activity


def _continue_rows(state: Any, placed: list[tuple[int, Any]], ep: np.ndarray, stop: np.ndarray) -> Any:
    """Trials just placed in slots that continue an interrupted attempt (a sweep's --resume: their
    Member has `resume`): their row of `state` becomes their last checkpoint's state and their epoch
    counter its epoch (Member.start_from), so they train on with the keys of the epochs that follow."""
    import jax

    from ..engine import unstack

    for i, r in placed:
        if r is None or not r.member.resume:
            continue
        i = int(i)
        row = r.member.start_from(unstack(state, i), r.k_train)
        state = jax.tree_util.tree_map(lambda a, v, i=i: a.at[i].set(v), state, row)
        ep[i], stop[i] = r.member.completed, r.member.stop is not None
    return state
