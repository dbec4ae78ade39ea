"""`fit_loop`: your own JAX training step at gridrun's speed (see docs/own-loop.md).

    history = gridrun.fit_loop(init, train_step, (x, y), hparams={"learning_rate": FLAGS.lr},
                               eval_step=eval_step, validation_data=(xv, yv), epochs=10, batch_size=64)

You keep your model, loss and step; gridrun takes three pure functions:

    init(key, hp) -> state                                   # any pytree, or flax.nnx objects
    train_step(state, batch, hp, key) -> (state, metrics)    # metrics: dict of scalars (means over the batch)
    eval_step(state, batch, hp) -> metrics                   # optional; averaged over the validation data

`batch` has the structure of `data` (a tuple or dict of arrays with one row per sample). `hp` is the dict
of hyperparameters given as `hparams`: every value is a *traced* array, so trials that differ only in
these numbers share one compiled program, and a population vmaps over them. What the functions close
over (layer widths, the model's structure, a Python constant) is static: it is part of the program.

What gridrun does with them, as `fit` does for its own engine:
- the epoch is one `jax.lax.scan` over batches gathered inside the step from a per-epoch permutation of
  device-resident data (drop-remainder batches), then `eval_step` over the validation data in chunks;
- per-epoch metrics (train means, `val_` means, `lr`) are recorded in the active run, live;
- EarlyStopping and ReduceLROnPlateau run inside the compiled epoch as per-trial state (ReduceLROnPlateau
  scales `hp[lr_key]`), LambdaCallbacks and Stoppers in Python after each epoch;
- compiled programs are cached by what the functions compute (their jaxprs, constants included), not by
  Python identity, so a sweep's next trial, whose script defined fresh function objects, reuses them;
- in population mode (`tuning-run --population`) the trial hands its functions to the coordinator, which
  trains trials with equal programs together exactly as for `fit` (rendezvous, chunking, sharding, NaN
  isolation, per-trial seeds and data order), and the epoch driver (train/driver.py) applies the same
  stop rule to both.

flax.nnx: `init` may return nnx objects (a module, `(model, nnx.Optimizer(...))`); gridrun splits them into
graph + state, and `train_step` receives them merged, updates them in place as in an `nnx.jit` step, and
returns them. An optimizer whose learning rate is a hyperparameter: `optax.inject_hyperparams(optax.adam)
(learning_rate=hp["learning_rate"])` built inside `init` (the rate then lives in the optimizer state), or
`optax.adam(hp["learning_rate"])` built inside both `init` and `train_step`.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import checkpoint as ckpt
from .. import rundir
from ..errors import GridrunError
from . import callbacks as cbs
from . import population, restore, shuffle
from ._jaxcache import enable_persistent_cache
from .driver import Member, train_alone
from .engine import EVAL_CHUNK, cached_program, jit, on_device, program_digest, seed_keys
from .history import History
from .progressbar import EpochProgress

TRACE_COUNTS: collections.Counter[str] = collections.Counter()  # "epoch": compiled epoch programs traced
# default validation rows per eval_step call: a quarter of gridrun's own evaluation chunk, as the user's
# eval_step may hold more per row than gridrun's Dense layers do (eval_batch_size= sets it)
LOOP_EVAL_CHUNK = EVAL_CHUNK // 4


# --------------------------------------------------------------------------------------------------
# Checking and fingerprinting the user's functions


def _describe(tree: Any) -> str:
    def one(leaf: Any) -> str:
        shape = getattr(leaf, "shape", None)
        dtype = getattr(leaf, "dtype", None)
        return f"{dtype}{list(shape)}" if shape is not None else type(leaf).__name__

    text = str(jax.tree_util.tree_map(one, tree))
    return text if len(text) <= 300 else text[:297] + "..."


_TRACER_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                  jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError)


def _user_frame(exc: BaseException) -> str:
    """' (at file:line)' of the innermost frame of the user's code in a traceback, or ''."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if "/site-packages/" not in path and "/gridrun/" not in path and not path.startswith("<frozen"):
            where = f" (at {path.rsplit('/', 1)[-1]}:{tb.tb_lineno})"
        tb = tb.tb_next
    return where


