"""Population mode: many trials of one script trained together as one vmapped JAX program.

Each trial runs the user's script, unchanged, in its own thread (its own run context, flags and
output.log). When a script calls `gridrun.fit` or `gridrun.fit_loop` (train/loop.py, the user's own
init/step functions), the call is handed to the coordinator and the thread waits. Once every live trial is either waiting in `fit` or finished, the coordinator groups the waiting
calls by their static configuration (model structure, loss, optimizer, callbacks' monitors, batch size,
data) and trains each group as ONE compiled program: `jax.vmap` of the engine's epoch over the stacked
train states and float hyperparameters of the group. Every trial keeps its own seed, dropout masks,
data order, EarlyStopping and ReduceLROnPlateau state; a trial that stops is frozen by a mask and stops
recording; a trial whose loss turns NaN/inf is frozen and ends failed. Then each thread gets its own
trained state back and its script goes on (evaluate, plots, ...) exactly as in a sequential run.

Width merging (gridrun/train/widths.py): gridrun.Sequential trials that differ only in the units of
hidden Dense layers join one group, trained as the widest structure with zero-padding and per-trial unit
masks; each trial gets its state back at its own shapes. The results equal unpadded training up to float
rounding. `merge_widths=False` (or the environment variable GRIDRUN_WIDTH_MERGE=0) turns it off.

Groups larger than the device's memory allows are split into chunks (estimated from parameter and
activation sizes and the free memory), or capped with `max_size`. With several local devices a group's
arrays are sharded along the trial axis (`_trial_sharding`). A trial that finishes without reaching
`fit`/`fit_loop` gets a notice in its output.log and its properties (`trial_ending`).
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GridrunError
from .driver import Member

_member: contextvars.ContextVar[Population | None] = contextvars.ContextVar("gridrun_population", default=None)


def active() -> Population | None:
    """The population the calling trial thread belongs to, or None (sequential mode)."""
    return _member.get()


@dataclass
class FitRequest:
    """One trial's call of `fit`, as handed to the coordinator."""

    engine: Any
    hparams: Any  # pytree of float32 arrays (one trial)
    arrays: dict[str, np.ndarray]  # x, y (and x_val, y_val): host arrays, shared between trials
    k_init: Any
    k_train: Any
    member: Member  # records each epoch and applies the stop rule (train/driver.py)
    initial: Any = None  # the trial's own initial train state (nnx modules), instead of engine.init
    state: Any = None  # the trained (unbatched) state, filled by the coordinator
    group_size: int = 0  # how many trials were trained together with this one
    padded: tuple[Any, Any, Any] | None = None  # width-merged: (padded engine, padded state, masked hparams)
    padded_units: tuple[int, ...] | None = None  # the group's hidden widths when this trial was padded to them
    devices: int = 1  # how many devices the group's arrays were sharded over (along the trial axis)
    refilled: bool = False  # trained in a slot of a refilled program (train_slots)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def epochs(self) -> int:
        return self.member.epochs

    def population_info(self) -> dict[str, Any]:
        """What the trial's properties record under "population": size, and padded_units when padded."""
        info: dict[str, Any] = {"size": self.group_size}
        if self.padded_units is not None:
            info["padded_units"] = list(self.padded_units)
        if self.devices > 1:
            info["devices"] = self.devices
        if self.refilled:
            info["slot_refill"] = True
        return info

    def same_data(self, other: FitRequest) -> bool:
        """Whether both trials train on the same data: the same buffers (memoized data sets, the fast
        path) or, failing that, equal contents."""
        if self.arrays.keys() != other.arrays.keys():
            return False
        return all(_same_array(self.arrays[k], other.arrays[k]) for k in self.arrays)


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.strides == b.strides:
        return True
    return bool(np.array_equal(a, b))


