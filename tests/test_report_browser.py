"""End-to-end: the report pages open in headless Chromium (Selenium 4) with no network, their plotly
charts render with the runs' data, no JavaScript error is logged, run content runs no script, tables
sort, and the live page follows a running run. A screenshot of each page lands in the test's tmp_path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_report_fixtures import make_run, sweep_runs, training_run

import gridrun

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SWEEP = "sweep-20261127-a1b2"
CANARY = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'

try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium is not installed (pip install selenium)"),
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason=f"headless browser tests need {CHROMIUM} and {CHROMEDRIVER} (apt install chromium chromium-driver)",
    ),
]

# Flags that keep Chromium off the network: no background services, every host name unresolvable
# except the loopback address the live server uses.
NETWORK_FREE = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # selenium-manager must never download anything
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1200,900", "--enable-unsafe-swiftshader", *NETWORK_FREE):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def open_page(driver, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.querySelectorAll('.chart'))"
        ".every(function (c) { return c.classList.contains('js-plotly-plot'); })"))


def js_errors(driver) -> list[str]:
    """Errors caught by the page's window.onerror plus SEVERE console entries (clears the log)."""
    caught = driver.execute_script("return window.gridrunErrors || ['window.gridrunErrors missing']")
    severe = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    return list(caught) + severe


