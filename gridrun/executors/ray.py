"""Trials as Ray remote tasks (`pip install gridrun[ray]`): `--backend ray [--scheduler ray://HOST:10001]`.

Ray is imported only when this backend is chosen. Like Dask, workers need no shared file system: the
trial's files come back with the result, and its checkpoints while it trains (gridrun/sweep/remote.py).
Each task asks for one CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .base import Executor


@contextmanager
def _fork_exec_of_rays_servers() -> Iterator[None]:
    """Without the warning JAX gives for each of the servers `ray.init` starts (GCS, raylet, monitors):
    Ray starts them with `subprocess.Popen(preexec_fn=...)`, a fork that execs at once (its preexec_fn
    only masks SIGINT and sets the parent-death signal), so the deadlock JAX warns of for a forked child
    that goes on running JAX cannot happen there. Only that warning, only around `ray.init`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


class RayExecutor(Executor):
    name = "ray"
    remote = True

    def __init__(self, jobs: int = 1, scheduler: str | None = None) -> None:
        super().__init__(jobs)
        try:
            import ray
        except ImportError:
            from ..errors import GridrunError

            raise GridrunError("the ray backend needs Ray: pip install 'gridrun[ray]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            with _fork_exec_of_rays_servers():
                ray.init(address=scheduler, num_cpus=None if scheduler else self.jobs, ignore_reinit_error=True)
        self._remote_cache: dict[Any, Any] = {}

    def submit(self, fn: Callable[[Any], Any], task: Any) -> Any:
        remote = self._remote_cache.get(fn)
        if remote is None:
            remote = self._remote_cache[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        return remote.remote(task)

    def wait(self, handles: list[Any]) -> list[Any]:
        done, _ = self._ray.wait(handles, num_returns=1)
        return done

    def outcome(self, handle: Any) -> Any:
        try:
            return self._ray.get(handle)
        except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError: this task's outcome
            return exc

    def channel(self, handler: Callable[[Any], Any]) -> Any:
        from .channel import RayChannel

        return RayChannel(handler)

    def is_crash(self, exc: BaseException) -> bool:
        from ray import exceptions as rex

        crash_types = tuple(getattr(rex, n) for n in ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError")
                            if hasattr(rex, n))
        return isinstance(exc, crash_types)

    def cancel(self, handles: list[Any]) -> None:
        for h in handles:
            try:
                self._ray.cancel(h, force=True)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
