"""gridrun export tensorboard / mlflow: the exports read back with TensorBoard's event reader and
MLflow's client on a local store in tmp_path."""

from __future__ import annotations

import json
import sys

import pytest
from _util import run_cli
from test_report_fixtures import XSS, make_run, sweep_runs

from gridrun import cli, export

SWEEP = "sweep-20261127-a1b2"


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    paths = sweep_runs(root, SWEEP)
    make_run(root, "2026-11-27T09-00-00.000Z", flags={"units": 32, "batchnorm": True},
             metrics={"loss": [0.5, 0.4]}, evaluation={"acc": 0.9})  # not in the sweep
    (root / "sweeps").mkdir()
    (root / "sweeps" / f"{SWEEP}.json").write_text(json.dumps(
        {"id": SWEEP, "sampler": "grid", "metric": "val_loss", "status": "completed", "trials": [],
         "counts": {"completed": 5, "failed": 1}}))
    return root, paths


def read_run(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def test_tensorboard_scalars_and_hparams(runs, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import api_pb2, metadata

    root, paths = runs
    logdir = tmp_path / "tb"
    export.tensorboard(logdir, root, sweep=SWEEP)
    assert sorted(p.name for p in logdir.iterdir() if p.is_dir()) == sorted(p.name for p in paths)
    metrics = json.loads((paths[2] / "metrics.json").read_text())
    acc = read_run(logdir / paths[2].name)
    assert sorted(acc.Tags()["scalars"]) == ["loss", "val_loss"]
    assert [(s.step, s.value) for s in acc.Scalars("val_loss")] == [
        (i + 1, pytest.approx(v)) for i, v in enumerate(metrics["val_loss"])]
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    flags = json.loads((paths[2] / "flags.json").read_text())
    assert start.hparams["units"].number_value == flags["units"]
    assert start.hparams["activation"].string_value == flags["activation"]
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS
    failed = read_run(logdir / paths[5].name).PluginTagToContent(metadata.PLUGIN_NAME)
    assert metadata.parse_session_end_info_plugin_data(failed[metadata.SESSION_END_INFO_TAG]).status == \
        api_pb2.STATUS_FAILURE
    top = read_run(logdir).PluginTagToContent(metadata.PLUGIN_NAME)
    exp = metadata.parse_experiment_plugin_data(top[metadata.EXPERIMENT_TAG])
    assert sorted(h.name for h in exp.hparam_infos) == ["activation", "dropout1", "epochs", "units"]
    assert sorted(m.name.tag for m in exp.metric_infos) == ["loss", "val_loss"]
    acts = next(h for h in exp.hparam_infos if h.name == "activation")
    assert XSS in [v.string_value for v in acts.domain_discrete.values]
    # again: the earlier files are replaced, no curve is doubled
    export.tensorboard(logdir, root, sweep=SWEEP)
    assert len(list((logdir / paths[2].name).glob("events.out.tfevents.*"))) == 1
    assert len(read_run(logdir / paths[2].name).Scalars("val_loss")) == len(metrics["val_loss"])


def test_tensorboard_cli_all_runs_with_evaluation(runs, tmp_path):
    pytest.importorskip("tensorboard")
    root, _ = runs
    proc = run_cli("export", "tensorboard", tmp_path / "tb", "--runs-dir", root, check=True)
    assert "Exported 7 runs" in proc.stdout
    acc = read_run(tmp_path / "tb" / "2026-11-27T09-00-00.000Z")
    assert [(s.step, s.value) for s in acc.Scalars("eval_acc")] == [(2, pytest.approx(0.9))]


def test_mlflow_runs_nested_and_idempotent(runs, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's local file store, for speed
    root, paths = runs
    uri = (tmp_path / "mlruns").as_uri()
    ids = export.mlflow(uri, root)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("gridrun")
    all_runs = client.search_runs([exp.experiment_id])
    assert len(all_runs) == 7 + 1  # seven runs, one parent for the sweep
    parent = [r for r in all_runs if r.data.tags.get("gridrun.sweep_parent") == SWEEP]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert parent[0].data.params["sampler"] == "grid"
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert sorted(r.data.tags["gridrun.run"] for r in children) == sorted(p.name for p in paths)
    best = client.get_run(ids[paths[4].name])
    assert best.data.params == {"dropout1": "0.3", "units": "256", "activation": "relu", "epochs": "4"}
    metrics = json.loads((paths[4] / "metrics.json").read_text())
    history = client.get_metric_history(best.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(i + 1, pytest.approx(v)) for i, v in enumerate(metrics["val_loss"])]
    assert best.info.status == "FINISHED" and best.data.tags["gridrun.status"] == "completed"
    assert client.get_run(ids[paths[5].name]).info.status == "FAILED"
    assert {a.path for a in client.list_artifacts(best.info.run_id)} >= {"flags.json", "metrics.json", "output.log"}
    lone = client.get_run(ids["2026-11-27T09-00-00.000Z"])
    assert "mlflow.parentRunId" not in lone.data.tags and lone.data.metrics["eval_acc"] == pytest.approx(0.9)
    # a second export updates: same runs, no doubled history; a new epoch is added
    metrics["val_loss"].append(0.2)
    metrics["loss"].append(0.3)
    (paths[4] / "metrics.json").write_text(json.dumps(metrics))
    assert export.mlflow(uri, root) == ids
    assert len(client.search_runs([exp.experiment_id])) == 8
    history = client.get_metric_history(best.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5] and history[-1].value == pytest.approx(0.2)


def test_mlflow_cli_sqlite_store_one_sweep(runs, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    root, paths = runs
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli("export", "mlflow", "--tracking-uri", uri, "--runs-dir", root, "--sweep", SWEEP,
                   "--experiment", "mnist", "--no-artifacts", check=True, timeout=240)
    assert "Exported 6 runs" in proc.stdout
    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
    assert len(found) == 7
    assert all(not client.list_artifacts(r.info.run_id) for r in found)


@pytest.mark.parametrize("target, extra", [(["tensorboard", "tb"], "tensorboard"), (["mlflow"], "mlflow")])
def test_missing_extra_is_a_clear_error(runs, tmp_path, monkeypatch, capsys, target, extra):
    root, _ = runs
    monkeypatch.setitem(sys.modules, extra, None)  # as if not installed: importing it raises ImportError
    monkeypatch.chdir(tmp_path)
    assert cli.main(["export", *target, "--runs-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"pip install gridrun[{extra}]" in err and len(err.strip().splitlines()) == 1


def test_export_unknown_sweep(runs, tmp_path):
    root, _ = runs
    proc = run_cli("export", "tensorboard", tmp_path / "tb", "--runs-dir", root, "--sweep", "nope")
    assert proc.returncode == 2 and "no runs of sweep 'nope'" in proc.stderr


def test_a_flag_that_did_not_apply_is_not_exported(tmp_path, monkeypatch):
    """A conditional flag whose condition did not hold is NA in the runs table: the exports leave it out
    too, instead of showing its default as if it had been set."""
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient

    root = tmp_path / "runs"
    make_run(root, "2026-11-27T09-00-00.000Z", flags={"layers": 2, "nodes3": 64},
             metrics={"loss": [0.5, 0.4]}, flags_inactive=["nodes3"])
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    (run_id,) = export.mlflow(uri, root).values()
    assert MlflowClient(uri).get_run(run_id).data.params == {"layers": "2"}
    export.tensorboard(tmp_path / "tb", root)
    hparams = b"".join(p.read_bytes() for p in (tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert b"layers" in hparams and b"nodes3" not in hparams