class Population:
    """Runs trial threads and trains their `fit` calls together; see the module docstring."""

    def __init__(self, max_size: int | None = None, merge_widths: bool | None = None) -> None:
        self.max_size = max_size
        if merge_widths is None:
            merge_widths = os.environ.get("GRIDRUN_WIDTH_MERGE", "1").strip().lower() not in ("0", "false", "no", "off")
        self.merge_widths = merge_widths
        self._cond = threading.Condition()
        self._pending: list[FitRequest] = []
        self._live = 0
        self._local = threading.local()  # per trial thread: whether it reached a vectorizable call
        self.groups_trained: list[int] = []  # sizes of the vmapped programs run (for tests and reports)
        # per refilled group, after each epoch: (active slots, trials waiting, slots of the program)
        self.slot_activity: list[list[tuple[int, int, int]]] = []
        self.notices: list[tuple[str | None, str]] = []  # (run dir, notice) of trials that trained nothing together

    # -- trial side -----------------------------------------------------------------------------------
    def submit(self, request: FitRequest) -> Any:
        """Called from a trial thread inside fit: wait for the group's training, return the state."""
        self._local.submitted = True
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.state

    # -- coordinator side -----------------------------------------------------------------------------
    def run(self, jobs: list[Callable[[], Any]]) -> list[Any]:
        """Run each job (a trial: a function that executes one script) in its own thread; train the
        fit calls they make in groups; return the jobs' results in order."""
        results: list[Any] = [None] * len(jobs)

        def target(i: int, job: Callable[[], Any]) -> None:
            _member.set(self)
            try:
                results[i] = job()
            except BaseException as exc:  # noqa: BLE001 - reported as that trial's result
                results[i] = exc
            finally:
                with self._cond:
                    self._live -= 1
                    self._cond.notify_all()

        threads = [threading.Thread(target=target, args=(i, job), name=f"gridrun-trial-{i}", daemon=True)
                   for i, job in enumerate(jobs)]
        # sys.argv is process-wide: each trial sets it to [script] and puts back what it found, so a trial
        # that ends could hand the caller's arguments (`gridrun tuning-run train.py --population`) to a
        # trial still parsing its flags ("unexpected argument"). Trials only ever see [program] here.
        saved_argv = sys.argv
        sys.argv = sys.argv[:1]
        try:
            with self._cond:
                self._live = len(threads)
            for t in threads:
                t.start()
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: len(self._pending) >= self._live)
                    if not self._pending and self._live == 0:
                        break
                    batch, self._pending = self._pending, []
                self._train_all(batch)
            for t in threads:
                t.join()
        finally:
            sys.argv = saved_argv
        return results

    def _train_all(self, requests: list[FitRequest]) -> None:
        import time

        t0 = time.perf_counter()
        try:
            self._train_groups(requests)
        finally:
            with _STATS_LOCK:
                STATS["train_seconds"] += time.perf_counter() - t0

    def _train_groups(self, requests: list[FitRequest]) -> None:
        from . import widths

        key = widths.merge_key if self.merge_widths else (lambda config: config)
        n_dev = population_devices()
        groups: list[tuple[Any, list[FitRequest]]] = []  # (merge key, trials)
        for r in requests:
            k = key(r.engine.config)
            home = next((g for gk, g in groups if gk == k and g[0].same_data(r)), None)
            if home is None:
                groups.append((k, [r]))
            else:
                home.append(r)
        for _, members in groups:
            members.sort(key=lambda r: widths.hidden_units(r.engine.config))  # chunks of similar widths
            size = max(1, self.max_size or auto_size(_padded_request(members)) * n_dev)
            if len(members) > size > 1 and can_refill(members):  # one program of `size` slots, refilled
                try:
                    self.slot_activity.append(train_slots(members, size))
                    self.groups_trained.append(size)
                except BaseException as exc:  # noqa: BLE001 - every trial of the group gets the error
                    for r in members:
                        r.error = r.error or exc
                finally:
                    for r in members:
                        r.done.set()
                continue
            for start in range(0, len(members), size):
                chunk = members[start:start + size]
                try:
                    train_group(chunk)
                    self.groups_trained.append(len(chunk))
                except BaseException as exc:  # noqa: BLE001 - every trial of the chunk gets the error
                    for r in chunk:
                        r.error = exc
                finally:
                    for r in chunk:
                        r.done.set()


