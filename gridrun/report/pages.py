"""The HTML pages: a run's report, the comparison of two runs, and a sweep's report.

Pages are rendered with jinja2 templates (templates/, autoescape on: every value from a run is shown as
text). Data for the page's scripts travels in `<script type="application/json">` tags with `<`, `>` and
`&` escaped, so nothing a run wrote can close the tag. Styles and scripts are inlined, images are data:
URIs, and plotly.js (4.8 MB) is either one shared, versioned file per runs dir (`reports/plotly-<version>.min.js`,
referenced by a relative path: the default) or inlined (`self_contained=True`: a single file to send).
Either way a page opens with no network.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer, TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

from .._io import clean_json, dumps, write_text_atomic
from ..errors import GridrunError
from . import charts
from .rundata import RunData, format_value, latest_runs, load_run, resolve_run
from .sweepdata import (
    SweepData,
    find_sweep_runs,
    latest_sweep,
    load_sweep,
    safe_file_part,
    sweep_metric,
    sweep_scales,
)

REPORT_FILE = "report.html"
REPORTS_DIR = "reports"  # compare and sweep pages, inside the runs dir
MAX_DIFF_LINES = 5000  # per side; longer texts are cut before diffing (difflib is quadratic)

# --------------------------------------------------------------------------------------------------
# Rendering


def script_json(value: Any) -> Markup:
    """JSON for a `<script type="application/json">` tag: `<`, `>`, `&` escaped so no content ends it."""
    text = dumps(clean_json(value), indent=None)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gridrun.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["script_json"] = script_json
    env.filters["fmt"] = lambda v: "" if v is None else format_value(v)
    return env


@functools.cache
def _static(name: str) -> str:
    return resources.files("gridrun.report").joinpath("static", name).read_text(encoding="utf-8")


@functools.cache
def plotly_js() -> Markup:
    """plotly.js, to inline once per page."""
    from plotly.offline import get_plotlyjs

    return Markup(re.sub(r"</(script)", r"<\\/\1", get_plotlyjs(), flags=re.IGNORECASE))


@functools.cache
def plotly_file_name() -> str:
    """The shared plotly.js file's name, versioned so pages written by another plotly keep theirs."""
    from plotly.offline import get_plotlyjs_version

    return f"plotly-{safe_file_part(get_plotlyjs_version())}.min.js"


def ensure_plotly_file(folder: Path) -> Path:
    """Write the shared plotly.js into `folder` unless it is there already, whole; returns its path."""
    path = folder / plotly_file_name()
    text = str(plotly_js())
    try:
        if path.stat().st_size == len(text.encode("utf-8")):
            return path
    except FileNotFoundError:
        pass
    return write_page(text, path)


def plotly_home(page: Path, runs_dir: Path) -> Path:
    """Where the shared plotly.js of a page lives: the runs dir's reports/ for pages inside the runs dir,
    else the page's own folder (a page written with output= elsewhere gets its copy beside it)."""
    page_dir, root = page.parent.resolve(), runs_dir.resolve()
    return root / REPORTS_DIR if page_dir == root or root in page_dir.parents else page_dir


_PLOTLY_TAG = re.compile(r'<script src="[^"]*" data-gridrun-plotly="[^"]*"></script>')


def inline_plotly(html: str) -> str:
    """A page written with the shared plotly.js, made self-contained (plotly.js inlined)."""
    inline = "<script>" + str(plotly_js()) + "</script>"
    return _PLOTLY_TAG.sub(lambda _m: inline, html, count=1)


@functools.cache
def _pygments_css() -> str:
    return HtmlFormatter(style="default").get_style_defs(".hl")


