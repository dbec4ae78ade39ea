"""The training engine: pure, jit- and vmap-friendly functions built from a static configuration.

    config, hparams = prepare(model, loss=..., optimizer=..., metrics=..., callbacks=..., batch_size=...,
                              x_shape=x.shape, y=y, n_val=len(xv))
    eng = get_engine(config)                       # cached per static configuration
    state = eng.init(hparams, init_key)            # train-state pytree
    state, logs = eng.epoch(state, hparams, data, epoch_key)   # one epoch: scan over batches + validation
    state = eng.finalize(state)                    # restore_best_weights
    eng.evaluate(state, hparams, x, y); eng.predict(state, hparams, x)

`config` is hashable and holds everything that changes shapes or the program (layer structure, loss,
metrics, optimizer name, callback monitors/modes, batch size, data sizes). `hparams` is a pytree of
float32 scalars/vectors (learning rate and other optimizer floats, dropout rates, L1/L2 strengths,
callback settings): traced, so new values never recompile, and `jax.vmap(eng.epoch, in_axes=(0, 0,
None, 0))` trains a population of stacked states/hparams. `data` = {"x", "y", "x_val", "y_val"}
device arrays (x_val/y_val absent when n_val == 0). Each batch is gathered inside the step from a
per-epoch permutation, so the data is never copied. A stopped trial (EarlyStopping) is frozen by a
mask: its state no longer changes; `logs["active"]` tells whether the epoch counted.

Width merging (gridrun/train/widths.py): a population may train Sequential trials of different hidden
widths with the engine of the widest structure; their hparams then carry `hparams["model"]["unit_masks"]`
and their states are zero-padded.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import inspect
import math
import re
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import GridrunError
from . import callbacks as cbs
from . import shuffle
from .layers import ACTIVATIONS, Sequential, SequentialNet, kernel_penalty, output_activation, split_model
from .losses import per_example_loss, per_example_metric, resolve_loss, resolve_metrics
from .optimizers import DEFAULTS, OptimizerSpec, resolve_optimizer

EVAL_CHUNK = 4096  # rows per step when evaluating / predicting (fit_loop's default: a quarter, train/loop.py)
SCAN_UNROLL = 1  # training steps per loop iteration of the compiled epoch
TRACE_COUNTS: collections.Counter[str] = collections.Counter()  # incremented when a function is traced


class ByIdentity:
    """Hashable-by-identity wrapper (user linen modules, optax transforms) for the compile-cache key."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByIdentity) and other.obj is self.obj


@dataclass(frozen=True)
class NnxModel:
    """A flax.nnx module as the static part of a configuration: its graph definitions in training and in
    inference mode (`model.train()` / `model.eval()` flip static attributes such as Dropout's
    `deterministic`). Two modules share an engine when their forward passes compute the same (`program`:
    a digest of their jaxprs in both modes, constants included), so trials whose scripts each define
    their own module class and build their own module still train together and compile once; the
    weights are each trial's own initial state."""

    train: Any = field(compare=False)  # nnx GraphDef (of the first module seen with this program)
    eval: Any = field(compare=False)
    name: str = ""
    program: str = ""


def is_nnx(model: Any) -> bool:
    """Whether `model` is a flax.nnx module (without importing nnx for scripts that never use it)."""
    import sys

    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(model, nnx.Module)


