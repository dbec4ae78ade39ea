"""Issue 22 item 8: local workers share the cores (each pinned to its own block, thread pools sized
to it, before JAX is imported)."""

import os

import pytest

from gridrun.executors.local import LocalExecutor, core_blocks


def test_cores_are_cut_into_disjoint_blocks_one_per_job():
    assert core_blocks([0, 1], 2) == [[0], [1]]
    assert core_blocks([3, 1, 2, 0], 2) == [[0, 1], [2, 3]]
    assert core_blocks(list(range(5)), 2) == [[0, 1, 2], [3, 4]]
    assert core_blocks([0, 1], 3) == [[0], [1], [0]]  # more jobs than cores: shared round robin
    assert core_blocks([0, 1], 1) == [[0, 1]]


def _seen(_):
    import os
    import sys
    import time

    time.sleep(0.3)
    return (os.getpid(), sorted(os.sched_getaffinity(0)), os.environ.get("XLA_FLAGS", ""),
            os.environ.get("OMP_NUM_THREADS"), "jax" in sys.modules)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two schedulable cores")
def test_each_local_worker_is_pinned_to_its_own_cores_before_jax():
    cores = sorted(os.sched_getaffinity(0))
    ex = LocalExecutor(2)
    try:
        outs = [o for _, o in ex.submit_all(_seen, range(6))]
    finally:
        ex.cancel([])
        ex.close()
    seen = {pid: rest for pid, *rest in outs}
    assert len(seen) == 2
    blocks = [tuple(aff) for aff, _, _, _ in seen.values()]
    assert sorted(blocks) == sorted(tuple(b) for b in core_blocks(cores, 2))  # disjoint, covering the cores
    for aff, xla_flags, omp, jax_loaded in seen.values():
        assert omp == str(len(aff))
        assert not jax_loaded  # pinned before JAX could size its thread pool
        if len(aff) == 1:
            assert "--xla_cpu_multi_thread_eigen=false" in xla_flags.split()


def test_worker_pinning_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("GRIDRUN_WORKER_CORES", "0")
    assert LocalExecutor(2)._core_plan() is None
    monkeypatch.delenv("GRIDRUN_WORKER_CORES")
    assert LocalExecutor(1)._core_plan() is None
