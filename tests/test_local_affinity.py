"""Issue 22 item 8: `--jobs N` on local workers. Trials that share a compiled program (the same static
flags) go to one worker, which compiles it once; each worker's XLA thread pool is the size of its block
of cores (checked in the worker, after JAX made its pool)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gridrun.executors.local import LocalExecutor, _Worker, choose, core_blocks, shutdown_workers

TWO_CORES = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                               reason="needs two schedulable cores")


def workers(*owned: set, busy: bool = True) -> list[_Worker]:
    out = []
    for k, keys in enumerate(owned):
        w = _Worker(k)
        w.keys, w.busy = set(keys), busy
        out.append(w)
    return out


def test_a_free_worker_picks_its_own_program_then_a_new_one_then_the_biggest_backlog():
    me, other = workers(set(), set())
    me.busy = False
    # nothing compiled anywhere: the first queued task
    assert choose(me, [me, other], ["a", "b"]) == 0
    me.keys = {"b"}
    assert choose(me, [me, other], ["a", "a", "b"]) == 2  # its own program first, wherever it is queued
    other.keys = {"a"}
    assert choose(me, [me, other], ["a", "c", "a"]) == 1  # a program nobody has, before another's
    me.keys = set()
    other.keys = {"a", "c"}
    assert choose(me, [me, other], ["c", "a", "a", "a"]) == 1  # another's program: the one with most left
    # one task left of the busy owner's program: compiling it here costs more than waiting
    assert choose(me, [me, other], ["a"]) is None
    other.busy = False  # ... unless its owner is free (then nothing waits for it)
    assert choose(me, [me, other], ["a"]) == 0
    assert choose(me, [me, other], [None, "a"]) == 0  # a key not known yet (drawn when it starts)


SCRIPT = '''
import os, sys, time, types
import gridrun

FLAGS = gridrun.flags(gridrun.flag_integer("units", 8), gridrun.flag_numeric("lr", 0.1))
# stands in for the worker's compiled programs: kept by the worker process across trials
seen = sys.modules.setdefault("_affinity_programs", types.ModuleType("_affinity_programs"))
programs = seen.__dict__.setdefault("programs", set())
compiled = FLAGS.units not in programs
programs.add(FLAGS.units)
time.sleep(0.5)
gridrun.log_metrics(loss=FLAGS.lr, compiled=float(compiled))
'''


def runs_of(runs: Path, sweep: str) -> list[tuple[dict, dict, dict]]:
    out = []
    for d in runs.iterdir():
        props = d / "properties.json"
        if props.is_file() and json.loads(props.read_text()).get("sweep") == sweep:
            out.append((json.loads(props.read_text()), json.loads((d / "flags.json").read_text()),
                        json.loads((d / "metrics.json").read_text())))
    return out


@TWO_CORES
def test_trials_sharing_a_program_run_on_one_worker_that_compiles_it_once(tmp_path):
    import gridrun

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    runs = tmp_path / "runs"
    shutdown_workers()
    try:
        # start both workers (imports) on other widths, so that neither is a trial ahead of the other
        gridrun.tuning_run(script, flags={"units": [1, 2], "lr": [0.5]}, runs_dir=runs, jobs=2, quiet=True, seed=0)
        df = gridrun.tuning_run(script, flags={"units": [8, 16], "lr": [0.1, 0.2, 0.3]}, runs_dir=runs, jobs=2,
                                quiet=True, seed=3)
    finally:
        shutdown_workers()
    trials = runs_of(runs, df.attrs["sweep"])
    assert len(trials) == 6 and all(p["status"] == "completed" for p, _, _ in trials)
    pids = {units: {p["pid"] for p, f, _ in trials if f["units"] == units} for units in (8, 16)}
    assert all(len(v) == 1 for v in pids.values()), pids  # each program's trials on one worker
    assert pids[8] != pids[16]  # and the two programs on the two workers, side by side
    assert sum(m["compiled"][0] for _, _, m in trials) == 2  # each program made once in the whole sweep


def _xla_threads(_):
    import collections
    import os

    import jax
    import jax.numpy as jnp

    x = jnp.ones((256, 256))
    jax.jit(lambda a: jnp.tanh(a @ a).sum())(x).block_until_ready()
    names = collections.Counter(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
    return os.getpid(), sorted(os.sched_getaffinity(0)), names.get("tf_XLAEigen", 0)


@TWO_CORES
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_each_worker_runs_xla_with_as_many_threads_as_its_cores():
    shutdown_workers()
    ex = LocalExecutor(2)
    try:
        outs = [o for _, o in ex.submit_all(_xla_threads, range(4))]
    finally:
        ex.cancel([])
        ex.close()
    assert not any(isinstance(o, BaseException) for o in outs), outs
    seen = {pid: (cores, threads) for pid, cores, threads in outs}
    assert len(seen) == 2
    blocks = core_blocks(sorted(os.sched_getaffinity(0)), 2)
    assert sorted(c for c, _ in seen.values()) == sorted(blocks)
    # XLA's CPU pool sized by the worker's cores (unpinned, each would start one thread per core)
    assert all(threads == len(cores) for cores, threads in seen.values()), seen
