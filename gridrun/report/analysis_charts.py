"""The sweep report's analysis charts: which flags matter, every trial's learning curve, the metric over
two numeric flags, and the Pareto front of two metrics.

Each builder returns a `charts.Chart` (id prefixed `analysis-`) or None when the sweep has nothing to
show for it. `sweep_charts(data)` makes all of them for `pages.sweep_page`. They stay small and quick
at thousands of trials: the curves of one status are one trace (curves joined by gaps) drawn with
WebGL, at most MAX_CURVES curves (the best MAX_BEST, then an even, seeded sample of the rest) of at
most MAX_POINTS points each (every k-th epoch, the last always kept); the heat map aggregates trials
into at most HEAT_BINS x HEAT_BINS cells.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from .. import scoring
from .charts import BEST_COLOR, PRUNED_COLOR, TRAIN_COLOR, Chart, _figure, _layout, label

MAX_CURVES = 400  # curves drawn on the all-trials chart; the rest are left out (the title says how many)
MAX_BEST = 50  # of which the best trials, always drawn
MAX_POINTS = 100  # points per curve at most
HEAT_BINS = 12  # cells per axis of the heat map, at most
FAILED_COLOR = "#9ca3af"
STATUS_COLORS = {"completed": TRAIN_COLOR, "pruned": PRUNED_COLOR, "failed": FAILED_COLOR,
                 "interrupted": FAILED_COLOR, "running": "#059669"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def importance_chart(table: Any) -> Chart | None:
    """Horizontal bars of `gridrun.importance`'s table, most important on top, the spread as error bars."""
    if table is None or not len(table):
        return None
    rows = table.iloc[::-1]  # plotly draws the first bar at the bottom
    fig = go.Figure(go.Bar(
        x=[float(v) for v in rows["importance"]], y=[label(f) for f in rows["flag"]], orientation="h",
        error_x=dict(type="data", array=[float(v) for v in rows["spread"]], visible=True),
        marker=dict(color=TRAIN_COLOR), text=[str(s) for s in rows["scale"]], textposition="none",
        hovertemplate="%{y}: %{x:.3f} (%{text})<extra></extra>",
    ))
    a = table.attrs
    title = f"which flags matter for {a.get('metric')}"
    fig.update_layout(**_layout(title, "importance (PED-ANOVA; bars: std over bootstraps)", "",
                                hovermode="closest", height=max(220, 60 + 34 * len(rows)),
                                margin=dict(l=120, r=20, t=45, b=45)))
    fig.update_xaxes(rangemode="tozero")
    note = f"{a.get('trials', 0):,} runs"
    if a.get("constant"):
        note += f"; same in every run: {', '.join(a['constant'])}"
    fig.add_annotation(text=label(note), xref="paper", yref="paper", x=1, y=1.08, showarrow=False,
                       xanchor="right", font=dict(size=11, color="#6b7280"))
    return Chart("analysis-importance", title, _figure(fig))


def _thin(values: Sequence[Any], n: int = MAX_POINTS) -> tuple[list[int], list[Any]]:
    """(epochs, values) of a curve, every k-th point when longer than n (the last point always kept)."""
    ys = [float(f"{v:.5g}") if _number(v) else None for v in values]  # 5 digits: a smaller page
    xs = list(range(1, len(ys) + 1))
    if len(ys) <= n:
        return xs, ys
    step = math.ceil(len(ys) / n)
    keep = list(range(0, len(ys), step))
    if keep[-1] != len(ys) - 1:
        keep.append(len(ys) - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def choose_curves(values: Sequence[float | None], maximize: bool, limit: int = MAX_CURVES,
                  best: int = MAX_BEST, seed: int = 0) -> list[int]:
    """Indices of the trials whose curves are drawn: all when `limit` or fewer, else the `best` best by
    their value and an even random sample (seeded: the same page each time) of the others."""
    n = len(values)
    if n <= limit:
        return list(range(n))
    scored = sorted((i for i in range(n) if _number(values[i])),
                    key=lambda i: -values[i] if maximize else values[i])  # type: ignore[operator]
    top = scored[:best]
    rest = sorted(set(range(n)) - set(top))
    return sorted(top + random.Random(seed).sample(rest, limit - len(top)))


def curves_chart(metric: str, curves: Sequence[Sequence[Any]], statuses: Sequence[str], labels: Sequence[str],
                 values: Sequence[float | None], maximize: bool, best: int | None) -> Chart | None:
    """Every trial's curve of `metric` on one chart, coloured by status, the best trial drawn on top."""
    if not any(any(_number(v) for v in c) for c in curves):
        return None
    shown = choose_curves(values, maximize)
    fig = go.Figure()
    bulk: list[dict[str, Any]] = []
    longest = 1
    for status in sorted({statuses[i] for i in shown}, key=lambda s: list(STATUS_COLORS).index(s)
                         if s in STATUS_COLORS else 99):
        xs: list[Any] = []
        ys: list[Any] = []
        text: list[Any] = []
        for i in shown:
            if statuses[i] != status or i == best or not curves[i]:
                continue
            x, y = _thin(curves[i])
            longest = max(longest, len(curves[i]))
            xs += [*x, None]
            ys += [*y, None]
            text += [label(labels[i])] * len(x) + [None]
        if xs:  # a plain trace dict: plotly's validation of long lists costs seconds at 10,000 trials
            bulk.append(dict(type="scattergl", x=xs, y=ys, mode="lines", name=f"{status} trials", text=text,
                             line=dict(color=STATUS_COLORS.get(status, FAILED_COLOR), width=1),
                             opacity=0.45, connectgaps=False,
                             hovertemplate="%{text}: %{y:.4g} at epoch %{x}<extra></extra>"))
    if best is not None and curves[best]:
        x, y = _thin(curves[best])
        longest = max(longest, len(curves[best]))
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=label(f"best: {labels[best]}"),
                                 line=dict(color=BEST_COLOR, width=3), marker=dict(size=5)))
    title = f"{metric} of every trial"
    xlabel = "epoch"
    if len(shown) < len(curves):
        xlabel += f" ({len(shown):,} of {len(curves):,} trials shown: the best {MAX_BEST} and a sample)"
    fig.update_layout(**_layout(title, xlabel, metric, hovermode="closest", height=380))
    title = f"{title} ({xlabel.partition('(')[2]}" if len(shown) < len(curves) else title
    fig.update_xaxes(rangemode="tozero", dtick=None if longest > 10 else 1)
    figure = _figure(fig)
    figure["data"] = bulk + figure["data"]  # the best trial's trace last: drawn on top
    return Chart("analysis-curves", title, figure)


