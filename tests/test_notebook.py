"""gridrun in Jupyter: a real IPython kernel (ipykernel, driven by nbclient) runs a small notebook.

`gridrun.flags()` must not read the kernel's own command line (`-f kernel.json`); view_run,
compare_runs and sweep_report results display the page inline; run_info() shows a readable summary.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from test_report_fixtures import sweep_runs, training_run

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
SWEEP = "sweep-20261127-a1b2"


def execute(cells: list[str], cwd: Path) -> list:
    """Run the cells in a fresh kernel whose working directory is `cwd`; returns the executed cells."""
    nb = nbformat.v4.new_notebook()
    setup = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport gridrun"
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (setup, *cells)]
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb.cells[1:]


def stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def result(cell) -> dict:
    (out,) = [o for o in cell.outputs if o.output_type == "execute_result"]
    return out["data"]


def test_notebook_flags_and_inline_reports(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    a = training_run(runs, "2026-11-27T06-44-38.123Z")
    training_run(runs, "2026-11-27T07-00-00.000Z", flags={"dropout1": 0.3, "units": 256})
    sweep_runs(runs)
    (tmp_path / "flags.yml").write_text("units: 32\n")  # beside the notebook: the kernel's working dir
    (tmp_path / "script.py").write_text(
        "import gridrun\nF = gridrun.flags(lr=0.1, units=64)\n"
        "print('script flags', F.as_dict())\n")
    cells = execute([
        "import sys\nprint(sys.argv[1:3])\nF = gridrun.flags(lr=0.1, units=64)\nprint('flags', F.as_dict())",
        "print('args', gridrun.flags(lr=0.1, units=64, arguments=['--lr', '0.5']).as_dict())",
        "%run script.py --lr 0.25",
        "gridrun.view_run('2026-11-27T07-00-00.000Z', runs_dir='runs', open_browser=False)",
        "gridrun.compare_runs(['2026-11-27T06-44-38.123Z', '2026-11-27T07-00-00.000Z'], runs_dir='runs', open_browser=False)",
        f"gridrun.sweep_report({SWEEP!r}, runs_dir='runs', open_browser=False)",
        "gridrun.run_info('2026-11-27T06-44-38.123Z', runs_dir='runs')",
    ], tmp_path)
    # 9: in a kernel, flags take their defaults + flags.yml of the working dir (+ explicit arguments)
    flags_cell, args_cell, run_cell, view, compare, sweep, info = cells
    assert "'-f'" in stdout(flags_cell)  # the kernel's argv is what used to be parsed
    assert "flags {'lr': 0.1, 'units': 32}" in stdout(flags_cell)
    assert "args {'lr': 0.5, 'units': 32}" in stdout(args_cell)
    assert "script flags {'lr': 0.25, 'units': 32}" in stdout(run_cell)  # %run's argv is the script's
    # 10: the reports display inline: an iframe with the whole page (plotly.js inlined, works offline)
    for cell, marker in ((view, "Run 2026-11-27T07-00-00.000Z"), (compare, "Compare runs"), (sweep, f"Sweep {SWEEP}")):
        data = result(cell)
        assert data["text/plain"].startswith("ReportPath(") and ".html" in data["text/plain"]
        html = data["text/html"]
        assert html.count("<iframe srcdoc=") == 1 and 'sandbox="allow-scripts"' in html
        assert "plotly.js v" in html and "data-gridrun-plotly=" not in html
        assert marker in html and re.search(r"id=&quot;figure-", html)
    # run_info: a readable summary, as text and as HTML tables
    data = result(info)
    text = data["text/plain"]
    assert text.startswith("RunInfo 2026-11-27T06-44-38.123Z")
    assert "flags: dropout1=0.4, units=128" in text and "final metrics: loss=0.21609" in text
    assert "evaluation: loss=0.31, acc=0.912" in text
    html = data["text/html"]
    assert "<th style=\"text-align:left\">units</th><td style=\"text-align:left\">128</td>" in html
    assert "metrics by epoch" in html and "<table" in html
    assert (runs / "2026-11-27T07-00-00.000Z" / "report.html").is_file() and not (a / "report.html").exists()


def test_flags_outside_a_kernel_still_read_the_command_line(monkeypatch, tmp_path: Path) -> None:
    import gridrun
    from gridrun import flagspec

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "train.py"), "--lr", "0.3"])
    assert not flagspec.in_kernel()
    assert gridrun.flags(lr=0.1).lr == 0.3
