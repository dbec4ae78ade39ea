"""Trials on a Dask cluster (`pip install gridrun[dask]`): `--backend dask --scheduler tcp://HOST:8786`.

Without a scheduler address a LocalCluster of `jobs` single-threaded worker processes is started for the
sweep. Workers need no shared file system: each trial runs into a worker-local temporary run dir and
sends its files back with the result (see gridrun/sweep/trial.py), and the client writes them; its
checkpoints also come back while it trains, through the executor's channel (gridrun/sweep/remote.py),
so a killed worker's trial continues from its last one on --resume.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Executor


class DaskExecutor(Executor):
    name = "dask"
    remote = True

    def __init__(self, jobs: int = 1, scheduler: str | None = None, client: Any = None) -> None:
        super().__init__(jobs)
        try:
            import distributed
        except ImportError:
            from ..errors import GridrunError

            raise GridrunError(
                "the dask backend needs dask.distributed: pip install 'gridrun[dask]'"
            ) from None
        self._cluster = None
        self._own_client = client is None
        if client is not None:
            self.client = client
        elif scheduler:
            self.client = distributed.Client(scheduler)
        else:
            import dask

            # gridrun retries trials itself (--retries): a task that kills its worker is reported at once
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = distributed.LocalCluster(
                    n_workers=self.jobs, threads_per_worker=1, processes=True, dashboard_address=None
                )
            self.client = distributed.Client(self._cluster)
        self._threads = sum(self.client.nthreads().values()) or self.jobs

    @property
    def slots(self) -> int:
        # keep every worker thread busy, whatever --jobs says, plus one queued task each
        return max(self.jobs, self._threads)

    def submit(self, fn: Callable[[Any], Any], task: Any) -> Any:
        return self.client.submit(fn, task, pure=False)

    def wait(self, handles: list[Any]) -> list[Any]:
        import distributed

        done = distributed.wait(handles, return_when="FIRST_COMPLETED").done
        return list(done)

    def outcome(self, handle: Any) -> Any:
        exc = handle.exception() if handle.status == "error" else None
        if handle.status == "cancelled":
            return RuntimeError("the Dask task was cancelled (a worker or the scheduler went away)")
        return exc if exc is not None else handle.result()

    def channel(self, handler: Callable[[Any], Any]) -> Any:
        from .channel import DaskChannel

        return DaskChannel(handler, self.client)

    def is_crash(self, exc: BaseException) -> bool:
        from distributed.scheduler import KilledWorker

        return isinstance(exc, KilledWorker)

    def cancel(self, handles: list[Any]) -> None:
        """Cancel the futures; Dask cannot stop a task that already runs, so on a cluster of our own the
        workers are restarted (on an outside scheduler, running tasks finish and their results are dropped)."""
        self.client.cancel(handles, force=True)
        if self._cluster is not None:  # our own workers, on this host: kill them, their nannies restart them
            import os
            import signal

            try:
                pids = self.client.run(os.getpid)
                for pid in pids.values():
                    os.kill(pid, signal.SIGKILL)
            except Exception:  # noqa: BLE001 - best effort while stopping
                pass

    def close(self) -> None:
        if self._own_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
