"""Faults lose nothing and never leave a run wrong (issue 13): kill -9 of a sweep's client, a full disk, an
unwritable runs dir, Ctrl-C, repeated flags, NaN metrics, file modes, 0-based epoch labels."""

import json
import math
import os
import signal
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from _util import run_cli

import gridrun
from gridrun import cli, rundir
from gridrun._io import read_json, write_json
from gridrun.errors import GridrunError
from gridrun.rundir import RunContext, activate
from gridrun.sweep import list_sweeps

ENV = dict(os.environ, PYTHONPATH=str(Path(gridrun.__file__).parents[1]))
ENV.pop("GRIDRUN_RUN_DIR", None)


@contextmanager
def tmpfs(path: Path, size: str = "200k", options: str = ""):
    """A small tmpfs mounted at `path` (root only); the test is skipped where none can be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# --------------------------------------------------------------------------------------------------
# 5. a repeated --flag is an error naming the flag


def test_repeated_flag_in_a_sweep_is_an_error(tmp_path, capsys):
    script = tmp_path / "train.py"
    script.write_text("import gridrun\nF = gridrun.flags(gridrun.flag_numeric('lr', 0.1))\n")
    runs = tmp_path / "runs"
    code = cli.main(["tuning-run", str(script), "--flag", "lr=0.1,0.2", "--flag", "lr=0.3", "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and "--flag lr" in err and "once" in err and "lr=0.1,0.2,0.3" in err
    assert not runs.exists()
    code = cli.main(["training-run", str(script), "--flag", "lr=0.1", "--flag", "lr=0.3", "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and "--flag lr" in err and not runs.exists()


# --------------------------------------------------------------------------------------------------
# 3. a runs dir that is a file, or on a read-only file system: one line, exit 2


SCRIPT = """
import os, sys, time, gridrun
F = gridrun.flags(gridrun.flag_string("mode", "ok"), gridrun.flag_numeric("lr", 0.1),
                  gridrun.flag_numeric("sleep", 0.0))
if F.mode == "flood":
    for i in range(100000):
        print("x" * 1000, flush=True)
if F.sleep:
    print("sleeping", flush=True)
    time.sleep(F.sleep)
gridrun.log_metrics(loss=F.lr)
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