def _trace(what: str, fn: Callable[..., Any], args: tuple[Any, ...], hp_index: int | None, hp_values: Any = None) -> Any:
    """`jax.make_jaxpr(fn, return_shape=True)(*args)` with one-line errors naming `what` went wrong."""
    try:
        return jax.make_jaxpr(fn, return_shape=True)(*args)
    except GridrunError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure while tracing, with the function named
        where = _user_frame(exc)
        if hp_index is not None and hp_values:
            culprit = _shape_deciding_hparam(fn, args, hp_index, hp_values)
            if culprit is not None:
                raise GridrunError(
                    f"{what}: hyperparameter {culprit!r} decides a shape or Python control flow{where}, but "
                    f"hparams are traced; make it static instead: read it outside the function "
                    f"({culprit} = FLAGS.{culprit}) and close over it, and leave it out of hparams") from None
        if isinstance(exc, _TRACER_ERRORS):
            raise GridrunError(
                f"{what} turns a traced value into a Python value{where} ({type(exc).__name__}): inside the "
                "compiled epoch every array is traced, so no float()/int()/.item()/np.asarray() and no Python "
                "if/while on arrays (use jnp.where or jax.lax.cond); return values as metrics instead of "
                "printing them") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise GridrunError(f"{what} failed while gridrun traced it{where}: {type(exc).__name__}: "
                           f"{first[:300]}") from exc


def _shape_deciding_hparam(fn: Callable[..., Any], args: tuple[Any, ...], hp_index: int, hp_values: Any) -> str | None:
    """The hyperparameter that, given as a concrete Python number instead of traced, lets `fn` trace."""
    for name in list(hp_values):
        value = np.asarray(hp_values[name])
        concrete = {name: value.item() if value.ndim == 0 else value}

        def partial(*rest: Any, concrete: dict[str, Any] = concrete, name: str = name) -> Any:
            traced = dict(concrete)
            for k, v in rest[hp_index].items():
                if k != name:
                    traced[k] = v
            full = list(rest)
            full[hp_index] = traced
            return fn(*full)

        try:
            jax.eval_shape(partial, *args)
            return str(name)
        except Exception:  # noqa: BLE001 - still failing: not this one
            continue
    return None


def _is_nnx_tree(tree: Any) -> bool:
    import sys

    if "flax.nnx" not in sys.modules:
        return False
    from flax.nnx.graphlib import is_graph_node

    return any(is_graph_node(leaf) for leaf in jax.tree_util.tree_leaves(tree, is_leaf=is_graph_node))


class _Functions:
    """The user's functions as pure functions of pytrees: nnx objects are split into graph + state
    (the graph definition taken from `init`, static) and merged again for the step."""

    def __init__(self, init: Callable[..., Any], train_step: Callable[..., Any], eval_step: Callable[..., Any] | None):
        self.user_init, self.user_step, self.user_eval = init, train_step, eval_step
        self.graphdef: Any = None  # set when init returns nnx objects

    def init(self, key: Any, hp: Any) -> Any:
        state = self.user_init(key, hp)
        if _is_nnx_tree(state):
            from flax import nnx

            self.graphdef, state = nnx.split(state)
        return state

    def _merge(self, state: Any) -> Any:
        if self.graphdef is None:
            return state
        from flax import nnx

        return nnx.merge(self.graphdef, state, copy=True)

    def step(self, state: Any, batch: Any, hp: Any, key: Any) -> Any:
        out = self.user_step(self._merge(state), batch, hp, key)
        if self.graphdef is not None and isinstance(out, tuple) and len(out) == 2 and _is_nnx_tree(out[0]):
            from flax import nnx

            graphdef, new = nnx.split(out[0])
            if graphdef != self.graphdef:
                raise GridrunError("train_step returned nnx objects whose graph differs from what init returned "
                                   "(modules or variables added or removed): keep the structure fixed")
            return new, out[1]
        return out

    def eval(self, state: Any, batch: Any, hp: Any) -> Any:
        assert self.user_eval is not None
        return self.user_eval(self._merge(state), batch, hp)

    def user_state(self, state: Any) -> Any:
        """The trained state as the user's code knows it (nnx objects merged back)."""
        return self._merge(state)


