"""The sweep report's charts of a population-based-training sweep (docs/population.md,
"Population-based training"): the lineage (which trial descended from which, over epochs) and the
best trial's hyperparameter schedules.

A trial of a PBT sweep records, in properties.json, `pbt_settings` and its lineage `pbt` (one entry per
exploit: {epoch, copied_from, run, values}: after `epoch` it continued from trial `copied_from`'s state
with `values`), and in metrics.json `hp_<flag>` per epoch. `sweep_charts(data)` returns [] for a sweep
whose trials record no `pbt_settings`, else:

- `pbt-lineage`: one line per trial of the sweep's metric over epochs, coloured by trial; at each
  exploit the trial's line breaks and a dashed segment of its colour jumps from the donor's point at that
  epoch to the trial's next epoch. The best trial is drawn thick, and under it, in grey, its ancestry:
  the path of states it descends from (the donors' lines up to each copy).
- `pbt-schedule-<flag>`: the best trial's value of each mutated flag per epoch (steps), the exploits
  marked with the trial it copied.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative

from .charts import BEST_COLOR, Chart, _figure, _layout, epoch_axis, label, log_scale

PALETTE = tuple(c for c in qualitative.D3 if c.lower() != BEST_COLOR.lower())  # red is the best trial's
ANCESTRY_COLOR = "rgba(17, 24, 39, 0.28)"
MAX_LEGEND = 30  # more trials than this: no legend (hover names each line)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_pbt(data: Any) -> bool:
    """Whether the sweep's trials were trained with PBT (some trial records `pbt_settings`)."""
    return any(t.run.properties.get("pbt_settings") for t in data.trials)


def lineage(trial: Any) -> list[dict[str, Any]]:
    """A trial's exploits, by epoch (properties.json `pbt`; malformed entries left out)."""
    events = [e for e in trial.run.properties.get("pbt") or []
              if isinstance(e, dict) and isinstance(e.get("epoch"), int)]
    return sorted(events, key=lambda e: e["epoch"])


def _donor(event: dict[str, Any], by_index: dict[Any, Any], by_name: dict[str, Any]) -> Any:
    return by_name.get(str(event.get("run"))) or by_index.get(event.get("copied_from"))


def _value(values: Sequence[Any], epoch: int) -> float | None:
    """The value of 1-based `epoch`, None when absent or not finite."""
    v = values[epoch - 1] if 0 < epoch <= len(values) else None
    return float(v) if _number(v) else None


def ancestry(best: Any, by_index: dict[Any, Any], by_name: dict[str, Any], metric: str) -> tuple[list[int], list[float | None]]:
    """The path of states the trial `best` descends from, as (epochs, metric values): its own line after
    its last copy, the donor's before that, and so on back to epoch 1."""
    pieces: list[tuple[list[int], list[float | None]]] = []
    cur, upto, seen = best, len(best.run.metrics.get(metric) or []), 0
    while cur is not None and upto > 0 and seen < 10_000:
        seen += 1
        ys = cur.run.metrics.get(metric) or []
        before = [e for e in lineage(cur) if e["epoch"] < upto]
        start = before[-1]["epoch"] + 1 if before else 1
        xs = list(range(start, upto + 1))
        pieces.append((xs, [_value(ys, x) for x in xs]))
        if not before:
            break
        cur, upto = _donor(before[-1], by_index, by_name), before[-1]["epoch"]
    xs_all: list[int] = []
    ys_all: list[float | None] = []
    for xs, ys in reversed(pieces):
        xs_all += xs
        ys_all += ys
    return xs_all, ys_all