def _edges(values: list[float], bins: int) -> tuple[list[float], bool]:
    """Bin edges for a numeric flag: its distinct values when few, else equal bins (on a log scale when
    the values look log-spread, the rule of gridrun.analysis)."""
    from ..analysis import log_spaced

    distinct = sorted(set(values))
    log = log_spaced(values)
    if len(distinct) <= bins:
        return distinct, log
    lo, hi = (math.log(distinct[0]), math.log(distinct[-1])) if log else (distinct[0], distinct[-1])
    edges = [lo + (hi - lo) * k / bins for k in range(bins + 1)]
    return ([math.exp(e) for e in edges] if log else edges), log


def heatmap_chart(x_flag: str, y_flag: str, xs: Sequence[float], ys: Sequence[float], values: Sequence[float],
                  metric: str, maximize: bool) -> Chart | None:
    """The metric over two numeric flags: the median of the trials in each cell (distinct values when
    a flag has few, else HEAT_BINS bins), the best cells bright."""
    import numpy as np

    if len(values) < 3:
        return None
    ex, xlog = _edges(list(map(float, xs)), HEAT_BINS)
    ey, ylog = _edges(list(map(float, ys)), HEAT_BINS)

    def cells(v: Sequence[float], edges: list[float], log: bool) -> tuple[np.ndarray, list[float]]:
        arr = np.asarray(v, dtype=float)
        if len(set(v)) <= HEAT_BINS:  # the edges are the distinct values themselves
            return np.searchsorted(edges, arr), edges
        idx = np.clip(np.searchsorted(edges, arr, side="right") - 1, 0, len(edges) - 2)
        centres = [math.sqrt(a * b) if log else (a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        return idx, centres

    ix, cx = cells(xs, ex, xlog)
    iy, cy = cells(ys, ey, ylog)
    z: list[list[float | None]] = []
    counts: list[list[int]] = []
    vals = np.asarray(values, dtype=float)
    for j in range(len(cy)):
        row, crow = [], []
        for i in range(len(cx)):
            sel = vals[(ix == i) & (iy == j)]
            row.append(float(np.median(sel)) if len(sel) else None)
            crow.append(int(len(sel)))
        z.append(row)
        counts.append(crow)
    fig = go.Figure(go.Heatmap(
        x=[float(c) for c in cx], y=[float(c) for c in cy], z=z, customdata=counts,
        colorscale="Viridis", reversescale=not maximize, colorbar=dict(title=dict(text=label(metric))),
        hovertemplate=label(x_flag) + " %{x:.3g}, " + label(y_flag) + " %{y:.3g}: median %{z:.4g} of "
        "%{customdata} trials<extra></extra>", hoverongaps=False,
    ))
    title = f"{metric} over {x_flag} and {y_flag}"
    fig.update_layout(**_layout(title, x_flag, y_flag, hovermode="closest", height=400))
    if xlog:
        fig.update_xaxes(type="log")
    if ylog:
        fig.update_yaxes(type="log")
    return Chart("analysis-heatmap", title, _figure(fig))


def pareto_chart(names: Sequence[str], modes: Sequence[str], points: Sequence[tuple[float, float]],
                 labels: Sequence[str]) -> Chart | None:
    """A scatter of two metrics over the completed trials with the Pareto front drawn as a step line."""
    import numpy as np

    from ..analysis import non_dominated

    if len(points) < 2:
        return None
    arr = np.asarray(points, dtype=float)
    signs = np.array([1.0 if m == "min" else -1.0 for m in modes[:2]])
    front = non_dominated(arr * signs)
    fig = go.Figure()
    order = np.flatnonzero(front)[np.argsort(arr[front, 0] * signs[0], kind="stable")]
    fig.add_trace(go.Scatter(x=arr[order, 0].tolist(), y=arr[order, 1].tolist(), mode="lines+markers", name="Pareto front",
                             text=[label(labels[i]) for i in order], line=dict(color=BEST_COLOR, shape="hv"),
                             marker=dict(size=9, color=BEST_COLOR)))
    title = f"Pareto front of {names[0]} and {names[1]}"
    fig.update_layout(**_layout(title, f"{names[0]} ({modes[0]})", f"{names[1]} ({modes[1]})",
                                hovermode="closest", height=400))
    figure = _figure(fig)
    rest = np.flatnonzero(~front)
    figure["data"].insert(0, dict(type="scattergl", x=arr[rest, 0].tolist(), y=arr[rest, 1].tolist(),
                                  mode="markers", name="trials", text=[label(labels[i]) for i in rest],
                                  marker=dict(size=6, color=TRAIN_COLOR, opacity=0.5)))  # a plain dict: fast
    return Chart("analysis-pareto", title, figure)


def live_js() -> str:
    """The script of a live sweep page (static/sweep_live.js): reload when the sweep's state changes."""
    from .pages import _static

    return _static("sweep_live.js")


# --------------------------------------------------------------------------------------------------
# All of them, for a sweep page


def _table(data: Any) -> Any:
    """The sweep as a runs table for gridrun.analysis (flag_*, the judged metric, status)."""
    import pandas as pd

    rows = []
    for t in data.trials:
        row = {"run_dir": str(t.run.path), "status": t.run.status, "sweep": data.sweep,
               f"metric_{data.metric}": t.value}
        row.update({f"flag_{k}": v for k, v in t.run.flags.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in [c for c in df.columns if c.startswith("flag_")]:
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def sweep_importance(data: Any) -> Any:
    """gridrun.importance over the sweep's trials, None when it cannot be said (too few trials, no optuna)."""
    from .. import analysis
    from ..errors import GridrunError

    try:
        return analysis.importance(_table(data), metric=data.metric, mode="max" if data.maximize else "min")
    except GridrunError:
        return None


def pareto_metrics(data: Any, metrics: Sequence[str] | None = None) -> tuple[list[str], list[str]] | None:
    """The two metrics of the Pareto chart and their modes: `metrics` when given, else the sweep
    manifest's when it names two or more; None otherwise."""
    from .. import analysis

    modes: list[Any] = []
    if not metrics:
        root = data.trials[0].run.path.parent if data.trials else None
        man = analysis.manifest(data.sweep, root) if root is not None else {}
        named = man.get("metric")
        if not (isinstance(named, list) and len(named) >= 2):
            return None
        metrics = named
        modes = man.get("mode") if isinstance(man.get("mode"), list) else []
    metrics = list(metrics)[:2]
    out = [m if m in ("min", "max") else scoring.direction(n) for n, m in zip(metrics, [*modes, None, None])]
    return metrics, out


def sweep_charts(data: Any, pareto: Sequence[str] | None = None) -> list[Chart]:
    """The analysis charts of a sweep page (SweepData), in page order."""
    out: list[Chart | None] = []
    table = sweep_importance(data)
    out.append(importance_chart(table))
    trials = data.trials
    metric = data.metric
    out.append(curves_chart(metric, [t.run.metrics.get(metric) or [] for t in trials],
                            [t.run.status for t in trials], [t.label for t in trials],
                            [t.value if not t.failed else None for t in trials], data.maximize, data.best))
    scored = [t for t in trials if t.value is not None and not t.failed]
    numeric = [f for f in data.varied_flags
               if sum(_number(t.run.flags.get(f)) for t in scored) == len(scored)
               and len({t.run.flags.get(f) for t in scored}) > 1]
    if table is not None and len(table):
        ranked = [f for f in table["flag"] if f in numeric]
        numeric = ranked + [f for f in numeric if f not in ranked]
    if len(numeric) >= 2 and len(scored) >= 3:
        fx, fy = numeric[:2]
        out.append(heatmap_chart(fx, fy, [t.run.flags[fx] for t in scored], [t.run.flags[fy] for t in scored],
                                 [t.value for t in scored], metric, data.maximize))
    chosen = pareto_metrics(data, pareto)
    if chosen is not None:
        (a, b), modes = chosen
        pts, labels = [], []
        for t in trials:
            if t.run.status != "completed":
                continue
            va, vb = t.run.final_metrics.get(a), t.run.final_metrics.get(b)
            if _number(va) and _number(vb):
                pts.append((float(va), float(vb)))
                labels.append(t.label)
        out.append(pareto_chart([a, b], modes, pts, labels))
    return [c for c in out if c is not None]