def _as_metrics(what: str, out: Any, expected: str) -> dict[str, Any]:
    if not isinstance(out, dict) or not out or not all(isinstance(k, str) for k in out):
        raise GridrunError(f"{what} returned {_describe(out)} where gridrun expects {expected}, "
                           "e.g. {'loss': loss, 'accuracy': acc}")
    bad = {k: v for k, v in out.items() if tuple(getattr(v, "shape", ())) != ()}
    if bad:
        raise GridrunError(f"{what} returned metrics that are not scalars: {_describe(bad)}; return means over "
                           "the batch (loss.mean())")
    return out


def _check_step_output(out: Any, state_shape: Any) -> dict[str, Any]:
    if not (isinstance(out, tuple) and len(out) == 2):
        raise GridrunError(f"train_step returned {_describe(out)} where gridrun expects (state, metrics): the "
                           "new state and a dict of scalar metrics")
    new, mets = out
    if not isinstance(mets, dict):
        raise GridrunError(f"train_step returned ({_describe(new)}, {_describe(mets)}) where gridrun expects "
                           "(state, metrics) with metrics a dict of scalars, e.g. {'loss': loss}")
    t_in, t_out = jax.tree_util.tree_structure(state_shape), jax.tree_util.tree_structure(new)
    if t_in != t_out:
        raise GridrunError(f"train_step returned a state whose tree differs from its input's: got "
                           f"{_describe(new)}, expected {_describe(state_shape)}; return the same structure every step")
    flat_in = jax.tree_util.tree_flatten_with_path(state_shape)[0]
    for (path, a), b in zip(flat_in, jax.tree_util.tree_leaves(new), strict=True):
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            raise GridrunError(f"train_step changes the state leaf state{jax.tree_util.keystr(path)} from {a.dtype}{list(a.shape)} to "
                               f"{b.dtype}{list(b.shape)}: every step must keep shapes and dtypes "
                               "(cast with .astype, keep the state's dtype)")
    return _as_metrics("train_step", mets, "(state, metrics) with metrics a dict of scalars")


# --------------------------------------------------------------------------------------------------
# Data and hyperparameters


def _host_arrays(data: Any, what: str) -> tuple[list[np.ndarray], Any]:
    leaves, treedef = jax.tree_util.tree_flatten(data)
    if not leaves:
        raise GridrunError(f"{what} is empty: give a tuple or dict of arrays with one row per sample, e.g. (x, y)")
    arrays = []
    for leaf in leaves:
        arr = np.asarray(leaf)
        if arr.ndim == 0:
            raise GridrunError(f"{what} holds a scalar ({arr!r}): every entry needs one row per sample")
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64:
            arr = arr.astype(np.int32)
        elif arr.dtype == object:
            raise GridrunError(f"{what} holds an object array: give numeric arrays")
        arrays.append(arr)
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise GridrunError(f"{what}: its arrays have different numbers of rows {[len(a) for a in arrays]}: "
                           "give one row per sample in each")
    return arrays, treedef


def _hparams(hparams: Any) -> dict[str, Any]:
    if hparams is None:
        return {}
    if not isinstance(hparams, dict) or not all(isinstance(k, str) for k in hparams):
        raise GridrunError(f"hparams must be a dict of numbers, e.g. {{'learning_rate': FLAGS.lr}}, got "
                           f"{type(hparams).__name__}")
    out = {}
    for k, v in hparams.items():
        if isinstance(v, bool) or (isinstance(v, np.ndarray) and v.dtype == bool):
            out[k] = jnp.asarray(v, jnp.bool_)
        elif isinstance(v, (int, np.integer)):
            out[k] = jnp.asarray(v, jnp.int32)
        else:
            try:
                out[k] = jnp.asarray(v, jnp.float32)
            except (TypeError, ValueError):
                raise GridrunError(f"hparams[{k!r}] = {v!r} is not a number: only numbers are traced; close over "
                                   "strings and objects in your functions instead") from None
    return out


# --------------------------------------------------------------------------------------------------
# The engine