def lineage_chart(data: Any) -> Chart | None:
    """The lineage of a PBT sweep (see the module docstring), or None when no trial has the metric."""
    metric = data.metric
    trials = [t for t in data.trials if t.run.metrics.get(metric)]
    if not trials:
        return None
    by_index = {t.index: t for t in data.trials if t.index is not None}
    by_name = {t.name: t for t in data.trials}
    best = data.best_trial
    fig = go.Figure()
    epochs = max(len(t.run.metrics[metric]) for t in trials)
    if best is not None and best.run.metrics.get(metric):
        xs, ys = ancestry(best, by_index, by_name, metric)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label(f"ancestry of {best.label}"),
                                 line=dict(color=ANCESTRY_COLOR, width=12), hoverinfo="skip"))
    copies = 0
    for k, t in enumerate(sorted(trials, key=lambda t: (t is best, t.index if t.index is not None else 0))):
        ys = t.run.metrics[metric]
        is_best = t is best
        color = BEST_COLOR if is_best else PALETTE[(t.index if isinstance(t.index, int) else k) % len(PALETTE)]
        events = lineage(t)
        breaks = {e["epoch"] for e in events}
        xs_line: list[int | None] = []
        ys_line: list[float | None] = []
        for x in range(1, len(ys) + 1):
            xs_line.append(x)
            ys_line.append(_value(ys, x))
            if x in breaks and x < len(ys):  # after this epoch it continued from another state
                xs_line.append(None)
                ys_line.append(None)
        name = label(f"{t.label} (best)" if is_best else t.label)
        width = 3.5 if is_best else 1.5
        fig.add_trace(go.Scatter(x=xs_line, y=ys_line, mode="lines+markers", name=name, legendgroup=t.name,
                                 line=dict(color=color, width=width), marker=dict(size=5 if is_best else 3),
                                 opacity=1.0 if is_best else 0.75,
                                 hovertemplate=f"{name}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"))
        jx: list[int | None] = []
        jy: list[float | None] = []
        texts: list[str | None] = []
        for e in events:
            donor = _donor(e, by_index, by_name)
            if donor is None:
                continue
            a, b = _value(donor.run.metrics.get(metric) or [], e["epoch"]), _value(ys, e["epoch"] + 1)
            if a is None or b is None:
                continue
            vals = ", ".join(f"{k}={v:.4g}" if _number(v) else f"{k}={v}" for k, v in sorted((e.get("values") or {}).items()))
            text = label(f"{t.label} copied {donor.label} after epoch {e['epoch']}: {vals}")
            jx += [e["epoch"], e["epoch"] + 1, None]
            jy += [a, b, None]
            texts += [text, text, None]
            copies += 1
        if jx:
            fig.add_trace(go.Scatter(x=jx, y=jy, mode="lines", legendgroup=t.name, showlegend=False, name=name,
                                     line=dict(color=color, width=width, dash="dash"), text=texts,
                                     hovertemplate="%{text}<extra></extra>"))
    settings = next((t.run.properties.get("pbt_settings") for t in data.trials
                     if isinstance(t.run.properties.get("pbt_settings"), dict)), {}) or {}
    title = f"PBT lineage: {metric} per trial, {copies} copies"
    if settings.get("interval"):
        every = settings["interval"]
        title += " (after every epoch)" if every == 1 else f" (every {every} epochs)"
    fig.update_layout(**_layout(title, "epoch", metric, hovermode="closest", height=420,
                                showlegend=len(trials) <= MAX_LEGEND))
    fig.update_xaxes(**epoch_axis(epochs))
    return Chart("pbt-lineage", title, _figure(fig))


def schedule_charts(data: Any) -> list[Chart]:
    """The best trial's `hp_<flag>` per epoch, one chart per flag, its exploits marked."""
    best = data.best_trial
    if best is None:
        return []
    flags = (best.run.properties.get("pbt_settings") or {}).get("flags") or \
        sorted(k[3:] for k in best.run.metrics if k.startswith("hp_"))
    events = lineage(best)
    by_index = {t.index: t for t in data.trials if t.index is not None}
    by_name = {t.name: t for t in data.trials}
    out = []
    for flag in flags:
        values = best.run.metrics.get(f"hp_{flag}") or []
        if not values:
            continue
        xs = list(range(1, len(values) + 1))
        ys = [_value(values, x) for x in xs]
        fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", line=dict(color=BEST_COLOR, shape="hv"),
                                   name=label(flag), hovertemplate=f"epoch %{{x}}: {label(flag)} = %{{y:.4g}}<extra></extra>"))
        mx, my, texts = [], [], []
        for e in events:
            if e["epoch"] < len(values):
                donor = _donor(e, by_index, by_name)
                mx.append(e["epoch"] + 1)
                my.append(_value(values, e["epoch"] + 1))
                texts.append(label(f"from epoch {e['epoch'] + 1}: copied {donor.label if donor else e.get('copied_from')}"))
        if mx:
            fig.add_trace(go.Scatter(x=mx, y=my, mode="markers", name="exploit", text=texts,
                                     marker=dict(symbol="diamond", size=11, color="#111827"),
                                     hovertemplate="%{text}: %{y:.4g}<extra></extra>"))
        title = f"{flag} per epoch ({best.label}, the best)"
        fig.update_layout(**_layout(title, "epoch", flag, hovermode="closest", showlegend=bool(mx)))
        fig.update_xaxes(**epoch_axis(len(values)))
        if log_scale(flag, [v for v in ys if v is not None], data.scales):
            fig.update_yaxes(type="log", tickformat=".2g")
        out.append(Chart(f"pbt-schedule-{flag}", title, _figure(fig)))
    return out


def sweep_charts(data: Any) -> list[Chart]:
    """The PBT charts of a sweep page (SweepData), in page order; [] for a sweep without PBT."""
    if not is_pbt(data):
        return []
    lin = lineage_chart(data)
    return ([lin] if lin is not None else []) + schedule_charts(data)
