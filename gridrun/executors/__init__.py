"""Executors: where the trials of a sweep run. One small interface (base.Executor), one module each.

| name | where | notes |
|---|---|---|
| inprocess | this process, one after the other | no start-up cost; a crash of the process ends the sweep |
| local | a reusable pool of `jobs` worker processes (loky) | workers kept across trials |
| dask | a Dask cluster (`scheduler=`), or a LocalCluster | no shared file system needed |
| ray | Ray remote tasks | no shared file system needed; Ray imported lazily |
"""

from __future__ import annotations

from ..errors import GridrunError
from .base import Executor

BACKENDS = ("inprocess", "local", "dask", "ray")


def get_executor(backend: str | None = None, jobs: int = 1, scheduler: str | None = None,
                 devices: list[str] | None = None) -> Executor:
    """The executor for `backend` (default: inprocess for one job, local for more). `devices`: local
    workers pinned to these device sets, one per worker, round robin (CUDA/ROCR_VISIBLE_DEVICES)."""
    if devices and backend not in (None, "local"):
        raise GridrunError(f"--worker-devices pins local workers: it does not apply to --backend {backend}")
    if backend is None:
        backend = "dask" if scheduler else ("local" if jobs > 1 else "inprocess")
    if backend == "inprocess":
        from .inprocess import InProcessExecutor

        return InProcessExecutor()
    if backend == "local":
        from .local import LocalExecutor

        return LocalExecutor(jobs, devices=devices)
    if backend == "dask":
        from .dask import DaskExecutor

        return DaskExecutor(jobs, scheduler=scheduler)
    if backend == "ray":
        from .ray import RayExecutor

        return RayExecutor(jobs, scheduler=scheduler)
    raise GridrunError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Executor", "get_executor"]