@dataclass(frozen=True)
class LoopConfig:
    """The static part of a fit_loop call: what the functions compute and every shape. Equal configs
    share compiled programs and population groups."""

    program: str  # digest of the jaxprs (constants included) of init, train_step and eval_step
    treedef: Any  # of the data (and validation data)
    n_train: int
    n_val: int
    batch_size: int
    eval_chunk: int
    metric_names: tuple[str, ...]
    val_names: tuple[str, ...]
    lr_key: str | None
    early_stopping: tuple[str, float, bool] | None
    reduce_lr: tuple[str, float] | None
    input_shape: tuple[int, ...] = ()

    @property
    def log_names(self) -> tuple[str, ...]:
        names = self.metric_names + tuple(f"val_{n}" for n in self.val_names)
        return names + (("lr",) if self.lr_key is not None else ())


class LoopEngine:
    """init / epoch / finalize around the user's functions: a `driver.TrainingProgram`, as engine.Engine
    is, so the epoch driver and the population coordinator (train/population/) train it alike."""

    nnx = None  # not an nnx fit model (fit.py checks this on engines)

    def __init__(self, config: LoopConfig, fns: _Functions, n_leaves: int) -> None:
        self.config = config
        self.fns = fns
        self.n_leaves = n_leaves
        self.nb = config.n_train // config.batch_size

    def _split(self, data: dict[str, jax.Array], prefix: str) -> Any:
        return jax.tree_util.tree_unflatten(self.config.treedef, [data[f"{prefix}{i}"] for i in range(self.n_leaves)])

    def init(self, hparams: Any, rng: jax.Array) -> dict[str, Any]:
        c = self.config
        user = self.fns.init(rng, hparams["user"])
        state: dict[str, Any] = {"user": user, "epoch": jnp.array(0, jnp.int32), "stopped": jnp.array(False)}
        if c.lr_key is not None:
            state["lr"] = jnp.asarray(hparams["user"][c.lr_key], jnp.float32)
        if c.early_stopping is not None:
            state["es"] = cbs.early_stopping_init()
            if c.early_stopping[2]:
                state["best"] = user
        if c.reduce_lr is not None:
            state["rlr"] = cbs.reduce_lr_init()
        return state

    def _hp_now(self, state: dict[str, Any], hparams: Any) -> Any:
        hp = dict(hparams["user"])
        if self.config.lr_key is not None:  # ReduceLROnPlateau's current rate
            hp[self.config.lr_key] = state["lr"].astype(hp[self.config.lr_key].dtype)
        return hp

    def evaluate(self, user: Any, hp: Any, data: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """eval_step over the validation data: full chunks in a scan, the remainder in one more call;
        the mean of each metric weighted by rows."""
        c = self.config
        val = self._split(data, "v")
        chunk, n = c.eval_chunk, c.n_val
        q, r = divmod(n, chunk)
        total: dict[str, jax.Array] = {}
        if q:
            def body(acc: Any, i: jax.Array) -> tuple[Any, None]:
                batch = jax.tree_util.tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, i * chunk, chunk), val)
                mets = self.fns.eval(user, batch, hp)
                return {k: acc[k] + jnp.asarray(mets[k], jnp.float32) * chunk for k in c.val_names}, None

            zero = {k: jnp.zeros((), jnp.float32) for k in c.val_names}
            total, _ = jax.lax.scan(body, zero, jnp.arange(q))
        if r:
            batch = jax.tree_util.tree_map(lambda a: a[q * chunk:], val)
            mets = self.fns.eval(user, batch, hp)
            total = {k: total.get(k, 0.0) + jnp.asarray(mets[k], jnp.float32) * r for k in c.val_names}
        return {k: v / n for k, v in total.items()}

    def epoch(self, state: dict[str, Any], hparams: Any, data: dict[str, jax.Array], rng: jax.Array) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        TRACE_COUNTS["epoch"] += 1
        c = self.config
        bs, nb = c.batch_size, self.nb
        k_perm, k_steps = jax.random.split(rng)
        perm = shuffle.permutation(k_perm, c.n_train)[: nb * bs].reshape(nb, bs)
        keys = jax.random.split(k_steps, nb)
        train = self._split(data, "t")
        hp = self._hp_now(state, hparams)

        def step(user: Any, inp: Any) -> tuple[Any, Any]:
            idx, key = inp
            batch = jax.tree_util.tree_map(lambda a: a[idx], train)  # gathered in the step: no copies
            new, mets = self.fns.step(user, batch, hp, key)
            return new, {k: jnp.asarray(mets[k], jnp.float32) for k in c.metric_names}

        user, per_batch = jax.lax.scan(step, state["user"], (perm, keys))
        logs: dict[str, jax.Array] = {k: v.mean(0) for k, v in per_batch.items()}
        if c.n_val:
            logs.update({f"val_{k}": v for k, v in self.evaluate(user, hp, data).items()})
        if c.lr_key is not None:
            logs["lr"] = state["lr"]
        new = dict(state, user=user, epoch=state["epoch"] + 1)
        if c.early_stopping is not None:
            monitor, sign, restore = c.early_stopping
            es = cbs.early_stopping_update(state["es"], logs[monitor], state["epoch"], hparams["es"], sign)
            improved = es.pop("improved")
            new["es"], new["stopped"] = es, es["stopped"]
            if restore:
                new["best"] = jax.tree_util.tree_map(lambda a, b: jnp.where(improved, a, b), user, state["best"])
        if c.reduce_lr is not None:
            monitor, sign = c.reduce_lr
            new["rlr"], new["lr"] = cbs.reduce_lr_update(state["rlr"], logs[monitor], state["lr"], hparams["rlr"], sign)
        frozen = state["stopped"]  # a stopped trial keeps its state (in a population: the others go on)
        new = jax.tree_util.tree_map(lambda old, nw: jnp.where(frozen, old, nw), state, new)
        logs["active"] = jnp.logical_not(frozen)
        logs["stopped"] = new["stopped"]
        return new, logs

    def finalize(self, state: dict[str, Any]) -> dict[str, Any]:
        es = self.config.early_stopping
        if es is None or not es[2]:
            return state
        has_best = state["es"]["best_epoch"] >= 0
        return dict(state, user=jax.tree_util.tree_map(lambda b, cur: jnp.where(has_best, b, cur), state["best"], state["user"]))

    def trial_bytes(self, request: Any) -> int:
        """Device memory one trial needs (for population chunking): state with gradient/best copies and a
        generous activation allowance per batch row."""
        shapes = jax.eval_shape(self.init, request.hparams, request.k_init)
        state = sum(int(np.prod(s.shape)) * getattr(s.dtype, "itemsize", 8) for s in jax.tree_util.tree_leaves(shapes))
        row = sum(int(np.prod(a.shape[1:])) * a.dtype.itemsize for k, a in request.arrays.items() if k.startswith("t"))
        return 3 * state + 64 * row * max(self.config.batch_size, self.config.eval_chunk)

    @cached_property
    def jit_init(self) -> Callable[..., Any]:
        return jit(self.init)

    @cached_property
    def jit_epoch(self) -> Callable[..., Any]:
        return jit(self.epoch)

    @cached_property
    def jit_finalize(self) -> Callable[..., Any]:
        return jit(self.finalize)


