"""`gridrun view --live`: serve a running run's report from a small HTTP server on 127.0.0.1.

The page is the normal run report with a script that fetches `metrics.json` and `properties.json`
every 2 seconds and redraws its charts as epochs complete; it stops polling once the run has ended.
The server (http.server in a daemon thread) answers only three paths: `/` (the report, rendered on
each request so a reload shows new sections), `/metrics.json` and `/properties.json`. Nothing else
of the run dir or the machine is served, and it listens on the loopback interface only.

`gridrun sweep-report --live` (SweepLiveServer, serve_sweep): the sweep page, rendered afresh on each
request, with a script that polls `/state.json` (a fingerprint of the manifest and of the sweep's runs'
metrics and properties files) every 2 seconds and reloads the page, where it was scrolled to, when it
changes; plotly.js is served once as `/plotly.js`. It stops polling once the sweep has ended.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..rundir import METRICS_FILE, PROPERTIES_FILE
from .pages import open_in_browser, run_page
from .rundata import load_run, resolve_run

HOST = "127.0.0.1"


class LiveServer:
    """A running live-report server; `url` is the page, `stop()` shuts it down."""

    def __init__(self, run_dir: Path, port: int = 0) -> None:
        self.run_dir = Path(run_dir)
        handler = type("Handler", (_Handler,), {"run_dir": self.run_dir})
        self.httpd = ThreadingHTTPServer((HOST, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="gridrun-live", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def serve_until(self, ended: Callable[[], bool], linger: float) -> None:
        """Keep serving (checking `ended()` twice a second) until `linger` seconds after it first says
        the run or sweep has ended, or until Ctrl-C; then stop. The CLI's `--live` loop, for both pages."""
        ended_at = None
        try:
            while True:
                time.sleep(0.5)
                if ended_at is None and ended():
                    ended_at = time.monotonic()
                if ended_at is not None and time.monotonic() - ended_at >= linger:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    run_dir: Path
    files = {"/metrics.json": METRICS_FILE, "/properties.json": PROPERTIES_FILE}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html", "/report.html"):
            body = run_page(load_run(self.run_dir), live=True).encode("utf-8")
            self._send(body, "text/html; charset=utf-8")
        elif path in self.files:
            try:
                body = (self.run_dir / self.files[path]).read_bytes()
            except FileNotFoundError:
                body = b"{}"
            self._send(body, "application/json")
        elif not self._no_icon(path):
            self.send_error(HTTPStatus.NOT_FOUND, "the live report serves /, /metrics.json, /properties.json")

    def _no_icon(self, path: str) -> bool:
        """Answer a browser's /favicon.ico with 204 (no content): a 404 would be logged in its console."""
        if path != "/favicon.ico":
            return False
        self.send_response(HTTPStatus.NO_CONTENT)
        self.end_headers()
        return True

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: polling would flood the terminal
        pass


def serve_run(
    run: Any = None,
    runs_dir: str | os.PathLike = "runs",
    port: int = 0,
    open_browser: bool = True,
) -> LiveServer:
    """Start serving the live report of `run` (default: the latest) and return the server.

    `port=0` picks a free port; the page is at `server.url`. Call `server.stop()` when done.
    """
    server = LiveServer(resolve_run(run, runs_dir), port=port)
    if open_browser:
        open_in_browser(server.url)
    return server


# --------------------------------------------------------------------------------------------------
# A running sweep: `gridrun sweep-report --live`


def sweep_state(sweep: str, runs_dir: str | os.PathLike) -> tuple[str, bool]:
    """(a fingerprint of the sweep's files, whether the sweep has ended).

    The fingerprint changes when the manifest is rewritten or any of the sweep's runs writes its
    metrics or properties (an epoch reported, a trial started or ended): the live page reloads then.
    Ended: the manifest says so, or its client process is gone."""
    from .._io import read_json
    from ..rundir import client_alive
    from .sweepdata import SWEEPS_DIR

    path = Path(runs_dir) / SWEEPS_DIR / f"{sweep}.json"
    parts: list[str] = []
    try:
        st = path.stat()
        parts.append(f"{st.st_mtime_ns}:{st.st_size}")
    except FileNotFoundError:
        return "none", False
    data = read_json(path, {}) or {}
    data = data if isinstance(data, dict) else {}
    dirs: list[str] = []
    for t in data.get("trials") or []:
        for d in [t.get("run_dir"), *(a.get("run_dir") for a in t.get("attempts") or [])]:
            if d and d not in dirs:
                dirs.append(d)
    for d in dirs:
        for name in (METRICS_FILE, PROPERTIES_FILE):
            try:
                st = (Path(runs_dir) / d / name).stat()
                parts.append(f"{st.st_mtime_ns}:{st.st_size}")
            except (FileNotFoundError, NotADirectoryError):
                parts.append("-")
    import hashlib

    ended = data.get("status") not in ("running", "pending") or not client_alive(data.get("client"))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16], ended


