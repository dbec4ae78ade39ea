"""Executors: where the trials of a sweep run. One small interface (base.Executor), one module each.

| name | where | notes |
|---|---|---|
| inprocess | this process, one after the other | no start-up cost; a crash of the process ends the sweep |
| local | `jobs` reusable worker processes (loky pools of one) | workers kept across trials; a trial goes to the worker with its program |
| dask | a Dask cluster (`scheduler=`), or a LocalCluster | no shared file system needed |
| ray | Ray remote tasks | no shared file system needed; Ray imported lazily |

`tuning_run(backend=)` takes a name or an Executor object. Names resolve through REGISTRY: these four,
then those other packages declare under the entry point group `gridrun.executors` (an Executor class,
called with `jobs=` and, when it takes them, `scheduler=` and `devices=`); see docs/extending.md.
"""

from __future__ import annotations

import inspect
from typing import Any

from .._registry import Registry
from ..errors import GridrunError
from .base import Executor

BACKENDS = ("inprocess", "local", "dask", "ray")


def _inprocess(jobs: int = 1) -> Executor:
    from .inprocess import InProcessExecutor

    return InProcessExecutor()


def _local(jobs: int = 2, devices: list[str] | None = None) -> Executor:
    from .local import LocalExecutor

    return LocalExecutor(jobs, devices=devices)


def _dask(jobs: int = 1, scheduler: str | None = None) -> Executor:
    from .dask import DaskExecutor

    return DaskExecutor(jobs, scheduler=scheduler)


def _ray(jobs: int = 1, scheduler: str | None = None) -> Executor:
    from .ray import RayExecutor

    return RayExecutor(jobs, scheduler=scheduler)


REGISTRY = Registry("backend", "gridrun.executors", "--backend",
                    {"inprocess": _inprocess, "local": _local, "dask": _dask, "ray": _ray})


def get_executor(backend: str | Executor | None = None, jobs: int = 1, scheduler: str | None = None,
                 devices: list[str] | None = None) -> Executor:
    """The executor for `backend` (default: inprocess for one job, local for more; an Executor object
    is used as given). `devices`: local workers pinned to these device sets, one per worker, round
    robin (CUDA/ROCR_VISIBLE_DEVICES)."""
    if isinstance(backend, Executor):
        return backend
    if backend is not None and not isinstance(backend, str):
        raise GridrunError(f"backend={backend!r}: give a backend's name ({', '.join(REGISTRY.names())}) or a "
                           f"gridrun.Executor object")
    if devices and backend not in (None, "local"):
        raise GridrunError(f"--worker-devices pins local workers: it does not apply to --backend {backend}")
    if backend is None:
        backend = "dask" if scheduler else ("local" if jobs > 1 else "inprocess")
    factory = REGISTRY.get(backend)
    try:
        takes = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes = {}
    kwargs: dict[str, Any] = {"jobs": jobs}
    if scheduler is not None and "scheduler" in takes:  # (ignored by backends without one, as always)
        kwargs["scheduler"] = scheduler
    if devices:
        kwargs["devices"] = devices
    made = factory(**kwargs)
    if not isinstance(made, Executor):
        raise GridrunError(f"backend {backend!r} made a {type(made).__name__}, not a gridrun.Executor: subclass "
                           f"gridrun.Executor (submit, wait, outcome)")
    return made


__all__ = ["BACKENDS", "REGISTRY", "Executor", "get_executor"]