# --------------------------------------------------------------------------------------------------
# The front end: fit_loop's steps


@dataclass(frozen=True)
class _Inputs:
    """The checked data of a fit_loop call: host arrays of the training (and validation) data, their
    tree structure, and the batch and validation-chunk sizes."""

    train: list[np.ndarray]
    val: list[np.ndarray]
    treedef: Any
    batch_size: int
    eval_chunk: int

    @property
    def n_train(self) -> int:
        return len(self.train[0])

    @property
    def n_val(self) -> int:
        return len(self.val[0]) if self.val else 0

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays as the engine names them: t0, t1, ... (training) and v0, v1, ... (validation)."""
        return {f"t{i}": a for i, a in enumerate(self.train)} | {f"v{i}": a for i, a in enumerate(self.val)}

    def batch(self, rows: int, arrays: list[np.ndarray]) -> Any:
        """Abstract values of a batch of `rows` rows of `arrays`, in the data's structure."""
        return jax.tree_util.tree_unflatten(self.treedef, [jax.ShapeDtypeStruct((rows, *a.shape[1:]), a.dtype)
                                                           for a in arrays])


def _check_functions(init: Any, train_step: Any, eval_step: Any) -> None:
    for name, fn in (("init", init), ("train_step", train_step), ("eval_step", eval_step)):
        if fn is not None and not callable(fn):
            raise GridrunError(f"fit_loop's {name} must be a function, got {type(fn).__name__}")


