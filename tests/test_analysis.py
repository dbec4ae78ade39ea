"""gridrun.importance and gridrun.pareto over hand-made sweeps (tests/test_report_fixtures.py), and
`gridrun ls --importance` / `gridrun ls --pareto`."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _util import run_cli
from test_report_fixtures import make_run

import gridrun
from gridrun import analysis
from gridrun.errors import GridrunError

SWEEP = "2026-11-27T08-00-00Z-ab12"


def write_manifest(runs_dir: Path, sweep: str = SWEEP, **data) -> None:
    (runs_dir / "sweeps").mkdir(parents=True, exist_ok=True)
    (runs_dir / "sweeps" / f"{sweep}.json").write_text(json.dumps({"id": sweep, "trials": [], **data}))


def lr_sweep(runs_dir: Path, n: int = 60, seed: int = 0, sweep: str = SWEEP, pruned: int = 0) -> list[dict]:
    """A sweep where val_loss depends on the learning rate (log-uniform) much more than on dropout, and
    not at all on the activation; epochs is the same in every run. The last `pruned` runs are pruned."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lr = math.exp(rng.uniform(math.log(1e-5), math.log(1e-1)))
        dropout = rng.choice([0.1, 0.2, 0.3, 0.4, 0.5])
        act = rng.choice(["relu", "tanh"])
        val = (math.log10(lr) + 3) ** 2 + 0.3 * dropout + rng.gauss(0, 0.05)
        status = "pruned" if i >= n - pruned else "completed"
        flags = {"lr": lr, "dropout": dropout, "activation": act, "epochs": 5}
        make_run(runs_dir, f"2026-11-27T08-{i // 60:02d}-{i % 60:02d}.000Z", flags=flags,
                 metrics={"val_loss": [val + 1, val], "n_params": [1000 * (i % 7 + 1)] * 2},
                 status=status, sweep=sweep, trial=i)
        rows.append({**flags, "val_loss": val, "status": status})
    write_manifest(runs_dir, sweep, metric="val_loss", mode="min",
                   grid={"flags": {"dropout": [0.1, 0.2, 0.3, 0.4, 0.5], "activation": ["relu", "tanh"],
                                   "epochs": [5]},
                         "ranges": {"lr": {"loguniform": [1e-5, 1e-1]}}})
    return rows


def test_importance_ranks_the_flag_that_matters_first(tmp_path):
    lr_sweep(tmp_path, n=80, pruned=6)
    table = gridrun.importance(SWEEP, runs_dir=tmp_path)
    assert list(table.columns) == ["flag", "importance", "spread", "scale", "values"]
    assert table["flag"].iloc[0] == "lr"
    assert table["importance"].iloc[0] > 2 * table["importance"].iloc[1]
    assert table["importance"].sum() == pytest.approx(1.0)
    assert (table["spread"] >= 0).all() and table["spread"].iloc[0] > 0
    scales = dict(zip(table["flag"], table["scale"]))
    assert scales == {"lr": "numeric, log", "dropout": "numeric", "activation": "categorical"}
    assert table.attrs["constant"] == ["epochs"]
    assert table.attrs["metric"] == "val_loss" and table.attrs["mode"] == "min"
    assert table.attrs["trials"] == 74  # the 6 pruned runs are left out
    with_pruned = gridrun.importance(SWEEP, runs_dir=tmp_path, include_pruned=True)
    assert with_pruned.attrs["trials"] == 80


def test_importance_takes_a_selection_and_the_default_sweep(tmp_path):
    lr_sweep(tmp_path, n=30)
    df = gridrun.ls_runs(tmp_path)
    by_rows = gridrun.importance(df.head(20), n_bootstrap=0)
    assert by_rows.attrs["trials"] == 20 and (by_rows["spread"] == 0).all()
    assert gridrun.importance(runs_dir=tmp_path).attrs["sweep"] == SWEEP  # the latest sweep


