"""The one scoring rule: which metric ranks runs and trials, in which direction, and which are losses.

Losses and errors are minimized; accuracy-like metrics are maximized. Used by the sweep's progress
display and best-trials summary, the sweep report, `gridrun ls`, and the callbacks' `mode="auto"`, so
all of them agree on what "better" means. `is_loss` says which metrics are losses: a run whose loss
becomes non-finite has diverged (the runner fails it; the training loops stop). This module imports
nothing from gridrun.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

Mode = Literal["min", "max"]

DEFAULT_METRIC = "val_loss"
FALLBACK_METRICS = ("val_loss", "loss")  # what ranks runs when no metric is named
# metric names (after a prefix such as val_/train_/test_/eval_/metric_) that are better when larger
MAXIMIZED = ("acc", "accuracy", "auc", "f1", "fmeasure", "precision", "recall", "r2", "top_k_accuracy")
_PREFIX = re.compile(r"^(metric_|eval_|best_)?(val_|valid_|validation_|train_|training_|test_)?")


def base_name(metric: str) -> str:
    """`metric_val_acc` -> `acc`: the metric's name without table and split prefixes."""
    return _PREFIX.sub("", metric.lower(), count=1)


def is_loss(metric: str) -> bool:
    """Whether `metric` is a loss: `loss`, or a name ending in `_loss` (`val_loss`, `train_loss`, `kl_loss`,
    `metric_val_loss`); `lossy_acc` or `closs` are not."""
    name = base_name(metric)
    return name == "loss" or name.endswith("_loss")


def ranking_metric(metric: str | None, recorded: Callable[[str], bool]) -> str:
    """The metric that ranks a set of runs: `metric` when named, else val_loss when `recorded("val_loss")`,
    else loss when `recorded("loss")`, else val_loss (the fallback rule of `score`, for a whole set)."""
    if metric:
        return metric
    return next((name for name in FALLBACK_METRICS if recorded(name)), DEFAULT_METRIC)


def direction(metric: str, mode: str | None = "auto") -> Mode:
    """`min` or `max` for `metric`: `mode` when it is min/max, else the rule (accuracy-like names max).

    Maximized: acc, accuracy, auc, f1, fmeasure, precision, recall, r2 and names ending in `_acc` or
    `_accuracy` (`sparse_categorical_accuracy`, `top5_acc`); everything else (losses, errors, mae, mse, ...)
    is minimized.
    """
    if mode in ("min", "max"):
        return mode  # type: ignore[return-value]
    if mode not in (None, "auto"):
        raise ValueError(f"mode={mode!r}: use 'min', 'max' or 'auto'")
    name = base_name(metric)
    if name in MAXIMIZED or name.endswith(("_acc", "_accuracy", "_auc", "_f1", "_precision", "_recall", "_r2")):
        return "max"
    return "min"


def sign(metric: str, mode: str | None = "auto") -> float:
    """+1 when lower is better, -1 when higher is better: `sign * value` is always minimized."""
    return 1.0 if direction(metric, mode) == "min" else -1.0


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def score(metrics: Mapping[str, Any], metric: str | None = None) -> tuple[str, float | None]:
    """The metric that ranks a run (the given one, else val_loss, else loss) and its finite value."""
    names = (metric,) if metric else FALLBACK_METRICS
    for name in names:
        value = finite(metrics.get(name))
        if value is not None:
            return name, value
    return names[0], None


def is_better(a: float, b: float | None, metric: str, mode: str | None = "auto") -> bool:
    """Is value `a` better than `b` (None: nothing yet) for `metric`?"""
    if b is None:
        return True
    return a < b if direction(metric, mode) == "min" else a > b


def rank_key(value: float | None, metric: str, mode: str | None = "auto") -> tuple[int, float]:
    """Sort key putting the best value first and missing values last."""
    if value is None:
        return (1, 0.0)
    return (0, sign(metric, mode) * value)


def default_decreasing(order: str | list[str] | None) -> bool:
    """How a runs table sorts by `order` when not told (ls_runs, gridrun ls): largest / newest first,
    except a metric column first in `order` (metric_*, eval_*, best_*): best first by this rule."""
    first = order if isinstance(order, str) else (order[0] if order else None)
    if first and first.startswith(("metric_", "eval_", "best_")):
        return direction(first) == "max"
    return True


def objectives(metric: str | Sequence[str] | None, mode: str | Sequence[str | None] | None = None
               ) -> list[tuple[str, Mode]]:
    """What a sweep optimizes, as (metric, mode) pairs: its `metric` and `mode` as a manifest (or
    `tuning_run`) records them. One metric is a string (the manifest of every one-metric sweep), several
    a list; `mode` a string, a list (one per metric) or "min,max"; a missing mode follows the rule
    (`direction`). None (no metric named): [] (the fallback rule, val_loss else loss, applies)."""
    if metric is None or metric == "" or metric == []:
        return []
    names = [metric] if isinstance(metric, str) else [str(m) for m in metric]
    if isinstance(mode, str):
        modes: list[str | None] = [m.strip() or None for m in mode.split(",")]
    else:
        modes = list(mode) if mode is not None else []
    modes += [None] * (len(names) - len(modes))
    return [(name, direction(name, m)) for name, m in zip(names, modes)]


def non_dominated(values: Any, chunk: int = 1024) -> Any:
    """Boolean mask (numpy) of the rows of `values` (n x m, every column minimized) that no other row
    dominates: the Pareto front.

    A row dominates another when it is <= in every column and < in at least one; equal rows do not
    dominate each other (ties are all on the front). Rows with a NaN are never on it, and dominate none.
    Vectorized numpy (imported here, not with this module), in chunks of rows (memory n x chunk x m booleans).
    """
    import numpy as np

    values = np.asarray(values, dtype="float64")
    if values.ndim != 2:
        raise ValueError("values must be a 2-d array (runs x metrics)")
    n = len(values)
    ok = ~np.isnan(values).any(axis=1)
    pts = values[ok]
    front = np.zeros(len(pts), dtype=bool)
    for start in range(0, len(pts), chunk):
        block = pts[start:start + chunk]  # rows to test
        le = (pts[None, :, :] <= block[:, None, :]).all(axis=2)
        lt = (pts[None, :, :] < block[:, None, :]).any(axis=2)
        front[start:start + chunk] = ~(le & lt).any(axis=1)
    out = np.zeros(n, dtype=bool)
    out[np.flatnonzero(ok)[front]] = True
    return out
