"""Remote trials (Dask, Ray: no shared file system) continue from their checkpoints too (issue 19): a
remote worker streams each checkpoint it saves to the client (gridrun/sweep/remote.py), so a worker
killed at epoch k leaves the client holding its last saved epoch; on --resume the task carries it back
to a worker, and every epoch's metrics equal those of the same trial run uninterrupted. A checkpoint
over the per-trial limit is not sent: the run says why, and the trial starts again from epoch 0."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_resume_checkpoint import SCRIPT, _manifest, _metrics, _same, _uninterrupted

import gridrun
from gridrun import checkpoint as C
from gridrun.sweep import remote


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def dask_cluster():
    """One worker process; the scheduler reports a task that killed its worker at once (as the dask
    backend's own LocalCluster does) instead of running it again behind the sweep's back."""
    distributed = pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None)
    with cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    from gridrun.executors.ray import _fork_exec_of_rays_servers

    started = not ray.is_initialized()
    if started:
        with _fork_exec_of_rays_servers():
            ray.init(num_cpus=1, include_dashboard=False)
    yield
    if started:
        ray.shutdown()


@contextmanager
def _worker_restarted(where: dict) -> Iterator[None]:
    """Around a sweep whose trial kills its Dask worker: once it has ended, wait until the cluster's
    nanny has a new worker up, so the next sweep's task does not meet the one being replaced (the
    cluster allows no failed attempt: a task sent to a dying worker fails as KilledWorker)."""
    if where.get("backend") != "dask":
        yield
        return
    import distributed

    with distributed.Client(where["scheduler"], timeout=30) as client:
        before = set(client.scheduler_info()["workers"])
        yield
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = set(client.scheduler_info()["workers"])
            if now and not now & before:
                return
            time.sleep(0.2)


def _backend(name: str, request) -> dict:
    if name == "dask":
        return {"backend": "dask", "scheduler": request.getfixturevalue("dask_cluster")}
    request.getfixturevalue("ray_session")
    return {"backend": "ray"}


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_a_remote_trial_killed_at_epoch_k_continues_on_resume_with_the_same_metrics(backend, script, tmp_path,
                                                                                    request):
    where = _backend(backend, request)
    k = random.Random().randint(3, 5)  # the worker process is killed (SIGKILL) in epoch k's end hook
    runs, marker = tmp_path / "runs", tmp_path / "killed"
    with _worker_restarted(where):
        df = gridrun.tuning_run(script, {"kill_at": [k], "marker": [str(marker)]}, runs_dir=runs, quiet=True,
                                checkpoint_seconds=0, **where)  # (a write at every epoch: they take milliseconds)
    assert marker.exists() and list(df["status"]) == ["failed"], df["error_message"].iloc[0]
    first = Path(df["run_dir"].iloc[0])
    assert "died" in df["error_message"].iloc[0]
    # the dead worker's checkpoints reached the client while it trained: epoch k - 1, or k - 2 when the kill
    # came before the background writer had sent k - 1; with the metrics of those epochs
    saved = C.info(first)["last"]["epoch"]
    assert saved in (k - 2, k - 1), (k, saved)
    assert len(_metrics(first)["loss"]) >= saved

    df = gridrun.tuning_run(resume=True, script=script, runs_dir=runs, quiet=True, **where)
    assert sorted(df["status"]) == ["completed", "failed"], df[["status", "error_message"]]
    run = Path(df[df["status"] == "completed"]["run_dir"].iloc[0])
    props = json.loads((run / "properties.json").read_text())
    assert props["context"] == backend
    assert props["resumed_from_epoch"] == saved and props["resumed_from_run"] == first.name, f"k={k}"
    (trial,) = _manifest(runs).trials
    assert [a.extra.get("resumed_from_epoch") for a in trial.attempts] == [None, saved]
    assert trial.attempts[0].extra.get("crashed") is True
    _same(_metrics(run), _uninterrupted(script, tmp_path, "seq"))
    assert props["epochs_completed"] == 6 and C.info(run)["last"]["epoch"] == 6


def test_a_checkpoint_over_the_size_limit_is_not_sent_and_the_trial_starts_again(script, tmp_path, request,
                                                                                  capsys):
    where = _backend("dask", request)
    runs, marker = tmp_path / "runs", tmp_path / "killed"
    limit = 2_000  # the model's best + last checkpoints take several kB: they do not fit
    flags = {"kill_at": [3], "marker": [str(marker)]}
    with _worker_restarted(where):
        df = gridrun.tuning_run(script, flags, runs_dir=runs, quiet=True, max_artifact_bytes=limit,
                                checkpoint_seconds=0, **where)
    first = Path(df["run_dir"].iloc[0])
    assert marker.exists() and list(df["status"]) == ["failed"]
    assert not (first / "checkpoints" / "last.ckpt").exists()
    dropped = json.loads((first / "properties.json").read_text())["checkpoints_dropped"]
    assert "over the 0.002 MB per-trial limit for remote workers" in dropped and "max_artifact_bytes" in dropped

    capsys.readouterr()
    df = gridrun.tuning_run(resume=True, script=script, runs_dir=runs, quiet=False, max_artifact_bytes=limit, **where)
    out = capsys.readouterr()
    run = Path(df[df["status"] == "completed"]["run_dir"].iloc[0])
    props = json.loads((run / "properties.json").read_text())
    assert "resumed_from_epoch" not in props
    (trial,) = _manifest(runs).trials
    note = trial.attempts[-1].extra["restarted"]
    assert note.startswith("trial 0 starts again from epoch 0, not from a checkpoint: ") and dropped in note
    assert "\n" not in note and note in out.out + out.err
    _same(_metrics(run), _uninterrupted(script, tmp_path, "seq"))


def test_saves_are_streamed_under_the_limit_counting_every_file(tmp_path):
    """The worker side without a cluster: a Checkpointer's saves go to the caller, best and last each
    counted against the limit (as the final copy counts them); over it, one note and nothing more."""
    import numpy as np

    sent: list[dict] = []

    def caller(message):
        sent.append(message[remote.KEY])
        return True

    tree = {"w": np.zeros(100, np.float32)}
    size = len(C.encode(tree, {"epoch": 1}))
    run = tmp_path / "run"
    run.mkdir()
    for limit, want in ((2 * size + 200, "sent"), (size + 100, "dropped")):
        sent.clear()
        stream = remote.RemoteCheckpoints(caller, "r1", limit)
        with stream.on_worker(run):
            saver = C.Checkpointer(run, "seconds=0", metric="loss")
            for epoch, loss in ((1, 1.0), (2, 0.5), (3, 0.7)):
                saver.on_epoch(epoch, {"loss": loss}, lambda: tree)
            saver.close(lambda: tree)
        if want == "sent":
            assert [(m["epoch"], m["names"]) for m in sent] == [
                (1, ["checkpoints/best.ckpt", "checkpoints/last.ckpt"]),
                (2, ["checkpoints/best.ckpt", "checkpoints/last.ckpt"]), (3, ["checkpoints/last.ckpt"])]
            assert sent[-1]["data"] == (run / "checkpoints" / "last.ckpt").read_bytes()
        else:
            assert len(sent) == 1 and "dropped" in sent[0] and "epoch 1" in sent[0]["dropped"]
        C.drop(run, "next case")
    # outside the block, saves are no longer sent
    sent.clear()
    C.Checkpointer(run, "last").on_epoch(1, {"loss": 1.0}, lambda: tree)
    assert sent == []


def test_the_client_writes_streamed_checkpoints_only_into_the_run_dir(tmp_path):
    runs = tmp_path / "runs"
    (runs / "r1").mkdir(parents=True)
    data = C.encode({"w": [1.0]}, {"epoch": 2})
    handle = remote.client_handler(runs, lambda m: ("pruner", m))
    msg = {"run": "r1", "epoch": 2, "names": ["checkpoints/best.ckpt", "checkpoints/last.ckpt"], "data": data,
           "metrics": b'{"loss": [1.0, 0.5]}'}
    assert handle({remote.KEY: msg}) is True
    assert C.info(runs / "r1")["last"]["epoch"] == 2 and C.info(runs / "r1")["best"]["epoch"] == 2
    assert json.loads((runs / "r1" / "metrics.json").read_text()) == {"loss": [1.0, 0.5]}
    for bad in ({"run": "../r1"}, {"run": "nope"}, {"names": ["../../evil.ckpt"]}, {"names": ["source/train.py"]},
                {"data": "not bytes"}):
        assert handle({remote.KEY: dict(msg, **bad)}) is False, bad
    assert not (tmp_path / "evil.ckpt").exists()
    assert handle({"trial": 0, "epoch": 1}) == ("pruner", {"trial": 0, "epoch": 1})  # other messages: the pruner


def test_population_trials_on_dask_continue_in_slots_after_their_worker_died(script, tmp_path, request):
    """A population group on a Dask worker: its trials save from their own threads (not the task's),
    and their checkpoints reach the client too; on --resume each continues from its own last epoch."""
    import numpy as np

    where = _backend("dask", request)
    k = random.Random().randint(3, 5)
    runs, marker = tmp_path / "runs", tmp_path / "killed"
    lrs = [0.01, 0.03]
    with _worker_restarted(where):
        df = gridrun.tuning_run(script, {"lr": lrs, "kill_at": [k], "marker": [str(marker)]}, runs_dir=runs,
                                quiet=True, population=True, population_size=2, ordered=True, checkpoint_seconds=0,
                                **where)
    assert marker.exists() and set(df["status"]) == {"failed"}
    assert all(C.info(Path(d))["last"]["epoch"] >= 1 for d in df["run_dir"]), f"k={k}"
    df = gridrun.tuning_run(resume=True, script=script, runs_dir=runs, quiet=True, population=True, population_size=2,
                            **where)
    done = df[df["status"] == "completed"]
    assert len(done) == 2, df[["status", "error_message"]]
    for _, row in done.iterrows():
        props = json.loads((Path(row["run_dir"]) / "properties.json").read_text())
        assert props["resumed_from_epoch"] >= 1 and props["context"] == "population", f"k={k}"
        assert len(_metrics(Path(row["run_dir"]))["loss"]) == 6
    # one of them against the same trial trained alone (population equality itself: test_resume_checkpoint.py)
    run = Path(done["run_dir"].iloc[0])
    lr = json.loads((run / "flags.json").read_text())["lr"]
    alone = gridrun.training_run(script, {"lr": lr}, runs_dir=tmp_path / "alone", echo=False)
    want, got = _metrics(Path(alone["run_dir"].iloc[0])), _metrics(run)
    for name in want:
        tol = {"rtol": 1e-4, "atol": 1e-6} if "acc" not in name else {"rtol": 0, "atol": 1.01 / 60}
        np.testing.assert_allclose(got[name], want[name], err_msg=f"lr={lr} {name} k={k}", **tol)