def render(template: str, plotly_src: str | None = None, **context: Any) -> str:
    """Render a page; `charts` (list of charts.Chart) get plotly.js and the shared chart template.

    plotly.js is inlined, or with `plotly_src` (a relative URL) loaded from the shared file there.
    """
    chart_list = context.setdefault("charts", [])
    page = _env().get_template(template)
    return page.render(
        css=Markup(_static("report.css") + "\n" + _pygments_css()),
        js=Markup(_static("report.js")),
        plotly_js=plotly_js() if chart_list and plotly_src is None else None,
        plotly_src=plotly_src if chart_list else None,
        plotly_file=plotly_file_name(),
        chart_template=charts.template() if chart_list else None,
        **context,
    )


class ReportPath(type(Path())):  # type: ignore[misc]
    """The path of a written page, as view_run / compare_runs / sweep_report return it. In Jupyter it
    displays the page inline: an iframe holding the page with plotly.js inlined (works offline)."""

    height = 640

    def _repr_html_(self) -> str | None:
        if self.suffix.lower() not in (".html", ".htm"):
            return None  # a path derived from it (.parent, ...): shown as a plain path
        try:
            page = inline_plotly(self.read_text(encoding="utf-8"))
        except OSError as exc:
            return f"<p>Report {escape(str(self))}: cannot be read ({escape(str(exc))})</p>"
        return (
            f'<p style="margin:0 0 4px">Report: <code>{escape(str(self))}</code></p>'
            f'<iframe srcdoc="{escape(page, quote=True)}" sandbox="allow-scripts" '
            f'style="width:100%;height:{self.height}px;border:1px solid #d0d4da;border-radius:4px" '
            f'title="{escape(self.name)}"></iframe>'
        )


def _write_report(
    make: Callable[[str | None], str], path: Path, runs_dir: str | os.PathLike, self_contained: bool
) -> Path:
    """Render a page with `make(plotly_src)` and write it to `path`, with the shared plotly.js unless
    `self_contained` (a page with no charts needs neither)."""
    if self_contained:
        return write_page(make(None), path)
    home = plotly_home(path, Path(runs_dir))
    src = quote(Path(os.path.relpath(home / plotly_file_name(), path.parent.resolve())).as_posix())
    html = make(src)
    if 'data-gridrun-plotly="' in html:
        ensure_plotly_file(home)
    return write_page(html, path)


def code_html(name: str, text: str) -> Markup:
    """Syntax-highlighted source (pygments escapes the text)."""
    try:
        lexer = get_lexer_for_filename(name, stripnl=False)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False)
    return Markup(highlight(text, lexer, HtmlFormatter(cssclass="hl", linenos="table")))


def diff_html(diff: str) -> Markup:
    return Markup(highlight(diff, DiffLexer(stripnl=False), HtmlFormatter(cssclass="hl")))


def write_page(html: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, html)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # a page is for sharing: the usual file mode, not the temp file's 0600
    return path


def _output_path(output: str | os.PathLike | None, default: Path) -> Path:
    if output is None:
        return default
    out = Path(output)
    return out / default.name if out.is_dir() else out


def can_open_browser() -> bool:
    """True when a graphical browser can be started (never a text browser taking over the terminal)."""
    if sys.platform not in ("darwin", "win32") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def open_in_browser(target: str | Path) -> bool:
    """Open a page (a file or a URL) in the default browser when there is one; False when not."""
    if not can_open_browser():
        return False
    url = target if isinstance(target, str) else Path(target).resolve().as_uri()
    try:
        return bool(webbrowser.open(url))
    except webbrowser.Error:
        return False


# --------------------------------------------------------------------------------------------------
# One run


def run_page(run: RunData, live: bool = False, plotly_src: str | None = None) -> str:
    """The HTML report of one run. `live=True` makes the page poll metrics.json (see live.py);
    `plotly_src`: load plotly.js from that relative URL instead of inlining it."""
    curves = charts.learning_curves(run.metrics)
    sources = [(f.name, code_html(f.name, f.text)) for f in run.sources]
    page_data = {
        "run": run.name,
        "status": run.status,
        "live": live,
        "metrics": sorted(run.metrics),
    }
    return render(
        "view.html",
        plotly_src=plotly_src,
        title=f"Run {run.name}",
        run=run,
        live=live,
        charts=curves,
        sources=sources,
        page_data=page_data,
    )