class SweepLiveServer(LiveServer):
    """The live report of a sweep: `/` (the sweep page, rendered on each request), `/state.json`
    (fingerprint and ended), `/plotly.js` (the chart library, cached by the browser)."""

    def __init__(self, sweep: str, runs_dir: str | os.PathLike = "runs", port: int = 0, metric: str | None = None,
                 maximize: bool | None = None, pareto: list[str] | None = None) -> None:
        self.sweep, self.runs_dir = sweep, Path(runs_dir)
        handler = type("SweepHandler", (_SweepHandler,), {"server_ref": self})
        self.metric, self.maximize, self.pareto = metric, maximize, pareto
        self.httpd = ThreadingHTTPServer((HOST, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="gridrun-sweep-live", daemon=True)
        self.thread.start()

    def state(self) -> tuple[str, bool]:
        return sweep_state(self.sweep, self.runs_dir)

    def page(self) -> str:
        from html import escape

        from ..errors import GridrunError
        from .pages import sweep_page
        from .sweepdata import find_sweep_runs, load_sweep, sweep_metric

        fingerprint, _ = self.state()  # before reading: a change while rendering shows on the next poll
        try:
            paths = find_sweep_runs(self.sweep, self.runs_dir)
        except GridrunError:
            from .analysis_charts import live_js

            return ("<!doctype html><meta charset=utf-8><link rel=icon href=\"data:,\">"
                    "<title>Sweep " + escape(self.sweep) + "</title>"
                    "<p id=live-status>Sweep " + escape(self.sweep) + ": waiting for its first trial...</p>"
                    "<script type=application/json id=gridrun-page>" + json.dumps({"live": fingerprint}) +
                    "</script><script>" + live_js() + "</script>")
        metric, maximize = self.metric, self.maximize
        if metric is None:
            metric, mode = sweep_metric(self.sweep, self.runs_dir)
            if maximize is None and mode is not None:
                maximize = mode == "max"
        data = load_sweep(self.sweep, paths, metric=metric, maximize=maximize)
        return sweep_page(data, plotly_src="plotly.js", live=fingerprint, pareto=self.pareto)  # type: ignore[arg-type]


class _SweepHandler(_Handler):
    server_ref: SweepLiveServer

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(self.server_ref.page().encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/state.json":
            state, ended = self.server_ref.state()
            self._send(json.dumps({"state": state, "ended": ended}).encode(), "application/json")
        elif path == "/plotly.js":
            from .pages import plotly_js

            body = str(plotly_js()).encode("utf-8")
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/javascript; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=86400")
            self.end_headers()
            self.wfile.write(body)
        elif not self._no_icon(path):
            self.send_error(HTTPStatus.NOT_FOUND, "the live sweep report serves /, /state.json, /plotly.js")


def serve_sweep(
    sweep: str | None = None,
    runs_dir: str | os.PathLike = "runs",
    port: int = 0,
    open_browser: bool = True,
    metric: str | None = None,
    maximize: bool | None = None,
    pareto: list[str] | None = None,
) -> SweepLiveServer:
    """Serve the live report of a sweep (default: the latest manifest in runs_dir/sweeps) on 127.0.0.1.

    The page refreshes as the sweep's trials report; `server.url` is the page, `server.stop()` ends it."""
    from ..errors import GridrunError
    from .sweepdata import SWEEPS_DIR

    folder = Path(runs_dir) / SWEEPS_DIR

    if sweep is None:
        known = sorted(folder.glob("*.json")) if folder.is_dir() else []  # oldest first (ids sort by time)
        if not known:
            raise GridrunError(f"no sweep in {folder}: start one with `gridrun tuning-run SCRIPT`, "
                               "or give --runs-dir")
        sweep = known[-1].stem
    elif not (folder / f"{sweep}.json").exists():
        from .sweepdata import find_sweep_runs

        find_sweep_runs(sweep, runs_dir)  # the one-line error naming the sweeps there (or runs without one)
    server = SweepLiveServer(sweep, runs_dir, port=port, metric=metric, maximize=maximize, pareto=pareto)
    if open_browser:
        open_in_browser(server.url)
    return server
