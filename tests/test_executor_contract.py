"""The contract every executor passes (gridrun/executors/base.py): one module, every backend.

A new backend (a SLURM one, say) is added by adding it to BACKENDS and passing this module. The task
function is made inside a factory, so cloudpickle ships it by value to workers that cannot import tests/.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from gridrun.executors import get_executor

BACKENDS = ["inprocess", "local", "dask", "ray"]
JOBS = 2


def make_task():
    def task(spec: dict):
        import os
        import time
        from pathlib import Path

        folder = Path(spec["dir"])
        (folder / f"{spec['name']}.start").write_text(repr(time.time()))
        if spec.get("kill"):
            os.kill(os.getpid(), spec["kill"])
            time.sleep(30)
        time.sleep(spec.get("sleep", 0.0))
        if spec.get("raise"):
            raise ValueError(f"task {spec['name']} failed on purpose")
        (folder / f"{spec['name']}.end").write_text(repr(time.time()))
        return {"name": spec["name"], "pid": os.getpid()}

    return task


@pytest.fixture(scope="module", params=BACKENDS)
def executor(request):
    backend = request.param
    if backend == "dask":
        pytest.importorskip("distributed")
    if backend == "ray":
        pytest.importorskip("ray")
    ex = get_executor(backend, JOBS)
    yield ex
    ex.close()


def specs(tmp_path: Path, *items: dict) -> list[dict]:
    return [{"dir": str(tmp_path), **item} for item in items]


def test_outcomes_arrive_in_completion_order(executor, tmp_path):
    fn = make_task()
    tasks = specs(tmp_path, {"name": "slow", "sleep": 2.5}, {"name": "fast", "sleep": 0.0})
    got = [task["name"] for task, _ in executor.submit_all(fn, tasks)]
    expected = ["slow", "fast"] if executor.slots == 1 else ["fast", "slow"]
    assert got == expected


def test_a_raising_task_does_not_stop_the_others(executor, tmp_path):
    fn = make_task()
    tasks = specs(tmp_path, {"name": "a"}, {"name": "bad", "raise": True}, {"name": "c"}, {"name": "d"})
    outcomes = {task["name"]: out for task, out in executor.submit_all(fn, tasks)}
    assert set(outcomes) == {"a", "bad", "c", "d"}
    assert isinstance(outcomes["bad"], Exception) and "failed on purpose" in str(outcomes["bad"])
    assert not executor.is_crash(outcomes["bad"])
    assert all(outcomes[n]["name"] == n for n in ("a", "c", "d"))


def test_at_most_slots_tasks_run_at_once(executor, tmp_path):
    fn = make_task()
    tasks = specs(tmp_path, *({"name": f"t{i}", "sleep": 0.4} for i in range(6)))
    outcomes = list(executor.submit_all(fn, tasks))
    assert len(outcomes) == 6 and not any(isinstance(o, BaseException) for _, o in outcomes)
    spans = [(float((tmp_path / f"t{i}.start").read_text()), float((tmp_path / f"t{i}.end").read_text()))
             for i in range(6)]
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert most <= executor.slots


def test_the_task_list_is_read_lazily_and_steered_while_it_runs(executor, tmp_path):
    """The caller may add tasks after outcomes (retries): they run, in the same call."""
    fn = make_task()
    queue = specs(tmp_path, {"name": "first"})
    added = []

    class Tasks:
        def __iter__(self):
            return self

        def __next__(self):
            if not queue:
                raise StopIteration
            return queue.pop(0)

    for task, _ in executor.submit_all(fn, Tasks()):
        if task["name"] == "first":
            queue.extend(specs(tmp_path, {"name": "retry"}))
        added.append(task["name"])
    assert added == ["first", "retry"]


def test_files_of_a_remote_trial_come_back(executor, tmp_path):
    from gridrun.sweep.trial import TrialTask, run_trial

    script = tmp_path / "train.py"
    script.write_text("import gridrun\nFLAGS = gridrun.flags(lr=0.1)\nprint('hello from', FLAGS.lr)\n"
                      "gridrun.log_metrics(loss=0.5)\n"
                      "open(gridrun.artifacts_dir() + '/model.txt', 'w').write('weights')\n")
    task = TrialTask(script=str(script), flags={"lr": 0.25}, sweep="s", trial=0, run_dir=None, context="remote")
    [(_, result)] = list(executor.submit_all(run_trial, [task]))
    assert not isinstance(result, BaseException), result
    assert result.properties["status"] == "completed"
    assert b"hello from 0.25" in result.files["output.log"]
    assert b"0.5" in result.files["metrics.json"] and result.files["artifacts/model.txt"] == b"weights"


def test_a_worker_killed_by_a_signal_is_reported_as_a_crash(executor, tmp_path):
    if executor.name == "inprocess":
        pytest.skip("in-process tasks share the client's process: a kill ends the client itself")
    fn = make_task()
    tasks = specs(tmp_path, {"name": "victim", "kill": signal.SIGKILL}, {"name": "after", "sleep": 0.0})
    outcomes = {}
    for task, out in executor.submit_all(fn, tasks):
        outcomes[task["name"]] = out
    assert isinstance(outcomes["victim"], BaseException) and executor.is_crash(outcomes["victim"])
    # the executor keeps working after a crash
    [(_, out)] = list(executor.submit_all(fn, specs(tmp_path, {"name": "next"})))
    assert out["name"] == "next"


def test_cancel_on_interrupt_leaves_no_task_running(executor, tmp_path):
    if executor.slots == 1:
        pytest.skip("one slot, in this process: nothing runs beside the caller, so nothing is left to cancel")
    fn = make_task()
    tasks = specs(tmp_path, {"name": "quick"}, {"name": "long", "sleep": 4.0})
    gen = executor.submit_all(fn, tasks)
    task, _ = next(gen)
    assert task["name"] == "quick"
    deadline = time.monotonic() + 30
    while not (tmp_path / "long.start").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "long.start").exists()
    gen.close()  # what Ctrl-C does to the loop: the executor cancels what is in flight
    time.sleep(6.0)
    assert not (tmp_path / "long.end").exists(), "a cancelled task went on running"
    # and the executor still works afterwards
    [(_, out)] = list(executor.submit_all(fn, specs(tmp_path, {"name": "later"})))
    assert out["name"] == "later" and out["pid"] != os.getpid()


def test_a_task_can_ask_the_client_through_the_executor_channel(executor, tmp_path):
    """The request/reply line the sweep's pruner uses: tasks on workers reach a handler in the client."""
    seen = []

    def handler(message):
        seen.append(message)
        return {"double": message["n"] * 2}

    channel = executor.channel(handler)
    try:
        def make():
            def task(spec):
                return spec["caller"]({"n": spec["n"]})
            return task

        tasks = [{"n": n, "caller": channel.caller} for n in (1, 2, 3)]
        replies = sorted(out["double"] for _, out in executor.submit_all(make(), tasks))
    finally:
        channel.close()
    assert replies == [2, 4, 6] and sorted(m["n"] for m in seen) == [1, 2, 3]


def test_local_workers_can_be_pinned_to_devices():
    """--worker-devices: each local worker sees its own device set (round robin), set before JAX loads."""
    from gridrun.errors import GridrunError
    from gridrun.executors.local import LocalExecutor, parse_devices

    assert parse_devices("0,1,2,3") == ["0", "1", "2", "3"] and parse_devices("0+1,2+3") == ["0,1", "2,3"]
    with pytest.raises(GridrunError, match="device numbers"):
        parse_devices("gpu0")

    def make():
        def task(_):
            import os
            import time

            time.sleep(0.3)
            return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("ROCR_VISIBLE_DEVICES")
        return task

    ex = LocalExecutor(2, devices=parse_devices("4+5,7"))
    try:
        outs = [o for _, o in ex.submit_all(make(), range(6))]
    finally:
        ex.cancel([])
        ex.close()
    seen = {pid: (cuda, rocr) for pid, cuda, rocr in outs}
    assert len(seen) == 2 and sorted(c for c, _ in seen.values()) == ["4,5", "7"]
    assert all(c == r for c, r in seen.values())
