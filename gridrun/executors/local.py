"""Parallel trials on this machine in a reusable pool of worker processes (joblib's loky).

Workers live across trials (and across sweeps of one Python session), so Python start-up, the JAX
import and compiled programs are paid once per worker, not once per trial. When a worker process
dies (segfault, out of memory, os._exit), loky reports every task in flight as failed with
TerminatedWorkerError/BrokenProcessPool; those trials are marked failed and the next submission gets a
fresh pool.

Workers die with their client: each one watches its parent process (a thread polling `os.getppid()`,
installed by the pool's initializer) and exits within PARENT_POLL_SECONDS when the client is gone, even
after a kill -9 that gave the client no chance to stop them. Left alone, they would finish the trials
they had (loky keeps idle workers for its idle timeout) while a resumed sweep runs the same trials again.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
from collections.abc import Callable
from typing import Any

from .base import Executor

PARENT_POLL_SECONDS = 0.25


def _watch_parent(client_pid: int) -> None:
    """Pool initializer, run in each worker: exit the worker as soon as its client process is gone."""

    def watch() -> None:
        while os.getppid() == client_pid:
            threading.Event().wait(PARENT_POLL_SECONDS)
        os._exit(1)  # reparented: the client died (no cleanup: the resumed sweep closes this trial's run)

    if os.getppid() != client_pid:
        os._exit(1)
    threading.Thread(target=watch, name="gridrun-parent-watch", daemon=True).start()


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, jobs: int = 2, idle_timeout: int = 300) -> None:
        super().__init__(jobs)
        self.idle_timeout = idle_timeout
        self._pool = None

    def _executor(self):
        from joblib.externals.loky import get_reusable_executor

        # get_reusable_executor returns the live pool, or a new one when the last one broke.
        self._pool = get_reusable_executor(max_workers=self.jobs, timeout=self.idle_timeout, reuse=True,
                                           initializer=_watch_parent, initargs=(os.getpid(),))
        return self._pool

    def submit(self, fn: Callable[[Any], Any], task: Any) -> cf.Future:
        try:
            return self._executor().submit(fn, task)
        except Exception as exc:  # pool broke between two submissions: report it on this task
            future: cf.Future = cf.Future()
            future.set_exception(exc)
            return future

    def wait(self, handles: list[Any]) -> list[Any]:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def outcome(self, handle: cf.Future) -> Any:
        exc = handle.exception()
        return exc if exc is not None else handle.result()

    def is_crash(self, exc: BaseException) -> bool:
        from concurrent.futures.process import BrokenProcessPool as StdBroken

        from joblib.externals.loky.process_executor import BrokenProcessPool, TerminatedWorkerError

        return isinstance(exc, (BrokenProcessPool, TerminatedWorkerError, StdBroken))

    def cancel(self, handles: list[Any]) -> None:
        for h in handles:
            h.cancel()
        if self._pool is not None:  # Ctrl-C: do not leave workers running trials nobody records
            self._pool.shutdown(wait=False, kill_workers=True)
            self._pool = None

