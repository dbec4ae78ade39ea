"""`gridrun view --live`: serve a running run's report from a small HTTP server on 127.0.0.1.

The page is the normal run report with a script that fetches `metrics.json` and `properties.json`
every 2 seconds and redraws its charts as epochs complete; it stops polling once the run has ended.
The server (http.server in a daemon thread) answers only three paths: `/` (the report, rendered on
each request so a reload shows new sections), `/metrics.json` and `/properties.json`. Nothing else
of the run dir or the machine is served, and it listens on the loopback interface only.
"""

from __future__ import annotations

import os
import threading
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
        else:
            self.send_error(HTTPStatus.NOT_FOUND, "the live report serves /, /metrics.json, /properties.json")

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