def traces(driver) -> list[list[dict]]:
    """Per chart on the page: its traces' name, type and data, read back from the plotly graph divs."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).map(function (g) {"
        "  return g.data.map(function (t) { return {name: t.name, type: t.type, x: t.x, y: t.y,"
        "    dims: t.dimensions ? t.dimensions.map(function (d) { return d.label; }) : null}; }); });")


def count(driver, selector: str) -> int:
    return driver.execute_script(f"return document.querySelectorAll({json.dumps(selector)}).length")


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 5000  # a real, non-blank page
    return path


def test_view_page_renders_charts_with_the_run_data(driver, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = training_run(runs, output=f"Epoch 1/5\n{CANARY}\ndone\n",
                       flags={"dropout1": 0.4, "units": 128, "activation": CANARY})
    page = gridrun.view_run(run.name, runs_dir=runs, open_browser=False)
    open_page(driver, page.resolve().as_uri())
    assert count(driver, ".js-plotly-plot") == 3
    assert count(driver, ".js-plotly-plot .scatterlayer .trace") == 5
    metrics = json.loads((run / "metrics.json").read_text())
    charts = traces(driver)
    assert [[t["name"] for t in c] for c in charts] == [["loss", "val_loss"], ["acc", "val_acc"], ["lr"]]
    for chart in charts:
        for t in chart:
            assert t["y"] == pytest.approx(metrics[t["name"]]) and t["x"] == [1, 2, 3, 4, 5]
    # the points are drawn: one marker per epoch on the loss trace
    assert count(driver, "#curve-0 .scatterlayer .trace:first-child .points path") == 5
    # run content is text: the canary in a flag and in the output ran nothing
    assert driver.execute_script("return window.__xss") is None
    cell = driver.execute_script(
        "return Array.from(document.querySelectorAll('.flags-table tr')).find(function (r) {"
        " return r.cells[0].textContent === 'activation'; }).cells[1].textContent")
    assert cell == CANARY
    assert CANARY in driver.execute_script("return document.querySelector('pre.log').textContent")
    assert count(driver, ".images img") == 1 and driver.execute_script(
        "return document.querySelector('.images img').naturalWidth") == 4
    assert js_errors(driver) == []
    screenshot(driver, tmp_path, "view")


def test_compare_page_overlays_both_runs(driver, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    training_run(runs, "2026-11-27T06-44-38.123Z")
    b = training_run(runs, "2026-11-27T07-00-00.000Z", metrics={"loss": [0.8, 0.5, 0.3], "val_loss": [0.7, 0.6, 0.55]},
                     flags={"dropout1": 0.3, "units": 256, "activation": CANARY, "batchnorm": False},
                     output="Epoch 1/3\ndone\n")
    page = gridrun.compare_runs(runs_dir=runs, open_browser=False)
    open_page(driver, page.resolve().as_uri())
    charts = traces(driver)
    assert [t["name"] for t in charts[0]] == ["A: loss", "A: val_loss", "B: loss", "B: val_loss"]
    b_loss = charts[0][2]
    assert b_loss["y"] == pytest.approx([0.8, 0.5, 0.3]) and b_loss["x"] == [1, 2, 3]
    assert count(driver, "#cmp-0 .scatterlayer .trace") == 4
    differ = driver.execute_script(
        "return Array.from(document.querySelectorAll('.flags-table tr.differ th')).map(function (t) {"
        " return t.textContent; })")
    assert differ == ["dropout1", "units", "activation"]
    assert count(driver, ".file-states .state-identical") == 2  # same source files
    out_diff = driver.execute_script("return document.querySelector('#output .diff').textContent")
    assert "-Epoch 5/5" in out_diff and "+Epoch 1/3" in out_diff
    assert driver.execute_script("return window.__xss") is None
    assert js_errors(driver) == []
    assert b.name in driver.title
    screenshot(driver, tmp_path, "compare")


def test_sweep_page_parcoords_sorting_and_best_link(driver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    runs = tmp_path / "runs"
    sweep_runs(runs)
    page = gridrun.sweep_report(SWEEP, runs_dir=runs, open_browser=False)
    open_page(driver, page.resolve().as_uri())
    charts = traces(driver)
    assert charts[0][0]["type"] == "parcoords"
    assert charts[0][0]["dims"] == ["dropout1", "units", "activation", "val_loss"]
    assert count(driver, "#parcoords .parcoords .y-axis") == 4  # the axes are drawn
    assert [c[0]["type"] for c in charts[1:5]] == ["scatter", "scatter", "box", "scatter"]  # 3 flags, best so far
    # then the analysis charts (tests/test_analysis.py): importance, every trial's curve, the heat map
    assert [c[0]["type"] for c in charts[5:]] == ["bar", "scattergl", "heatmap"]
    units = charts[2][0]
    pairs = sorted(zip(units["x"], units["y"]))  # pytest 9's approx takes no nested tuples: compare flat
    expected = sorted([(64, 0.41), (64, 0.39), (128, 0.35), (128, 0.33), (256, 0.28)])
    assert [x for x, _ in pairs] == [x for x, _ in expected]
    assert [y for _, y in pairs] == pytest.approx([y for _, y in expected])
    assert count(driver, ".js-plotly-plot .scatterlayer .trace") >= 5
    assert count(driver, ".js-plotly-plot .boxlayer .trace") == 1
    # a flag value with markup is drawn as its literal characters on the chart axis
    ticks = driver.execute_script(
        "return Array.from(document.querySelectorAll('#flag-2 .xtick text')).map(function (t) {"
        " return t.textContent; })")
    assert "<script>alert(1)</script>" in ticks and "relu" in ticks

    def first_column() -> list[str]:
        return [r.find_element(By.CSS_SELECTOR, "td").text for r in
                driver.find_elements(By.CSS_SELECTOR, "table.trials tbody tr")]

    # sorted by the sweep's metric from the start, best first, the failed trial (no value) last
    assert first_column() == ["4", "3", "2", "1", "0", "5"]
    header = next(h for h in driver.find_elements(By.CSS_SELECTOR, "table.trials th") if h.text == "val_loss")
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert first_column() == ["0", "1", "2", "3", "4", "5"] and header.get_attribute("aria-sort") == "descending"
    header.click()
    assert first_column() == ["4", "3", "2", "1", "0", "5"]
    next(h for h in driver.find_elements(By.CSS_SELECTOR, "table.trials th") if h.text == "trial").click()
    assert first_column() == ["0", "1", "2", "3", "4", "5"]
    best = driver.find_element(By.CSS_SELECTOR, "tr.best")
    assert best.find_element(By.CSS_SELECTOR, "td").text == "4"
    assert driver.execute_script("return window.__xss") is None
    assert js_errors(driver) == []
    screenshot(driver, tmp_path, "sweep-report")
    # the best trial's link opens its run report
    driver.find_element(By.CSS_SELECTOR, "#best-trial a").click()
    open_page(driver, driver.current_url)
    assert driver.current_url.endswith("2026-11-27T08-00-04.000Z/report.html")
    assert count(driver, ".js-plotly-plot .scatterlayer .trace") == 2
    assert js_errors(driver) == []


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def test_live_page_follows_a_running_run(driver, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    from gridrun.report import serve_run

    runs = tmp_path / "runs"
    run = make_run(runs, "2026-11-27T10-00-00.000Z", status="running", epochs=4,
                   flags={"units": 64}, metrics={"loss": [0.9, 0.7], "val_loss": [0.95, 0.8]})
    with serve_run(run.name, runs_dir=runs, open_browser=False) as server:
        open_page(driver, server.url)
        assert [t["y"] for t in traces(driver)[0]] == [[0.9, 0.7], [0.95, 0.8]]
        _write_json(run / "metrics.json", {"loss": [0.9, 0.7, 0.5, 0.4], "val_loss": [0.95, 0.8, 0.7, 0.65]})
        WebDriverWait(driver, 20).until(lambda d: len(traces(d)[0][0]["y"]) == 4)
        assert [t["y"] for t in traces(driver)[0]] == [[0.9, 0.7, 0.5, 0.4], [0.95, 0.8, 0.7, 0.65]]
        assert traces(driver)[0][0]["x"] == [1, 2, 3, 4]
        assert count(driver, "#curve-0 .scatterlayer .trace:first-child .points path") == 4
        assert driver.execute_script("return document.getElementById('live-epochs').textContent") == "4"
        screenshot(driver, tmp_path, "live")
        # a metric that appears mid-run gets its chart: the page reloads from the server
        _write_json(run / "metrics.json", {"loss": [0.9, 0.7, 0.5, 0.4, 0.35], "val_loss": [0.95, 0.8, 0.7, 0.65, 0.6],
                                           "lr": [None, None, None, None, 0.01]})
        WebDriverWait(driver, 20).until(lambda d: count(d, ".js-plotly-plot") == 2)
        open_page(driver, driver.current_url)
        assert [[t["name"] for t in c] for c in traces(driver)] == [["loss", "val_loss"], ["lr"]]
        assert traces(driver)[1][0]["y"] == [None, None, None, None, 0.01]
        props = json.loads((run / "properties.json").read_text())
        _write_json(run / "properties.json", {**props, "status": "completed", "completed": True})
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return document.getElementById('live-status').classList.contains('ended')"))
        assert driver.execute_script("return document.getElementById('live-run-status').textContent") == "completed"
        assert js_errors(driver) == []



def xticks(driver, chart: str) -> list[str]:
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll({json.dumps(chart + ' .xtick text')})).map(function (t) {{"
        " return t.textContent; })")


def test_self_contained_and_shared_pages_render_offline(driver, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = training_run(runs, metrics={"loss": [0.9, 0.5], "val_loss": [0.8, 0.6]})
    shared = gridrun.view_run(run.name, runs_dir=runs, open_browser=False)
    assert shared.stat().st_size <= 300_000
    shared_html = shared.read_text()
    mailed = gridrun.view_run(run.name, runs_dir=runs, output=tmp_path / "mail" / "run.html", open_browser=False,
                              self_contained=True)
    assert sorted(p.name for p in mailed.parent.iterdir()) == ["run.html"]
    shared.write_text(shared_html)  # view_run wrote the run's own report.html self-contained too
    for page in (shared, mailed):
        open_page(driver, page.resolve().as_uri())
        assert [[t["name"] for t in c] for c in traces(driver)] == [["loss", "val_loss"]]
        assert count(driver, "#curve-0 .scatterlayer .trace:first-child .points path") == 2
        assert xticks(driver, "#curve-0") == ["1", "2"]  # whole epochs, not 1, 1.2, 1.4 ...
        assert js_errors(driver) == []
    # the shared page alone, away from its runs dir: the charts say what is missing and how to fix it
    lonely = tmp_path / "lonely" / "report.html"
    lonely.parent.mkdir()
    lonely.write_text(shared_html)
    driver.get(lonely.as_uri())
    notice = driver.execute_script("return document.querySelector('#curve-0 .missing-plotly').textContent")
    assert "plotly" in notice and "--self-contained" in notice


def _split_words(driver) -> list[str]:
    """Words of table labels (th) that the layout broke over two lines."""
    return driver.execute_script("""
        var bad = [];
        document.querySelectorAll("th").forEach(function (th) {
          var node = th.firstChild;
          if (!node || node.nodeType !== 3) return;
          var re = /\\S+/g, m;
          while ((m = re.exec(node.data))) {
            var r = document.createRange();
            r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
            if (r.getClientRects().length > 1) bad.push(m[0]);
          }
        });
        return bad;""")


def test_labels_never_break_inside_a_word(driver, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    long = {"sweep": "2026-11-27T06-44-38Z-ab12", "trial": 3, "context": "local",
            "versions": {"python": "3.11.9", "gridrun": "0.1.0", "jax": "0.10.2", "flax": "0.12.8",
                         "optax": "0.2.6", "numpy": "2.3.5", "pandas": "3.0.0", "plotly": "7.1.0"},
            "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True}}
    training_run(runs, "2026-11-27T06-44-38.123Z", **long)
    training_run(runs, "2026-11-27T07-00-00.000Z", **{**long, "context": "dask-worker-tcp://10.0.0.7:40000"})
    pages = [gridrun.view_run(runs_dir=runs, open_browser=False), gridrun.compare_runs(runs_dir=runs, open_browser=False)]
    try:
        for width in (1200, 700):
            driver.set_window_size(width, 900)
            for page in pages:
                open_page(driver, page.resolve().as_uri())
                labels = driver.execute_script(
                    "return Array.from(document.querySelectorAll('#summary th')).map(function (t) { return t.textContent; })")
                assert "context" in labels and "sweep" in labels
                assert _split_words(driver) == [], (page.name, width)
    finally:
        driver.set_window_size(1200, 900)


def test_notebook_display_renders_the_page_in_an_iframe(driver, tmp_path: Path) -> None:
    """What Jupyter shows for view_run's result (its _repr_html_), opened as a page: the charts render
    inside the iframe, offline, with plotly.js inlined into it."""
    runs = tmp_path / "runs"
    run = training_run(runs)
    report = gridrun.view_run(run.name, runs_dir=runs, open_browser=False)
    cell = tmp_path / "cell.html"
    cell.write_text(f"<!doctype html><html><body>{report._repr_html_()}</body></html>")
    driver.get(cell.as_uri())
    driver.switch_to.frame(driver.find_element("css selector", "iframe"))
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 30).until(lambda d: count(d, ".js-plotly-plot") == 3)
        assert [[t["name"] for t in c] for c in traces(driver)] == [["loss", "val_loss"], ["acc", "val_acc"], ["lr"]]
        assert driver.execute_script("return window.gridrunErrors") == []
    finally:
        driver.switch_to.default_content()


def test_sweep_page_draws_a_log_uniform_flag_on_a_log_axis(driver, tmp_path: Path) -> None:
    """A learning rate drawn log-uniformly: its chart's rendered x axis is logarithmic, and the parallel
    coordinates axis `lr (log)` is labelled in learning rates."""
    script = tmp_path / "train.py"
    script.write_text("import gridrun\nFLAGS = gridrun.flags(lr=0.01, dropout=0.1)\n"
                      "for e in range(3):\n    gridrun.log_metrics(val_loss=abs(FLAGS.lr - 0.01) * 30 + FLAGS.dropout + e)\n")
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"lr": gridrun.loguniform(1e-4, 1e-1), "dropout": gridrun.uniform(0.0, 0.5)},
                       sample=12, seed=0, runs_dir=runs, quiet=True)  # fmt: skip
    page = gridrun.sweep_report(runs_dir=runs, open_browser=False)
    driver.get_log("browser")  # what earlier tests' pages logged is theirs
    open_page(driver, page.resolve().as_uri())
    axes = driver.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).filter(function (g) {"
        "  return g.id.indexOf('flag-') === 0; }).map(function (g) {"
        "  return [g.layout.title.text, g._fullLayout.xaxis.type]; });")
    assert dict(axes) == {"lr": "log", "dropout": "linear"}
    ticks = driver.execute_script(
        "return Array.from(document.querySelectorAll('#parcoords .y-axis')).map(function (a) {"
        "  return Array.from(a.querySelectorAll('.tick text')).map(function (t) { return t.textContent; }); });")
    assert any({"0.001", "0.01"} <= set(axis) for axis in ticks), ticks  # lr's axis, in its own units
    assert js_errors(driver) == []
    screenshot(driver, tmp_path, "sweep-log-axis")
