"""Parallel trials on this machine in reusable worker processes (joblib's loky), one pool of one per worker.

Workers live across trials (and across sweeps of one Python session), so Python start-up, the JAX
import and compiled programs are paid once per worker, not once per trial. When a worker process
dies (segfault, out of memory, os._exit), loky reports its task as failed with
TerminatedWorkerError/BrokenProcessPool; that trial is marked failed and the worker's next task gets a
fresh process (with the same cores and devices).

Trials that share a compiled program go to one worker (issue 22: with two workers each compiling
every width, `--jobs 2` lost to one process). The sweep keys each trial by its static flags (integer,
string and boolean ones: they change the program's shapes; sweep/groups.py program_key) and its task
source offers `next_preferring` (executors/base.py): a free worker takes the first queued trial whose
program it has compiled, else one whose program no worker has yet (compiled beside the others), else a
share of the program with the most trials left (`choose`; with fewer than STEAL_AT left per worker
having it, it waits instead of compiling it again). A worker is a loky pool of one so that a task can
be sent to the worker of choice.

Workers die with their client: each one watches its parent process (a thread polling `os.getppid()`,
installed by the pool's initializer) and exits within PARENT_POLL_SECONDS when the client is gone, even
after a kill -9 that gave the client no chance to stop them. Left alone, they would finish the trials
they had (loky keeps idle workers for its idle timeout) while a resumed sweep runs the same trials again.

Workers share the cores instead of fighting over them: before it imports JAX, worker k pins itself to
block k of `jobs` disjoint blocks of the client's cores (`core_blocks`, `os.sched_setaffinity`), so
XLA's CPU thread pool, which sizes itself by the schedulable cores (its tf_XLAEigen threads, tested),
and the BLAS/OpenMP pools (OMP_NUM_THREADS and the like) use cores / jobs threads; a worker of one core
also runs Eigen single-threaded (XLA_FLAGS). Without this, two workers on two cores each start a
thread per core. `GRIDRUN_WORKER_CORES=0` turns the pinning off. `shutdown_workers()` stops them (the
next sweep starts fresh ones).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
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


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # BLAS/OpenMP pools
ONE_CORE_XLA_FLAGS = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")


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


def _share_cores(cores: list[int]) -> list[int]:
    """Pool initializer part, before the worker imports JAX: pin this worker to its block of cores and
    size its thread pools to it. Returns the cores it got."""
    os.sched_setaffinity(0, cores)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(len(cores))
    if len(cores) == 1:
        flags = os.environ.get("XLA_FLAGS", "").split()
        flags += [f for f in ONE_CORE_XLA_FLAGS if f.split("=")[0] not in {g.split("=")[0] for g in flags}]
        os.environ["XLA_FLAGS"] = " ".join(flags)
    os.environ["GRIDRUN_WORKER_CORES"] = ",".join(map(str, cores))
    return cores


def _init_worker(client_pid: int, devices: str | None = None, cores: list[int] | None = None) -> None:
    """Pool initializer, run in each worker: pin its devices (when asked) and its cores, watch its client."""
    if devices is not None:
        for name in DEVICE_VARIABLES:
            os.environ[name] = devices
    if cores is not None:
        _share_cores(cores)
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


class _Worker:
    """One worker process (a loky pool of one), the programs it has run (affinity keys), and whether it
    runs a task now. Pools of one, not one pool of `jobs`: a task can be sent to the worker of its choice."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.pool: Any = None
        self.keys: set[Hashable] = set()
        self.busy = False


_workers: list[_Worker] = []  # this process's workers, kept across sweeps (their compiled programs with them)
_workers_spec: tuple[Any, ...] | None = None  # what they were started with (jobs, devices, cores, timeout)
_workers_lock = threading.Lock()


def shutdown_workers(kill: bool = False) -> None:
    """Stop this process's local workers (the next sweep starts fresh ones: benches of cold workers)."""
    global _workers_spec
    with _workers_lock:
        for w in _workers:
            if w.pool is not None:
                w.pool.shutdown(wait=not kill, kill_workers=kill)
        _workers.clear()
        _workers_spec = None


STEAL_AT = 2  # trials of another worker's program left per worker having it, for a free worker to compile it too


