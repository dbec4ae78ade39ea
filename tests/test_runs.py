import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from _util import run_cli

import gridrun
from gridrun.errors import GridrunError
from gridrun.record import finish
from gridrun.rundir import RunContext, create_run_dir


def make_run(root, i, *, status="completed", sweep=None, flags=None, ended=True, script="train.py"):
    ts = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
    d = create_run_dir(root, ts)
    ctx = RunContext(run_dir=d)
    ctx.write_properties(script=script, start=ts.isoformat().replace("+00:00", "Z"), status="running",
                         type="training", context="local", sweep=sweep, samples=48000, batch_size=128,
                         epochs=35, learning_rate=0.001, optimizer="adam", loss_function="categorical_crossentropy",
                         custom_note=f"note{i}")
    ctx.write_flags(flags if flags is not None else {"nodes1": 64 * (i + 1), "dropout1": 0.1 * i,
                                                     "optimizer": "adam", "bn": bool(i % 2)})
    for e in range(3):
        ctx.log_metrics(loss=1.0 / (e + 1 + i), val_loss=2.0 / (e + 1 + i), val_acc=0.5 + e / 10)
    ctx.write_evaluation(loss=0.1 * i, acc=0.9)
    if ended:
        finish(ctx, status, 0 if status == "completed" else 1, None if status == "completed" else "boom", None)
    return d


def test_columns_dtypes_and_best_run_query(tmp_path):
    for i in range(4):
        make_run(tmp_path, i, status="failed" if i == 2 else "completed")
    df = gridrun.ls_runs(tmp_path)
    assert list(df.columns[:1]) == ["run_dir"]
    cols = list(df.columns)
    assert cols.index("eval_acc") < cols.index("metric_loss") < cols.index("flag_nodes1") < cols.index("samples")
    for col in ("metric_loss", "metric_val_loss", "metric_val_acc", "flag_nodes1", "flag_dropout1", "flag_optimizer",
                "flag_bn", "samples", "validation_samples", "batch_size", "epochs", "epochs_completed", "metrics",
                "model", "loss_function", "optimizer", "learning_rate", "script", "start", "end", "completed",
                "status", "output", "error_message", "source_code", "context", "type", "sweep", "custom_note"):
        assert col in cols, col
    assert df["metric_val_loss"].dtype == "float64" and str(df["flag_nodes1"].dtype) == "Int64"
    assert df["flag_dropout1"].dtype == "float64" and str(df["flag_bn"].dtype) == "boolean"
    assert str(df["samples"].dtype) == "Int64" and df["completed"].dtype == bool
    assert isinstance(df["start"].dtype, pd.DatetimeTZDtype)
    # default order: newest first
    assert list(df["run_dir"]) == sorted(df["run_dir"], reverse=True)
    best = df.query("metric_val_loss == metric_val_loss.min()")
    assert len(best) == 1 and best["flag_nodes1"].iloc[0] == 256  # run 3 has the smallest val_loss
    assert df.loc[df["status"] == "failed", "error_message"].iloc[0] == "boom"
    assert (df["epochs_completed"] == 3).all() and df["metrics"].iloc[0].endswith("metrics.json")


def test_order_latest_n_and_sweep(tmp_path):
    for i in range(5):
        make_run(tmp_path, i, sweep="s1" if i < 2 else None)
    df = gridrun.ls_runs(tmp_path, order="metric_val_loss", decreasing=False)
    assert list(df["metric_val_loss"]) == sorted(df["metric_val_loss"])
    # not told a direction, a metric column sorts best first (a loss: smallest), as `gridrun ls --order` does
    assert list(gridrun.ls_runs(tmp_path, order="metric_val_loss")["metric_val_loss"]) == sorted(df["metric_val_loss"])
    assert list(gridrun.ls_runs(tmp_path, order="metric_val_loss", decreasing=True)["metric_val_loss"]) == sorted(
        df["metric_val_loss"], reverse=True)
    assert gridrun.ls_runs(tmp_path, order="flag_nodes1")["flag_nodes1"].tolist() == [320, 256, 192, 128, 64]
    assert len(gridrun.ls_runs(tmp_path, latest_n=2)) == 2
    assert gridrun.ls_runs(tmp_path, latest_n=2)["flag_nodes1"].tolist() == [320, 256]
    (tmp_path / "zz-not-a-run").mkdir()  # sorts last: must not take a place among the latest
    assert gridrun.ls_runs(tmp_path, latest_n=2)["flag_nodes1"].tolist() == [320, 256]
    assert gridrun.ls_runs(tmp_path, latest_n=1, sweep="s1")["flag_nodes1"].tolist() == [128]
    assert sorted(gridrun.ls_runs(tmp_path, sweep="s1")["flag_nodes1"]) == [64, 128]
    with pytest.raises(GridrunError, match="no such column.*metric_val_loss"):
        gridrun.ls_runs(tmp_path, order="metric_nope")


