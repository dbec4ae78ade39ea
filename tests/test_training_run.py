import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _util import run_cli

import gridrun
from gridrun._io import read_json
from gridrun.errors import FlagError, GridrunError

SCRIPT = """
import sys, gridrun
FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.01, "learning rate"), epochs=3, mode="ok")
for e in range(FLAGS.epochs):
    print(f"epoch {e}", flush=True)
    print(f"warn {e}", file=sys.stderr, flush=True)
    gridrun.log_metrics(loss=FLAGS.lr / (e + 1), val_loss=2.0 / (e + 1), acc=0.5 + e / 10)
if FLAGS.mode == "raise":
    raise ValueError("bad things")
if FLAGS.mode == "exit":
    sys.exit(3)
if FLAGS.mode == "nan":
    gridrun.log_metrics(loss=float("nan"))
if FLAGS.mode == "sleep":
    import time
    print("sleeping", flush=True)
    time.sleep(60)
gridrun.write_evaluation(loss=0.125, acc=0.75)
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "big.bin").write_bytes(b"0" * 10)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def props(run_dir):
    return read_json(Path(run_dir) / "properties.json")


def test_training_run_records_everything(project):
    row = gridrun.training_run("train.py", flags={"lr": "2e-5", "epochs": 4}, echo=False)
    assert len(row) == 1
    r = row.iloc[0]
    run_dir = Path(r["run_dir"])
    assert run_dir.resolve().parent == project / "runs" and str(run_dir).startswith("runs/")
    assert r["status"] == "completed" and bool(r["completed"])
    assert r["flag_lr"] == 2e-5 and r["flag_epochs"] == 4 and r["flag_mode"] == "ok"
    assert r["metric_loss"] == pytest.approx(2e-5 / 4) and r["epochs_completed"] == 4
    assert r["eval_loss"] == 0.125 and r["eval_acc"] == 0.75
    p = props(run_dir)
    assert p["script"] == "train.py" and p["exit_code"] == 0 and p["end"] and p["versions"]["python"]
    assert p["hostname"] and p["type"] == "training"
    assert read_json(run_dir / "flags.json") == {"lr": 2e-5, "epochs": 4, "mode": "ok"}
    out = (run_dir / "output.log").read_text()
    assert out.index("epoch 0") < out.index("warn 0") < out.index("epoch 1")  # interleaved, in order
    assert sorted(os.listdir(run_dir / "source")) == ["helper.py", "train.py"]  # no binaries, no runs/
    assert (run_dir / "summary.json").exists()


def test_failing_script_is_recorded(project):
    row = gridrun.training_run("train.py", flags={"mode": "raise"}, echo=False)
    r = row.iloc[0]
    assert r["status"] == "failed" and not r["completed"]
    assert r["error_message"] == "ValueError: bad things"
    p = props(r["run_dir"])
    assert "Traceback" in p["error_traceback"] and "bad things" in (Path(r["run_dir"]) / "output.log").read_text()
    assert r["epochs_completed"] == 3 and r["metric_val_loss"] == pytest.approx(2 / 3)  # nothing lost


def test_nonzero_exit_and_nan_loss(project):
    r = gridrun.training_run("train.py", flags={"mode": "exit"}, echo=False).iloc[0]
    assert r["status"] == "failed" and props(r["run_dir"])["exit_code"] == 3
    r = gridrun.training_run("train.py", flags={"mode": "nan"}, echo=False).iloc[0]
    assert r["status"] == "failed" and "loss became nan" in r["error_message"]


def test_bad_flags_rejected_before_running(project):
    with pytest.raises(FlagError, match="did you mean 'lr'"):
        gridrun.training_run("train.py", flags={"lrr": 1}, echo=False)
    with pytest.raises(FlagError, match="'epochs' \\(integer\\) cannot take 'many'.*--flag epochs=64"):
        gridrun.training_run("train.py", flags={"epochs": "many"}, echo=False)
    with pytest.raises(GridrunError, match="does not exist"):
        gridrun.training_run("nope.py", echo=False)
    assert not (project / "runs").exists() or not list((project / "runs").iterdir())


def test_cli_training_run_and_exit_status(project):
    ok = run_cli("training-run", "train.py", "--flag", "epochs=2", cwd=project)
    assert ok.returncode == 0, ok.stderr
    assert "epoch 1" in ok.stdout and "Status:   completed" in ok.stderr and "gridrun view" in ok.stderr
    bad = run_cli("training-run", "train.py", "--flag", "mode=exit", "--quiet", cwd=project)
    assert bad.returncode == 3 and "epoch" not in bad.stdout
    err = run_cli("training-run", "train.py", "--flag", "lrr=1", cwd=project)
    assert err.returncode == 2 and "did you mean 'lr'" in err.stderr and "Traceback" not in err.stderr
    err = run_cli("training-run", "train.py", "--flag", "lr", cwd=project)
    assert err.returncode == 2 and "NAME=VALUE" in err.stderr


def _start(project, mode):
    env = dict(os.environ)
    env.pop("GRIDRUN_RUN_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "gridrun.cli", "training-run", "train.py", "--flag",
                             f"mode={mode}"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        runs = list((project / "runs").glob("*/output.log")) if (project / "runs").exists() else []
        if runs and "sleeping" in runs[0].read_text():
            return proc, runs[0].parent
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the script never started")


def test_killed_script_is_marked_failed(project):
    proc, run_dir = _start(project, "sleep")
    child = props(run_dir)["pid"]
    os.kill(child, signal.SIGKILL)  # kill the script's process, not gridrun
    proc.communicate(timeout=60)
    p = props(run_dir)
    assert p["status"] == "failed" and "SIGKILL" in p["error_message"] and p["end"]
    assert read_json(run_dir / "metrics.json")["loss"]  # the epochs before the kill are kept
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


def test_ctrl_c_marks_interrupted(project):
    proc, run_dir = _start(project, "sleep")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole process group
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    p = props(run_dir)
    assert p["status"] == "interrupted" and not p["completed"] and p["end"]
    assert "sleeping" in (run_dir / "output.log").read_text()


# -- issue 22 item 6: errors from inside a run read as the user's, not as gridrun's internals --------


def test_a_gridrun_error_in_a_script_is_one_line_at_the_users_line(tmp_path):
    (tmp_path / "bad.py").write_text("import gridrun\n\ngridrun.log_metrics(epoch='one', loss=1.0)\n")
    out = run_cli("training-run", "bad.py", cwd=tmp_path)
    assert out.returncode == 1
    lines = out.stdout.splitlines()  # the script's output, as echoed (its stderr included)
    error = [ln for ln in lines if "error:" in ln]
    assert error == ["bad.py:3: error: log_metrics(epoch='one'): the epoch must be an integer (0, 1, 2, ... or 1, 2, "
                     "3, ...), e.g. the loop's counter"], out.stdout
    assert "Traceback" not in out.stdout and "gridrun/" not in out.stdout and "runpy" not in out.stdout
    props = read_json(next((tmp_path / "runs").iterdir()) / "properties.json")
    assert props["status"] == "failed" and props["error_message"].startswith("GridrunError: log_metrics(epoch=")
    # --quiet shows no output of the script, but still why the run failed, in one line
    quiet = run_cli("training-run", "--quiet", "bad.py", cwd=tmp_path)
    assert quiet.returncode == 1 and "epoch must be an integer" not in quiet.stdout
    reason = [ln for ln in quiet.stderr.splitlines() if ln.strip()]
    assert len(reason) == 1 and reason[0].startswith("gridrun: run ") and "failed: GridrunError: log_metrics(" in reason[0]


def test_a_quiet_tuning_run_still_says_why_each_failed_trial_failed(tmp_path):
    (tmp_path / "opt.py").write_text(
        "import gridrun\n"
        "FLAGS = gridrun.flags(gridrun.flag_string('optimizer', 'adam', 'the optimizer', values=['adam', 'adamw']))\n"
        "if FLAGS.optimizer == 'adamw':\n"
        "    raise gridrun.GridrunError(\"unknown optimizer 'adamw'; use one of ['adam', 'rmsprop']\")\n")
    out = run_cli("tuning-run", "opt.py", "--quiet", "--ordered", cwd=tmp_path)
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert lines[0].startswith("Sweep ") and "1 completed, 1 failed of 2 trials" in lines[0], out.stdout
    assert len(lines) == 2 and lines[1].startswith("trial 1 failed: GridrunError: unknown optimizer 'adamw'"), lines


def test_other_exceptions_keep_a_traceback_trimmed_to_the_users_frames(tmp_path):
    (tmp_path / "crash.py").write_text("import helper\n\nhelper.go()\n")
    (tmp_path / "helper.py").write_text("def go():\n    return {}['missing']\n")
    out = run_cli("training-run", "crash.py", cwd=tmp_path)
    assert out.returncode == 1
    tb = out.stdout[out.stdout.index("Traceback"):out.stdout.index("KeyError: 'missing'")]
    files = [ln.split('"')[1] for ln in tb.splitlines() if ln.strip().startswith("File ")]
    assert files == [str(tmp_path / "crash.py"), str(tmp_path / "helper.py")], tb  # no runner, runpy frames
    props = read_json(next((tmp_path / "runs").iterdir()) / "properties.json")
    assert props["error_traceback"].startswith("Traceback") and "runner.py" not in props["error_traceback"]