def nnx_parts(model: Any, input_shape: tuple[int, ...] | None = None) -> tuple[NnxModel, Any, Any]:
    """(static NnxModel, params, other state) of an nnx module; the user's module is left as it is.
    With `input_shape` the NnxModel carries the digest of its forward passes (see NnxModel)."""
    from flax import nnx

    graphdef, state = nnx.split(model)
    twin = nnx.merge(graphdef, state)  # a copy to flip train/eval on
    twin.train()
    gd_train, params, extra = nnx.split(twin, nnx.Param, ...)
    twin.eval()
    gd_eval = nnx.split(twin, nnx.Param, ...)[0]
    program = ""
    if input_shape is not None:
        x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)

        def forward(gd: Any, p: Any, e: Any, x: Any) -> Any:
            m = nnx.merge(gd, p, e, copy=True)
            return m(x), nnx.split(m, nnx.Param, ...)[2]

        try:
            parts = [program_digest(jax.make_jaxpr(functools.partial(forward, gd))(params, extra, x))
                     for gd in (gd_train, gd_eval)]
        except Exception as exc:  # noqa: BLE001 - reported with the module named
            raise GridrunError(f"calling the nnx module {type(model).__name__} on a batch of shape {(2, *input_shape)} "
                               f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        program = hashlib.sha1(repr(parts).encode()).hexdigest()
    return NnxModel(gd_train, gd_eval, type(model).__name__, program), params, extra


_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def program_digest(closed: Any) -> tuple[str, tuple[Any, ...]]:
    """What a traced function computes: its jaxpr text (literals included, object addresses removed) and
    digests of its constants. Equal digests: the same computation, whichever Python objects traced it."""
    text = _ADDRESS.sub("", str(closed.jaxpr))
    consts = []
    for c in closed.consts:
        dtype = getattr(c, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            c = jax.random.key_data(c)
        arr = np.ascontiguousarray(np.asarray(jax.device_get(c)))
        consts.append((arr.shape, str(arr.dtype), hashlib.sha1(arr.tobytes()).hexdigest()))
    return text, tuple(consts)


@dataclass(frozen=True)
class EngineConfig:
    model: tuple[tuple[Any, ...], ...] | ByIdentity | NnxModel  # Sequential structure, linen module or nnx graph
    loss: Any  # loss name or callable
    optimizer: tuple[str, tuple[tuple[str, Any], ...]] | ByIdentity  # (name, static options) or optax
    metrics: tuple[str, ...]
    early_stopping: tuple[str, float, bool] | None  # (monitor, sign, restore_best_weights)
    reduce_lr: tuple[str, float] | None  # (monitor, sign)
    batch_size: int
    n_train: int
    n_val: int
    input_shape: tuple[int, ...]
    output_activation: str = "linear"

    @property
    def log_names(self) -> tuple[str, ...]:
        names = ("loss", *self.metrics)
        if self.n_val:
            names += tuple(f"val_{n}" for n in names)
        if isinstance(self.optimizer, tuple):
            names += ("lr",)
        return names


def _f32(tree: Any) -> Any:
    """The hyperparameters as float32 arrays on the device: converted on the host, put in one transfer
    (one eager jnp.asarray a leaf cost twice as much); traced or device values stay where they are."""
    leaves = jax.tree_util.tree_leaves(tree)
    if any(isinstance(v, jax.Array) for v in leaves):
        return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float32), tree)
    return jax.device_put(jax.tree_util.tree_map(lambda v: np.asarray(v, np.float32), tree))


