"""Issue 12: the everyday idioms (tfruns' "Managing Runs", script arguments, hints that work when copied)."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _util import run_cli
from test_runs import make_run

import gridrun
from gridrun import runindex
from gridrun._io import read_json
from gridrun.errors import FlagError, GridrunError

SCRIPT = """
import sys, gridrun
UNITS = 2**5
FLAGS = gridrun.flags(gridrun.flag_integer("nodes1", UNITS, "units"), gridrun.flag_numeric("lr", -1e-3 * -1))
print("ARGV", sys.argv[1:], "FLAGS", FLAGS.as_dict(), flush=True)
gridrun.log_metrics(loss=FLAGS.lr, val_acc=FLAGS.nodes1 / 100)
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text(SCRIPT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def props(run_dir):
    return read_json(Path(run_dir) / "properties.json")


def view_hint(text):
    """The `gridrun view ...` command printed after `View:` or `View a run:`."""
    line = next(ln for ln in text.splitlines() if "gridrun view " in ln)
    return shlex.split(line[line.index("gridrun view "):].split("   ")[0])


# -- item 3: arguments of training-run ----------------------------------------------------------------


def test_unknown_option_says_how_to_write_a_flag(project):
    out = run_cli("training-run", "train.py", "--nodes1", "64", cwd=project)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unrecognized arguments: --nodes1 64; flags go as --flag nodes1=64" in out.stderr
    assert "script's own arguments after --" in out.stderr
    assert not (project / "runs").exists()
    out = run_cli("ls", "--", "x", cwd=project)
    assert out.returncode == 2 and "takes no script arguments after --" in out.stderr


def test_script_arguments_after_double_dash_reach_the_script_not_its_flags(project):
    out = run_cli("training-run", "train.py", "--flag", "nodes1=64", "--", "--data", "x.csv", "-v", cwd=project)
    assert out.returncode == 0, out.stderr
    assert "ARGV ['--data', 'x.csv', '-v'] FLAGS {'nodes1': 64, 'lr': 0.001}" in out.stdout
    run = gridrun.latest_run("runs")
    assert run.properties["script_args"] == ["--data", "x.csv", "-v"] and run.flags == {"nodes1": 64, "lr": 0.001}
    row = gridrun.training_run("train.py", echo=False, args=["--epochs", "3"])  # the Python form
    assert "ARGV ['--epochs', '3']" in (Path(row["run_dir"].iloc[0]) / "output.log").read_text()


# -- item 4: flags on a script that declares none; non-literal defaults -----------------------------


def test_flags_for_a_script_that_declares_none_are_an_error(project):
    (project / "plain.py").write_text("import gridrun\ngridrun.log_metrics(loss=1.0)\n")
    with pytest.raises(FlagError, match=r"plain.py declares no flags .* so --flag n=3 cannot be used: declare"):
        gridrun.training_run("plain.py", flags={"n": 3}, echo=False)
    with pytest.raises(FlagError, match=r"declares no flags .* --flag n=1,2 cannot be used"):
        gridrun.tuning_run("plain.py", flags={"n": [1, 2]}, runs_dir="runs")
    assert not (project / "runs").exists() or not gridrun.ls_runs("runs").shape[0]
    out = run_cli("training-run", "plain.py", "--flag", "n=3", cwd=project)
    assert out.returncode == 2 and "declares no flags" in out.stderr
    assert gridrun.training_run("plain.py", echo=False)["status"].iloc[0] == "completed"  # no flags: fine


def test_constant_expression_defaults_run_under_training_run(project):
    row = gridrun.training_run("train.py", flags={"nodes1": "64"}, echo=False).iloc[0]
    assert row["status"] == "completed" and row["flag_nodes1"] == 64 and row["flag_lr"] == 0.001
    with pytest.raises(FlagError, match="'nodes1' \\(integer\\) cannot take 'wide'"):  # typed from 2**5
        gridrun.training_run("train.py", flags={"nodes1": "wide"}, echo=False)


# -- item 12: flags from a YAML file --------------------------------------------------------------


def test_training_run_flags_from_a_yaml_path_and_profiles_only(project):
    (project / "big.yml").write_text("nodes1: 512\nlr: 0.5\n")
    r = gridrun.training_run("train.py", flags="big.yml", echo=False).iloc[0]
    assert (r["flag_nodes1"], r["flag_lr"]) == (512, 0.5)
    (project / "flags.yml").write_text("small:\n  nodes1: 8\nbig:\n  nodes1: 256\n")  # no default: profile
    r = gridrun.training_run("train.py", flags=Path("flags.yml"), config="big", echo=False).iloc[0]
    assert r["flag_nodes1"] == 256 and r["status"] == "completed"
    r = gridrun.training_run("train.py", echo=False).iloc[0]  # the script's profiles-only flags.yml: defaults
    assert r["status"] == "completed" and r["flag_nodes1"] == 32
    r = gridrun.training_run("train.py", config="small", echo=False).iloc[0]
    assert r["flag_nodes1"] == 8
    with pytest.raises(FlagError, match="flags file nope.yml does not exist"):
        gridrun.training_run("train.py", flags="nope.yml", echo=False)
    out = run_cli("training-run", "train.py", "--flags-file", "big.yml", "--flag", "lr=0.25", cwd=project)
    assert out.returncode == 0 and "FLAGS {'nodes1': 512, 'lr': 0.25}" in out.stdout


# -- item 13: files the script writes into the working directory --------------------------------


def test_copy_new_files_captures_files_and_matplotlib_plots(project):
    (project / "data").mkdir()
    (project / "data" / "old.csv").write_text("a\n1\n")
    (project / "notes.txt").write_text("unchanged")
    (project / "log.txt").write_text("before")
    (project / "plot.py").write_text(
        "import gridrun, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "FLAGS = gridrun.flags(n=3)\n"
        "plt.plot(range(FLAGS.n)); plt.savefig('curve.png')\n"
        "open('data/new.csv', 'w').write('b\\n2\\n')\n"
        "open('log.txt', 'a').write(' after')\n"
    )
    row = gridrun.training_run("plot.py", echo=False, copy_new_files=True).iloc[0]
    art = Path(row["run_dir"]) / "artifacts"
    got = sorted(str(p.relative_to(art)) for p in art.rglob("*") if p.is_file())
    assert got == ["curve.png", "data/new.csv", "log.txt"]  # new or changed; never runs/, never unchanged
    assert (art / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (art / "log.txt").read_text() == "before after"
    assert props(row["run_dir"])["new_files"] == got
    row = gridrun.training_run("plot.py", echo=False).iloc[0]  # opt-in: nothing copied by default
    assert not (Path(row["run_dir"]) / "artifacts").exists()
    out = run_cli("training-run", "plot.py", "--copy-new-files", cwd=project)
    assert out.returncode == 0 and "Files:    curve.png, data/new.csv, log.txt copied into" in out.stderr


# -- item 2: hints that work when copied -----------------------------------------------------------


def test_training_run_hint_names_the_runs_dir_and_works_when_copied(project):
    out = run_cli("training-run", "train.py", "--runs-dir", "elsewhere/my runs", cwd=project)
    assert out.returncode == 0, out.stderr
    cmd = view_hint(out.stderr)
    assert cmd[:2] == ["gridrun", "view"] and cmd[3:] == ["--runs-dir", "elsewhere/my runs"]
    again = run_cli(*cmd[1:], "--no-open", cwd=project)
    assert again.returncode == 0 and "Report:" in again.stdout, again.stderr
    out = run_cli("training-run", "train.py", cwd=project)
    assert "--runs-dir" not in view_hint(out.stderr)  # the default runs dir needs no option


def test_sweep_hints_name_the_runs_dir_and_work_when_copied(project):
    out = run_cli("tuning-run", "train.py", "--flag", "nodes1=8,16", "--runs-dir", "other", cwd=project)
    assert out.returncode == 0, out.stderr
    view = view_hint(out.stdout)
    assert view[-2:] == ["--runs-dir", "other"]
    assert run_cli(*view[1:], "--no-open", cwd=project).returncode == 0
    line = next(ln for ln in out.stdout.splitlines() if "gridrun sweep-report" in ln)
    report = shlex.split(line[line.index("gridrun sweep-report"):])
    assert report[-2:] == ["--runs-dir", "other"]
    assert run_cli(*report[1:], "--no-open", cwd=project).returncode == 0


# -- item 7: runs recorded by hand with GRIDRUN_RUN_DIR -----------------------------------------


def test_run_recorded_with_gridrun_run_dir_is_an_ordinary_run(project):
    env = dict(os.environ, GRIDRUN_RUN_DIR="runs/my-run", PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "train.py", "--nodes1", "7"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    df = gridrun.ls_runs("runs")
    assert len(df) == 1
    r = df.iloc[0]
    assert Path(r["run_dir"]).name == "my-run" and r["status"] == "completed" and bool(r["completed"])
    assert r["flag_nodes1"] == 7 and r["metric_val_acc"] == 0.07 and r["script"] == "train.py"
    assert pd.notna(r["start"]) and pd.notna(r["end"])
    assert gridrun.latest_run("runs").name == "my-run"
    # finished as every run is (record.finish): its summary.json is its row, so listings read it once
    summary = read_json(project / "runs" / "my-run" / "summary.json")
    assert summary is not None and summary["status"] == "completed" and summary["metric_val_acc"] == 0.07
    assert summary["epochs_completed"] == r["epochs_completed"] > 0
    assert runindex.scan("runs").stats["live"] == 0
    assert run_cli("view", "my-run", "--no-open", cwd=project).returncode == 0
    ls = run_cli("ls", "--format", "json", "--columns", "run_dir", "status", cwd=project)
    assert json.loads(ls.stdout) == [{"run_dir": str(Path("runs") / "my-run"), "status": "completed"}]
    (project / "bad.py").write_text("import gridrun\ngridrun.log_metrics(loss=1.0)\nraise ValueError('boom')\n")
    env["GRIDRUN_RUN_DIR"] = "runs/bad-run"
    out = subprocess.run([sys.executable, "bad.py"], env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "ValueError: boom" in out.stderr
    bad = gridrun.run_info("bad-run", runs_dir="runs").properties
    assert bad["status"] == "failed" and bad["error_message"] == "ValueError: boom" and "Traceback" in bad["error_traceback"]
    assert gridrun.latest_run("runs").name == "bad-run"  # named by hand: newest by start time
    assert read_json(project / "runs" / "bad-run" / "summary.json")["error_message"] == "ValueError: boom"
    failed = gridrun.ls_runs("runs", subset="status == 'failed'")
    assert list(failed["run_dir"].map(lambda p: Path(p).name)) == ["bad-run"]


# -- item 8: ls --sweep and run names ------------------------------------------------------------


def test_ls_unknown_sweep_is_an_error_like_sweep_report(tmp_path):
    make_run(tmp_path, 0, sweep="s1")
    out = run_cli("ls", "--runs-dir", tmp_path, "--sweep", "nosuch")
    assert out.returncode == 2 and "no runs of sweep 'nosuch'" in out.stderr and "sweeps there: s1" in out.stderr
    rep = run_cli("sweep-report", "nosuch", "--runs-dir", tmp_path, "--no-open")
    assert rep.returncode == 2 and "no runs of sweep 'nosuch'" in rep.stderr
    ok = run_cli("ls", "--runs-dir", tmp_path, "--sweep", "s1", "--format", "csv")
    assert ok.returncode == 0 and len(ok.stdout.strip().splitlines()) == 2


def test_run_names_resolve_without_milliseconds_or_by_unique_prefix(tmp_path):
    a = make_run(tmp_path, 0)  # 2026-01-01T00-00-00.000Z
    b = make_run(tmp_path, 1)  # 2026-01-01T00-01-00.000Z
    assert gridrun.run_info("2026-01-01T00-01-00Z", runs_dir=tmp_path).run_dir == b.resolve()  # tfruns' name
    assert gridrun.run_info("2026-01-01T00-00", runs_dir=tmp_path).run_dir == a.resolve()  # unique prefix
    with pytest.raises(GridrunError, match="ambiguous.*matches 2026-01-01T00-00-00.000Z, 2026-01-01T00-01-00.000Z"):
        gridrun.run_info("2026-01-01T00-0", runs_dir=tmp_path)
    with pytest.raises(GridrunError, match="no run named '2026-01-02'"):
        gridrun.run_info("2026-01-02", runs_dir=tmp_path)
    out = run_cli("copy", "2026-01-01T00-00-00Z", tmp_path / "out", "--runs-dir", tmp_path, check=True)
    assert (tmp_path / "out" / a.name / "flags.json").exists(), out.stdout


# -- item 11: tfruns' Managing Runs idioms ---------------------------------------------------------


def test_ls_runs_subset_filters_as_tfruns(tmp_path):
    for i in range(4):
        make_run(tmp_path, i)  # val_loss 2/(3+i); nodes1 64*(i+1)
    df = gridrun.ls_runs(tmp_path, subset="metric_val_loss < 0.45")
    assert sorted(df["flag_nodes1"]) == [192, 256]
    assert list(gridrun.ls_runs(tmp_path, subset="flag_nodes1 >= 128", latest_n=1)["flag_nodes1"]) == [256]
    assert len(gridrun.ls_runs(tmp_path, subset=lambda d: d["flag_bn"])) == 2
    with pytest.raises(GridrunError, match="subset 'metric_nope > 1' could not select runs.*metric_val_loss"):
        gridrun.ls_runs(tmp_path, subset="metric_nope > 1")


def test_clean_purge_copy_take_a_table_of_runs(tmp_path):
    runs = tmp_path / "runs"
    made = [make_run(runs, i) for i in range(4)]
    copies = gridrun.copy_run(gridrun.ls_runs(runs, subset="flag_nodes1 <= 128"), tmp_path / "best")
    assert sorted(p.name for p in copies) == [made[0].name, made[1].name]
    assert all((p / "flags.json").exists() for p in copies)
    one = gridrun.copy_run(gridrun.ls_runs(runs, latest_n=1), tmp_path / "one", rename="best-run")
    assert one == tmp_path / "one" / "best-run" and (one / "metrics.json").exists()
    moved = gridrun.clean_runs(gridrun.ls_runs(runs, subset="metric_val_loss > 0.45"), runs_dir=runs)
    assert sorted(p.name for p in moved) == [made[0].name, made[1].name]
    assert sorted(Path(p).name for p in gridrun.ls_runs(runs)["run_dir"]) == [made[2].name, made[3].name]
    assert gridrun.clean_runs(gridrun.ls_runs(runs, subset="flag_nodes1 > 9999"), runs_dir=runs) == []
    with pytest.raises(GridrunError, match="is not in an archive: archive it first"):
        gridrun.purge_runs(gridrun.ls_runs(runs))  # live runs are never purged
    archived = gridrun.ls_runs(runs / "archive")
    gone = gridrun.purge_runs(archived[archived["flag_nodes1"] == 64])  # tfruns: a table first
    assert [p.name for p in gone] == [made[0].name] and not (runs / "archive" / made[0].name).exists()
    assert (runs / "archive" / made[1].name).exists() and made[2].exists()
    assert len(gridrun.purge_runs(runs)) == 1 and not list((runs / "archive").iterdir())


def test_latest_run_is_a_path_that_gives_the_record(tmp_path):
    make_run(tmp_path, 0)
    b = make_run(tmp_path, 1)
    run = gridrun.latest_run(tmp_path)
    assert run == b.resolve() and isinstance(run, Path) and os.fspath(run) == str(b.resolve())
    assert (run / "flags.json").exists() and run.name == b.name
    assert run.flags == {"nodes1": 128, "dropout1": 0.1, "optimizer": "adam", "bn": True}
    assert run["flags"] == run.flags and run.properties["status"] == "completed"
    assert list(run.metrics.columns) == ["loss", "val_loss", "val_acc"] and run.evaluation["acc"] == 0.9
    assert run.run_dir == b.resolve() and type(run.run_dir) is not type(run)
    assert gridrun.run_info(run, runs_dir=tmp_path).run_dir == b.resolve()


# -- issue 22 item 11: the folder above a checkout named gridrun -----------------------------------


def _checkout_named_gridrun(parent):
    """A gridrun checkout in `parent`/gridrun, as `git clone` names it: its root __init__.py, its package."""
    repo = Path(gridrun.__file__).resolve().parents[1]
    (parent / "gridrun" / "gridrun").mkdir(parents=True)
    (parent / "gridrun" / "__init__.py").write_text((repo / "__init__.py").read_text())
    (parent / "gridrun" / "gridrun" / "__init__.py").write_text("")
    return parent / "gridrun"


def test_a_script_in_the_folder_above_the_checkout_says_the_checkout_hides_the_package(tmp_path):
    checkout = _checkout_named_gridrun(tmp_path)
    (tmp_path / "train.py").write_text("import gridrun\nprint(gridrun.ls_runs())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "has no attribute" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ImportError: `import gridrun` found {checkout}, the gridrun source checkout"), last
    assert "Run the script from another folder" in last
    inside = subprocess.run([sys.executable, "-c", "import gridrun; print(gridrun.__file__)"], cwd=checkout,
                            env=env, capture_output=True, text=True)
    assert inside.returncode == 0 and inside.stdout.strip() == str(checkout / "gridrun" / "__init__.py")


def test_training_run_from_the_folder_above_the_checkout_imports_the_package(tmp_path):
    _checkout_named_gridrun(tmp_path)
    (tmp_path / "train.py").write_text("import gridrun\ngridrun.log_metrics(loss=float(len(gridrun.ls_runs())))\n")
    (tmp_path / "helper.py").write_text("")
    # the `gridrun` command: its sys.path starts with its own folder, not the working directory (-P)
    out = subprocess.run([sys.executable, "-P", "-m", "gridrun.cli", "training-run", "train.py"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert gridrun.ls_runs(tmp_path / "runs")["status"].tolist() == ["completed"]