def _learning_rate_key(hp_user: dict[str, Any], lr_key: str | None) -> str | None:
    """The hparams entry that is the learning rate (ReduceLROnPlateau scales it, `lr` is logged)."""
    if lr_key is None:
        lr_key = next((k for k in ("learning_rate", "lr") if k in hp_user), None)
    elif lr_key not in hp_user:
        raise GridrunError(f"lr_key={lr_key!r} is not in hparams {sorted(hp_user)}: name the learning-rate entry")
    if lr_key is not None and (hp_user[lr_key].ndim or not jnp.issubdtype(hp_user[lr_key].dtype, jnp.floating)):
        raise GridrunError(f"hparams[{lr_key!r}] must be a float scalar (the learning rate)")
    return lr_key


def _inputs(data: Any, validation_data: Any, eval_step: Any, epochs: int, batch_size: int,
            eval_batch_size: int | None) -> _Inputs:
    """Check the data, validation data and sizes; one-line errors naming what is wrong."""
    train_arrays, treedef = _host_arrays(data, "data")
    n_train = len(train_arrays[0])
    if int(epochs) < 0:
        raise GridrunError(f"epochs={epochs!r}: use a non-negative integer")
    if int(batch_size) < 1:
        raise GridrunError(f"batch_size={batch_size!r}: use a positive integer such as 32 or 128")
    bs = min(int(batch_size), n_train)
    if n_train < 1:
        raise GridrunError("data has 0 rows: give at least one training sample")
    val_arrays: list[np.ndarray] = []
    if validation_data is not None:
        if eval_step is None:
            raise GridrunError("validation_data needs an eval_step(state, batch, hp) -> metrics to evaluate it with")
        val_arrays, vtree = _host_arrays(validation_data, "validation_data")
        if vtree != treedef:
            raise GridrunError(f"validation_data has the structure {vtree}, but data has {treedef}: give the same")
        for i, (a, b) in enumerate(zip(train_arrays, val_arrays, strict=True)):
            if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
                raise GridrunError(f"validation_data entry {i} is {b.dtype}{list(b.shape[1:])} per row, but data's is "
                                   f"{a.dtype}{list(a.shape[1:])}: give the same row shape and dtype")
    n_val = len(val_arrays[0]) if val_arrays else 0
    chunk = min(n_val, int(eval_batch_size or max(bs, LOOP_EVAL_CHUNK))) if n_val else 0
    return _Inputs(train_arrays, val_arrays, treedef, bs, chunk)


def _callbacks(callbacks: Any, lr_key: str | None) -> tuple[Any, Any, list[Any]]:
    es, rlr, lambdas = cbs.split_callbacks(callbacks)
    if rlr is not None and lr_key is None:
        raise GridrunError("ReduceLROnPlateau scales a learning rate in hparams: add hparams={'learning_rate': ...} "
                           "(or name it with lr_key=...) and use hp['learning_rate'] in train_step")
    return es, rlr, lambdas