def prepare(
    model: Any,
    *,
    loss: Any,
    optimizer: Any,
    metrics: Any,
    callbacks: Any,
    batch_size: int,
    x_shape: tuple[int, ...],
    n_val: int,
) -> tuple[EngineConfig, dict[str, Any]]:
    """Split everything given to fit into (static config, traced float hparams)."""
    n_train = int(x_shape[0])
    if n_train < 1:
        raise GridrunError("no training samples: x has 0 rows (check validation_split)")
    bs = int(batch_size)
    if bs < 1:
        raise GridrunError(f"batch_size={batch_size!r}: use a positive integer such as 32 or 128")
    hp: dict[str, Any] = {}
    if isinstance(model, Sequential):
        structure, model_hp = split_model(model)
        model_key: Any = structure
        out_act = output_activation(structure)
    elif isinstance(model, nn.Module):
        model_key, model_hp, out_act = ByIdentity(model), {"dropout": [], "l1": [], "l2": []}, "linear"
    elif is_nnx(model):
        model_key, model_hp, out_act = nnx_parts(model, tuple(int(d) for d in x_shape[1:]))[0], {"dropout": [], "l1": [], "l2": []}, "linear"
    else:
        raise GridrunError(
            f"model must be a gridrun.Sequential, a flax.linen.Module or a flax.nnx.Module, got {type(model).__name__}"
        )
    hp["model"] = {k: np.asarray(v, np.float32).reshape(-1) for k, v in model_hp.items()}
    opt = resolve_optimizer(optimizer)
    if isinstance(opt, OptimizerSpec):
        opt_key: Any = (opt.name, opt.static)
        hp["opt"] = dict(opt.hparams)
    else:
        opt_key = ByIdentity(opt)
        hp["opt"] = {"learning_rate": 1.0}  # a multiplier of the transform's updates (ReduceLROnPlateau)
    metric_names = resolve_metrics(metrics)
    es, rlr, _ = cbs.split_callbacks(callbacks)
    logs = ["loss", *metric_names]
    if n_val:
        logs += [f"val_{n}" for n in logs]
    es_key = rlr_key = None
    for cb in (es, rlr):
        if cb is not None and cb.monitor not in logs:
            hint = " (pass validation_split or validation_data, or monitor='loss')" if cb.monitor.startswith("val_") else ""
            raise GridrunError(f"{type(cb).__name__}(monitor={cb.monitor!r}): no such metric{hint}; available: {logs}")
    if es is not None:
        es_key = (es.monitor, es.sign, bool(es.restore_best_weights))
        hp["es"] = es.hparams()
    if rlr is not None:
        rlr_key = (rlr.monitor, rlr.sign)
        hp["rlr"] = rlr.hparams()
    config = EngineConfig(
        model=model_key,
        loss=resolve_loss(loss),
        optimizer=opt_key,
        metrics=metric_names,
        early_stopping=es_key,
        reduce_lr=rlr_key,
        batch_size=min(bs, n_train),
        n_train=n_train,
        n_val=int(n_val),
        input_shape=tuple(int(d) for d in x_shape[1:]),
        output_activation=out_act,
    )
    return config, _f32(hp)


# every training program of this process by its static configuration (an EngineConfig for fit's
# Engine, a LoopConfig for fit_loop's LoopEngine), so its compiled functions are reused
_ENGINES: dict[Hashable, Any] = {}
_ENGINES_LOCK = threading.Lock()
P = TypeVar("P")


def cached_program(config: Hashable, build: Callable[[], P]) -> P:
    """The program of a static configuration, built by `build` the first time it is asked for in this
    process (threads of a population ask at once: one builds it)."""
    with _ENGINES_LOCK:
        eng = _ENGINES.get(config)
        if eng is None:
            eng = _ENGINES[config] = build()
        return eng


def get_engine(config: EngineConfig) -> Engine:
    """The engine of a configuration, built once per process (its jitted functions are reused)."""
    return cached_program(config, lambda: Engine(config))