# What the coordinators of this process trained (for bench/search.py): seconds inside the programs'
# training loops, trial-epochs trained, and slot-epochs run (a frozen member's slot counts, a trial's not)
STATS: dict[str, float] = {"train_seconds": 0.0, "trial_epochs": 0, "slot_epochs": 0, "epoch_seconds": 0.0,
                           "release_seconds": 0.0}
_STATS_LOCK = threading.Lock()


def _count(trial_epochs: int, slot_epochs: int, epoch_seconds: float = 0.0, release_seconds: float = 0.0) -> None:
    with _STATS_LOCK:
        STATS["trial_epochs"] += trial_epochs
        STATS["slot_epochs"] += slot_epochs
        STATS["epoch_seconds"] += epoch_seconds
        STATS["release_seconds"] += release_seconds


NOTICE = ("gridrun population mode: this trial finished without calling gridrun.fit or gridrun.fit_loop, so "
          "there was nothing to train together with the other trials and it ran on its own, as in a sequential "
          "sweep (--population did not speed it up). Fix: train with gridrun.fit(model, x, y, ...) or hand your "
          "init and step functions to gridrun.fit_loop(...) (docs/own-loop.md).")


def trial_ending() -> str | None:
    """Called in a trial thread just before its output capture closes (gridrun/runner.py): when the
    trial is in a population but never reached a vectorizable call, print the notice into its output.log
    and record it as the run property `population_notice`; return the notice (None otherwise)."""
    pop = active()
    if pop is None or getattr(pop._local, "submitted", False):
        return None
    from .. import rundir

    print(NOTICE, flush=True)
    rundir.write_properties(population_notice=NOTICE)
    folder = rundir.run_dir()
    with pop._cond:
        pop.notices.append((folder, NOTICE))
    return NOTICE


# --------------------------------------------------------------------------------------------------
# Training one group


def population_devices() -> int:
    """How many local devices a population group may be sharded over along its trial axis: all of the
    default backend's, or GRIDRUN_POPULATION_DEVICES (1: no sharding)."""
    import jax

    n = len(jax.local_devices())
    cap = os.environ.get("GRIDRUN_POPULATION_DEVICES")
    if cap:
        try:
            n = min(n, max(1, int(cap)))
        except ValueError:
            raise GridrunError(f"GRIDRUN_POPULATION_DEVICES={cap!r}: use a positive integer") from None
    return n


def _trial_sharding(n_trials: int) -> tuple[Any, Any, int]:
    """(sharding along the trial axis, replicated sharding, device count) for a group of `n_trials`: the
    largest device count <= population_devices() that divides the group, so every device holds as many
    trials; (None, None, 1) on one device."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    avail = min(population_devices(), n_trials)
    d = max(k for k in range(1, avail + 1) if n_trials % k == 0)
    if d <= 1:
        return None, None, 1
    mesh = Mesh(np.array(jax.local_devices()[:d]), ("trials",))
    return NamedSharding(mesh, PartitionSpec("trials")), NamedSharding(mesh, PartitionSpec()), d


def _vmapped(engine: Any) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """The engine's init / epoch / finalize vmapped over trials and jitted, built once per engine."""
    cached = getattr(engine, "_population_fns", None)
    if cached is None:
        import jax

        from .engine import jit

        cached = (
            jit(jax.vmap(engine.init)),
            jit(jax.vmap(engine.epoch, in_axes=(0, 0, None, 0))),
            jit(jax.vmap(engine.finalize)),
        )
        engine._population_fns = cached
    return cached


