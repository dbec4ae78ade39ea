"""What a sweep's runs say: which flags matter (`importance`) and the trade-off between metrics (`pareto`).

Both work on the runs table (`gridrun.ls_runs()`): pass a sweep id, or a selection of its rows.

    gridrun.importance("2026-11-27T06-44-38Z-ab12")            # DataFrame: flag, importance, spread, ...
    gridrun.pareto(gridrun.ls_runs(sweep=ID), metrics=["val_loss", "n_params"])

Importance is Optuna's PED-ANOVA (`optuna.importance.PedAnovaImportanceEvaluator`) over an in-memory
study built from the runs: each completed run becomes a trial whose distributions come from the sweep's
manifest (a range's bounds and log scale as declared) or, for a list of values, from the values seen
(numbers as a numeric range, log-scaled when they span 100x or more, all > 0, with their median near
the geometric middle; text and booleans as categories). PED-ANOVA was measured against Optuna's fANOVA: same ranking on synthetic
sweeps, 0.04 s against 39 s at 1,000 trials (docs/analysis.md, bench/importance.py). The spread is the
standard deviation of the importance over bootstrap resamples of the runs. Pruned trials are left out
by default (their metric is from an earlier epoch than the others'); `include_pruned=True` counts them
at their last epoch. Flags with one value in every run have no importance and are listed in
`df.attrs["constant"]`. optuna is imported only when importance is called (`pip install gridrun[optuna]`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import scoring
from ._io import read_json
from .errors import GridrunError
from .scoring import non_dominated  # noqa: F401 - gridrun.analysis.non_dominated, as before

LOG_RATIO = 100.0  # a list of positive numbers spanning this ratio or more is taken as log-scaled
MIN_TRIALS = 4  # fewer runs with a value than this: no importance to speak of
SWEEPS_DIR = "sweeps"


# --------------------------------------------------------------------------------------------------
# Selecting the runs and the metric


def _runs_table(runs: Any, runs_dir: str | os.PathLike) -> tuple[pd.DataFrame, str | None, Path]:
    """(the runs table, the sweep id when it is one sweep's runs, the runs dir holding the manifests)."""
    from .runs import ls_runs

    if runs is None or isinstance(runs, str):
        if runs is None:
            from .runs import latest_sweep

            runs = latest_sweep(runs_dir)
        df = ls_runs(runs_dir, sweep=runs)
        if not len(df):
            from .runs import find_sweep_runs

            find_sweep_runs(runs, runs_dir)  # raises the one-line error naming the sweeps there
        return df, runs, Path(runs_dir)
    if isinstance(runs, pd.DataFrame):
        if "run_dir" not in runs.columns:
            raise GridrunError("the table has no run_dir column: pass rows of gridrun.ls_runs()")
        ids = {s for s in runs["sweep"] if isinstance(s, str) and s} if "sweep" in runs.columns else set()
        root = Path(str(runs["run_dir"].iloc[0])).parent if len(runs) else Path(runs_dir)
        return runs, (ids.pop() if len(ids) == 1 else None), root
    raise GridrunError(f"cannot analyse {type(runs).__name__}: give a sweep id or a DataFrame from gridrun.ls_runs()")


def manifest(sweep: str | None, runs_dir: str | os.PathLike) -> dict[str, Any]:
    """The sweep's manifest (runs/sweeps/<id>.json) as a dict, {} when there is none."""
    if not sweep:
        return {}
    data = read_json(Path(runs_dir) / SWEEPS_DIR / f"{sweep}.json", {})
    return data if isinstance(data, dict) else {}


def metric_column(df: pd.DataFrame, metric: str) -> str:
    """The runs-table column of `metric`: `val_loss` -> metric_val_loss, `eval_acc` -> eval_acc."""
    for col in (metric, f"metric_{metric}"):
        if col in df.columns and col.startswith(("metric_", "eval_")):
            return col
    known = ", ".join(c.removeprefix("metric_") for c in df.columns if c.startswith(("metric_", "eval_")))
    raise GridrunError(f"no metric '{metric}' in these runs (metrics: {known or 'none recorded'}): "
                       "give one of them with --metric / metric=")


def _default_metric(df: pd.DataFrame, data: dict[str, Any]) -> str:
    named = data.get("metric")
    if isinstance(named, list):  # a multi-objective sweep: importance is for one metric, its first
        named = named[0] if named else None
    if isinstance(named, str) and named:
        return named
    for name in scoring.FALLBACK_METRICS:
        col = f"metric_{name}"
        if col in df.columns and pd.to_numeric(df[col], errors="coerce").notna().any():
            return name
    return scoring.DEFAULT_METRIC


def _mode(metric: str, mode: str | None, data: dict[str, Any], index: int = 0) -> str:
    if mode is None:
        recorded = data.get("mode")
        if isinstance(recorded, list):
            recorded = recorded[index] if index < len(recorded) else None
        named = data.get("metric")
        named = named[index] if isinstance(named, list) and index < len(named) else named
        if recorded in ("min", "max") and named == metric:
            return recorded
    try:
        return scoring.direction(metric, mode or "auto")
    except ValueError as exc:
        raise GridrunError(f"{exc} (for metric {metric})") from None


def _finite(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy(na_value=np.nan)


# --------------------------------------------------------------------------------------------------
# Importance


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(float(v))


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def flag_distribution(name: str, values: Sequence[Any], declared: dict[str, Any] | None = None) -> Any:
    """The optuna distribution of a flag: its declared range (a manifest's `{"loguniform": [lo, hi]}`)
    when there is one, else from the values seen; None for a constant flag."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    present = [v for v in values if not _missing(v)]
    distinct = {repr(v) for v in present}
    if len(distinct) < 2:
        return None
    if declared:
        from .space import from_yaml

        r = from_yaml(declared)
        if r is not None:
            lo, hi = min([r.low, *map(float, present)]), max([r.high, *map(float, present)])
            log = r.kind == "loguniform" or r.log
            if r.kind == "randint" or all(isinstance(v, (int, np.integer)) for v in present):
                step = int(r.step) if r.step and not log and (int(hi) - int(lo)) % int(r.step) == 0 else 1
                return IntDistribution(int(math.floor(lo)), int(math.ceil(hi)), log=log, step=step)
            return FloatDistribution(lo, hi, log=log)
    if all(_is_number(v) for v in present):
        lo, hi = min(map(float, present)), max(map(float, present))
        log = log_spaced([float(v) for v in present])
        if all(isinstance(v, (int, np.integer)) for v in present):
            return IntDistribution(int(lo), int(hi), log=log)
        return FloatDistribution(lo, hi, log=log)
    return CategoricalDistribution(sorted({_category(v) for v in present}, key=lambda c: (type(c).__name__, c)))


def log_spaced(values: list[float]) -> bool:
    """Do these numbers look spread on a log scale? All > 0, spanning LOG_RATIO or more, and their median
    nearer (in log terms) to the geometric middle of their range than to its arithmetic middle: a grid
    1e-4, 1e-3, 1e-2 or log-uniform draws, not uniform draws from [0, 0.5] that come close to 0."""
    lo, hi = min(values), max(values)
    if lo <= 0 or hi / lo < LOG_RATIO:
        return False
    med = math.log(float(np.median(values)))
    return abs(med - (math.log(lo) + math.log(hi)) / 2) < abs(med - math.log((lo + hi) / 2))


def _category(v: Any) -> Any:
    return v if isinstance(v, (bool, str)) else str(v)


def _param(value: Any, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return _category(value)
    if isinstance(dist, IntDistribution):
        return int(value)
    return float(value)


def _scale(dist: Any) -> str:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return "categorical"
    kind = "integer" if isinstance(dist, IntDistribution) else "numeric"
    return f"{kind}, log" if dist.log else kind


def importance(
    runs: Any = None,
    metric: str | None = None,
    mode: str | None = None,
    *,
    runs_dir: str | os.PathLike = "runs",
    include_pruned: bool = False,
    n_bootstrap: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Which flags matter for `metric`: one row per flag that varied, most important first.

    `runs` is a sweep id (default: the latest sweep) or a selection of `gridrun.ls_runs()` rows.
    `metric` / `mode` default to the sweep's own (its manifest), else gridrun's scoring rule (val_loss,
    else loss; accuracy-like names maximized). Columns: `flag`, `importance` (PED-ANOVA, summing to 1
    over the flags), `spread` (its standard deviation over `n_bootstrap` resamples of the runs; 0 with
    n_bootstrap=0), `scale` (how the flag was read: numeric, integer, log, categorical) and `values`
    (distinct values seen). `df.attrs` holds metric, mode, trials (runs used), constant (flags with
    one value) and evaluator. Runs that did not complete, or have no finite value of the metric, are
    left out; pruned runs too unless `include_pruned=True` (then at their last epoch).
    """
    try:
        import optuna
        from optuna.importance import PedAnovaImportanceEvaluator
    except ImportError:
        raise GridrunError("importance needs optuna: pip install gridrun[optuna]") from None
    df, sweep, root = _runs_table(runs, runs_dir)
    data = manifest(sweep, root)
    metric = metric or _default_metric(df, data)
    col = metric_column(df, metric)
    direction = _mode(metric, mode, data)
    statuses = {"completed", "pruned"} if include_pruned else {"completed"}
    status = df["status"].astype(object) if "status" in df.columns else pd.Series(["completed"] * len(df))
    y = _finite(df[col])
    keep = np.isfinite(y) & status.isin(statuses).to_numpy()
    used = df[keep]
    y = y[keep]
    order = np.argsort(used["run_dir"].astype(str).to_numpy(), kind="stable")  # the same resamples in any row order
    used, y = used.iloc[order], y[order]
    if len(used) < MIN_TRIALS:
        raise GridrunError(
            f"importance needs at least {MIN_TRIALS} completed runs with a value of {metric}, and these runs "
            f"have {len(used)}: let the sweep run more trials"
            + ("" if include_pruned else " (or count pruned ones: include_pruned=True)"))
    grid = data.get("grid") if isinstance(data.get("grid"), dict) else {}
    ranges = grid.get("ranges") or {}
    flag_cols = [c for c in used.columns if c.startswith("flag_")]
    dists: dict[str, Any] = {}
    constant: list[str] = []
    columns: dict[str, list[Any]] = {}
    for c in flag_cols:
        name = c.removeprefix("flag_")
        values = used[c].astype(object).tolist()
        if all(_missing(v) for v in values):
            continue  # a flag of other runs only
        dist = flag_distribution(name, values, ranges.get(name))
        if dist is None:
            constant.append(name)
            continue
        dists[name] = dist
        columns[name] = values
    attrs = {"metric": metric, "mode": direction, "trials": int(len(used)), "constant": constant,
             "evaluator": "optuna PedAnovaImportanceEvaluator", "sweep": sweep}
    out_cols = ["flag", "importance", "spread", "scale", "values"]
    if not dists:
        out = pd.DataFrame(columns=out_cols)
        out.attrs.update(attrs)
        return out
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = []
    for i in range(len(used)):
        params, pdists = {}, {}
        for name, dist in dists.items():
            v = columns[name][i]
            if not _missing(v):
                params[name], pdists[name] = _param(v, dist), dist
        trials.append(frozen_trial(i, params, pdists, float(y[i])))
    direction_enum = "maximize" if direction == "max" else "minimize"

    def evaluate(sample: Sequence[Any]) -> dict[str, float]:
        study = trials_study(sample, direction_enum)
        with _quiet():
            return optuna.importance.get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(), params=list(dists), normalize=True)

    main = evaluate(trials)
    rng = np.random.default_rng(seed)
    boots = [evaluate([trials[j] for j in rng.integers(0, len(trials), len(trials))]) for _ in range(n_bootstrap)]
    rows = []
    for name, dist in dists.items():
        reps = [b.get(name, 0.0) for b in boots]
        rows.append({"flag": name, "importance": float(main.get(name, 0.0)),
                     "spread": float(np.std(reps, ddof=1)) if len(reps) > 1 else 0.0,
                     "scale": _scale(dist), "values": len({repr(v) for v in columns[name] if not _missing(v)})})
    out = pd.DataFrame(rows, columns=out_cols).sort_values(["importance", "flag"], ascending=[False, True],
                                                           kind="stable").reset_index(drop=True)
    out.attrs.update(attrs)
    return out


def frozen_trial(i: int, params: dict[str, Any], distributions: dict[str, Any], value: float) -> Any:
    """A completed optuna trial numbered `i` (its id too: the evaluators tell trials apart by id)."""
    import datetime as _dt

    from optuna.trial import FrozenTrial, TrialState

    now = _dt.datetime.now()
    return FrozenTrial(number=i, trial_id=i, state=TrialState.COMPLETE, value=value, datetime_start=now,
                       datetime_complete=now, params=params, distributions=distributions, user_attrs={},
                       system_attrs={}, intermediate_values={})


def trials_study(trials: Sequence[Any], direction: str = "minimize") -> Any:
    """An optuna study over `trials` (FrozenTrials), for the importance evaluators, which only read them.

    `study.add_trials` deep-copies every trial into the storage (85% of the time at 2,000 trials, 5 s
    at 10,000): this study answers `get_trials` from the list itself instead, read-only, so that the
    bootstrap resamples cost only their evaluation (a run drawn twice is the same trial twice, which
    the evaluator counts twice). tests/test_analysis.py checks that it gives the same importances as a
    study filled with add_trials.
    """
    import optuna

    study = optuna.create_study(direction=direction)
    trials = list(trials)

    def get_trials(deepcopy: bool = True, states: Any = None) -> list[Any]:
        import copy

        out = [t for t in trials if states is None or t.state in states]
        return copy.deepcopy(out) if deepcopy else out

    study.get_trials = get_trials  # type: ignore[method-assign]
    return study


class _quiet:
    """Silence optuna's warnings (experimental API, few trials) for the duration of an evaluation."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def importance_lines(table: pd.DataFrame, width: int = 100) -> list[str]:
    """The importance table as terminal lines, with a bar per flag (for `gridrun ls --importance`)."""
    a = table.attrs
    head = (f"Importance of flags for {a.get('metric')} ({'higher' if a.get('mode') == 'max' else 'lower'} is "
            f"better), {a.get('trials', 0):,} runs, {a.get('evaluator', 'PED-ANOVA')}; spread: std over bootstraps")
    if not len(table):
        lines = [head, "No flag varied among these runs."]
    else:
        name_w = max(4, *(len(str(f)) for f in table["flag"]))
        bar_w = max(10, min(40, width - name_w - 40))
        lines = [head, f"{'flag'.ljust(name_w)}  importance  spread  scale             bar",
                 f"{'-' * name_w}  ----------  ------  ----------------  {'-' * bar_w}"]
        for _, r in table.iterrows():
            bar = "█" * int(round(r["importance"] * bar_w))
            lines.append(f"{str(r['flag']).ljust(name_w)}  {r['importance']:10.3f}  {r['spread']:6.3f}  "
                         f"{str(r['scale']).ljust(16)}  {bar}".rstrip())
    if a.get("constant"):
        lines.append(f"(same in every run, no importance: {', '.join(a['constant'])})")
    return lines


# --------------------------------------------------------------------------------------------------
# The Pareto front


def pareto(
    runs: Any = None,
    metrics: Sequence[str] | None = None,
    modes: Sequence[str | None] | str | None = None,
    *,
    runs_dir: str | os.PathLike = "runs",
    include_pruned: bool = False,
) -> pd.DataFrame:
    """The runs on the Pareto front of `metrics`: those no other run beats on every metric.

    `runs` is a sweep id (default: the latest sweep) or rows of `gridrun.ls_runs()`; `metrics` at least
    two metric names (default: the sweep's, when its manifest names several); `modes` "min"/"max" per
    metric (a list, or "min,max"; default: gridrun's scoring rule per name). Only completed runs with a
    finite value of every metric take part (pruned ones too with include_pruned=True). Returns those
    rows of the runs table, sorted by the first metric, best first; equal runs are all on the front.
    """
    df, sweep, root = _runs_table(runs, runs_dir)
    data = manifest(sweep, root)
    if metrics is None:
        named = data.get("metric")
        metrics = named if isinstance(named, list) else None
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m]
    if not metrics or len(metrics) < 2:
        raise GridrunError("a Pareto front needs two or more metrics: e.g. metrics=['val_loss', 'n_params'] "
                           "(--metric val_loss --metric n_params)")
    if isinstance(modes, str):
        modes = [m.strip() or None for m in modes.split(",")]
    modes = list(modes or [None] * len(metrics))
    if len(modes) != len(metrics):
        raise GridrunError(f"{len(metrics)} metrics and {len(modes)} modes: give one mode per metric, "
                           f"e.g. --mode {','.join(['min'] * len(metrics))}")
    cols = [metric_column(df, m) for m in metrics]
    signs = [1.0 if _mode(m, md, data, i) == "min" else -1.0 for i, (m, md) in enumerate(zip(metrics, modes))]
    statuses = {"completed", "pruned"} if include_pruned else {"completed"}
    status = df["status"].astype(object) if "status" in df.columns else pd.Series(["completed"] * len(df))
    vals = np.column_stack([_finite(df[c]) * s for c, s in zip(cols, signs)])
    vals[~status.isin(statuses).to_numpy()] = np.nan
    vals[~np.isfinite(vals)] = np.nan
    mask = non_dominated(vals)
    out = df[mask].copy()
    out["_key"] = vals[mask, 0]
    out = out.sort_values(["_key", "run_dir"], kind="stable").drop(columns="_key").reset_index(drop=True)
    out.attrs.update({"metrics": list(metrics), "modes": ["min" if s > 0 else "max" for s in signs],
                      "sweep": sweep})
    return out
