"""Plotly figures for the reports: learning curves, overlaid curves of several runs, sweep charts.

Each function returns `Chart`s whose `figure` is a plain plotly JSON dict (`{"data", "layout"}`)
built with plotly.graph_objects. The page template draws them with plotly.js (inlined once per page,
or the runs dir's shared file). The figures carry no template: the page adds one shared template (TEMPLATE) to every chart, which
keeps pages small.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

# Colours: the run's training metric, its val_ twin, its test_ twin; in comparisons one colour per run.
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
TEST_COLOR = "#2ca02c"
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
BEST_COLOR = "#d62728"
PRUNED_COLOR = "#d97706"  # pruned trials: stopped early by the sweep's pruner, not failed


@dataclass
class Chart:
    id: str
    title: str
    figure: dict[str, Any]


def template() -> dict[str, Any]:
    """The one layout template every chart of a page uses (sent once per page)."""
    return pio.templates["plotly_white"].to_plotly_json()


def label(text: Any) -> str:
    """Text for plotly to draw: plotly reads a few HTML tags (<b>, <a href>, <br>) in labels, so run
    content is entity-escaped, which plotly draws back as the literal characters."""
    return html.escape(str(text), quote=False)


def _figure(fig: go.Figure) -> dict[str, Any]:
    data = fig.to_plotly_json()
    data["layout"].pop("template", None)
    return data


def _layout(title: str, xaxis: str, yaxis: str, **extra: Any) -> dict[str, Any]:
    layout = dict(
        title=dict(text=label(title), x=0.02, font=dict(size=15)),
        xaxis=dict(title=dict(text=label(xaxis))),
        yaxis=dict(title=dict(text=label(yaxis))),
        height=320,
        margin=dict(l=60, r=20, t=45, b=45),
        legend=dict(orientation="h", y=-0.22),
        hovermode="x unified",
    )
    layout.update(extra)
    return layout


TWIN_PREFIXES = ("train_", "val_", "test_")  # in drawing order, after the plain name


def metric_base(name: str) -> str:
    """The name a metric's twins share: loss for loss, val_loss, train_loss and test_loss."""
    for prefix in TWIN_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix):]
    return name


def metric_role(name: str) -> str:
    """"val", "test" or "train" (the plain name and train_ both count as training)."""
    base = metric_base(name)
    return "train" if name == base else name[: len(name) - len(base) - 1]