def view_run(
    run: Any = None,
    runs_dir: str | os.PathLike = "runs",
    output: str | os.PathLike | None = None,
    open_browser: bool = True,
    self_contained: bool = False,
) -> ReportPath:
    """Write the HTML report of a run (default: the latest) and open it in the browser when there is one.

    The report is written to `<run_dir>/report.html`, and also to `output` when given; the path of the
    page opened (`output`, else the run's report.html) is returned (in Jupyter it shows the page
    inline). The page loads plotly.js from the runs dir's shared `reports/plotly-<version>.min.js`
    (a page written elsewhere gets a copy beside it); `self_contained=True` inlines it: one file to send.
    A running run's report is a snapshot: `gridrun view --live` serves one that follows the run.
    """
    path = resolve_run(run, runs_dir)
    data = load_run(path)
    root = path.parent

    def make(src: str | None) -> str:
        return run_page(data, plotly_src=src)

    target = _write_report(make, path / REPORT_FILE, root, self_contained)
    if output is not None:
        target = _write_report(make, _output_path(output, path / REPORT_FILE), root, self_contained)
    if open_browser:
        open_in_browser(target)
    return ReportPath(target)


# --------------------------------------------------------------------------------------------------
# Two runs


@dataclass
class FileDiff:
    name: str
    state: str  # "identical", "changed", "only in A", "only in B"
    html: Markup | None  # highlighted unified diff, None when identical


def unified_diff(a: str, b: str, a_name: str, b_name: str) -> tuple[str, bool]:
    """A unified diff of two texts (difflib), and whether either text was cut to MAX_DIFF_LINES lines."""
    a_lines, b_lines = a.splitlines(keepends=True), b.splitlines(keepends=True)
    cut = len(a_lines) > MAX_DIFF_LINES or len(b_lines) > MAX_DIFF_LINES
    a_lines, b_lines = a_lines[:MAX_DIFF_LINES], b_lines[:MAX_DIFF_LINES]
    lines = difflib.unified_diff(a_lines, b_lines, a_name, b_name)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines), cut


def source_diffs(a: RunData, b: RunData) -> list[FileDiff]:
    a_files = {f.name: f.text for f in a.sources}
    b_files = {f.name: f.text for f in b.sources}
    out = []
    for name in sorted(set(a_files) | set(b_files)):
        ta, tb = a_files.get(name), b_files.get(name)
        if ta == tb:
            out.append(FileDiff(name, "identical", None))
            continue
        state = "changed" if ta is not None and tb is not None else ("only in A" if tb is None else "only in B")
        diff, _ = unified_diff(ta or "", tb or "", f"A/{name}", f"B/{name}")
        out.append(FileDiff(name, state, diff_html(diff)))
    return out


