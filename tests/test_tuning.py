"""Tuning runs: manifest, executors, failures, retries, confirmation, resume (gridrun/tuning.py)."""

import io
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
from gridrun import cli
from gridrun.errors import GridrunError
from gridrun.sweep import Manifest, list_sweeps

SCRIPT = """
import os, time
import gridrun
FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.1), gridrun.flag_integer("units", 8),
                      gridrun.flag_string("mode", "ok"), gridrun.flag_numeric("sleep", 0.0))
print("running", FLAGS.as_dict())
if FLAGS.sleep:
    time.sleep(FLAGS.sleep)
if FLAGS.mode == "raise":
    raise ValueError("broken trial")
if FLAGS.mode == "exit":
    raise SystemExit(3)
if FLAGS.mode == "crash":
    os._exit(7)
if FLAGS.mode == "flaky":
    marker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flaky.marker")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
loss = float("nan") if FLAGS.mode == "nan" else FLAGS.lr * FLAGS.units
gridrun.log_metrics(loss=loss, val_loss=loss + 1)
gridrun.write_properties(worker_pid=os.getpid())
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def manifest_of(runs: Path) -> dict:
    (path,) = list_sweeps(runs)
    return json.loads(path.read_text())


def props(runs: Path, name: str) -> dict:
    return json.loads((runs / name / "properties.json").read_text())


def test_inprocess_sweep_records_manifest_and_run_dirs(script, tmp_path, capsys):
    runs = tmp_path / "runs"
    gridrun.training_run(script, {"units": 1}, runs_dir=runs, echo=False)  # not part of the sweep
    df = gridrun.tuning_run(script, {"lr": [0.1, 0.2], "units": ["2", 3]}, runs_dir=runs, seed=5)
    out = capsys.readouterr().out
    assert "4 total combinations of flags" in out and "Best trials by val_loss" in out
    assert len(df) == 4 and set(df["status"]) == {"completed"}
    m = manifest_of(runs)
    assert m["script_path"] == str(script) and m["seed"] == 5 and m["total_combinations"] == 4
    assert m["grid"] == {"flags": {"lr": [0.1, 0.2], "units": [2, 3]}}
    assert m["status"] == "completed" and m["counts"]["completed"] == 4
    seen = set()
    for t in m["trials"]:
        assert t["status"] == "completed" and len(t["attempts"]) == 1
        p = props(runs, t["run_dir"])
        assert p["sweep"] == m["id"] and p["trial"] == t["trial"] and p["status"] == "completed"
        flags = json.loads((runs / t["run_dir"] / "flags.json").read_text())
        assert flags["lr"] == t["flags"]["lr"] and flags["units"] == t["flags"]["units"]
        assert t["metrics"]["loss"] == pytest.approx(t["flags"]["lr"] * t["flags"]["units"])
        assert "running" in (runs / t["run_dir"] / "output.log").read_text()
        seen.add((t["flags"]["lr"], t["flags"]["units"]))
    assert seen == {(0.1, 2), (0.2, 2), (0.1, 3), (0.2, 3)}
    assert set(df["run_dir"].map(lambda p: Path(p).name)) == {t["run_dir"] for t in m["trials"]}


def test_sample_fraction_and_seed_are_reproducible(script, tmp_path):
    kw = dict(flags={"lr": [0.1, 0.2, 0.3], "units": [1, 2, 3, 4]}, sample=0.25, quiet=True)
    gridrun.tuning_run(script, runs_dir=tmp_path / "a", seed=11, **kw)
    gridrun.tuning_run(script, runs_dir=tmp_path / "b", seed=11, **kw)
    a, b = manifest_of(tmp_path / "a"), manifest_of(tmp_path / "b")
    assert len(a["trials"]) == 3  # ceil(0.25 * 12)
    assert [t["flags"] for t in a["trials"]] == [t["flags"] for t in b["trials"]]
    df = gridrun.tuning_run(script, runs_dir=tmp_path / "c", seed=1, sample=0.001, quiet=True,
                            flags={"lr": [0.1, 0.2]})
    assert len(df) == 1  # never zero trials


def test_failing_trials_do_not_stop_the_sweep(script, tmp_path):
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"mode": ["ok", "raise", "exit", "nan"], "lr": [0.5]}, runs_dir=runs,
                            ordered=True, quiet=True)
    status = dict(zip(df["flag_mode"], df["status"]))
    assert status == {"ok": "completed", "raise": "failed", "exit": "failed", "nan": "failed"}
    m = manifest_of(runs)
    errors = {t["flags"]["mode"]: t["error"] for t in m["trials"]}
    assert "broken trial" in errors["raise"] and "status 3" in errors["exit"] and "nan" in errors["nan"].lower()
    failed = next(t for t in m["trials"] if t["flags"]["mode"] == "raise")
    assert "ValueError" in props(runs, failed["run_dir"])["error_traceback"]
    assert m["status"] == "finished_with_failures"


def test_retries_make_new_run_dirs(script, tmp_path):
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"mode": ["flaky", "raise"]}, runs_dir=runs, retries=2, quiet=True, ordered=True)
    m = manifest_of(runs)
    flaky, bad = m["trials"]
    assert flaky["status"] == "completed" and [a["status"] for a in flaky["attempts"]] == ["failed", "completed"]
    assert bad["status"] == "failed" and len(bad["attempts"]) == 3
    dirs = [a["run_dir"] for t in m["trials"] for a in t["attempts"]]
    assert len(set(dirs)) == 5 and len(df) == 5
    assert all(props(runs, d)["trial"] == bad["trial"] for d in (a["run_dir"] for a in bad["attempts"]))


def test_max_failures_stops_the_sweep(script, tmp_path):
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"mode": ["raise"], "lr": [0.1, 0.2, 0.3, 0.4, 0.5]}, runs_dir=runs,
                       max_failures=2, quiet=True)
    m = manifest_of(runs)
    statuses = [t["status"] for t in m["trials"]]
    assert statuses.count("failed") == 2 and statuses.count("pending") == 3
    assert m["status"] == "stopped" and "max-failures" in m["stop_reason"]


def test_local_pool_two_jobs_reuses_workers(script, tmp_path):
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"lr": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "sleep": [0.05]}, runs_dir=runs,
                            jobs=2, quiet=True)
    assert len(df) == 6 and set(df["status"]) == {"completed"}
    m = manifest_of(runs)
    dirs = [t["run_dir"] for t in m["trials"]]
    assert len(set(dirs)) == 6
    pids = set()
    for d in dirs:
        p = props(runs, d)
        assert p["context"] == "worker" and p["end"] and (runs / d / "summary.json").exists()
        assert p["pid"] != os.getpid()
        pids.add(p["worker_pid"])
    assert len(pids) <= 2  # six trials, two reused worker processes


def test_crashed_worker_fails_its_trial_and_the_sweep_goes_on(script, tmp_path):
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"mode": ["crash", "ok"], "lr": [0.1, 0.2, 0.3]}, runs_dir=runs, jobs=2,
                       retries=1, quiet=True, ordered=True)
    m = manifest_of(runs)
    for t in m["trials"]:
        if t["flags"]["mode"] == "crash":
            assert t["status"] == "failed" and "worker process" in t["error"]
            p = props(runs, t["run_dir"])
            assert p["status"] == "failed" and "worker process" in p["error_message"]
        else:  # a trial that shared the broken pool may have failed once, and was retried
            assert t["status"] == "completed"


def test_large_sweep_without_terminal_stops_before_running(script, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = cli.main(["tuning-run", str(script), "--flag", "units=" + ",".join(map(str, range(101))),
                     "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and "101 trials" in err and "--yes" in err
    assert not [p for p in runs.glob("*") if p.name != "sweeps"] if runs.exists() else True
    code = cli.main(["tuning-run", str(script), "--flag", "units=1,2", "--runs-dir", str(runs), "--quiet"])
    assert code == 0  # small sweeps need no confirmation
    code = cli.main(["tuning-run", str(script), "--flag", "units=" + ",".join(map(str, range(101))),
                     "--runs-dir", str(runs), "--sample", "0.02", "--yes", "--quiet"])
    assert code == 0


def test_cli_bad_value_is_an_error_before_anything_runs(script, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = cli.main(["tuning-run", str(script), "--flag", "units=4,four", "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and "units" in err and "'four'" in err
    assert not runs.exists()


def test_cli_grid_file_and_combinations(script, tmp_path):
    runs = tmp_path / "runs"
    grid = tmp_path / "grid.yml"
    grid.write_text("mode: ['ok', 'a,b']\nlr: [0.1, 0.2]\n")
    proc = run_cli("tuning-run", script, "--grid", grid, "--runs-dir", runs, "--seed", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4 total combinations of flags" in proc.stdout
    modes = {t["flags"]["mode"] for t in manifest_of(runs)["trials"]}
    assert modes == {"ok", "a,b"}
    combos = tmp_path / "c.csv"
    combos.write_text("lr,units\n0.5,2\n0.25,4\n")
    runs2 = tmp_path / "runs2"
    proc = run_cli("tuning-run", script, "--combinations", combos, "--runs-dir", runs2, "--ordered", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [t["flags"] for t in manifest_of(runs2)["trials"]] == [{"lr": 0.5, "units": 2}, {"lr": 0.25, "units": 4}]


def _completed_before(runs: Path) -> dict[int, str]:
    m = manifest_of(runs)
    return {t["trial"]: t["run_dir"] for t in m["trials"] if t["status"] == "completed"}


def _wait_for_running_pids_to_die(runs: Path, timeout: float = 10) -> None:
    """SIGKILL is delivered asynchronously: let the killed workers go (as they would before a resume)."""
    from gridrun.sweep.manifest import pid_alive

    pids = [p.get("pid") for d in runs.iterdir() if d.name not in ("sweeps", ".index")
            for p in [json.loads((d / "properties.json").read_text()) if (d / "properties.json").exists() else {}]
            if p.get("status") == "running" and p.get("pid")]
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("jobs", [1, 2])
def test_resume_after_kill_9_reruns_nothing_completed(script, tmp_path, jobs):
    runs = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=str(Path(gridrun.__file__).parents[1]))
    env.pop("GRIDRUN_RUN_DIR", None)
    cmd = [sys.executable, "-m", "gridrun.cli", "tuning-run", str(script), "--flag", "lr=" + ",".join(
        str(i / 10) for i in range(1, 9)), "--flag", "sleep=0.4", "--runs-dir", str(runs), "--jobs", str(jobs),
        "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    done: dict[int, str] = {}
    while time.monotonic() < deadline and len(done) < 3:
        time.sleep(0.1)
        if list_sweeps(runs):
            done = _completed_before(runs)
    os.killpg(proc.pid, signal.SIGKILL)  # the client and its workers, as a reboot would
    proc.wait()
    _wait_for_running_pids_to_die(runs)
    assert len(done) >= 3, proc.stderr.read().decode()
    done = _completed_before(runs)
    assert len(done) < 8
    sweep_id = manifest_of(runs)["id"]
    code = cli.main(["tuning-run", "--resume", sweep_id, "--runs-dir", str(runs), "--quiet"])
    assert code == 0
    m = manifest_of(runs)
    assert all(t["status"] == "completed" for t in m["trials"])
    for trial, run_dir in done.items():  # completed trials kept their run and were not run again
        t = m["trials"][trial]
        assert t["run_dir"] == run_dir and len(t["attempts"]) == 1
    # every trial has exactly one completed run dir, and no run dir is left "running"
    completed = {}
    for d in runs.iterdir():
        if d.name in ("sweeps", ".index"):
            continue
        p = props(runs, d.name)
        assert p["status"] != "running", d
        if p["status"] == "completed":
            assert p["trial"] not in completed
            completed[p["trial"]] = d.name
    assert sorted(completed) == list(range(8))


def test_resume_counts_a_completed_run_dir_the_manifest_missed(script, tmp_path, capsys):
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"mode": ["ok", "raise"], "lr": [0.1, 0.2]}, runs_dir=runs, quiet=True, ordered=True)
    (path,) = list_sweeps(runs)
    data = json.loads(path.read_text())
    assert [t["status"] for t in data["trials"]] == ["completed", "failed", "completed", "failed"]
    missed = data["trials"][0]["run_dir"]
    data["trials"][0].update(status="running", run_dir=None, attempts=[])  # as if killed before recording
    data["trials"][2].update(status="failed")  # its run dir says completed: that wins
    data["client"] = {"pid": 999999, "hostname": "gone", "heartbeat": "2020-01-01T00:00:00Z"}  # dead client
    path.write_text(json.dumps(data))
    before = {d.name for d in runs.iterdir()} - {".index"}  # .index: the runs table's index
    df = gridrun.tuning_run(script, runs_dir=runs, resume=data["id"], quiet=True)
    m = manifest_of(runs)
    assert m["trials"][0]["status"] == "completed" and m["trials"][0]["run_dir"] == missed
    assert m["trials"][2]["status"] == "completed" and len(m["trials"][2]["attempts"]) == 1
    new = {d.name for d in runs.iterdir()} - before - {".index"}
    assert new == {m["trials"][1]["run_dir"], m["trials"][3]["run_dir"]}  # only the failed trials ran again
    assert len(df) == 6 and df.attrs["trials"] == 4 and df.attrs["trials_completed"] == 2


def test_resume_refuses_a_sweep_whose_client_is_alive(script, tmp_path):
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"lr": [0.1]}, runs_dir=runs, quiet=True)
    (path,) = list_sweeps(runs)
    data = json.loads(path.read_text())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        data["client"] = {"pid": sleeper.pid, "hostname": gridrun.rundir.hostname(),
                          "heartbeat": gridrun.rundir.iso(gridrun.rundir.utc_now())}
        path.write_text(json.dumps(data))
        with pytest.raises(GridrunError, match="still being run"):
            gridrun.tuning_run(script, runs_dir=runs, resume=data["id"], quiet=True)
        data["client"]["heartbeat"] = "2020-01-01T00:00:00Z"  # stale: the pid was reused after a reboot
        path.write_text(json.dumps(data))
        gridrun.tuning_run(script, runs_dir=runs, resume=data["id"], quiet=True)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_resume_latest_matching_sweep(script, tmp_path):
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"mode": ["raise", "ok"]}, runs_dir=runs, quiet=True)
    first = Manifest.load(runs, list_sweeps(runs)[0].stem)
    gridrun.tuning_run(script, {"mode": ["raise", "ok"]}, runs_dir=runs, resume=True, quiet=True)
    assert len(list_sweeps(runs)) == 1
    again = Manifest.load(runs, first.id)
    failed = next(t for t in again.trials if t.flags["mode"] == "raise")
    assert len(failed.attempts) == 2
    with pytest.raises(GridrunError, match="no earlier sweep"):
        gridrun.tuning_run(script, {"mode": ["other"]}, runs_dir=runs, resume=True, quiet=True)


@pytest.mark.parametrize("jobs", [1, 2])
def test_reused_workers_do_not_mix_up_helper_modules(tmp_path, jobs):
    scripts = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "helper.py").write_text(f"VALUE = {name!r}\n")
        (folder / "train.py").write_text(
            "import gridrun, helper\nFLAGS = gridrun.flags(lr=0.1)\ngridrun.write_properties(helper=helper.VALUE)\n")
        scripts.append(folder / "train.py")
    runs = tmp_path / "runs"
    for script in scripts + scripts[:1]:
        df = gridrun.tuning_run(script, {"lr": [0.1, 0.2]}, runs_dir=runs, jobs=jobs, quiet=True)
        assert list(df["helper"]) == [script.parent.name] * 2
    (tmp_path / "a" / "helper.py").write_text("VALUE = 'a, edited'\n")
    os.utime(tmp_path / "a" / "helper.py", (time.time() + 5, time.time() + 5))
    df = gridrun.tuning_run(scripts[0], {"lr": [0.3]}, runs_dir=runs, jobs=jobs, quiet=True)
    assert list(df["helper"]) == ["a, edited"]


def test_ctrl_c_records_the_sweep_as_interrupted_and_resume_finishes_it(script, tmp_path):
    runs = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=str(Path(gridrun.__file__).parents[1]))
    env.pop("GRIDRUN_RUN_DIR", None)
    # Ctrl-C reaches the CLI as KeyboardInterrupt even where this test runs with SIGINT ignored (a
    # background job): the child installs Python's handler itself, so no preexec_fn (a fork after JAX) is needed
    boot = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "runpy.run_module('gridrun.cli', run_name='__main__', alter_sys=True)")
    cmd = [sys.executable, "-c", boot, "tuning-run", str(script), "--flag", "lr=0.1,0.2,0.3,0.4,0.5,0.6",
           "--flag", "sleep=0.3", "--runs-dir", str(runs)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (list_sweeps(runs) and _completed_before(runs)):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    m = manifest_of(runs)
    assert m["status"] == "interrupted" and f"--resume {m['id']}" in err
    assert m["counts"]["completed"] >= 1 and m["counts"]["running"] == 0
    for d in runs.iterdir():
        if d.name not in ("sweeps", ".index"):
            assert props(runs, d.name)["status"] in ("completed", "interrupted")
    code = cli.main(["tuning-run", str(script), "--flag", "lr=0.1,0.2,0.3,0.4,0.5,0.6", "--flag", "sleep=0.3",
                     "--runs-dir", str(runs), "--resume", "--quiet"])  # the latest matching sweep
    assert code == 0 and all(t["status"] == "completed" for t in manifest_of(runs)["trials"])


def test_a_huge_unsampled_grid_is_refused_and_a_sampled_one_runs(script, tmp_path):
    runs = tmp_path / "runs"
    huge = {"lr": [i / 1e4 for i in range(1000)], "units": list(range(1000)), "sleep": [0.0, 0.0001]}
    with pytest.raises(GridrunError, match="--sample"):
        gridrun.tuning_run(script, huge, runs_dir=runs, quiet=True)
    df = gridrun.tuning_run(script, huge, runs_dir=runs, sample=3, seed=4, quiet=True)
    assert len(df) == 3 and manifest_of(runs)["total_combinations"] == 2_000_000


def test_a_worker_notices_an_edited_helper_without_new_imports(tmp_path, monkeypatch):
    from gridrun.sweep import trial as T

    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "helper_fast.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(folder))
    import helper_fast  # noqa: F401

    try:
        T.forget_stale_modules(str(folder))  # (drops what earlier tests' scripts left)
        assert "helper_fast" in sys.modules
        assert T.forget_stale_modules(str(folder)) == []  # nothing imported since: only the folder's modules looked at
        os.utime(folder / "helper_fast.py", (time.time() + 5, time.time() + 5))
        assert T.forget_stale_modules(str(folder)) == ["helper_fast"]
        assert "helper_fast" not in sys.modules
        import helper_fast  # noqa: F401,F811 - imported again: the next trial's

        assert T.forget_stale_modules(str(folder)) == []
        T.forget_stale_modules(str(tmp_path))  # another script's folder: the first one's modules go
        assert "helper_fast" not in sys.modules
    finally:
        sys.modules.pop("helper_fast", None)
        T._script_dirs.discard(str(folder))
        T._script_dirs.discard(str(tmp_path))