def _configure(fns: _Functions, inputs: _Inputs, hp_user: dict[str, Any], lr_key: str | None, es: Any, rlr: Any,
               k_init: jax.Array) -> tuple[LoopConfig, dict[str, Any]]:
    """Trace the user's functions on abstract values (checking what they return) into the static
    LoopConfig, whose `program` digest says what they compute; and the traced hparams of the engine."""
    key_aval = jax.ShapeDtypeStruct(k_init.shape, k_init.dtype)
    hp_aval = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in hp_user.items()}
    init_jaxpr, state_shape = _trace("init(key, hp)", fns.init, (key_aval, hp_aval), 1, hp_user)
    step_jaxpr, step_out = _trace("train_step(state, batch, hp, key)", fns.step,
                                  (state_shape, inputs.batch(inputs.batch_size, inputs.train), hp_aval, key_aval), 2, hp_user)
    metric_names = tuple(_check_step_output(step_out, state_shape))
    parts = [program_digest(init_jaxpr), program_digest(step_jaxpr)]
    val_names: tuple[str, ...] = ()
    if inputs.n_val:
        for rows in sorted({inputs.eval_chunk, inputs.n_val % inputs.eval_chunk} - {0}):
            eval_jaxpr, eval_out = _trace("eval_step(state, batch, hp)", fns.eval,
                                          (state_shape, inputs.batch(rows, inputs.val), hp_aval), 2, hp_user)
            val_names = tuple(_as_metrics("eval_step", eval_out, "a dict of scalar metrics"))
            parts.append(program_digest(eval_jaxpr))
    logs = [*metric_names, *(f"val_{k}" for k in val_names)]
    for cb in (es, rlr):
        if cb is not None and cb.monitor not in logs:
            hint = " (pass validation_data and an eval_step)" if cb.monitor.startswith("val_") and not inputs.n_val else ""
            raise GridrunError(f"{type(cb).__name__}(monitor={cb.monitor!r}): no such metric{hint}; available: {logs}")
    hp: dict[str, Any] = {"user": hp_user}
    if es is not None:
        hp["es"] = {k: jnp.float32(v) for k, v in es.hparams().items()}
    if rlr is not None:
        hp["rlr"] = {k: jnp.float32(v) for k, v in rlr.hparams().items()}
    config = LoopConfig(
        program=hashlib.sha1(repr(parts).encode()).hexdigest(),
        treedef=inputs.treedef,
        n_train=inputs.n_train,
        n_val=inputs.n_val,
        batch_size=inputs.batch_size,
        eval_chunk=inputs.eval_chunk,
        metric_names=metric_names,
        val_names=val_names,
        lr_key=lr_key,
        early_stopping=None if es is None else (es.monitor, es.sign, bool(es.restore_best_weights)),
        reduce_lr=None if rlr is None else (rlr.monitor, rlr.sign),
        input_shape=tuple(int(d) for d in inputs.train[0].shape[1:]),
    )
    return config, hp


def _describe_call(inputs: _Inputs, epochs: int, init: Any, train_step: Any, eval_step: Any,
                   hp_user: dict[str, Any], lr_key: str | None) -> dict[str, Any]:
    """The run properties of a fit_loop call (History.params)."""
    return {
        "samples": inputs.n_train,
        "validation_samples": inputs.n_val,
        "batch_size": inputs.batch_size,
        "epochs": int(epochs),
        "epochs_completed": 0,
        "loop": {"init": getattr(init, "__name__", "init"), "train_step": getattr(train_step, "__name__", "train_step"),
                 "eval_step": None if eval_step is None else getattr(eval_step, "__name__", "eval_step"),
                 "hparams": sorted(hp_user)},
        "learning_rate": None if lr_key is None else float(hp_user[lr_key]),
    }


def _n_params(eng: LoopEngine, hp: Any, k_init: jax.Array, fns: _Functions) -> int | None:
    """The parameter count of the state `init` builds (from its shapes, nothing computed): its float
    leaves under "params" (a dict, or flax's TrainState) or its nnx.Param variables; None when the
    parameters cannot be told apart from the optimizer's state (a tuple): the script logs them then."""
    from .summary import count_params, user_params

    try:
        shapes = jax.eval_shape(eng.init, hp, k_init)["user"]
    except Exception:  # noqa: BLE001 - counting must never stop training
        return None
    found = user_params(shapes, nnx_split=fns.graphdef is not None)
    return None if found is None else count_params(found)


def _train(eng: LoopEngine, hp: Any, inputs: _Inputs, k_init: jax.Array, k_train: jax.Array, member: Member,
           ctx: Any, verbose: int) -> Any:
    """The trained, finalized engine state: alone through the epoch driver, or with the trial's
    population group (the coordinator drives its epochs through the same Member)."""
    pop = population.active()
    if pop is None:
        device = {k: on_device(v) for k, v in inputs.arrays().items()}  # (load_prepared's views: once)
        return train_alone(eng, eng.jit_init(hp, k_init), hp, device, k_train, member)
    request = population.FitRequest(eng, hp, inputs.arrays(), k_init, k_train, member)
    state = pop.submit(request)
    if ctx is not None:
        ctx.write_properties(population=request.population_info())
    if verbose:
        print(f"Trained in a population of {request.group_size}: {member.completed} epochs", flush=True)
    return state