def stack(trees: list[Any]) -> Any:
    """Stack same-structured pytrees (hparams, states, keys of trials) along a new leading axis."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, i: int) -> Any:
    """Trial `i` of a stacked pytree."""
    return jax.tree_util.tree_map(lambda leaf: leaf[i], tree)


def _call_kwargs(module: nn.Module, train: bool) -> dict[str, Any]:
    params = inspect.signature(module.__call__).parameters
    if "train" in params:
        return {"train": train}
    if "training" in params:
        return {"training": train}
    if "deterministic" in params:
        return {"deterministic": not train}
    return {}


class Engine:
    """Pure functions of one static configuration (see the module docstring)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        c = config
        self.nnx: NnxModel | None = c.model if isinstance(c.model, NnxModel) else None
        if self.nnx is not None:
            self.module = None
            self.structure = None
        elif isinstance(c.model, ByIdentity):
            self.module: nn.Module = c.model.obj
            self.structure = None
        else:
            self.module = SequentialNet(c.model)
            self.structure = c.model
        if isinstance(c.optimizer, ByIdentity):
            self.tx = c.optimizer.obj
            self.injected = False
        else:
            self.tx = None  # built by _tx from the name and static options
            self.injected = True
        self.nb = c.n_train // c.batch_size

    # -- model --------------------------------------------------------------------------------------
    def _apply(self, params: Any, extra: Any, x: jax.Array, hp: Any, train: bool, key: jax.Array | None) -> tuple[jax.Array, Any]:
        if self.nnx is not None:
            from flax import nnx

            model = nnx.merge(self.nnx.train if train else self.nnx.eval, params, extra, copy=True)
            z = model(x)
            return z, (nnx.split(model, nnx.Param, ...)[2] if train else extra)
        variables = {"params": params, **extra}
        mutable = list(extra) if (train and extra) else False
        if self.structure is not None:
            # unit_masks: only in the hparams of a width-merged population (gridrun/train/widths.py)
            out = self.module.apply(variables, x, hp["model"]["dropout"], train, key, hp["model"].get("unit_masks"),
                                    mutable=mutable)
        else:
            rngs = {"dropout": key} if key is not None else None
            out = self.module.apply(variables, x, rngs=rngs, mutable=mutable, **_call_kwargs(self.module, train))
        if mutable:
            z, new_extra = out
            return z, dict(new_extra)
        return out, extra

    def _penalty(self, params: Any, hp: Any) -> jax.Array:
        if self.structure is None:
            return jnp.zeros((), jnp.float32)
        return kernel_penalty(params, self.structure, hp["model"]["l1"], hp["model"]["l2"])

    # -- optimizer ------------------------------------------------------------------------------------
    @cached_property
    def _tx(self) -> optax.GradientTransformation:
        if not self.injected:
            return self.tx
        name, static = self.config.optimizer
        hp = dict(DEFAULTS[name])  # placeholders: the real values come from hparams
        if name == "sgd" and dict(static).get("momentum"):
            hp["momentum_value"] = 0.0
        return OptimizerSpec(name, hp, static).build()

    def _with_hparams(self, opt_state: Any, hp_opt: dict[str, Any], lr: jax.Array) -> Any:
        if not self.injected:
            return opt_state
        values = dict(opt_state.hyperparams)
        for k, v in hp_opt.items():
            if k in values:
                values[k] = jnp.asarray(v, values[k].dtype)
        values["learning_rate"] = jnp.asarray(lr, values["learning_rate"].dtype)
        return opt_state._replace(hyperparams=values)

    # -- pure functions --------------------------------------------------------------------------------
    def init(self, hparams: Any, rng: jax.Array) -> dict[str, Any]:
        """A fresh train state (parameters from `rng`, Glorot-uniform kernels as Keras)."""
        c = self.config
        if self.nnx is not None:
            raise GridrunError("an nnx module brings its own initial weights: use Engine.state_from(params, extra, hparams)")
        x0 = jnp.zeros((1, *c.input_shape), jnp.float32)
        if self.structure is not None:
            variables = self.module.init(rng, x0, hparams["model"]["dropout"], False)
        else:
            variables = self.module.init({"params": rng, "dropout": rng}, x0, **_call_kwargs(self.module, False))
        variables = dict(variables)
        params = variables.pop("params")
        return self.state_from(params, dict(variables), hparams)

    def state_from(self, params: Any, extra: Any, hparams: Any) -> dict[str, Any]:
        """A fresh train state around given initial weights (`extra`: batch statistics, nnx rng state, ...)."""
        c = self.config
        lr = jnp.asarray(hparams["opt"]["learning_rate"], jnp.float32)
        opt_state = self._with_hparams(self._tx.init(params), hparams["opt"], lr)
        state: dict[str, Any] = {
            "params": params,
            "extra": extra,
            "opt_state": opt_state,
            "lr": lr,
            "epoch": jnp.array(0, jnp.int32),
            "stopped": jnp.array(False),
        }
        if c.early_stopping is not None:
            state["es"] = cbs.early_stopping_init()
            if c.early_stopping[2]:
                state["best"] = {"params": params, "extra": extra}
        if c.reduce_lr is not None:
            state["rlr"] = cbs.reduce_lr_init()
        return state

    def _losses(self, params: Any, extra: Any, hp: Any, x: jax.Array, y: jax.Array, train: bool, key: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
        z, new_extra = self._apply(params, extra, x, hp, train, key)
        per = per_example_loss(self.config.loss, y, z, self.config.output_activation)
        return per.mean() + self._penalty(params, hp), (z, new_extra)

    def epoch(self, state: dict[str, Any], hparams: Any, data: dict[str, jax.Array], rng: jax.Array) -> tuple[dict[str, Any], dict[str, jax.Array]]:
        """One epoch: shuffled mini-batches (lax.scan), then validation, then the callbacks' updates."""
        TRACE_COUNTS["epoch"] += 1
        c = self.config
        bs, nb = c.batch_size, self.nb
        k_perm, k_drop = jax.random.split(rng)
        perm = shuffle.permutation(k_perm, c.n_train)[: nb * bs].reshape(nb, bs)
        if self.structure is not None:  # one uint32 seed per step for the hash-based dropout masks
            keys = jax.random.bits(k_drop, (nb,), jnp.uint32)
        else:  # a user linen module draws from rngs={"dropout": key}
            keys = jax.random.split(k_drop, nb)
        opt_state = self._with_hparams(state["opt_state"], hparams["opt"], state["lr"])
        x_all, y_all = data["x"], data["y"]
        act = c.output_activation

        def step(carry: Any, inp: Any) -> tuple[Any, jax.Array]:
            params, extra, opt_state = carry
            idx, key = inp
            xb, yb = x_all[idx], y_all[idx]
            (loss, (z, new_extra)), grads = jax.value_and_grad(self._losses, has_aux=True)(params, extra, hparams, xb, yb, True, key)
            updates, opt_state = self._tx.update(grads, opt_state, params)
            if not self.injected:
                updates = jax.tree_util.tree_map(lambda u: u * state["lr"], updates)
            params = optax.apply_updates(params, updates)
            mets = [per_example_metric(m, c.loss, yb, z, act).mean() for m in c.metrics]
            return (params, new_extra, opt_state), jnp.stack([loss, *mets])

        (params, extra, opt_state), per_batch = jax.lax.scan(step, (state["params"], state["extra"], opt_state), (perm, keys), unroll=SCAN_UNROLL)
        train_vals = per_batch.mean(0)
        logs: dict[str, jax.Array] = {"loss": train_vals[0]}
        for i, m in enumerate(c.metrics):
            logs[m] = train_vals[i + 1]
        if c.n_val:
            val = self._evaluate_arrays(params, extra, hparams, data["x_val"], data["y_val"])
            logs.update({f"val_{k}": v for k, v in val.items()})
        if self.injected:
            logs["lr"] = state["lr"]

        new = dict(state, params=params, extra=extra, opt_state=opt_state, epoch=state["epoch"] + 1)
        epoch_index = state["epoch"]
        if c.early_stopping is not None:
            monitor, sign, restore = c.early_stopping
            es = cbs.early_stopping_update(state["es"], logs[monitor], epoch_index, hparams["es"], sign)
            improved = es.pop("improved")
            new["es"] = es
            new["stopped"] = es["stopped"]
            if restore:
                cur = {"params": params, "extra": extra}
                new["best"] = jax.tree_util.tree_map(lambda a, b: jnp.where(improved, a, b), cur, state["best"])
        if c.reduce_lr is not None:
            monitor, sign = c.reduce_lr
            new["rlr"], new["lr"] = cbs.reduce_lr_update(state["rlr"], logs[monitor], state["lr"], hparams["rlr"], sign)
        frozen = state["stopped"]
        new = jax.tree_util.tree_map(lambda old, nw: jnp.where(frozen, old, nw), state, new)
        logs["active"] = jnp.logical_not(frozen)
        logs["stopped"] = new["stopped"]
        return new, logs

    def _evaluate_arrays(self, params: Any, extra: Any, hparams: Any, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        """Mean loss (with the kernel penalty, as Keras) and metrics in inference mode, chunked."""
        c = self.config
        n = x.shape[0]
        chunk = min(n, EVAL_CHUNK)
        nc = math.ceil(n / chunk)
        rows = jnp.arange(nc * chunk).reshape(nc, chunk)
        mask = (rows < n).astype(jnp.float32)
        rows = jnp.minimum(rows, n - 1)

        def body(acc: jax.Array, inp: Any) -> tuple[jax.Array, None]:
            idx, m = inp
            xb, yb = x[idx], y[idx]
            z, _ = self._apply(params, extra, xb, hparams, False, None)
            vals = [per_example_loss(c.loss, yb, z, c.output_activation)]
            vals += [per_example_metric(name, c.loss, yb, z, c.output_activation) for name in c.metrics]
            return acc + jnp.stack([jnp.sum(v * m) for v in vals]), None

        sums, _ = jax.lax.scan(body, jnp.zeros(1 + len(c.metrics), jnp.float32), (rows, mask))
        means = sums / n
        out = {"loss": means[0] + self._penalty(params, hparams)}
        for i, name in enumerate(c.metrics):
            out[name] = means[i + 1]
        return out

    def evaluate(self, state: dict[str, Any], hparams: Any, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        return self._evaluate_arrays(state["params"], state["extra"], hparams, x, y)

    def predict(self, state: dict[str, Any], hparams: Any, x: jax.Array) -> jax.Array:
        """Model outputs (final activation applied) in inference mode, chunked."""
        n = x.shape[0]
        chunk = min(n, EVAL_CHUNK)
        nc = math.ceil(n / chunk)
        rows = jnp.minimum(jnp.arange(nc * chunk).reshape(nc, chunk), n - 1)

        def body(_: None, idx: jax.Array) -> tuple[None, jax.Array]:
            z, _ = self._apply(state["params"], state["extra"], x[idx], hparams, False, None)
            return None, ACTIVATIONS[self.config.output_activation](z)

        _, out = jax.lax.scan(body, None, rows)
        return out.reshape(nc * chunk, *out.shape[2:])[:n]

    def finalize(self, state: dict[str, Any]) -> dict[str, Any]:
        """End of training: with restore_best_weights, put back the best epoch's weights (Keras 3)."""
        es = self.config.early_stopping
        if es is None or not es[2]:
            return state
        has_best = state["es"]["best_epoch"] >= 0
        best = jax.tree_util.tree_map(lambda b, cur: jnp.where(has_best, b, cur), state["best"], {"params": state["params"], "extra": state["extra"]})
        return dict(state, params=best["params"], extra=best["extra"])

    # -- compiled versions (one per engine, so per static configuration) --------------------------
    @cached_property
    def jit_init(self) -> Callable[..., Any]:
        return jit(self.init)

    @cached_property
    def jit_state_from(self) -> Callable[..., Any]:
        return jit(self.state_from)

    @cached_property
    def jit_epoch(self) -> Callable[..., Any]:
        return jit(self.epoch)

    @cached_property
    def jit_evaluate(self) -> Callable[..., Any]:
        return jit(self.evaluate)

    @cached_property
    def jit_predict(self) -> Callable[..., Any]:
        return jit(self.predict)

    @cached_property
    def jit_finalize(self) -> Callable[..., Any]:
        return jit(self.finalize)


# device copies of views of load_prepared's arrays (memory that never changes), so that the trials of a
# sequential sweep, each calling fit with the same x[:n] slices, put the data on the device once: on
# this CPU a put of the 12k x 784 training slice took about 22 ms of every trial and of every segment
# of sequential PBT. At most DEVICE_CACHE arrays (one trial's x, y and validation pair), newest kept.
DEVICE_CACHE = 4
_DEVICE: collections.OrderedDict[tuple[Any, ...], jax.Array] = collections.OrderedDict()
_DEVICE_LOCK = threading.Lock()


def on_device(array: np.ndarray) -> jax.Array:
    """`jnp.asarray(array)`, reused while `array` views the same memory of gridrun.datasets' arrays."""
    from ..datasets import prepared_root

    root = prepared_root(array)
    if root is None:
        return jnp.asarray(array)
    key = (id(root), array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str,
           jax.default_backend())
    with _DEVICE_LOCK:
        hit = _DEVICE.get(key)
        if hit is not None:
            _DEVICE.move_to_end(key)
            return hit
    put = jnp.asarray(array)
    with _DEVICE_LOCK:
        _DEVICE[key] = put
        while len(_DEVICE) > DEVICE_CACHE:
            _DEVICE.popitem(last=False)
    return put


_OPTIONS_LOCK = threading.Lock()


@functools.cache
def _probe_compiler_options() -> dict[str, str] | None:
    """XLA options for gridrun's programs on this backend (None: XLA's defaults).

    On CPU, XLA's YNNPACK fusions are turned off: they run the chapter model's largest matmul on one
    core of two, and an epoch takes 4-7% longer with them (measured by bench/fit_vs_keras.py). And
    LLVM optimizes at level 1 instead of 2: the same results bit for bit and the same epoch time (the
    chapter's MLP with batch norm, 0.132 against 0.149 s; 784-128-64 0.070 against 0.069 s), in less
    compilation (its epoch program 2.4 instead of 2.7 s, an init 0.7-1.0 instead of 1.8 s; docs/fit.md).
    A jaxlib that no longer knows an option keeps its defaults.
    """
    if jax.default_backend() != "cpu":
        return None
    options = {"xla_cpu_experimental_ynn_fusion_type": "", "xla_backend_optimization_level": "1"}
    try:
        jax.jit(lambda a: a + 1, compiler_options=options).lower(jnp.zeros(1)).compile()
    except Exception:  # noqa: BLE001 - an unknown or renamed option: fall back to the defaults
        return None
    return options


def compiler_options() -> dict[str, str] | None:
    """XLA options for gridrun's programs on this backend (None: XLA's defaults); see
    `_probe_compiler_options`. Probed once per process, under a lock (population trials are threads)."""
    with _OPTIONS_LOCK:
        return _probe_compiler_options()


def jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`jax.jit` with gridrun's compiler options."""
    return jax.jit(fn, compiler_options=compiler_options())


# jitted, as every small step between epochs: eager, fold_in was 10x and the seed's split 200x the
# dispatch (0.4 and 4 ms on this CPU, each trial and epoch), with the very same keys
_fold_in = jax.jit(jax.random.fold_in)
_split_seed = jax.jit(lambda seed: tuple(jax.random.split(jax.random.PRNGKey(seed))))


def epoch_key(seed_key: jax.Array, epoch: int) -> jax.Array:
    """The rng of epoch `epoch` (0-based) for a trial whose training key is `seed_key`."""
    return _fold_in(seed_key, epoch)


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init key, training key) of a seed; a population uses the same derivation per trial."""
    seed = int(seed)
    if -2**31 <= seed < 2**31:  # what a traced int32 holds; larger seeds take PRNGKey's own path
        k_init, k_train = _split_seed(np.int32(seed))
    else:
        k_init, k_train = jax.random.split(jax.random.PRNGKey(seed))
    return k_init, k_train
