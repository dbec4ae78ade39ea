"""Issue 22 item 8: local workers share the cores (each pinned to its own block, thread pools sized
to it, before JAX is imported)."""

import dataclasses
import os

import numpy as np
import pytest

from gridrun.executors.local import LocalExecutor, core_blocks, shutdown_workers


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
    # local workers stay up across sweeps of a process: an earlier test's workers have JAX loaded long
    # since (pinned when they started, as these will be); this test needs workers started for it
    shutdown_workers()
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


# -- cost-aware width merging and the fallback to sequential training ----------------------------------------

def mlp_config(units, n_train=12000, n_val=3000, batch_size=128):
    from gridrun.train.engine import EngineConfig

    model = (("dense", units, "relu", True, False), ("dropout",), ("dense", units // 2, "relu", True, False),
             ("dropout",), ("dense", 10, "softmax", True, False))
    return EngineConfig(model=model, loss="categorical_crossentropy", optimizer=("adam", ()), metrics=("accuracy",),
                        early_stopping=None, reduce_lr=None, batch_size=batch_size, n_train=n_train, n_val=n_val,
                        input_shape=(784,))


def test_epoch_flops_count_the_dense_layers_forward_and_backward():
    from gridrun.train import widths

    macs = 784 * 256 + 256 * 128 + 128 * 10
    assert widths.epoch_flops(mlp_config(256)) == 6 * macs * 12000 + 2 * macs * 3000
    wide = 784 * 256 + 256 * 256 + 256 * 10
    assert widths.epoch_flops(mlp_config(64), units=(256, 256)) == 6 * wide * 12000 + 2 * wide * 3000


def test_the_issue_grid_trains_one_program_per_width_on_the_cpu():
    """9x64, 7x128, 8x256 units padded to 256 is 1.75x the arithmetic: on the CPU's cost model (measured by
    bench/population.py --calibrate) each width gets a program of its own, since neither the padded
    arithmetic nor a merged program's set-up (each width's init compiled, its states padded) is paid
    back by one compilation fewer; that beats one padded program and, by less, sequential training."""
    from gridrun.train import widths

    units = [64] * 9 + [128] * 7 + [256] * 8
    configs = [mlp_config(u) for u in units]
    # one lone trial at a time (a local worker pinned to one core): one vmapped program per width
    plan = widths.plan(configs, [10] * len(configs), model=widths.COSTS["cpu"], parallel=1)
    widths_of = [sorted({units[i] for i in idx}) for idx, _ in plan.parts]
    assert widths_of == [[64], [128], [256]]
    assert all(together for _, together in plan.parts) and not plan.sequential
    assert plan.seconds < plan.merged_seconds and plan.seconds < plan.sequential_seconds
    # without the merged program's set-up cost the model would pad the 64-unit trials to 128
    free = dataclasses.replace(widths.COSTS["cpu"], merge_seconds=0.0)
    assert [sorted({units[i] for i in idx}) for idx, _ in
            widths.plan(configs, [10] * 24, model=free, parallel=1).parts] == [[64, 128], [256]]
    # two cores: lone trials two at a time beat every vmapped program (a vmapped group gains nothing per
    # FLOP on the CPU, two lone trials use both cores), so every trial trains alone, two at a time
    two = widths.plan(configs, [10] * len(configs), model=widths.COSTS["cpu"], parallel=2)
    assert two.sequential and two.parallel == 2 and "2 at a time" in two.describe()
    assert two.seconds == pytest.approx(two.sequential_seconds / widths.COSTS["cpu"].parallel_speedup)
    assert two.seconds < plan.seconds
    # on an accelerator nothing trains side by side (parallel_speedup 1): one lone trial at a time
    assert widths.parallel_trials(widths.COSTS["gpu"]) == 1
    padded = sum(widths.epoch_flops(configs[0], (256, 128)) for _ in units)
    assert padded / sum(widths.epoch_flops(c) for c in configs) == pytest.approx(1.8, abs=0.05)  # the issue says 1.75x


def test_small_models_over_many_widths_merge_where_programs_dominate():
    from gridrun.train import widths

    configs = [mlp_config(u, n_train=600, n_val=150) for u in (8, 16, 24, 32, 40, 48) for _ in range(2)]
    for backend in ("cpu", "gpu"):  # (one lone trial at a time: two at a time, the CPU trains them alone)
        plan = widths.plan(configs, [5] * len(configs), model=widths.COSTS[backend], parallel=1)
        assert len(plan.parts) == 1 and plan.parts[0][1], backend  # one padded program for all
    # on an accelerator the issue's grid merges too: arithmetic is cheap there, programs are not
    big = [mlp_config(u) for u in [64] * 9 + [128] * 7 + [256] * 8]
    assert len(widths.plan(big, [10] * 24, model=widths.COSTS["gpu"]).parts) == 1


def test_a_population_that_would_lose_trains_its_trials_alone_and_says_so(capsys):
    """Where the model says a vmapped program loses (here a backend whose vmapped programs are modelled
    slower per FLOP), the trials train alone, one after another, the population says so in one line,
    and each trial's "population" property records it."""
    import dataclasses

    from gridrun.train import widths

    slow = dataclasses.replace(widths.COSTS["cpu"], vmap_speedup=0.5)
    configs = [mlp_config(256)] * 6
    plan = widths.plan(configs, [10] * 6, model=slow, parallel=1)
    assert plan.sequential and plan.sequential_seconds < plan.merged_seconds
    assert widths.plan(configs, [10] * 6, model=widths.COSTS["cpu"], parallel=1).parts == [(list(range(6)), True)]
    tiny = widths.plan([mlp_config(64, n_train=600, n_val=150)] * 6, [3] * 6, model=slow)
    assert not tiny.sequential  # too little work to be worth switching: trained together as asked


def digits_fit(units, lr, seed, epochs):
    """One small trial on 400 digits (gridrun.fit alone, or inside a Population's trial thread)."""
    import gridrun
    from gridrun import Dense, Sequential
    from gridrun.datasets import load_prepared

    (x, y), _ = load_prepared("digits")
    x, y = x[:400], y[:400]
    model = Sequential([Dense(units, activation="relu"), Dense(10, activation="softmax")])
    return gridrun.fit(model, x, y, loss="categorical_crossentropy", optimizer=gridrun.optimizer("adam", learning_rate=lr),
                       epochs=epochs, batch_size=64, validation_split=0.25, seed=seed, verbose=0)


def test_the_coordinator_follows_the_plan_and_records_it(monkeypatch, capsys):
    import dataclasses

    from gridrun.train import widths
    from gridrun.train.population import Population, PopulationConfig

    def run(units, lr, seed):
        return digits_fit(units, lr, seed, epochs=2)

    settings = [(u, lr) for u in (8, 32) for lr in (1e-3, 3e-3)]
    alone = [run(u, lr, i) for i, (u, lr) in enumerate(settings)]
    # arithmetic made expensive and vmapped programs slow: every trial alone
    monkeypatch.setattr(widths, "costs", lambda backend=None: dataclasses.replace(
        widths.COSTS["cpu"], flops_per_second=1e5, vmap_speedup=0.5))
    from gridrun.train.population import coordinator

    seen = []
    real = coordinator.Population._train_alone
    monkeypatch.setattr(coordinator.Population, "_train_alone", lambda self, r: (seen.append(r), real(self, r)))
    pop = Population(PopulationConfig(parallel=1))
    together = pop.run([lambda s=s, i=i: run(*s, i) for i, s in enumerate(settings)])
    assert pop.groups_trained == [1, 1, 1, 1] and pop.plans[0].sequential
    assert "trained one after another, as in a sequential sweep" in capsys.readouterr().err
    assert len(seen) == 4
    for r in seen:  # what each trial's properties record under "population"
        info = r.population_info()
        assert info["size"] == 1 and info["sequential"].startswith("trained one after another")
    for a, b in zip(alone, together, strict=True):
        assert not isinstance(b, BaseException), b
        np.testing.assert_allclose(b.history["val_loss"], a.history["val_loss"], rtol=1e-6)
    # arithmetic expensive, vmapped programs fast: one program per width, no padding
    monkeypatch.setattr(widths, "costs", lambda backend=None: dataclasses.replace(
        widths.COSTS["cpu"], flops_per_second=1e6, vmap_speedup=1.5))
    pop = Population(PopulationConfig(parallel=1))
    pop.run([lambda s=s, i=i: run(*s, i) for i, s in enumerate(settings)])
    assert pop.groups_trained == [2, 2] and len(pop.plans[0].parts) == 2


def test_lone_trials_train_side_by_side_with_their_sequential_metrics(monkeypatch, capsys):
    """Where the plan trains trials alone and `parallel` is 2 (a CPU with two cores), two trials train at
    once, on the coordinator's threads, never more, each with exactly the metrics it gets alone."""
    import threading

    from gridrun.train import widths
    from gridrun.train.population import Population, PopulationConfig, coordinator

    def run(units, lr, seed):
        return digits_fit(units, lr, seed, epochs=3)

    settings = [(u, lr) for u in (8, 32) for lr in (1e-3, 3e-3, 1e-2)]
    alone = [run(u, lr, i) for i, (u, lr) in enumerate(settings)]
    monkeypatch.setattr(widths, "costs", lambda backend=None: dataclasses.replace(
        widths.COSTS["cpu"], flops_per_second=1e5, vmap_speedup=0.5))
    lock, now, most = threading.Lock(), [0], [0]
    meet = threading.Barrier(2, timeout=30)  # the first two must be training at the same time
    real = coordinator.Population._train_alone

    def counted(self, r):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
            first = len(seen) < 2
            seen.append(threading.current_thread().name)
        if first:
            meet.wait()
        try:
            return real(self, r)
        finally:
            with lock:
                now[0] -= 1

    seen: list[str] = []
    monkeypatch.setattr(coordinator.Population, "_train_alone", counted)
    pop = Population(PopulationConfig(parallel=2))
    together = pop.run([lambda s=s, i=i: run(*s, i) for i, s in enumerate(settings)])
    assert most[0] == 2 and len(seen) == 6 and all(name.startswith("gridrun-alone") for name in seen)
    assert pop.plans[0].sequential and pop.plans[0].parallel == 2
    assert "trained alone, 2 at a time" in capsys.readouterr().err
    for a, b in zip(alone, together, strict=True):
        assert not isinstance(b, BaseException), b
        np.testing.assert_allclose(b.history["val_loss"], a.history["val_loss"], rtol=1e-6)


def test_a_population_cut_for_workers_deals_each_width_to_every_worker():
    """`--population --jobs 2`: a group is cut into one task per worker (it used to stay one task, on one
    worker, when no --population-size was given), each with an equal share of every width."""
    from gridrun.sweep.groups import Grouper
    from gridrun.sweep.trial import TrialTask
    from gridrun.train.population import PopulationConfig

    tasks = [TrialTask("train.py", {"units": u, "lr": lr}, "s", k)
             for k, (u, lr) in enumerate((u, lr) for u in (64, 128, 256) for lr in (0.1, 0.2, 0.3, 0.4))]
    for config in (PopulationConfig(), PopulationConfig(max_size=4)):
        groups = Grouper(["units"], config, workers=2).groups(tasks)
        assert len(groups) == 2, config
        for g in groups:
            assert sorted(t.flags["units"] for t in g.tasks) == [64, 64, 128, 128, 256, 256]
            assert [t.trial for t in g.tasks] == sorted(t.trial for t in g.tasks)  # in trial order
        assert sorted(t.trial for g in groups for t in g.tasks) == list(range(12))
    assert [len(g.tasks) for g in Grouper(["units"], PopulationConfig(), workers=1).groups(tasks)] == [12]


def test_a_process_on_one_core_models_vmapped_programs_slower_and_trains_alone(monkeypatch):
    """A `--jobs 2` worker is pinned to one core: there a vmapped group has no idle core to use (its
    one-core speed per FLOP, measured under taskset), so each worker's 4 trials per width train alone,
    one after another, where a process on two cores trains them alone two at a time."""
    from gridrun.train import widths

    configs = [mlp_config(u) for u in [64] * 4 + [128] * 4 + [256] * 4]
    monkeypatch.setattr(widths, "cores", lambda: 1)
    one = widths.costs("cpu")
    assert one.vmap_speedup == widths.COSTS["cpu"].one_core_vmap_speedup < 1 and widths.parallel_trials(one) == 1
    plan = widths.plan(configs, [10] * 12, model=one)
    assert plan.sequential and plan.parallel == 1 and "one after another" in plan.describe()
    assert not widths.plan(configs, [10] * 12, model=widths.COSTS["cpu"], parallel=1).sequential  # (2 cores' model)
    monkeypatch.setattr(widths, "cores", lambda: 2)
    assert widths.costs("cpu") == widths.COSTS["cpu"] and widths.parallel_trials() in (1, 2)
    assert widths.parallel_trials(widths.COSTS["cpu"]) == 2 and widths.costs("gpu") == widths.COSTS["gpu"]


def test_the_lone_trials_at_a_time_are_a_setting_read_at_the_edge():
    from gridrun.errors import GridrunError
    from gridrun.train.population import PopulationConfig

    assert PopulationConfig.from_env({"GRIDRUN_POPULATION_PARALLEL": "3"}).parallel == 3
    assert PopulationConfig.from_env({}).parallel is None  # the backend's cost model decides
    with pytest.raises(GridrunError, match="GRIDRUN_POPULATION_PARALLEL='two': use a positive integer"):
        PopulationConfig.from_env({"GRIDRUN_POPULATION_PARALLEL": "two"})
    with pytest.raises(GridrunError, match=r"PopulationConfig\(parallel=0\): use a positive integer"):
        PopulationConfig(parallel=0)
