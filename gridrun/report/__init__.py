"""HTML reports: a run's report (`view_run`), two runs side by side (`compare_runs`), a sweep's
trials (`sweep_report`), and the live report of a running run (`serve_run`, `gridrun view --live`).

Modules: rundata (read a run dir), sweepdata (read a sweep's runs), charts (plotly figures),
pages (jinja2 templates to HTML; plotly.js shared per runs dir or inlined; inline display in Jupyter),
live (the local HTTP server for live runs).
"""

from __future__ import annotations

from .live import LiveServer, serve_run
from .pages import compare_runs, sweep_report, view_run

__all__ = ["LiveServer", "compare_runs", "serve_run", "sweep_report", "view_run"]