def _rows(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> list[tuple[str, Any, Any, bool]]:
    """Side-by-side rows (label, a, b, differ) over the union of labels, in first-seen order."""
    da, db = dict(a), dict(b)
    labels = list(da) + [k for k in db if k not in da]
    return [(k, da.get(k), db.get(k), da.get(k) != db.get(k)) for k in labels]


def compare_page(a: RunData, b: RunData, plotly_src: str | None = None) -> str:
    skip = {"run", "started", "ended", "duration", "host"}  # always differ; shown in the header
    summary = _rows(
        [(k, v) for k, v in a.summary() if k not in skip] + a.training(),
        [(k, v) for k, v in b.summary() if k not in skip] + b.training(),
    )
    metrics = _rows(
        [(k, format_value(v)) for k, v in a.final_metrics.items()]
        + [(f"eval {k}", format_value(v)) for k, v in a.evaluation.items()],
        [(k, format_value(v)) for k, v in b.final_metrics.items()]
        + [(f"eval {k}", format_value(v)) for k, v in b.evaluation.items()],
    )
    flags = _rows(list(a.flags.items()), list(b.flags.items()))
    curves = charts.overlaid_curves([("A", a.metrics), ("B", b.metrics)])
    out_diff, out_cut = unified_diff(a.output, b.output, "A/output.log", "B/output.log")
    return render(
        "compare.html",
        plotly_src=plotly_src,
        title=f"Compare {a.name} and {b.name}",
        a=a,
        b=b,
        summary=summary,
        metrics=metrics,
        flags=flags,
        flag_changes=sum(1 for row in flags if row[3]),
        charts=curves,
        sources=source_diffs(a, b),
        output_diff=diff_html(out_diff) if out_diff else None,
        output_cut=out_cut,
        page_data={"runs": [a.name, b.name]},
    )


def compare_runs(
    runs: Any = None,
    runs_dir: str | os.PathLike = "runs",
    output: str | os.PathLike | None = None,
    open_browser: bool = True,
    self_contained: bool = False,
) -> ReportPath:
    """Compare two runs side by side (default: the latest two); the older run is shown on the left (A).

    `runs` holds two run names, paths or ls_runs() rows, or is a two-row DataFrame of ls_runs().

    Written to `<runs_dir>/reports/compare-<A>-vs-<B>.html` unless `output` is given; returns the path
    (in Jupyter it shows the page inline). `self_contained=True` inlines plotly.js (see view_run).
    """
    if runs is None:
        paths = latest_runs(2, runs_dir)
        if len(paths) < 2:
            raise GridrunError(
                f"compare needs two runs and runs dir '{runs_dir}' has {len(paths)}: start another with "
                "`gridrun training-run SCRIPT`, or name two runs"
            )
    else:
        runs = [row for _, row in runs.iterrows()] if hasattr(runs, "iterrows") else list(runs)
        if len(runs) != 2:
            raise GridrunError(f"compare takes exactly two runs, got {len(runs)}: name two runs (A and B)")
        paths = [resolve_run(r, runs_dir) for r in runs]
    if paths[0] == paths[1]:
        raise GridrunError(f"both runs are '{paths[0].name}': name two different runs")
    a, b = sorted((load_run(p) for p in paths), key=lambda r: (str(r.properties.get("start") or ""), r.name))
    default = Path(runs_dir) / REPORTS_DIR / f"compare-{a.name}-vs-{b.name}.html"
    target = _write_report(lambda src: compare_page(a, b, src), _output_path(output, default),
                           runs_dir, self_contained)  # fmt: skip
    if open_browser:
        open_in_browser(target)
    return ReportPath(target)


# --------------------------------------------------------------------------------------------------
# A sweep


def sweep_page(data: SweepData, plotly_src: str | None = None, live: bool = False,
               pareto: list[str] | None = None) -> str:
    labels = [t.label for t in data.trials]
    trials = [{"flags": t.run.flags, "value": t.value} for t in data.trials]
    chart_list = []
    varied = data.varied_flags
    pc = charts.parcoords(varied, trials, data.metric, labels, scales=data.scales)
    if pc is not None:
        chart_list.append(pc)
    chart_list += charts.flag_charts(varied, trials, data.metric, labels, best=data.best, scales=data.scales)
    ended = sorted(data.trials, key=lambda t: str(t.run.properties.get("end") or "~"))  # in the order they ended
    budget = charts.best_so_far([t.run.epochs_completed for t in ended], [t.value for t in ended],
                                [t.run.status for t in ended], data.metric, data.maximize, [t.label for t in ended])
    if budget is not None:
        chart_list.append(budget)
    from . import analysis_charts  # importance, all curves, heat map, Pareto front (issue 21)

    extra = analysis_charts.sweep_charts(data, pareto)
    from . import pbt_charts  # a PBT sweep's lineage and the best trial's schedules (issue 20)

    pbt = pbt_charts.sweep_charts(data)
    return render(
        "sweep.html",
        plotly_src=plotly_src,
        title=f"Sweep {data.sweep}",
        sweep=data,
        charts=chart_list + extra + pbt,
        analysis_charts=extra,
        pbt_charts=pbt,
        has_parcoords=pc is not None,
        live=live,
        live_js=Markup(analysis_charts.live_js()) if live else None,
        page_data={"sweep": data.sweep, "metric": data.metric, "live": live},
    )


def sweep_report(
    sweep_id_or_df: Any = None,
    runs_dir: str | os.PathLike = "runs",
    output: str | os.PathLike | None = None,
    open_browser: bool = True,
    metric: str | None = None,
    maximize: bool | None = None,
    self_contained: bool = False,
    pareto: list[str] | None = None,
) -> ReportPath:
    """The report of a tuning run: its trials in a table sorted by `metric` (best first; click a header
    to sort by another column), flags against `metric` (parallel coordinates and one chart per flag),
    the best trial with a link to its run report, the failures.

    `sweep_id_or_df` is a sweep id (default: the latest sweep) or a DataFrame of runs (ls_runs rows).
    `metric` / `maximize` default to the sweep's own (its manifest's "metric" and "mode"), else
    val_loss, lower is better. Written to `<runs_dir>/reports/sweep-<id>.html` (`<id>.html` when the id
    already starts with "sweep") unless `output` is given; returns the path (in Jupyter it shows the
    page inline). `self_contained=True` inlines plotly.js (see view_run). The page also shows which
    flags matter, every trial's curve, the metric over two numeric flags and, for `pareto` (two
    metrics; default: the sweep's when it has several), the Pareto front (report/analysis_charts.py).
    """
    if sweep_id_or_df is None or isinstance(sweep_id_or_df, str):
        sweep = sweep_id_or_df or latest_sweep(runs_dir)
        paths = find_sweep_runs(sweep, runs_dir)
    elif hasattr(sweep_id_or_df, "columns"):
        df = sweep_id_or_df
        if "run_dir" not in df.columns:
            raise GridrunError("the table has no run_dir column: pass rows of gridrun.ls_runs()")
        if not len(df):
            raise GridrunError("the table of runs is empty: select some runs of gridrun.ls_runs()")
        paths = [resolve_run(row, runs_dir) for _, row in df.iterrows()]
        ids = {str(s) for s in df["sweep"] if isinstance(s, str)} if "sweep" in df.columns else set()
        sweep = ids.pop() if len(ids) == 1 else "selection"
    else:
        raise GridrunError(
            f"cannot make a sweep report of {type(sweep_id_or_df).__name__}: give a sweep id or a "
            "DataFrame from gridrun.ls_runs()"
        )
    if metric is None:
        metric, mode = sweep_metric(sweep, runs_dir)
        if maximize is None and mode is not None:
            maximize = mode == "max"
    data = load_sweep(sweep, paths, metric=metric, maximize=maximize)
    for sweep_id in sorted({str(t.run.properties.get("sweep")) for t in data.trials if t.run.properties.get("sweep")}):
        data.scales.update(sweep_scales(sweep_id, runs_dir))
    stem = safe_file_part(data.sweep)
    default = Path(runs_dir) / REPORTS_DIR / (f"{stem}.html" if stem.startswith("sweep") else f"sweep-{stem}.html")
    target = _output_path(output, default)
    best = data.best_trial
    if best is not None:  # the best trial's page is linked from the sweep page: make sure it exists
        view_run(best.run.path, best.run.path.parent, open_browser=False)
    for trial in data.trials:
        report = trial.run.path / REPORT_FILE
        if report.exists():
            trial.report = Path(os.path.relpath(report.resolve(), target.parent.resolve())).as_posix()
    _write_report(lambda src: sweep_page(data, src, pareto=pareto), target, runs_dir, self_contained)
    if open_browser:
        open_in_browser(target)
    return ReportPath(target)