def _finish(history: History, state: Any, es: Any, ctx: Any, lambdas: list[Any], fns: _Functions) -> None:
    """Record the end of training (epochs completed, EarlyStopping's best epoch), hand the trained state
    to the History as the user's code knows it, and run the callbacks' on_train_end."""
    params = history.params
    params["epochs_completed"] = history.epochs_completed
    best = {}
    if es is not None:
        index = int(jax.device_get(state["es"]["best_epoch"]))
        values = history.history.get(es.monitor, [])
        if 0 <= index < len(values):
            best = {"best_epoch": index + 1, f"best_{es.monitor}": values[index]}
            params.update(best)
    if ctx is not None:
        ctx.write_properties(epochs_completed=history.epochs_completed, **best)
    history.state = fns.user_state(state["user"]) if fns.graphdef is not None else state["user"]
    final = {k: v[-1] for k, v in history.history.items()}
    for cb in lambdas:
        if getattr(cb, "on_train_end", None) is not None:
            cb.on_train_end(final)


def fit_loop(
    init: Callable[..., Any],
    train_step: Callable[..., Any],
    data: Any,
    *,
    hparams: dict[str, Any] | None = None,
    eval_step: Callable[..., Any] | None = None,
    validation_data: Any = None,
    epochs: int = 1,
    batch_size: int = 32,
    eval_batch_size: int | None = None,
    callbacks: Any = (),
    lr_key: str | None = None,
    seed: int = 0,
    verbose: int = 0,
    checkpoint: Any = "both",
) -> History:
    """Train with your own pure functions, compiled and recorded as `fit` does; see the module docstring
    and docs/own-loop.md. Returns a History whose `.state` is the trained state (nnx objects merged).
    `checkpoint` as for `fit`: what a recorded run keeps of its training state."""
    _check_functions(init, train_step, eval_step)
    hp_user = _hparams(hparams)
    lr_key = _learning_rate_key(hp_user, lr_key)
    inputs = _inputs(data, validation_data, eval_step, epochs, batch_size, eval_batch_size)
    es, rlr, lambdas = _callbacks(callbacks, lr_key)

    enable_persistent_cache()
    k_init, k_train = seed_keys(seed)
    fns = _Functions(init, train_step, eval_step)
    config, hp = _configure(fns, inputs, hp_user, lr_key, es, rlr, k_init)
    # the first trial's functions stand for every trial whose functions compute the same
    eng = cached_program(config, lambda: LoopEngine(config, fns, len(inputs.train)))

    params = _describe_call(inputs, epochs, init, train_step, eval_step, hp_user, lr_key)
    history = History(params, eng, None, hp)
    if restore.restoring():  # gridrun.load_model reruns the script: restore the saved state, train nothing
        restore.restore(history, {"state": jax.eval_shape(eng.init, hp, k_init), "rng": k_train},
                        lambda tree: setattr(history, "state", fns.user_state(tree["state"]["user"])) or history.state)
    ctx = rundir.current()
    if ctx is not None:  # written with the run's next properties (its first checkpoint's, or its end)
        ctx.note_properties(**params)
    alone = population.active() is None
    progress = EpochProgress(int(epochs)) if verbose and alone else None
    saver = ckpt.for_run(ctx, checkpoint)  # alone or in a population: the trial's own state, its own run dir
    observers = [ckpt.CheckpointObserver(saver, k_train)] if saver is not None else []
    member = Member.for_trial(int(epochs), config.log_names, history, ctx, lambdas, progress, observers)
    n_params = _n_params(eng, hp, k_init, fns)
    if n_params is not None:  # the property and a per-epoch metric, as gridrun.fit records it
        params["n_params"] = member.constants["n_params"] = n_params
        if ctx is not None:
            ctx.note_properties(n_params=n_params)
    state = _train(eng, hp, inputs, k_init, k_train, member, ctx, verbose)
    _finish(history, state, es, ctx, lambdas, fns)
    return history