def test_importance_direction_decides_which_flag_matters(tmp_path):
    """`good` makes the best values (high acc), `bad` the worst: maximizing finds `good`, minimizing `bad`."""
    rng = random.Random(1)
    for i in range(120):
        good, bad = rng.choice([0, 1]), rng.choice([0, 1])
        acc = 0.5 + 0.4 * good * (rng.random() < 0.5) - 0.4 * bad * (rng.random() < 0.5) + rng.gauss(0, 0.01)
        make_run(tmp_path, f"2026-11-27T09-{i // 60:02d}-{i % 60:02d}.000Z",
                 flags={"good": ["a", "b"][good], "bad": ["a", "b"][bad]}, metrics={"val_acc": [acc]},
                 sweep=SWEEP, trial=i)
    write_manifest(tmp_path, metric="val_acc", mode="max")
    top = gridrun.importance(SWEEP, runs_dir=tmp_path, n_bootstrap=0)
    assert top.attrs["mode"] == "max" and top["flag"].iloc[0] == "good"
    bottom = gridrun.importance(SWEEP, metric="val_acc", mode="min", runs_dir=tmp_path, n_bootstrap=0)
    assert bottom["flag"].iloc[0] == "bad"


def test_trials_study_gives_the_importances_of_a_filled_study():
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    rng = np.random.default_rng(0)
    dists = {"x": FloatDistribution(0, 1), "c": CategoricalDistribution(["a", "b", "c"])}
    trials = [analysis.frozen_trial(i, {"x": float(x), "c": str(c)}, dists, float(x * 3 + (c == "a")))
              for i, (x, c) in enumerate(zip(rng.uniform(size=300), rng.choice(["a", "b", "c"], 300)))]
    filled = optuna.create_study()
    filled.add_trials(trials)
    ev = PedAnovaImportanceEvaluator()
    assert get_param_importances(analysis.trials_study(trials), evaluator=ev) == pytest.approx(
        get_param_importances(filled, evaluator=ev))


@pytest.mark.parametrize("values, kind, log", [
    ([1e-4, 1e-3, 1e-2, 1e-3], "FloatDistribution", True),
    ([0.001, 0.2, 0.3, 0.5], "FloatDistribution", False),  # uniform-ish values near 0: not log
    ([32, 64, 128], "IntDistribution", False),
    ([16, 128, 1024, 4096], "IntDistribution", True),
])
def test_flag_distribution_from_values(values, kind, log):
    dist = analysis.flag_distribution("f", values)
    assert type(dist).__name__ == kind and dist.log is log
    assert dist.low == min(values) and dist.high == max(values)


def test_flag_distribution_declared_categorical_and_constant():
    d = analysis.flag_distribution("lr", [0.01, 0.02], {"loguniform": [1e-5, 1e-1]})
    assert d.log and d.low == 1e-5 and d.high == 1e-1
    d = analysis.flag_distribution("units", [64, 96], {"randint": [32, 512], "step": 32})
    assert type(d).__name__ == "IntDistribution" and d.step == 32 and (d.low, d.high) == (32, 512)
    assert analysis.flag_distribution("act", ["relu", None, "tanh", True]).choices == (True, "relu", "tanh")
    assert analysis.flag_distribution("epochs", [5, 5, None]) is None


def test_importance_bad_input(tmp_path):
    lr_sweep(tmp_path, n=10)
    with pytest.raises(GridrunError, match="no metric 'val_acc'.*val_loss"):
        gridrun.importance(SWEEP, metric="val_acc", runs_dir=tmp_path)
    with pytest.raises(GridrunError, match="at least 4 completed runs"):
        gridrun.importance(gridrun.ls_runs(tmp_path).head(3))
    with pytest.raises(GridrunError, match="no runs of sweep 'nope'"):
        gridrun.importance("nope", runs_dir=tmp_path)
    with pytest.raises(GridrunError, match="mode='up'"):
        gridrun.importance(SWEEP, mode="up", runs_dir=tmp_path)
    with pytest.raises(GridrunError, match="give a sweep id or a DataFrame"):
        gridrun.importance(42)


# --------------------------------------------------------------------------------------------------
# Pareto


def brute_front(points: np.ndarray) -> set[int]:
    out = set()
    for i, p in enumerate(points):
        if np.isnan(p).any():
            continue
        if not any(not np.isnan(q).any() and (q <= p).all() and (q < p).any() for q in points):
            out.add(i)
    return out