def choose(worker: _Worker, workers: list[_Worker], keys: list[Hashable | None]) -> int | None:
    """Which of the queued tasks (their affinity keys, in queue order; None: not known yet) `worker`
    takes next: the first whose program it has already compiled; else the first that no worker has
    (compiled now, beside the others); else the program with the most tasks left, when that is at least
    STEAL_AT per worker having it (the free worker compiles it too and shares them); else None: it waits,
    and the busy workers having those programs run their few last tasks (cheaper than a compilation)."""
    others = [v for v in workers if v is not worker]
    left = Counter(keys)
    best, best_rank = None, (3, 0)
    for pos, key in enumerate(keys):
        if key is not None and key in worker.keys:
            return pos
        owners = [v for v in others if key in v.keys] if key is not None else []
        if not owners:
            rank = (1, 0)
        elif left[key] >= STEAL_AT * len(owners) or not all(v.busy for v in owners):
            rank = (2, -left[key])
        else:
            continue
        if rank < best_rank:
            best, best_rank = pos, rank
    return best


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, jobs: int = 2, idle_timeout: int = 300, devices: list[str] | None = None) -> None:
        super().__init__(jobs)
        self.idle_timeout = idle_timeout
        self.devices = devices  # device sets, one per worker, round robin (CUDA/ROCR_VISIBLE_DEVICES)
        self._cores: list[list[int]] | None = None
        self._running: dict[cf.Future, _Worker] = {}

    def _core_plan(self) -> list[list[int]] | None:
        """The blocks of cores the workers pin themselves to (worker k: block k); None when pinning is off,
        not possible here or pointless (one job, one core)."""
        if os.environ.get("GRIDRUN_WORKER_CORES", "1").strip().lower() in ("0", "off", "false", "no"):
            return None
        if not hasattr(os, "sched_setaffinity") or self.jobs <= 1:
            return None
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) <= 1:
            return None
        if self._cores is None:
            self._cores = core_blocks(cores, self.jobs)
        return self._cores

    def _workers(self) -> list[_Worker]:
        """This process's `jobs` workers, started with this executor's pinning (others are replaced)."""
        global _workers_spec
        blocks = self._core_plan()
        spec = (self.jobs, tuple(self.devices or ()), tuple(map(tuple, blocks or ())), self.idle_timeout)
        if spec != _workers_spec:
            shutdown_workers()
        with _workers_lock:
            _workers_spec = spec
            while len(_workers) < self.jobs:
                _workers.append(_Worker(len(_workers)))
            return list(_workers)

    def _pool(self, w: _Worker) -> Any:
        from joblib.externals.loky import ProcessPoolExecutor

        broken = w.pool is not None and getattr(w.pool, "_flags", None) is not None and w.pool._flags.broken
        if w.pool is None or broken:  # first use, or its process died: a fresh one (it keeps its cores)
            if broken:
                w.pool.shutdown(wait=False)
                w.keys.clear()
            blocks = self._core_plan()
            devices = self.devices[w.index % len(self.devices)] if self.devices else None
            w.pool = ProcessPoolExecutor(max_workers=1, timeout=self.idle_timeout, initializer=_init_worker,
                                         initargs=(os.getpid(), devices, blocks[w.index] if blocks else None))
        return w.pool

    def submit_on(self, w: _Worker, fn: Callable[[Any], Any], task: Any) -> cf.Future:
        try:
            future = self._pool(w).submit(fn, task)
        except Exception as exc:  # pool broke between two submissions: report it on this task
            future = cf.Future()
            future.set_exception(exc)
        self._running[future] = w
        w.busy = True
        return future

    def submit(self, fn: Callable[[Any], Any], task: Any) -> cf.Future:
        free = [w for w in self._workers() if not w.busy] or self._workers()
        return self.submit_on(free[0], fn, task)

    def submit_all(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """As Executor.submit_all; a task source that offers `next_preferring(choose)` (base.py) lets each
        free worker pick the queued task whose program it has compiled (`choose`)."""
        prefer = getattr(tasks, "next_preferring", None) if self.jobs > 1 else None
        it = iter(tasks)
        running: dict[cf.Future, Any] = {}
        try:
            while True:
                for w in self._workers():
                    if w.busy:
                        continue
                    workers = self._workers()
                    declined: list[bool] = []

                    def pick(keys: list[Hashable | None], w: _Worker = w, workers: list[_Worker] = workers,
                             declined: list[bool] = declined) -> int | None:
                        pos = choose(w, workers, keys)
                        declined.append(pos is None)
                        return pos

                    try:
                        task, key = prefer(pick) if prefer is not None else (next(it), None)
                    except StopIteration:
                        if any(declined):  # this worker waits; another free one may take a task
                            continue
                        break
                    if key is not None:
                        w.keys.add(key)
                    running[self.submit_on(w, fn, task)] = task
                if not running:
                    return
                for handle in self.wait(list(running)):
                    yield running.pop(handle), self.outcome(handle)
        finally:
            if running:
                self.cancel(list(running))

    def wait(self, handles: list[Any]) -> list[Any]:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        for h in done:
            w = self._running.pop(h, None)
            if w is not None:
                w.busy = False
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
        # Ctrl-C: do not leave workers running trials nobody records
        shutdown_workers(kill=True)
        self._running.clear()
