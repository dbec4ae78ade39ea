"""Sweeps on a real Dask LocalCluster, and the remote-trial file transport (gridrun/executors/task.py)."""

import json
from pathlib import Path

import pytest

import gridrun
from gridrun.sweep import list_sweeps
from gridrun.sweep.trial import TrialTask, run_trial, ship_sources

distributed = pytest.importorskip("distributed")

SCRIPT = """
import os
import gridrun
import helper
FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.1), gridrun.flag_integer("size", 10))
print("trial with", FLAGS.as_dict())
if FLAGS.lr < 0:
    raise ValueError("negative learning rate")
art = gridrun.artifacts_dir()
with open(os.path.join(art, "weights.bin"), "wb") as fh:
    fh.write(b"x" * FLAGS.size)
with open(os.path.join(art, "note.txt"), "w") as fh:
    fh.write("small")
gridrun.log_metrics(loss=helper.loss(FLAGS.lr), val_loss=helper.loss(FLAGS.lr) + 1)
gridrun.write_properties(worker_pid=os.getpid())
"""


@pytest.fixture
def script(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "helper.py").write_text("def loss(lr):\n    return lr * 2\n")
    path = folder / "train.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as c:
        yield c


def test_dask_sweep_brings_every_run_dir_back_to_the_client(script, tmp_path, cluster):
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"lr": [0.1, 0.2, -1.0, 0.4], "size": [10, 3000]}, runs_dir=runs,
                            backend="dask", scheduler=cluster.scheduler_address, quiet=True,
                            max_artifact_bytes=20_000)
    assert len(df) == 8
    (manifest,) = list_sweeps(runs)
    m = json.loads(manifest.read_text())
    assert m["settings"]["backend"] == "dask"
    worker_pids = set()
    for t in m["trials"]:
        d = runs / t["run_dir"]
        props = json.loads((d / "properties.json").read_text())
        assert props["sweep"] == m["id"] and props["trial"] == t["trial"] and props["context"] == "dask"
        assert props["script_path"] == str(script)  # not the worker's temporary copy
        assert (d / "source" / "train.py").exists() and (d / "source" / "helper.py").exists()
        assert "trial with" in (d / "output.log").read_text()
        row = json.loads((d / "summary.json").read_text())
        assert row["status"] == props["status"]
        if t["flags"]["lr"] < 0:
            assert t["status"] == "failed" and "negative learning rate" in props["error_message"]
            continue
        assert t["status"] == "completed"
        assert json.loads((d / "metrics.json").read_text())["loss"] == [t["flags"]["lr"] * 2]
        assert (d / "artifacts" / "weights.bin").stat().st_size == t["flags"]["size"]
        worker_pids.add(props["worker_pid"])
    assert len(worker_pids) <= 2  # two worker processes, reused


def test_remote_trial_drops_big_artifacts_with_a_note(script, tmp_path, cluster):
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"size": [50_000]}, runs_dir=runs, backend="dask",
                       scheduler=cluster.scheduler_address, quiet=True, max_artifact_bytes=30_000)
    (run,) = [d for d in runs.iterdir() if d.name not in ("sweeps", ".index")]
    props = json.loads((run / "properties.json").read_text())
    assert props["status"] == "completed"
    assert not (run / "artifacts" / "weights.bin").exists() and (run / "artifacts" / "note.txt").exists()
    assert "weights.bin" in props["artifacts_dropped"] and "50000 bytes" in props["artifacts_dropped"]


def test_worker_without_the_script_runs_the_shipped_copy(script, tmp_path):
    sources = ship_sources(script)
    assert set(sources) == {"train.py", "helper.py"}
    missing = tmp_path / "elsewhere" / "train.py"  # as seen from a machine without a shared file system
    result = run_trial(TrialTask(script=str(missing), flags={"lr": 0.25}, sweep="s", trial=0, sources=sources,
                                 context="dask"))
    assert result.properties["status"] == "completed", result.properties.get("error_message")
    assert json.loads(result.files["metrics.json"]) == {"loss": [0.5], "val_loss": [1.5]}
    assert result.files["artifacts/note.txt"] == b"small"
    assert not Path(result.properties["script_path"]).exists()  # the worker's temporary copy is gone