def _single(engine: Any) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """A group of one needs no vmap: the engine's own compiled functions (the very programs sequential
    fit uses) behind a batch axis of length 1, so a lone trial costs what a sequential one does."""
    import jax

    def add(tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda a: a[None], tree)

    def first(tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda a: a[0], tree)

    def init(hp: Any, k: Any) -> Any:
        return add(engine.jit_init(first(hp), k[0]))

    def epoch(state: Any, hp: Any, data: Any, k: Any) -> Any:
        new, logs = engine.jit_epoch(first(state), first(hp), data, k[0])
        return add(new), add(logs)

    def final(state: Any) -> Any:
        return add(engine.jit_finalize(first(state)))

    return init, epoch, final


def _padded_request(requests: list[FitRequest]) -> FitRequest:
    """A request standing for the group's widest trial (for sizing): the padded engine, or the first request."""
    from . import widths
    from .engine import get_engine

    configs = [r.engine.config for r in requests]
    if all(c == configs[0] for c in configs):
        return requests[0]
    first = requests[0]
    return FitRequest(get_engine(widths.padded_config(configs)), first.hparams, first.arrays, first.k_init,
                      first.k_train, first.member, first.initial)


def train_group(requests: list[FitRequest]) -> None:
    """Train `requests` (width-compatible engines, same data) together; fill each request's `state`.

    With equal engines the states are initialized inside the vmapped program. With different hidden
    widths (see gridrun/train/widths.py) each trial is initialized by its own engine, zero-padded to the
    widest structure, trained with its unit masks, and cropped back to its own shapes at the end."""
    import jax
    import jax.numpy as jnp

    from . import widths
    from .engine import epoch_key, get_engine, stack, unstack

    configs = [r.engine.config for r in requests]
    merged = any(c != configs[0] for c in configs)
    engine = get_engine(widths.padded_config(configs)) if merged else requests[0].engine
    names = engine.config.log_names
    vinit, vepoch, vfinal = _single(engine) if len(requests) == 1 else _vmapped(engine)
    shard, replicated, n_dev = _trial_sharding(len(requests))

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
        # eagerly, not jitted: one compilation per distinct width would cost more than the whole init
        own = [r.engine.init(r.hparams, r.k_init) for r in requests]
        true_shapes = [jax.eval_shape(lambda s=s: s) for s in own]
        state = stack([widths.pad(s, wide) for s in own])
    elif requests[0].initial is not None:  # nnx modules: each trial's own initial weights
        state = stack([r.initial for r in requests])
    else:
        state = vinit(hparams, k_init)
    state = put(state, shard)
    state["stopped"] = put(jnp.asarray(limits <= 0), shard)
    fold = jax.jit(jax.vmap(epoch_key, in_axes=(0, None)))
    for e in range(int(limits.max(initial=0))):
        state, logs = vepoch(state, hparams, data, fold(k_train, e))
        logs = jax.device_get(logs)
        _count(int(np.sum(logs["active"])), len(requests))
        for i, r in enumerate(requests):
            if logs["active"][i]:
                r.member.record({k: logs[k][i] for k in names}, bool(logs["stopped"][i]),
                                lambda i=i, state=state: unstack(state, i))
        stop = np.array([r.member.stop is not None for r in requests])
        if stop.all():
            break
        state["stopped"] = put(jnp.asarray(stop), shard)
    n_dev = len(jax.tree_util.tree_leaves(state)[0].sharding.device_set)  # measured, not intended
    state = vfinal(state)
    padded_units = widths.hidden_units(engine.config) if merged else None
    for i, r in enumerate(requests):
        r.state = jax.tree_util.tree_map(lambda a, i=i: a[i], state)
        if merged:
            r.padded = (engine, r.state, trial_hparams[i])
            r.state = widths.crop(r.state, true_shapes[i])
        r.group_size = len(requests)
        r.padded_units = padded_units
        r.devices = n_dev


def slot_refill_enabled() -> bool:
    """Population programs refill their slots unless GRIDRUN_SLOT_REFILL=0 (then a group trains in
    chunks of its program's size and an ended trial's slot stays frozen until the chunk ends)."""
    return os.environ.get("GRIDRUN_SLOT_REFILL", "1").strip().lower() not in ("0", "false", "no", "off")