def test_active_run_without_summary_and_empty_dir(tmp_path):
    make_run(tmp_path, 0, ended=False)
    df = gridrun.ls_runs(tmp_path)
    assert df["status"].iloc[0] == "running" and df["epochs_completed"].iloc[0] == 3
    (tmp_path / "archive").mkdir()
    (tmp_path / "stray").mkdir()
    assert len(gridrun.ls_runs(tmp_path)) == 1
    empty = gridrun.ls_runs(tmp_path / "nothing")
    assert len(empty) == 0 and "run_dir" in empty.columns


def test_mixed_scripts_keep_flag_types(tmp_path):
    make_run(tmp_path, 0, flags={"nodes1": 64})
    make_run(tmp_path, 1, flags={"lr": 2e-5})
    df = gridrun.ls_runs(tmp_path)
    assert str(df["flag_nodes1"].dtype) == "Int64" and df["flag_lr"].dropna().tolist() == [2e-5]


def test_run_info_latest_and_safe_resolution(tmp_path):
    a = make_run(tmp_path, 0)
    b = make_run(tmp_path, 1)
    assert gridrun.latest_run(tmp_path) == b.resolve()
    info = gridrun.run_info(a.name, runs_dir=tmp_path)
    assert info.flags["nodes1"] == 64 and list(info.metrics.columns) == ["loss", "val_loss", "val_acc"]
    assert info.metrics.index.tolist() == [1, 2, 3] and info.properties["status"] == "completed"
    assert info.evaluation == {"loss": 0.0, "acc": 0.9} and info.paths["output"].name == "output.log"
    row = gridrun.ls_runs(tmp_path).iloc[[0]]
    assert gridrun.run_info(row, runs_dir=tmp_path).run_dir == b.resolve()
    with pytest.raises(GridrunError, match="not inside the runs dir"):
        gridrun.run_info("../../etc", runs_dir=tmp_path)
    with pytest.raises(GridrunError, match="no run named"):
        gridrun.run_info("2020-01-01T00-00-00.000Z", runs_dir=tmp_path)
    with pytest.raises(GridrunError, match="no runs in"):
        gridrun.latest_run(tmp_path / "empty")


def test_clean_purge_copy_cli(tmp_path):
    runs = tmp_path / "runs"
    a = make_run(runs, 0)
    b = make_run(runs, 1, status="failed")
    (a / "artifacts").mkdir()
    (a / "artifacts" / "model.txt").write_text("weights")
    out = run_cli("copy", a.name, tmp_path / "exported", "--runs-dir", runs, check=True)
    assert (tmp_path / "exported" / a.name / "flags.json").exists(), out.stdout
    run_cli("copy", a.name, tmp_path / "art", "--artifacts", "--runs-dir", runs, check=True)
    assert (tmp_path / "art" / "model.txt").read_text() == "weights"
    refused = run_cli("clean", "--failed", "--runs-dir", runs)  # no terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr and b.exists()
    run_cli("clean", "--failed", "--yes", "--runs-dir", runs, check=True)
    assert not b.exists() and (runs / "archive" / b.name).exists() and a.exists()
    assert len(gridrun.ls_runs(runs)) == 1
    ls = run_cli("ls", "--runs-dir", runs, "--format", "csv", check=True)
    assert a.name in ls.stdout and "flag_nodes1" in ls.stdout
    run_cli("purge", "--yes", "--runs-dir", runs, check=True)
    assert not list((runs / "archive").iterdir())
    bad = run_cli("copy", "../../etc", tmp_path / "x", "--runs-dir", runs)
    assert bad.returncode == 2 and "not inside the runs dir" in bad.stderr


def test_ls_cli_table_and_json(tmp_path):
    make_run(tmp_path, 0)
    out = run_cli("ls", "--runs-dir", tmp_path, "--order", "metric_val_loss", "--ascending", "--head", "1",
                  check=True)
    assert "val_loss" in out.stdout and "nodes1" in out.stdout
    out = run_cli("ls", "--runs-dir", tmp_path, "--format", "json", "--columns", "run_dir", "metric_*", check=True)
    import json

    rows = json.loads(out.stdout)
    assert set(rows[0]) == {"run_dir", "metric_loss", "metric_val_loss", "metric_val_acc"}
    assert Path(rows[0]["run_dir"]).name.startswith("2026-01-01T00-00")


def test_ls_orders_metric_columns_best_first_by_the_scoring_rule(tmp_path):
    import json

    for i in range(3):
        make_run(tmp_path, i)  # run i: val_loss 2/(3+i) (lower for later runs), eval_acc 0.9 for all
    def first(*args):
        out = run_cli("ls", "--runs-dir", tmp_path, "--format", "json", "--columns", "run_dir", "metric_val_loss",
                      "flag_nodes1", *args, check=True)
        return json.loads(out.stdout)[0]["flag_nodes1"]

    assert first("--order", "metric_val_loss") == 192  # lowest loss first
    assert first("--order", "metric_val_loss", "--descending") == 64
    assert first("--order", "flag_nodes1") == 192  # not a metric: largest first, as before
    assert first("--order", "flag_nodes1", "--ascending") == 64