def test_non_dominated_known_fronts():
    pts = np.array([[1, 5], [2, 3], [3, 1], [2, 4], [4, 4], [2, 3], [np.nan, 0], [0.5, np.nan], [3, 1]])
    mask = analysis.non_dominated(pts)
    # (2,3) twice and (3,1) twice: ties are all on the front; NaN rows never
    assert set(np.flatnonzero(mask)) == {0, 1, 2, 5, 8}
    assert not analysis.non_dominated(np.array([[1.0, 1.0], [1.0, 2.0]]))[1]
    rng = np.random.default_rng(3)
    many = rng.integers(0, 8, size=(300, 3)).astype(float)  # many ties
    many[rng.integers(0, 300, 20), rng.integers(0, 3, 20)] = np.nan
    assert set(np.flatnonzero(analysis.non_dominated(many, chunk=37))) == brute_front(many)


def test_pareto_of_runs_with_modes(tmp_path):
    points = [(0.30, 0.80), (0.20, 0.70), (0.25, 0.90), (0.40, 0.95), (0.35, 0.60), (0.20, 0.70), (None, 0.99)]
    for i, (loss, acc) in enumerate(points):
        metrics = {"val_acc": [acc]} if loss is None else {"val_loss": [loss], "val_acc": [acc]}
        make_run(tmp_path, f"2026-11-27T10-00-{i:02d}.000Z", flags={"units": 10 * i}, metrics=metrics,
                 sweep=SWEEP, trial=i)
    make_run(tmp_path, "2026-11-27T10-00-50.000Z", flags={"units": 1}, metrics={"val_loss": [0.1], "val_acc": [1.0]},
             status="failed", sweep=SWEEP, trial=50)  # would dominate all: failed runs take no part
    front = gridrun.pareto(SWEEP, metrics=["val_loss", "val_acc"], runs_dir=tmp_path)
    assert front["flag_units"].tolist() == [10, 50, 20, 30]  # loss best first; trial 1 and 5 tie
    assert front.attrs["modes"] == ["min", "max"]
    both_min = gridrun.pareto(gridrun.ls_runs(tmp_path), metrics=["val_loss", "val_acc"], modes="min,min")
    assert sorted(both_min["flag_units"]) == [10, 40, 50]
    with pytest.raises(GridrunError, match="two or more metrics"):
        gridrun.pareto(SWEEP, metrics=["val_loss"], runs_dir=tmp_path)
    with pytest.raises(GridrunError, match="one mode per metric"):
        gridrun.pareto(SWEEP, metrics=["val_loss", "val_acc"], modes=["min"], runs_dir=tmp_path)


# --------------------------------------------------------------------------------------------------
# gridrun ls


def test_ls_importance_and_pareto_cli(tmp_path):
    lr_sweep(tmp_path, n=40)
    out = run_cli("ls", "--runs-dir", tmp_path, "--sweep", SWEEP, "--importance", check=True).stdout
    lines = out.splitlines()
    assert "Importance of flags for val_loss" in lines[0] and "40 runs" in lines[0]
    assert lines[3].split()[0] == "lr" and "█" in lines[3]
    assert "same in every run, no importance: epochs" in out
    as_json = json.loads(run_cli("ls", "--runs-dir", tmp_path, "--importance", "--format", "json", check=True).stdout)
    assert as_json[0]["flag"] == "lr"
    front = run_cli("ls", "--runs-dir", tmp_path, "--sweep", SWEEP, "--pareto", "--metric", "val_loss",
                    "--metric", "n_params", "--format", "csv", check=True).stdout
    got = pd.read_csv(__import__("io").StringIO(front))
    df = gridrun.ls_runs(tmp_path)
    expect = analysis.non_dominated(df[["metric_val_loss", "metric_n_params"]].to_numpy())
    assert sorted(got["run_dir"]) == sorted(df["run_dir"][expect])
    text = run_cli("ls", "--runs-dir", tmp_path, "--pareto", "--metric", "val_loss", "--metric", "n_params",
                   check=True).stdout
    assert text.startswith(f"Pareto front (val_loss min, n_params min): {expect.sum()} of 40 runs")
    bad = run_cli("ls", "--runs-dir", tmp_path, "--pareto", "--metric", "val_loss")
    assert bad.returncode == 2 and "two or more metrics" in bad.stderr
    bad = run_cli("ls", "--runs-dir", tmp_path, "--metric", "val_loss")
    assert bad.returncode == 2 and "--metric and --mode go with --importance or --pareto" in bad.stderr


# --------------------------------------------------------------------------------------------------
# The sweep report's analysis charts (their figures' JSON)


def figures(page: Path) -> dict[str, dict]:
    import re

    html = page.read_text()
    return {m.group(1): json.loads(m.group(2)) for m in re.finditer(
        r'<script type="application/json" id="figure-([a-z0-9-]+)">(.*?)</script>', html, re.S)}


