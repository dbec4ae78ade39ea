"""gridrun sweep-report --live: the sweep page served on 127.0.0.1 follows a running sweep (a real
`gridrun tuning-run` in a subprocess), checked in headless Chromium; every wait is bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_report_browser import driver, js_errors, open_page, pytestmark, screenshot  # noqa: F401
from test_report_fixtures import sweep_runs

SCRIPT = '''import time
import gridrun

FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.1), gridrun.flag_integer("epochs", 3))
for epoch in range(FLAGS.epochs):
    time.sleep(0.7)
    gridrun.log_metrics(loss=1.0 / (epoch + 1) + FLAGS.lr, val_loss=1.2 / (epoch + 1) + FLAGS.lr)
'''


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_live_server_state_and_paths(tmp_path):
    from gridrun.report.live import serve_sweep

    runs = tmp_path / "runs"
    paths = sweep_runs(runs, "sweep-20261127-a1b2")
    (runs / "sweeps").mkdir()
    manifest = {"id": "sweep-20261127-a1b2", "status": "completed", "metric": "val_loss",
                "trials": [{"trial": i, "run_dir": p.name} for i, p in enumerate(paths)]}
    (runs / "sweeps" / "sweep-20261127-a1b2.json").write_text(json.dumps(manifest))
    with serve_sweep(runs_dir=runs, open_browser=False) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.sweep == "sweep-20261127-a1b2"
        status, body = get(server.url + "state.json")
        state = json.loads(body)
        assert status == 200 and state["ended"] is True
        status, page = get(server.url)
        assert status == 200 and b'id="figure-analysis-importance"' in page and b'src="plotly.js"' in page
        assert json.dumps(state["state"]).encode() in page  # the page knows the state it shows
        assert get(server.url + "plotly.js")[0] == 200
        assert get(server.url + "flags.json")[0] == 404 and get(server.url + "../sweeps")[0] == 404
        metrics = json.loads((paths[2] / "metrics.json").read_text())
        metrics["loss"].append(0.1)
        time.sleep(0.01)
        (paths[2] / "metrics.json").write_text(json.dumps(metrics))
        assert json.loads(get(server.url + "state.json")[1])["state"] != state["state"]  # an epoch reported


def test_live_pages_never_make_the_browser_log_a_missing_icon(tmp_path):
    """A browser asks for /favicon.ico unless the page names an icon: the waiting page (no trial yet)
    names one too, and both servers answer the request itself with 204, so the console stays clean."""
    from gridrun.report.live import LiveServer, serve_sweep

    runs = tmp_path / "runs"
    (runs / "sweeps").mkdir(parents=True)
    manifest = {"id": "sweep-20261127-c3d4", "status": "running", "metric": "val_loss", "trials": []}
    (runs / "sweeps" / "sweep-20261127-c3d4.json").write_text(json.dumps(manifest))
    with serve_sweep(runs_dir=runs, open_browser=False) as server:
        status, page = get(server.url)
        assert status == 200 and b"waiting for its first trial" in page and b'rel=icon href="data:,"' in page
        assert get(server.url + "favicon.ico")[0] == 204
    run = sweep_runs(tmp_path / "one", "sweep-x")[0]
    with LiveServer(run) as server:
        assert get(server.url + "favicon.ico")[0] == 204


def test_live_bad_sweep_is_a_clear_error(tmp_path):
    from _util import run_cli

    proc = run_cli("sweep-report", "--live", "--no-open", "--runs-dir", tmp_path / "runs")
    assert proc.returncode == 2 and "no sweep in" in proc.stderr and "tuning-run" in proc.stderr
    proc = run_cli("sweep-report", "nope", "--live", "--no-open", "--runs-dir", tmp_path / "runs")
    assert proc.returncode == 2 and "no runs of sweep 'nope'" in proc.stderr


def page_state(drv) -> dict:
    return drv.execute_script(
        "var rows = Array.from(document.querySelectorAll('table.trials tbody tr'));"
        "var live = document.getElementById('live-status');"
        "return {statuses: rows.map(function (r) { return r.cells[2].textContent.trim(); }),"
        "  ended: !!(live && live.classList.contains('ended')), marker: window.__marker === 1,"
        "  charts: document.querySelectorAll('.js-plotly-plot').length};")


def test_live_page_follows_a_running_sweep(driver, tmp_path):  # noqa: F811
    from gridrun.report.live import serve_sweep

    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    env.pop("GRIDRUN_RUN_DIR", None)
    sweep = subprocess.Popen([sys.executable, "-m", "gridrun.cli", "tuning-run", "train.py", "--flag",
                              "lr=0.1,0.2,0.3", "--runs-dir", "runs"], cwd=project, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while not list((project / "runs" / "sweeps").glob("*.json")):
            assert sweep.poll() is None and time.monotonic() < deadline, "the sweep did not start"
            time.sleep(0.1)
        with serve_sweep(runs_dir=project / "runs", open_browser=False) as server:
            driver.get(server.url)
            seen: list[tuple[str, ...]] = []
            reloaded_while_running = False
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                try:
                    st = page_state(driver)
                except Exception:  # noqa: BLE001 - the page is reloading
                    time.sleep(0.2)
                    continue
                if not st["marker"]:  # a fresh load (the first, or a reload by the live script)
                    if seen and "running" in seen[-1]:
                        reloaded_while_running = True
                    driver.execute_script("window.__marker = 1;")
                if not seen or tuple(st["statuses"]) != seen[-1]:
                    seen.append(tuple(st["statuses"]))
                if st["ended"]:
                    break
                time.sleep(0.3)
            else:
                pytest.fail(f"the live page did not see the sweep end; seen: {seen}")
            assert sweep.wait(timeout=60) == 0, sweep.stdout.read()
            assert reloaded_while_running, seen
            assert any("running" in s for s in seen)  # it showed a trial running...
            assert len(seen) >= 3  # ...and changed as trials reported and ended
            final = page_state(driver)
            assert sorted(final["statuses"]) == ["completed"] * 3 and final["charts"] >= 4
            open_page(driver, driver.current_url)  # the last page draws all its charts
            assert driver.execute_script("return !!document.getElementById('figure-analysis-curves')")
            screenshot(driver, tmp_path, "sweep-live")
            assert js_errors(driver) == []
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait(timeout=30)


def test_live_cli_on_an_ended_sweep_writes_the_static_report(tmp_path):
    from _util import run_cli

    runs = tmp_path / "runs"
    sweep_runs(runs, "sweep-20261127-a1b2")
    (runs / "sweeps").mkdir()
    (runs / "sweeps" / "sweep-20261127-a1b2.json").write_text(json.dumps(
        {"id": "sweep-20261127-a1b2", "status": "completed", "trials": []}))
    proc = run_cli("sweep-report", "--live", "--no-open", "--runs-dir", runs, timeout=120, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Live report of sweep sweep-20261127-a1b2: http://127.0.0.1:")
    assert lines[-1] == f"Live server stopped. Sweep report: {runs / 'reports' / 'sweep-20261127-a1b2.html'}"
    assert 'id="figure-analysis-importance"' in (runs / "reports" / "sweep-20261127-a1b2.html").read_text()