def metric_groups(names: Sequence[str]) -> list[list[str]]:
    """Group metric names so each metric shares a chart with its twins: [[loss, val_loss], [lr]],
    [[train_acc, test_acc]], [[loss, train_loss, val_loss, test_loss]]."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(metric_base(name), [])
    for base, members in groups.items():
        members.extend(n for n in (base, *(p + base for p in TWIN_PREFIXES)) if n in names)
    return [members for members in groups.values() if members]


def _group_title(group: list[str]) -> str:
    return group[0] if len(group) == 1 else metric_base(group[0])


def epoch_step(epochs: int) -> int:
    """Tick spacing of an epoch axis: whole epochs (1, 2, 5, 10, 20, 50...), about 10 ticks at most."""
    step, factors = 1, (2, 2.5, 2)  # 1 -> 2 -> 5 -> 10 -> 20 -> 50 -> 100 ...
    i = 0
    while epochs / step > 10:
        step = int(step * factors[i % 3])
        i += 1
    return step


def epoch_axis(epochs: int) -> dict[str, Any]:
    """An x axis of epochs with integer ticks only (plotly would put ticks at 1.2, 1.4... on short runs)."""
    step = epoch_step(epochs)
    return dict(title=dict(text="epoch"), tickmode="linear", tick0=1 if step == 1 else 0, dtick=step,
                tickformat="d")  # fmt: skip


_COLORS = {"train": TRAIN_COLOR, "val": VAL_COLOR, "test": TEST_COLOR}
_DASH = {"train": "solid", "val": "dash", "test": "dot"}
_SYMBOL = {"train": "circle", "val": "circle-open", "test": "diamond-open"}


def _series(values: Sequence[Any]) -> tuple[list[int], list[float | None]]:
    y = [v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
         for v in values]  # fmt: skip
    return list(range(1, len(y) + 1)), y


def learning_curves(metrics: dict[str, list[Any]], prefix: str = "curve") -> list[Chart]:
    """One chart per metric, its val_ twin overlaid (loss + val_loss, acc + val_acc, lr)."""
    charts = []
    for i, group in enumerate(metric_groups(list(metrics))):
        fig = go.Figure()
        for name in group:
            x, y = _series(metrics[name])
            fig.add_trace(
                go.Scatter(
                    x=x, y=y, name=label(name), mode="lines+markers", connectgaps=True,
                    line=dict(color=_COLORS[metric_role(name)]),
                    meta={"metric": name},
                )
            )  # fmt: skip
        title = _group_title(group)
        fig.update_layout(**_layout(title, "epoch", title))
        fig.update_xaxes(**epoch_axis(max(len(metrics[n]) for n in group)))
        _constant_range(fig, [v for name in group for v in _series(metrics[name])[1]])
        charts.append(Chart(f"{prefix}-{i}", title, _figure(fig)))
    return charts


def _constant_range(fig: go.Figure, values: list[float | None]) -> None:
    """A metric that never changes (a fixed learning rate) gets an axis around its value, not 0 +- 1."""
    distinct = {v for v in values if v is not None}
    if len(distinct) == 1:
        (v,) = distinct
        pad = abs(v) * 0.5 or 1.0
        fig.update_yaxes(range=[v - pad, v + pad])


def overlaid_curves(runs: Sequence[tuple[str, dict[str, list[Any]]]], prefix: str = "cmp") -> list[Chart]:
    """One chart per metric with every run on it: `runs` is [(label, metrics), ...]."""
    names: list[str] = []
    for _, metrics in runs:
        names.extend(n for n in metrics if n not in names)
    charts = []
    for i, group in enumerate(metric_groups(names)):
        fig = go.Figure()
        for r, (run, metrics) in enumerate(runs):
            color = RUN_COLORS[r % len(RUN_COLORS)]
            for name in group:
                if name not in metrics:
                    continue
                x, y = _series(metrics[name])
                role = metric_role(name)
                fig.add_trace(
                    go.Scatter(
                        x=x, y=y, name=label(f"{run}: {name}"), mode="lines+markers", connectgaps=True,
                        line=dict(color=color, dash=_DASH[role]),
                        marker=dict(symbol=_SYMBOL[role]),
                        meta={"metric": name, "run": run},
                    )
                )  # fmt: skip
        title = _group_title(group)
        fig.update_layout(**_layout(title, "epoch", title))
        fig.update_xaxes(**epoch_axis(max((len(m[n]) for _, m in runs for n in group if n in m), default=1)))
        _constant_range(fig, [v for _, m in runs for n in group if n in m for v in _series(m[n])[1]])
        charts.append(Chart(f"{prefix}-{i}", title, _figure(fig)))
    return charts


# --------------------------------------------------------------------------------------------------
# Sweeps


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def log_scale(name: str, values: Sequence[Any], scales: Mapping[str, str] | None = None) -> bool:
    """Whether a flag's axis is logarithmic. `scales` says how the sweep drew its flags ("log":
    loguniform ranges and randint(..., log=True); "linear": uniform ranges and plain randint). A flag
    drawn on a log scale gets a log axis, one drawn linearly a linear one; a flag given as a list of
    values gets a log axis when they are positive and span two decades or more (1e-4,1e-3,1e-2)."""
    nums = [v for v in values if _is_number(v)]
    if not nums or len(nums) < len(values) or min(nums) <= 0:
        return False
    scale = (scales or {}).get(name)
    if scale is not None:
        return scale == "log"
    return max(nums) / min(nums) >= 100


def _log_ticks(values: Sequence[float]) -> tuple[list[float], list[str]]:
    """Ticks for values shown as their log10: 1, 2 and 5 times each power of ten inside the range
    (only the powers of ten when the range spans many decades)."""
    lo, hi = math.log10(min(values)), math.log10(max(values))
    steps = (1, 2, 5) if hi - lo <= 3 else (1,)
    ticks = [(math.log10(m * 10.0**e), f"{m * 10.0**e:g}") for e in range(math.floor(lo), math.ceil(hi) + 1)
             for m in steps]  # fmt: skip
    inside = [(t, text) for t, text in ticks if lo - 1e-9 <= t <= hi + 1e-9]
    if len(inside) < 2:  # a narrow range: its ends
        inside = [(lo, f"{min(values):.3g}"), (hi, f"{max(values):.3g}")]
    return [t for t, _ in inside], [text for _, text in inside]


def parcoords(
    flags: Sequence[str], trials: Sequence[dict[str, Any]], metric: str, labels: Sequence[str],
    scales: Mapping[str, str] | None = None,
) -> Chart | None:
    """Parallel coordinates: one axis per flag, the last one the metric; lines coloured by the metric.

    `trials` are dicts with "flags" and "value" (the metric, None when missing). Trials without a
    value are left out. Text and boolean flags get one tick per distinct value. A flag on a log scale
    (see `log_scale`) is drawn as log10 of its values with ticks labelled in its own units (plotly's
    parallel coordinates have no log axis).
    """
    keep = [i for i, t in enumerate(trials) if _is_number(t.get("value"))]
    rows = [trials[i] for i in keep]
    if not rows:
        return None
    dims = []
    for name in flags:
        values = [t["flags"].get(name) for t in rows]
        if log_scale(name, values, scales):
            tickvals, ticktext = _log_ticks(values)
            dims.append(dict(label=label(f"{name} (log)"), values=[math.log10(v) for v in values],
                             tickvals=tickvals, ticktext=ticktext))  # fmt: skip
        elif all(_is_number(v) for v in values):
            dims.append(dict(label=label(name), values=values))
        else:
            cats = sorted({str(v) for v in values})
            index = {c: i for i, c in enumerate(cats)}
            dims.append(dict(label=label(name), values=[index[str(v)] for v in values],
                             tickvals=list(range(len(cats))), ticktext=[label(c) for c in cats]))  # fmt: skip
    scores = [t["value"] for t in rows]
    dims.append(dict(label=label(metric), values=scores))
    fig = go.Figure(
        go.Parcoords(
            line=dict(color=scores, colorscale="Viridis", showscale=True,
                      colorbar=dict(title=dict(text=label(metric)))),
            dimensions=dims,
            labelangle=-20,
            meta={"trials": [labels[i] for i in keep]},
        )
    )  # fmt: skip
    fig.update_layout(height=420, margin=dict(l=80, r=80, t=80, b=40))
    return Chart("parcoords", f"flags against {metric}", _figure(fig))


def flag_charts(
    flags: Sequence[str],
    trials: Sequence[dict[str, Any]],
    metric: str,
    labels: Sequence[str],
    best: int | None = None,
    scales: Mapping[str, str] | None = None,
) -> list[Chart]:
    """One chart per flag against the metric: a scatter for numeric flags, a box per value otherwise.

    Flags with a single value across the sweep are skipped (nothing to compare). The best trial
    (index into `trials`) is marked. A flag on a log scale (see `log_scale`) gets a log x axis.
    """
    idx = [i for i, t in enumerate(trials) if _is_number(t.get("value"))]
    charts = []
    for n, name in enumerate(flags):
        xs = [trials[i]["flags"].get(name) for i in idx]
        if len({repr(x) for x in xs}) < 2:
            continue
        ys = [trials[i]["value"] for i in idx]
        text = [label(labels[i]) for i in idx]
        fig = go.Figure()
        numeric = all(_is_number(x) for x in xs)
        if numeric:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="trials", text=text,
                                     marker=dict(size=9, color=TRAIN_COLOR, opacity=0.8)))  # fmt: skip
        else:
            sx = [label(x) for x in xs]
            fig.add_trace(go.Box(x=sx, y=ys, name="trials", boxpoints="all", jitter=0.3,
                                 pointpos=0, text=text, marker=dict(color=TRAIN_COLOR)))  # fmt: skip
        if best is not None and best in idx:
            bx = trials[best]["flags"].get(name)
            fig.add_trace(go.Scatter(x=[bx if numeric else label(bx)], y=[trials[best]["value"]],
                                     mode="markers", name="best trial", text=[label(labels[best])],
                                     marker=dict(size=15, color=BEST_COLOR, symbol="star")))  # fmt: skip
        log = numeric and log_scale(name, xs, scales)
        fig.update_layout(**_layout(name, name, metric, hovermode="closest"))
        if log:
            fig.update_xaxes(type="log")
        charts.append(Chart(f"flag-{n}", name, _figure(fig)))
    return charts


def best_so_far(
    spent: Sequence[int], values: Sequence[float | None], statuses: Sequence[str], metric: str, maximize: bool,
    labels: Sequence[str],
) -> Chart | None:
    """The sweep's best metric so far against the trial-epochs spent, trials in the order they ended:
    how fast a search (pruned or not) finds its best. Pruned trials are marked in their own colour."""
    if len(spent) < 2 or not any(_is_number(v) for v in values):
        return None
    xs, best, cum, current = [], [], 0, None
    for n, v in zip(spent, values):
        cum += int(n or 0)
        if _is_number(v) and (current is None or (v > current if maximize else v < current)):
            current = v
        xs.append(cum)
        best.append(current)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=best, mode="lines", line=dict(shape="hv", color=BEST_COLOR), name="best so far"))
    for status, color in (("completed", TRAIN_COLOR), ("pruned", PRUNED_COLOR)):
        pts = [i for i, s in enumerate(statuses) if s == status and _is_number(values[i])]
        if pts:
            fig.add_trace(go.Scatter(x=[xs[i] for i in pts], y=[values[i] for i in pts], mode="markers",
                                     name=f"{status} trials", text=[label(labels[i]) for i in pts],
                                     marker=dict(size=8, color=color, opacity=0.8)))  # fmt: skip
    fig.update_layout(**_layout(f"best {metric} so far", "trial-epochs spent", metric, hovermode="closest"))
    return Chart("best-so-far", f"best {metric} against trial-epochs spent", _figure(fig))