@pytest.mark.parametrize("verb", ["training-run", "tuning-run"])
def test_runs_dir_that_is_a_file_is_a_one_line_error(script, tmp_path, verb):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    proc = run_cli(verb, script, "--flag", "lr=0.1", "--runs-dir", runs, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and str(runs) in proc.stderr and "not a folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("verb", ["training-run", "tuning-run"])
def test_read_only_runs_dir_is_a_one_line_error(script, tmp_path, verb):
    with tmpfs(tmp_path / "ro", options="ro") as ro:
        proc = run_cli(verb, script, "--flag", "lr=0.1", "--runs-dir", ro / "runs", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Read-only file system" in proc.stderr
    assert str(ro / "runs") in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --------------------------------------------------------------------------------------------------
# 7. record files honour the umask; an unreadable run is a clear message


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_record_files_follow_the_umask(script, tmp_path, umask):
    runs = tmp_path / "runs"
    old = os.umask(umask)
    try:
        gridrun.training_run(script, runs_dir=runs, echo=False)
        gridrun.tuning_run(script, {"lr": [0.1, 0.2]}, runs_dir=runs, quiet=True)
    finally:
        os.umask(old)
    files = [p for p in runs.rglob("*.json")]
    assert len(files) > 8 and any(p.parent.name == "sweeps" for p in files)
    want = 0o666 & ~umask
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(want) for p in files}


def test_unreadable_run_is_a_clear_error(script, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    gridrun.training_run(script, runs_dir=runs, echo=False)
    (run,) = [d for d in runs.iterdir()]
    real_open = open

    def deny(path, *a, **k):  # root ignores permission bits: refuse the read the way EACCES would
        if str(path).startswith(str(run)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    import os

    real_os_open = os.open

    def deny_fd(path, *a, **k):  # the runs table's index reads summaries with os.open (relative to the dir)
        if run.name in str(path):
            raise PermissionError(13, "Permission denied", str(run / path) if "dir_fd" in k else str(path))
        return real_os_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", deny)
    monkeypatch.setattr(os, "open", deny_fd)
    code = cli.main(["ls", "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and "Permission denied" in err and str(run) in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# 6. NaN and infinities are recorded as such, read back as floats, fail the run and rank last


def test_nonfinite_values_round_trip_as_documented_strings(tmp_path):
    write_json(tmp_path / "x.json", {"a": float("nan"), "b": 2e-5, "c": [1e-5, float("inf"), -float("inf")]})
    text = (tmp_path / "x.json").read_text()
    assert json.loads(text) == {"a": "NaN", "b": 2e-5, "c": [1e-5, "Infinity", "-Infinity"]}  # valid JSON
    ctx = RunContext(run_dir=tmp_path)
    ctx.log_metrics(loss=1.0)
    ctx.log_metrics(loss=float("nan"), acc=float("-inf"))
    again = RunContext.open(tmp_path)
    assert again.metrics["loss"][0] == 1.0 and math.isnan(again.metrics["loss"][1])
    assert again.metrics["acc"] == [None, -math.inf]
    from gridrun.record import last_metrics, last_value

    assert math.isnan(last_value(again.metrics["loss"])) and math.isnan(last_metrics(tmp_path)["loss"])


def test_a_diverged_run_is_failed_and_ranks_last(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import gridrun\n"
        "F = gridrun.flags(gridrun.flag_numeric('lr', 0.1))\n"
        "for e in range(3):\n"
        "    v = float('nan') if F.lr > 1 and e == 2 else F.lr * (3 - e)\n"
        "    gridrun.log_metrics(epoch=e + 1, train_loss=v, val_acc=0.5)\n")
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"lr": [0.3, 5.0, 0.2]}, runs_dir=runs, quiet=True, ordered=True)
    by = {r.flag_lr: r for r in df.itertuples()}
    assert by[5.0].status == "failed" and by[5.0].error_message == "train_loss became nan at epoch 3"
    assert by[0.3].status == "completed" and by[0.2].status == "completed"
    assert math.isnan(by[5.0].metric_train_loss)  # not its last finite value (5.0)
    table = gridrun.ls_runs(runs)
    best = table.query("metric_train_loss == metric_train_loss.min()")
    assert list(best["flag_lr"]) == [0.2]
    ranked = gridrun.ls_runs(runs, order="metric_train_loss", decreasing=False)
    assert list(ranked["flag_lr"]) == [0.2, 0.3, 5.0]  # the diverged run last, never best


def test_the_sweep_metric_becoming_nan_fails_the_trial(tmp_path):
    from gridrun.sweep.trial import TrialTask, run_trial

    script = tmp_path / "train.py"
    script.write_text("import gridrun\ngridrun.log_metrics(score=1.0)\ngridrun.log_metrics(score=float('inf'))\n")
    runs = tmp_path / "runs"
    for metric, status in ((None, "completed"), ("score", "failed")):
        run = rundir.create_run_dir(runs)
        task = TrialTask(script=str(script), flags={}, sweep="s", trial=0, run_dir=str(run), metric=metric)
        props = run_trial(task).properties
        assert props["status"] == status
    assert props["error_message"] == "score became inf at epoch 2"


def test_one_rule_says_which_metrics_are_losses(tmp_path):
    """scoring.is_loss decides which non-finite metrics fail a run; the report and ls share it."""
    from gridrun import scoring
    from gridrun.runner import execute

    losses = ["loss", "val_loss", "train_loss", "kl_loss", "metric_val_loss", "Val_Loss"]
    assert all(scoring.is_loss(n) for n in losses)
    assert not any(scoring.is_loss(n) for n in ["closs", "lossy_acc", "val_acc", "loss_scale"])
    script = tmp_path / "train.py"
    for name, status in (("kl_loss", "failed"), ("closs", "completed")):
        script.write_text(f"import gridrun\ngridrun.log_metrics({name}=float('nan'))\n")
        props = execute(script, rundir.create_run_dir(tmp_path / "runs"))
        assert props["status"] == status, name
    assert scoring.ranking_metric(None, {"loss"}.__contains__) == "loss"
    assert scoring.ranking_metric(None, {"loss", "val_loss"}.__contains__) == "val_loss"
    assert scoring.ranking_metric("acc", {"loss"}.__contains__) == "acc"


def test_non_numeric_metric_value_is_a_clear_error(tmp_path):
    ctx = RunContext(run_dir=tmp_path)
    with activate(ctx):
        with pytest.raises(GridrunError, match="metric 'loss'.*'abc'"):
            gridrun.log_metrics(loss="abc")
        with pytest.raises(GridrunError, match="metric 'acc'.*shape \\(2,\\)"):
            import numpy as np

            gridrun.log_metrics(acc=np.array([0.5, 0.6]))
        gridrun.log_metrics(loss=np.float32(0.5), steps=np.int64(3), ok=True)
    assert read_json(tmp_path / "metrics.json") == {"loss": [0.5], "steps": [3], "ok": [True]}


# --------------------------------------------------------------------------------------------------
# 10. epoch labels are kept: a 0-based loop records every epoch


def test_zero_based_epochs_are_all_recorded(tmp_path):
    ctx = RunContext(run_dir=tmp_path)
    with activate(ctx):
        for e in range(3):
            gridrun.log_metrics(epoch=e, loss=1.0 / (e + 1))
        gridrun.log_metrics(epoch=1, val_loss=0.7)  # a repeated label fills that epoch
        gridrun.log_metrics(loss=0.2)  # no label: the next epoch
    m = read_json(tmp_path / "metrics.json")
    assert m == {"loss": [1.0, 0.5, 1 / 3, 0.2], "val_loss": [None, 0.7]}
    assert read_json(tmp_path / "properties.json")["epoch_labels"] == [0, 1, 2, 3]
    again = RunContext.open(tmp_path)  # labels survive a reopen
    again.log_metrics(epoch=0, acc=0.9)
    again.log_metrics(epoch=7, acc=0.8)
    assert read_json(tmp_path / "metrics.json")["acc"] == [0.9, None, None, None, 0.8]
    assert read_json(tmp_path / "properties.json")["epoch_labels"] == [0, 1, 2, 3, 7]


def test_one_based_labels_write_no_label_list(tmp_path):
    ctx = RunContext(run_dir=tmp_path)
    for e in range(1, 4):
        ctx.log_metrics(epoch=e, loss=float(e))
    ctx.log_metrics(epoch=2, loss=9.0)
    assert read_json(tmp_path / "metrics.json") == {"loss": [1.0, 9.0, 3.0]}
    assert "epoch_labels" not in (read_json(tmp_path / "properties.json", {}) or {})


# --------------------------------------------------------------------------------------------------
# 4. Ctrl-C delivered once to the whole process group: no traceback, the end recorded once


def _start_training(tmp_path, script, *flags):
    proc = subprocess.Popen([sys.executable, "-m", "gridrun.cli", "training-run", str(script), *flags],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        logs = list((tmp_path / "runs").glob("*/output.log")) if (tmp_path / "runs").exists() else []
        if logs and "sleeping" in logs[0].read_text():
            return proc, logs[0].parent
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the script never started")


def test_ctrl_c_prints_no_traceback_and_records_the_end_once(tmp_path):
    script = tmp_path / "train.py"
    # the script records its end slowly (as a big JAX program would), so a second SIGINT lands in it
    script.write_text(SCRIPT + "\nimport atexit\n")
    (tmp_path / "sitecustomize_dir").mkdir()
    slow = tmp_path / "sitecustomize_dir" / "sitecustomize.py"
    slow.write_text(
        "import gridrun.record as r, time\n"
        "_finish = r.finish\n"
        "def finish(*a, **k):\n"
        "    with open(__import__('os').path.join(a[0].run_dir, 'finish.count'), 'a') as fh:\n"
        "        fh.write('x')\n"
        "    time.sleep(1.5)\n"
        "    return _finish(*a, **k)\n"
        "r.finish = finish\n"
        "import gridrun.runner\n"
        "gridrun.runner.finish = finish\n")
    env = dict(ENV, PYTHONPATH=f"{slow.parent}{os.pathsep}{ENV['PYTHONPATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "gridrun.cli", "training-run", str(script), "--flag", "sleep=60"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 60
    run = None
    while time.time() < deadline and run is None:
        logs = list((tmp_path / "runs").glob("*/output.log")) if (tmp_path / "runs").exists() else []
        if logs and "sleeping" in logs[0].read_text():
            run = logs[0].parent
        time.sleep(0.05)
    assert run is not None, proc.communicate(timeout=5)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: once, to the whole group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    log = (run / "output.log").read_text()
    assert "Traceback" not in log and "Traceback" not in err and "KeyboardInterrupt" not in log + err, log + err
    p = read_json(run / "properties.json")
    assert p["status"] == "interrupted" and p["end"] and p["exit_code"] == 130
    assert (run / "finish.count").read_text() == "x"  # the end was recorded exactly once
    assert read_json(run / "summary.json")["status"] == "interrupted"


# --------------------------------------------------------------------------------------------------
# 2. disk full while streaming output


def test_disk_full_fails_the_run_stops_the_child_and_keeps_earlier_runs(script, tmp_path):
    with tmpfs(tmp_path / "disk", size="256k") as disk:
        runs = disk / "runs"
        first = run_cli("training-run", script, "--runs-dir", runs, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        (earlier,) = list(runs.iterdir())
        before = {p.name: p.read_bytes() for p in earlier.rglob("*") if p.is_file()}
        proc = run_cli("training-run", script, "--flag", "mode=flood", "--runs-dir", runs, cwd=tmp_path, timeout=120)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr and "no space left on device while writing output.log" in proc.stderr
        (run,) = [d for d in runs.iterdir() if d != earlier]
        p = read_json(run / "properties.json")
        assert p["status"] == "failed" and p["error_message"] == "no space left on device while writing output.log"
        child = p["pid"]
        from gridrun.sweep.manifest import pid_alive

        assert not pid_alive(child)
        table = gridrun.ls_runs(runs)
        assert sorted(table["status"]) == ["completed", "failed"]
        assert {p.name: p.read_bytes() for p in earlier.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------------------------------------------
# 1. kill -9 of a --jobs sweep's client: its workers die with it, resume never runs a trial twice


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_kill_9_of_the_client_kills_its_workers_and_resume_runs_nothing_twice(script, tmp_path):
    from gridrun.sweep.manifest import pid_alive

    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "gridrun.cli", "tuning-run", str(script), "--flag",
           "lr=" + ",".join(str(i / 10) for i in range(1, 7)), "--flag", "sleep=3", "--runs-dir", str(runs),
           "--jobs", "2", "--quiet", "--ordered"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline:  # kill once two trials are running in workers
        time.sleep(0.1)
        running = [read_json(p, {}) for p in runs.glob("*/properties.json")] if runs.is_dir() else []
        pids = {r.get("pid") for r in running if r.get("status") == "running" and r.get("pid") != proc.pid}
        if len(pids - {None}) >= 2:
            workers = _descendants(proc.pid)
            break
    assert workers, proc.stderr.read().decode() if proc.poll() is not None else "no trial started"
    proc.kill()  # kill -9 of the client alone, not its process group
    proc.wait()
    time.sleep(4)
    alive = [w for w in workers if pid_alive(w)]
    assert not alive, f"worker processes still alive 4 s after their client was killed: {alive}"
    (manifest,) = list_sweeps(runs)
    sweep_id = json.loads(manifest.read_text())["id"]
    code = cli.main(["tuning-run", "--resume", sweep_id, "--runs-dir", str(runs), "--quiet"])
    assert code == 0
    completed: dict[float, list[str]] = {}
    for d in runs.iterdir():
        if d.name == "sweeps":
            continue
        p = read_json(d / "properties.json", {})
        assert p.get("status") != "running", d
        if p.get("status") == "completed":
            completed.setdefault(read_json(d / "flags.json")["lr"], []).append(d.name)
    assert sorted(completed) == [i / 10 for i in range(1, 7)]
    assert all(len(v) == 1 for v in completed.values()), completed  # no combination completed twice


def test_resume_removes_the_empty_run_dir_a_kill_left(script, tmp_path):
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"lr": [0.1, 0.2]}, runs_dir=runs, quiet=True)
    (path,) = list_sweeps(runs)
    data = json.loads(path.read_text())
    data["client"] = {"pid": 999999, "hostname": "gone", "heartbeat": "2020-01-01T00:00:00Z"}  # dead client
    data["trials"][1].update(status="running", run_dir=None, attempts=[])
    write_json(path, data)
    for d in runs.iterdir():
        if read_json(d / "properties.json", {}).get("trial") == 1:
            import shutil

            shutil.rmtree(d)
            d.mkdir()  # killed between creating the run dir and submitting its trial
            empty = d
    gridrun.tuning_run(script, runs_dir=runs, resume=data["id"], quiet=True)
    assert not empty.exists()
    assert len([d for d in runs.iterdir() if d.name not in ("sweeps", ".index")]) == 2


def test_resume_waits_for_a_live_earlier_attempt_and_adopts_its_result(script, tmp_path):
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"lr": [0.1, 0.2]}, runs_dir=runs, quiet=True, ordered=True)
    (path,) = list_sweeps(runs)
    data = json.loads(path.read_text())
    data["client"] = {"pid": 999999, "hostname": "gone", "heartbeat": "2020-01-01T00:00:00Z"}  # dead client
    run = runs / data["trials"][1]["run_dir"]
    data["trials"][1].update(status="running", run_dir=None)
    data["trials"][1]["attempts"][0].update(status="running", end=None)
    write_json(path, data)
    final = read_json(run / "properties.json")
    # an orphaned worker still running the trial: it records the trial completed 2 s from now, then exits
    orphan = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from gridrun._io import read_json, write_json\n"
        "time.sleep(2)\n"
        f"write_json({str(run / 'properties.json')!r}, read_json({str(run / 'properties.json')!r}) | "
        "{'status': 'completed', 'end': 'later'})\n")], env=ENV)
    try:
        write_json(run / "properties.json", final | {"status": "running", "end": None, "pid": orphan.pid,
                                                      "hostname": rundir.hostname()})
        gridrun.tuning_run(script, runs_dir=runs, resume=data["id"], quiet=True)
    finally:
        orphan.wait(timeout=30)
    m = json.loads(path.read_text())
    assert m["trials"][1]["status"] == "completed" and m["trials"][1]["run_dir"] == run.name
    assert len(m["trials"][1]["attempts"]) == 1  # its earlier attempt's result, not a second run
    assert len([d for d in runs.iterdir() if d.name not in ("sweeps", ".index")]) == 2


