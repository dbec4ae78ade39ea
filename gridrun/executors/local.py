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

Workers share the cores instead of fighting over them: before it imports JAX, each worker claims one
of `jobs` disjoint blocks of the client's cores (`core_blocks`) and pins itself to it
(`os.sched_setaffinity`), so XLA's CPU thread pool, which sizes itself by the schedulable cores, and
the BLAS/OpenMP pools (OMP_NUM_THREADS and the like) use cores / jobs threads; a worker of one core
also runs Eigen single-threaded (XLA_FLAGS). Without this, two workers on two cores each start a
thread per core and `--jobs 2` ran slower than one process (issue 22). A block is claimed by holding
a lock on its file for the worker's life (a dead worker's block is free again for its replacement).
`GRIDRUN_WORKER_CORES=0` turns the pinning off.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from .base import Executor

PARENT_POLL_SECONDS = 0.25
DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")  # what a pinned worker's JAX sees


def parse_devices(text: str) -> list[str]:
    """`--worker-devices 0,1,2,3` -> one device per worker; `0+1,2+3` -> a set of devices per worker."""
    sets = [part.strip().replace("+", ",") for part in text.split(",") if part.strip()]
    if not sets or not all(all(d.strip().isdigit() for d in s.split(",")) for s in sets):
        from ..errors import GridrunError

        raise GridrunError(f"--worker-devices {text!r}: give device numbers per worker, e.g. 0,1,2,3 (one each) "
                           f"or 0+1,2+3 (two each)")
    return sets


def _pin_device(counter: str, devices: list[str]) -> None:
    """Pool initializer part: give this worker the next device set, round robin over the pool's workers
    (a counter file under a lock: workers start in separate processes). Runs before the worker imports
    JAX, so the worker's JAX sees only its own devices."""
    import fcntl

    with open(counter, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        k = int(fh.read().strip() or 0)
        fh.seek(0)
        fh.truncate()
        fh.write(str(k + 1))
    chosen = devices[k % len(devices)]
    for name in DEVICE_VARIABLES:
        os.environ[name] = chosen


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # BLAS/OpenMP pools
ONE_CORE_XLA_FLAGS = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")
_held: list[Any] = []  # the worker's claimed block lock (kept open for the worker's life)


def core_blocks(cores: list[int], jobs: int) -> list[list[int]]:
    """`cores` cut into `jobs` disjoint blocks of (nearly) equal size; with more jobs than cores, one core
    each, shared round robin."""
    cores = sorted(cores)
    if jobs <= 1 or not cores:
        return [cores]
    if jobs >= len(cores):
        return [[cores[k % len(cores)]] for k in range(jobs)]
    size, extra = divmod(len(cores), jobs)
    out, start = [], 0
    for k in range(jobs):
        n = size + (k < extra)
        out.append(cores[start:start + n])
        start += n
    return out


def _claim_block(folder: str, n_blocks: int) -> int:
    """The first block no live worker holds (a lock held for this worker's life); all held: round robin."""
    import fcntl

    for k in range(n_blocks):
        fh = open(os.path.join(folder, f"block{k}"), "a+")  # noqa: SIM115 - held open while the worker lives
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        _held.append(fh)
        return k
    with open(os.path.join(folder, "spill"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        k = int(fh.read().strip() or 0)
        fh.seek(0)
        fh.truncate()
        fh.write(str(k + 1))
    return k % n_blocks


def _share_cores(folder: str, blocks: list[list[int]]) -> list[int]:
    """Pool initializer part, before the worker imports JAX: pin this worker to a free block of cores
    and size its thread pools to it. Returns the cores it got."""
    cores = blocks[_claim_block(folder, len(blocks))]
    os.sched_setaffinity(0, cores)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(len(cores))
    if len(cores) == 1:
        flags = os.environ.get("XLA_FLAGS", "").split()
        flags += [f for f in ONE_CORE_XLA_FLAGS if f.split("=")[0] not in {g.split("=")[0] for g in flags}]
        os.environ["XLA_FLAGS"] = " ".join(flags)
    os.environ["GRIDRUN_WORKER_CORES"] = ",".join(map(str, cores))
    return cores


def _init_worker(client_pid: int, counter: str | None = None, devices: list[str] | None = None,
                 cores: tuple[str, list[list[int]]] | None = None) -> None:
    """Pool initializer, run in each worker: pin its devices (when asked) and its cores, watch its client."""
    if counter is not None and devices:
        _pin_device(counter, devices)
    if cores is not None:
        _share_cores(*cores)
    _watch_parent(client_pid)


def _watch_parent(client_pid: int) -> None:
    """Exit the worker as soon as its client process is gone."""

    def watch() -> None:
        while os.getppid() == client_pid:
            threading.Event().wait(PARENT_POLL_SECONDS)
        os._exit(1)  # reparented: the client died (no cleanup: the resumed sweep closes this trial's run)

    if os.getppid() != client_pid:
        os._exit(1)
    threading.Thread(target=watch, name="gridrun-parent-watch", daemon=True).start()


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, jobs: int = 2, idle_timeout: int = 300, devices: list[str] | None = None) -> None:
        super().__init__(jobs)
        self.idle_timeout = idle_timeout
        self.devices = devices  # device sets, one per worker, round robin (CUDA/ROCR_VISIBLE_DEVICES)
        self._counter: str | None = None
        self._cores: tuple[str, list[list[int]]] | None = None
        self._pool = None

    def _core_plan(self) -> tuple[str, list[list[int]]] | None:
        """(lock folder, blocks of cores) the workers pin themselves to; None when pinning is off, not
        possible here or pointless (one job, one core)."""
        if os.environ.get("GRIDRUN_WORKER_CORES", "1").strip().lower() in ("0", "off", "false", "no"):
            return None
        if not hasattr(os, "sched_setaffinity") or self.jobs <= 1:
            return None
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) <= 1:
            return None
        if self._cores is None:
            folder = tempfile.mkdtemp(prefix="gridrun-cores-")
            atexit.register(shutil.rmtree, folder, True)
            self._cores = (folder, core_blocks(cores, self.jobs))
        return self._cores

    def _executor(self):
        from joblib.externals.loky import get_reusable_executor

        # get_reusable_executor returns the live pool, or a new one when the last one broke.
        if self.devices and self._counter is None:
            import tempfile

            fd, self._counter = tempfile.mkstemp(prefix="gridrun-devices-")
            os.close(fd)
        # pinned workers are a pool of their own ("auto": a pool with other initializer args is replaced)
        self._pool = get_reusable_executor(max_workers=self.jobs, timeout=self.idle_timeout,
                                           reuse="auto" if self.devices else True,
                                           initializer=_init_worker,
                                           initargs=(os.getpid(), self._counter, self.devices, self._core_plan()))
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

    def close(self) -> None:
        if self._counter is not None:
            try:
                os.unlink(self._counter)
            except OSError:
                pass

    def cancel(self, handles: list[Any]) -> None:
        for h in handles:
            h.cancel()
        if self._pool is not None:  # Ctrl-C: do not leave workers running trials nobody records
            self._pool.shutdown(wait=False, kill_workers=True)
            self._pool = None