def can_refill(requests: list[FitRequest]) -> bool:
    """Slot refilling needs one program for all: equal engines (no width merging), weights initialized
    by the engine, and refilling not turned off (slot_refill_enabled)."""
    if not slot_refill_enabled():
        return False
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


HOST_ROWS: bool | None = None  # cut slot rows with numpy (True), on the device (False), or by backend (None)


class _SlotPrograms:
    """The pieces of a refilled group: the vmapped epoch (with each slot's epoch key folded in, one
    program per size), the finalized states of the trials that ended at an epoch, the refill of any set
    of slots in place (one call: every new trial initialized from its own keys and hyperparameters), and
    the rows kept when a program shrinks. On the CPU backend, where device memory is host memory, rows
    are cut with numpy: no program to compile per size. Elsewhere they are cut by small compiled
    programs, on the device. The sizes of epoch programs compiled in this process, and what a
    compilation cost here, are kept on the engine, so the decision to shrink a program knows what it
    would pay."""

    def __init__(self, engine: Any) -> None:
        import jax
        import jax.numpy as jnp

        from .engine import compiler_options, epoch_key, jit

        self.engine = engine
        self.vinit = _vmapped(engine)[0]
        self.on_host = jax.default_backend() == "cpu" if HOST_ROWS is None else HOST_ROWS
        self.slot_seconds = 0.0  # the last epoch's seconds per slot that compiled nothing
        cache = engine.__dict__.setdefault("_slot_programs", {})
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


def train_slots(requests: list[FitRequest], size: int) -> list[tuple[int, int, int]]:
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

    from .engine import stack, unstack

    engine = requests[0].engine
    names = engine.config.log_names
    progs = _SlotPrograms(engine)
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
            _count(0, 0, release_seconds=time.perf_counter() - t_release)
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
                    _count(0, 0, release_seconds=time.perf_counter() - t_shrink)
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
        _count(active, n, epoch_seconds=seconds)
    return activity


# --------------------------------------------------------------------------------------------------
# Sizing


def device_free_bytes() -> int:
    """Free memory of the default JAX device; for the CPU, the host's available memory."""
    import jax

    dev = jax.devices()[0]
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every backend has stats
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def trial_bytes(request: FitRequest) -> int:
    """Rough device memory one trial needs: weights with optimizer/gradient/best copies, plus activations."""
    import jax

    own = getattr(request.engine, "trial_bytes", None)
    if own is not None:  # gridrun.fit_loop's engine knows its own state and batch sizes
        return int(own(request))
    if request.initial is not None:
        shapes = request.initial
    else:
        shapes = jax.eval_shape(request.engine.init, request.hparams, request.k_init)
    state_bytes = sum(int(np.prod(s.shape)) * getattr(s.dtype, "itemsize", 8) for s in jax.tree_util.tree_leaves(shapes))
    cfg = request.engine.config
    width = int(np.prod(cfg.input_shape)) + state_bytes // 4 // max(1, int(np.prod(cfg.input_shape)))
    batch_rows = max(cfg.batch_size, min(4096, max(cfg.n_val, 1)))
    return 2 * state_bytes + 4 * 4 * batch_rows * width


def auto_size(request: FitRequest, fraction: float = 0.5) -> int:
    """How many trials of this kind fit in `fraction` of the free device memory (env GRIDRUN_POPULATION_SIZE caps it)."""
    cap = os.environ.get("GRIDRUN_POPULATION_SIZE")
    budget = int(device_free_bytes() * fraction)
    size = max(1, budget // max(1, trial_bytes(request)))
    if cap:
        try:
            size = min(size, max(1, int(cap)))
        except ValueError:
            raise GridrunError(f"GRIDRUN_POPULATION_SIZE={cap!r}: use a positive integer") from None
    return int(size)