def test_resume_leaves_the_empty_run_dirs_of_another_running_sweep(script, tmp_path):
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"lr": [0.1]}, runs_dir=runs, quiet=True)
    (path,) = list_sweeps(runs)
    data = json.loads(path.read_text())
    data["client"] = {"pid": 999999, "hostname": "gone", "heartbeat": "2020-01-01T00:00:00Z"}  # dead client
    write_json(path, data)
    time.sleep(1.1)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # a live client of another sweep of this runs dir
        other = dict(data, id=data["id"] + "x", created=rundir.iso(rundir.utc_now()),
                     client={"pid": sleeper.pid, "hostname": rundir.hostname(),
                             "heartbeat": rundir.iso(rundir.utc_now())})
        write_json(path.parent / f"{other['id']}.json", other)
        fresh = rundir.create_run_dir(runs)  # its run dir, waiting for a worker to start it
        time.sleep(2.1)
        gridrun.tuning_run(script, runs_dir=runs, resume=data["id"], quiet=True)
        assert fresh.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_run_info_metrics_keep_nan_and_epoch_labels(tmp_path):
    runs = tmp_path / "runs"
    run = rundir.create_run_dir(runs)
    ctx = RunContext.open(run)
    ctx.write_properties(status="completed")
    for e in range(3):
        ctx.log_metrics(epoch=e, loss=[1.0, float("inf"), float("nan")][e])
    info = gridrun.run_info(run, runs_dir=runs)
    assert list(info.metrics.index) == [0, 1, 2] and info.metrics["loss"].iloc[0] == 1.0
    assert math.isinf(info.metrics["loss"].iloc[1]) and math.isnan(info.metrics["loss"].iloc[2])


def test_a_ctrl_c_inside_runpy_leaves_the_main_module_in_place(tmp_path, monkeypatch):
    """runpy swaps sys.modules["__main__"] for the script's module; a Ctrl-C that lands inside runpy's
    own enter/exit skips its restore. A session left with the script as its __main__ ran that script in
    every later multiprocessing "spawn" child (Dask workers, process pools), which died on the session's
    own arguments ("unexpected argument '-q'"). The runner puts the main module back, whatever happened."""
    import types

    from gridrun import runner

    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    main = sys.modules["__main__"]

    def interrupted(path, run_name):
        sys.modules["__main__"] = types.ModuleType("__main__")  # runpy swapped in the script's module...
        raise KeyboardInterrupt  # ...and Ctrl-C landed before runpy put the old one back

    monkeypatch.setattr(runner.runpy, "run_path", interrupted)
    props = runner.execute(script, rundir.create_run_dir(tmp_path / "runs"), {})
    assert props["status"] == "interrupted"
    assert sys.modules["__main__"] is main