def test_sweep_report_analysis_charts(tmp_path):
    rows = lr_sweep(tmp_path, n=40, pruned=4)
    page = gridrun.sweep_report(SWEEP, runs_dir=tmp_path, open_browser=False, pareto=["val_loss", "n_params"])
    figs = figures(page)
    assert {"analysis-importance", "analysis-curves", "analysis-heatmap", "analysis-pareto"} <= set(figs)
    bars = figs["analysis-importance"]["data"][0]
    table = gridrun.importance(SWEEP, runs_dir=tmp_path)
    assert bars["y"] == table["flag"].tolist()[::-1]  # most important on top
    assert bars["x"] == pytest.approx(table["importance"].tolist()[::-1])
    assert bars["error_x"]["array"] == pytest.approx(table["spread"].tolist()[::-1])
    curves = {t["name"]: t for t in figs["analysis-curves"]["data"]}
    best = best_trial(rows)
    assert set(curves) == {"completed trials", "pruned trials", f"best: trial {best}"}
    pruned = sum(r["status"] == "pruned" for i, r in enumerate(rows) if i != best)
    assert sum(x is None for x in curves["pruned trials"]["x"]) == pruned  # a gap after each curve
    assert curves["completed trials"]["type"] == "scattergl"
    heat = figs["analysis-heatmap"]
    assert heat["layout"]["xaxis"]["title"]["text"] == "lr" and heat["layout"]["xaxis"]["type"] == "log"
    assert heat["layout"]["yaxis"]["title"]["text"] == "dropout"
    assert heat["data"][0]["y"] == [0.1, 0.2, 0.3, 0.4, 0.5]  # few distinct values: one row each
    done = [r for r in rows if r["status"] in ("completed", "pruned")]
    counted = sum(c for row in heat["data"][0]["customdata"] for c in row)
    assert counted == len(done)
    front = figs["analysis-pareto"]["data"][1]
    expect = gridrun.pareto(SWEEP, metrics=["val_loss", "n_params"], runs_dir=tmp_path)
    assert front["x"] == pytest.approx(expect["metric_val_loss"].tolist())


def best_trial(rows: list[dict]) -> int:
    """The sweep report's best trial (pruned trials count, at their last epoch: sweepdata's rule)."""
    done = [(r["val_loss"], i) for i, r in enumerate(rows) if r["status"] in ("completed", "pruned")]
    return min(done)[1]


def test_curves_downsampled_at_thousands():
    from gridrun.report import analysis_charts as ac

    n = 3000
    rng = random.Random(0)
    values = [rng.random() for _ in range(n)]
    curves = [[v + 1.0 / (e + 1) for e in range(500)] for v in values]
    chart = ac.curves_chart("val_loss", curves, ["completed"] * n, [f"trial {i}" for i in range(n)], values,
                            maximize=False, best=values.index(min(values)))
    data = chart.figure["data"]
    drawn = sum(x is None for x in data[0]["x"])
    assert drawn == ac.MAX_CURVES - 1  # the best is its own trace
    assert f"{ac.MAX_CURVES:,} of {n:,} trials shown" in chart.title
    assert f"{ac.MAX_CURVES:,} of {n:,} trials shown" in chart.figure["layout"]["xaxis"]["title"]["text"]
    assert max(len(ac._thin(c)[0]) for c in curves) <= ac.MAX_POINTS + 1 and ac._thin(curves[0])[0][-1] == 500
    shown = ac.choose_curves(values, maximize=False)
    best50 = sorted(range(n), key=values.__getitem__)[: ac.MAX_BEST]
    assert set(best50) <= set(shown) and shown == ac.choose_curves(values, maximize=False)  # seeded


def test_pareto_chart_only_with_two_metrics(tmp_path):
    lr_sweep(tmp_path, n=12)
    page = gridrun.sweep_report(SWEEP, runs_dir=tmp_path, open_browser=False)
    assert "analysis-pareto" not in figures(page)  # the manifest names one metric
    write_manifest(tmp_path, metric=["val_loss", "n_params"], mode=["min", "min"])
    page = gridrun.sweep_report(SWEEP, metric="val_loss", runs_dir=tmp_path, open_browser=False)
    assert "analysis-pareto" in figures(page)
