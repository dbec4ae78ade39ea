"""The sweep report of a PBT sweep (gridrun/report/pbt_charts.py): the lineage chart and the best trial's
hyperparameter schedules, checked against the run dirs' own records, and the page rendered in headless
Chromium; a sweep without PBT shows neither."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_pbt import SCRIPT
from test_report_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    HAVE_SELENIUM,
    driver,  # noqa: F401  (the headless Chromium fixture)
    js_errors,
    open_page,
    screenshot,
)

import gridrun
from gridrun import cli
from gridrun.report import pbt_charts
from gridrun.report.pages import sweep_scales
from gridrun.report.sweepdata import find_sweep_runs, latest_sweep, load_sweep


@pytest.fixture(scope="module")
def pbt_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pbt_report")
    script = tmp / "train.py"
    script.write_text(SCRIPT)
    runs = tmp / "runs"
    code = cli.main(["tuning-run", str(script), "--sample", "6", "--seed", "11", "--population", "--pbt",
                     "--pbt-interval", "1", "--pbt-quantile", "0.5", "--runs-dir", str(runs), "--quiet"])
    assert code == 0
    sweep = latest_sweep(runs)
    data = load_sweep(sweep, find_sweep_runs(sweep, runs))
    data.scales.update(sweep_scales(sweep, runs))  # as sweep_report does: lr was drawn loguniform
    return runs, sweep, data


def _xy(trace):
    return list(trace["x"]), list(trace["y"])


def test_lineage_chart_draws_every_copy_from_the_donors_line(pbt_sweep):
    _, _, data = pbt_sweep
    charts = pbt_charts.sweep_charts(data)
    assert [c.id for c in charts] == ["pbt-lineage", "pbt-schedule-dropout", "pbt-schedule-lr"]
    fig = charts[0].figure
    json.dumps(fig)  # what the page embeds
    by_label = {t.label: t for t in data.trials}
    events = {t.label: pbt_charts.lineage(t) for t in data.trials}
    total = sum(len(e) for e in events.values())
    assert total == 9 and f"{total} copies" in charts[0].title
    lines = [tr for tr in fig["data"] if tr.get("mode") == "lines+markers"]
    jumps = [tr for tr in fig["data"] if tr.get("line", {}).get("dash") == "dash"]
    assert len(lines) == 6  # one line per trial
    for tr in lines:
        t = by_label[tr["name"].removesuffix(" (best)")]
        xs, ys = _xy(tr)
        own = [(x, y) for x, y in zip(xs, ys) if x is not None]
        assert own == [(e + 1, pytest.approx(v)) for e, v in enumerate(t.run.metrics["val_loss"])]
        assert xs.count(None) == len([e for e in events[t.label] if e["epoch"] < 4])  # breaks at each copy
    drawn = 0
    for tr in jumps:
        xs, ys = _xy(tr)
        for k in range(0, len(xs), 3):  # segments (e, donor's value) -> (e + 1, own value), None between
            e, text = xs[k], tr["text"][k]
            t = next(t for t in data.trials if text.startswith(f"{t.label} copied"))
            ev = next(ev for ev in events[t.label] if ev["epoch"] == e)
            donor = next(d for d in data.trials if d.index == ev["copied_from"])
            assert f"copied {donor.label} after epoch {e}" in text
            assert ys[k] == pytest.approx(donor.run.metrics["val_loss"][e - 1])
            assert xs[k + 1] == e + 1 and ys[k + 1] == pytest.approx(t.run.metrics["val_loss"][e])
            drawn += 1
    assert drawn == total
    best = data.best_trial
    best_line = next(tr for tr in lines if tr["name"] == f"{best.label} (best)")
    assert best_line["line"]["width"] > lines[0]["line"]["width"] or lines[0] is best_line


def test_the_best_trials_ancestry_follows_its_donors(pbt_sweep):
    _, _, data = pbt_sweep
    fig = pbt_charts.lineage_chart(data).figure
    best = data.best_trial
    anc = next(tr for tr in fig["data"] if tr["name"] == f"ancestry of {best.label}")
    xs, ys = _xy(anc)
    assert xs == [1, 2, 3, 4]
    assert ys[-1] == pytest.approx(best.run.metrics["val_loss"][-1])
    # walk back by hand: at each epoch the state belongs to the trial that held it then
    holder, expected = best, {}
    for epoch in range(4, 0, -1):
        expected[epoch] = holder.run.metrics["val_loss"][epoch - 1]
        ev = [e for e in pbt_charts.lineage(holder) if e["epoch"] == epoch - 1]
        if ev:
            holder = next(d for d in data.trials if d.index == ev[0]["copied_from"])
    assert ys == pytest.approx([expected[e] for e in xs])


def test_schedule_charts_show_the_best_trials_values_per_epoch(pbt_sweep):
    _, _, data = pbt_sweep
    best = data.best_trial
    charts = {c.id: c for c in pbt_charts.schedule_charts(data)}
    for flag in ("lr", "dropout"):
        fig = charts[f"pbt-schedule-{flag}"].figure
        xs, ys = _xy(fig["data"][0])
        assert xs == [1, 2, 3, 4] and ys == pytest.approx(best.run.metrics[f"hp_{flag}"])
        copied = [e["epoch"] + 1 for e in pbt_charts.lineage(best) if e["epoch"] < 4]
        marks = [tr for tr in fig["data"] if tr["name"] == "exploit"]
        assert (list(marks[0]["x"]) if marks else []) == copied
    assert charts["pbt-schedule-lr"].figure["layout"]["yaxis"].get("type") == "log"  # a loguniform flag
    assert charts["pbt-schedule-dropout"].figure["layout"]["yaxis"].get("type") != "log"


def test_a_sweep_without_pbt_has_no_pbt_section(tmp_path):
    from test_report_fixtures import sweep_runs

    runs = tmp_path / "runs"
    sweep_runs(runs)
    sweep = latest_sweep(runs)
    data = load_sweep(sweep, find_sweep_runs(sweep, runs))
    assert pbt_charts.sweep_charts(data) == []
    page = gridrun.sweep_report(sweep, runs_dir=runs, open_browser=False)
    html = Path(page).read_text()
    assert 'id="pbt"' not in html and "pbt-lineage" not in html


@pytest.mark.skipif(not HAVE_SELENIUM or not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                    reason=f"needs selenium, {CHROMIUM} and {CHROMEDRIVER}")
def test_the_pbt_section_renders_in_a_browser(pbt_sweep, driver, tmp_path):  # noqa: F811
    runs, sweep, data = pbt_sweep
    page = gridrun.sweep_report(sweep, runs_dir=runs, open_browser=False)
    html = Path(page).read_text()
    assert 'id="pbt"' in html and 'href="#pbt"' in html
    open_page(driver, Path(page).resolve().as_uri())
    ids = driver.execute_script("return Array.from(document.querySelectorAll('#pbt .js-plotly-plot'))"
                                ".map(function (g) { return [g.id, g.data.length]; })")
    assert [i for i, _ in ids] == ["pbt-lineage", "pbt-schedule-dropout", "pbt-schedule-lr"]
    assert ids[0][1] == len(pbt_charts.lineage_chart(data).figure["data"])
    assert driver.execute_script("return document.querySelectorAll('#pbt-lineage .scatterlayer .trace').length") >= 6
    driver.execute_script("document.getElementById('pbt').scrollIntoView()")
    shot = screenshot(driver, tmp_path, "pbt")
    if os.environ.get("GRIDRUN_SHOT_DIR"):  # to look at it
        Path(os.environ["GRIDRUN_SHOT_DIR"], "pbt.png").write_bytes(shot.read_bytes())
    assert js_errors(driver) == []
