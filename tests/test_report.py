"""HTML reports: page data (flags, metrics, curves, diffs, sweep tables), escaping, run resolution, CLI.

Browser checks (charts really render, no JS errors, live updates) are in test_report_browser.py.
"""

from __future__ import annotations

import base64
import html as html_lib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_report_fixtures import SCRIPT_B, XSS, curve, make_run, sweep_runs, training_run

import gridrun
from gridrun.cli import main
from gridrun.errors import GridrunError
from gridrun.report import pages
from gridrun.report.rundata import load_run, resolve_run
from gridrun.report.sweepdata import load_sweep

SWEEP = "sweep-20261127-a1b2"
RUN_A = "2026-11-27T06-44-38.123Z"
RUN_B = "2026-11-27T07-00-00.000Z"


def figures(page: str) -> dict[str, dict]:
    """The plotly figures a page draws, from its JSON script tags."""
    found = re.findall(r'<script type="application/json" id="figure-([^"]+)">(.*?)</script>', page, re.S)
    return {key: json.loads(body) for key, body in found}


def text_of(page: str) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded."""
    page = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", "", page, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def two_runs(runs: Path) -> tuple[Path, Path]:
    a = training_run(runs, RUN_A)
    b = training_run(
        runs,
        RUN_B,
        flags={"dropout1": 0.3, "units": 128, "activation": "relu", "batchnorm": False},
        metrics={"loss": curve(0.8, 0.6, 3), "val_loss": curve(0.7, 0.7, 3)},
        sources={"train.py": SCRIPT_B, "flags.yml": "units: 128\n"},
        output="Epoch 1/3\nloss: 0.8\ndone\n",
        optimizer="adam",
    )
    return a, b


# --------------------------------------------------------------------------------------------------
# One run


def test_view_run_writes_report_with_every_section(runs: Path) -> None:
    run = training_run(runs)
    out = runs.parent / "copy.html"
    path = gridrun.view_run(run.name, runs_dir=runs, output=out, open_browser=False)
    assert path == out
    page = (run / "report.html").read_text()
    # the same page; the copy outside the runs dir loads plotly.js from its own copy beside it
    plotly_file = pages.plotly_file_name()
    assert out.read_text() == page.replace(f'src="../reports/{plotly_file}"', f'src="{plotly_file}"')
    assert (runs / "reports" / plotly_file).is_file() and (out.parent / plotly_file).is_file()
    text = text_of(page)
    for label, value in [("dropout1", "0.4"), ("units", "128"), ("activation", "relu"), ("batchnorm", "False")]:
        assert re.search(rf"{label}\s*{re.escape(value)}", text), label
    # final metrics (last epoch) and evaluation
    assert re.search(r"loss\s*0\.21609", text) and re.search(r"val_acc\s*0\.9\b", text)
    assert "Evaluation" in text and re.search(r"acc\s*0\.912", text)
    # optimization and training properties
    for fact in ("categorical_crossentropy", "rmsprop", "48000", "12000", "5 / 5", "Dense(256)", "testhost"):
        assert fact in text, fact
    assert "python 3.11.9, gridrun 0.1.0, jax 0.10.2" in text
    assert "loss: 0.9 <b>bold?</b>" in text  # the output log, as text
    # source highlighted by pygments, artifacts embedded or listed
    assert 'class="hl"' in page and "flag_numeric" in text and "flags.yml" in text
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)">', page)
    assert [alt for _, alt in images] == ["plots/history.png"]
    assert base64.b64decode(images[0][0]) == (run / "artifacts/plots/history.png").read_bytes()
    assert "plots/history.png" in text and "model.msgpack" in text


def test_view_run_learning_curves_pair_metrics_with_val_twins(runs: Path) -> None:
    run = training_run(runs)
    page = pages.run_page(load_run(run))
    figs = list(figures(page).values())
    groups = [[t["name"] for t in f["data"]] for f in figs]
    assert groups == [["loss", "val_loss"], ["acc", "val_acc"], ["lr"]]
    metrics = json.loads((run / "metrics.json").read_text())
    for fig in figs:
        for trace in fig["data"]:
            assert trace["y"] == metrics[trace["name"]]
            assert trace["x"] == list(range(1, len(metrics[trace["name"]]) + 1))
    assert figs[2]["layout"]["yaxis"]["range"] == pytest.approx([0.0005, 0.0015])  # constant lr, centred


def test_page_is_self_contained_with_plotly_once(runs: Path) -> None:
    run = training_run(runs)
    page = pages.run_page(load_run(run))
    head = str(pages.plotly_js())[:60]
    assert page.count(head) == 1
    rest = page.replace(str(pages.plotly_js()), "")  # the bundle itself names plotly's CDN for geo maps
    assert len(rest) < 200_000
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=\"(?!data:)|https?://", rest)


def test_running_run_report_is_a_snapshot(runs: Path) -> None:
    run = training_run(runs, status="running", metrics={"loss": [0.9, 0.5]}, epochs=10)
    text = text_of(pages.run_page(load_run(run)))
    assert "snapshot" in text and "gridrun view --live" in text
    assert re.search(r"epochs\s*2 / 10", text)
    done = training_run(runs, "2026-11-27T09-00-00.000Z")
    assert "snapshot" not in text_of(pages.run_page(load_run(done)))


def test_failed_run_shows_error_and_traceback(runs: Path) -> None:
    run = make_run(runs, RUN_A, status="failed", error_message="RuntimeError: out of memory",
                   error_traceback='Traceback (most recent call last):\n  File "train.py", line 3\nRuntimeError')
    text = text_of(pages.run_page(load_run(run)))
    assert "RuntimeError: out of memory" in text and 'File "train.py", line 3' in text


def test_bare_run_dir_still_renders(runs: Path) -> None:
    """A run with nothing but properties.json (crashed at start, or hand-made) gets a report too."""
    run = runs / "2026-11-27T06-00-00.000Z"
    run.mkdir(parents=True)
    (run / "properties.json").write_text(json.dumps({"status": "failed", "error_message": "killed"}))
    page = gridrun.view_run(run.name, runs_dir=runs, open_browser=False).read_text()
    text = text_of(page)
    assert "killed" in text and "No metrics recorded" in text and "No flags declared" in text
    assert figures(page) == {} and str(pages.plotly_js())[:60] not in page  # no charts: no plotly.js


def test_run_content_is_escaped(runs: Path) -> None:
    evil = XSS
    run = training_run(
        runs,
        flags={"activation": evil, "note": "</script><script>alert(2)</script>"},
        output=f"line one\n{evil}\n<img src=x onerror=alert(3)>\n",
        sources={"train.py": f"# {evil}\nx = '</script>'\n"},
        model=evil,
        status="failed",
        error_message=evil,
        error_traceback=evil,
        metrics={"loss": [1.0, 0.5]},
        custom=evil,
    )
    page = pages.run_page(load_run(run))
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # JSON for scripts never contains a raw "<" that could close its tag
    for body in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S):
        assert "<" not in body
    assert text_of(page).count(evil) >= 5  # shown as text: flag, output, source, model, error


def test_script_json_escapes_markup_characters() -> None:
    out = str(pages.script_json({"v": "</script><b>&"}))
    assert "<" not in out and ">" not in out and "&" not in out
    assert json.loads(out) == {"v": "</script><b>&"}


# --------------------------------------------------------------------------------------------------
# Resolving runs


def test_run_resolves_by_name_path_and_ls_runs_row(runs: Path, two_runs, monkeypatch) -> None:
    a, b = two_runs
    assert resolve_run(a.name, runs) == a.resolve()
    assert resolve_run(str(runs / a.name), runs) == a.resolve()
    assert resolve_run(None, runs) == b.resolve()  # latest
    row = gridrun.ls_runs(runs).iloc[-1]  # newest first: the last row is A
    assert resolve_run(row, runs) == a.resolve()
    monkeypatch.chdir(runs.parent)
    assert resolve_run(f"runs/{b.name}", "runs") == b.resolve()
    assert gridrun.view_run(row, runs_dir="runs", open_browser=False) == a.resolve() / "report.html"


@pytest.mark.parametrize("bad", ["../../etc", "/etc", "..", "../runs-other/x"])
def test_names_outside_the_runs_dir_are_refused(runs: Path, two_runs, bad: str) -> None:
    (runs.parent / "runs-other" / "x").mkdir(parents=True)
    with pytest.raises(GridrunError) as err:
        gridrun.view_run(bad, runs_dir=runs, open_browser=False)
    message = str(err.value)
    assert str(runs.resolve()) in message and "gridrun ls" in message
    assert not (Path("/etc") / "report.html").exists()


def test_unknown_run_name_is_a_clear_error(runs: Path, two_runs) -> None:
    with pytest.raises(GridrunError, match="gridrun ls"):
        gridrun.view_run("2020-01-01T00-00-00.000Z", runs_dir=runs, open_browser=False)


# --------------------------------------------------------------------------------------------------
# Two runs


def test_compare_runs_side_by_side(runs: Path, two_runs) -> None:
    a, b = two_runs
    path = gridrun.compare_runs([b.name, a.name], runs_dir=runs, open_browser=False)  # newer given first
    assert path == runs / "reports" / f"compare-{a.name}-vs-{b.name}.html"
    page = path.read_text()
    text = text_of(page)
    assert text.index(f"A: {a.name}") < text.index(f"B: {b.name}")  # older on the left
    differ = re.findall(r'<tr class="differ"><th scope="row">([^<]+)</th>', page)
    assert "dropout1" in differ and "optimizer" in differ and "loss" in differ
    assert "units" not in differ and "activation" not in differ and "script" not in differ
    assert re.search(r"dropout1\s*0\.4\s*0\.3", text)
    # overlaid curves: both runs on one chart per metric
    figs = list(figures(page).values())
    names = [[t["name"] for t in f["data"]] for f in figs]
    assert names[0] == ["A: loss", "A: val_loss", "B: loss", "B: val_loss"]
    assert ["A: lr"] in names
    b_loss = next(t for t in figs[0]["data"] if t["name"] == "B: loss")
    assert b_loss["y"] == json.loads((b / "metrics.json").read_text())["loss"]


def test_compare_diffs_source_and_output(runs: Path, two_runs) -> None:
    a, b = load_run(two_runs[0]), load_run(two_runs[1])
    diffs = {d.name: d for d in pages.source_diffs(a, b)}
    assert diffs["flags.yml"].state == "identical" and diffs["flags.yml"].html is None
    assert diffs["train.py"].state == "changed"
    diff_text = text_of(str(diffs["train.py"].html))
    assert '-    gridrun.flag_numeric("dropout1", 0.4),' in diff_text
    assert '+    gridrun.flag_numeric("dropout1", 0.3),' in diff_text
    assert "--- A/train.py" in diff_text and "+++ B/train.py" in diff_text
    page = text_of(pages.compare_page(a, b))
    assert "-Epoch 1/5" in page and "+Epoch 1/3" in page and "-Epoch 5/5" in page


def test_compare_defaults_to_latest_two_and_needs_two(runs: Path, two_runs, tmp_path: Path) -> None:
    c = training_run(runs, "2026-11-27T08-30-00.000Z")
    page = gridrun.compare_runs(runs_dir=runs, open_browser=False)
    assert page.name == f"compare-{two_runs[1].name}-vs-{c.name}.html"
    best_two = gridrun.ls_runs(runs, order="metric_loss", decreasing=False).head(2)  # a DataFrame works too
    page = gridrun.compare_runs(best_two, runs_dir=runs, open_browser=False)
    assert page.name == f"compare-{two_runs[0].name}-vs-{c.name}.html"  # B's final loss is the highest
    with pytest.raises(GridrunError, match="exactly two"):
        gridrun.compare_runs([c.name], runs_dir=runs, open_browser=False)
    with pytest.raises(GridrunError, match="two different"):
        gridrun.compare_runs([c.name, c.name], runs_dir=runs, open_browser=False)
    lonely = tmp_path / "lonely"
    training_run(lonely)
    with pytest.raises(GridrunError, match="has 1"):
        gridrun.compare_runs(runs_dir=lonely, open_browser=False)


# --------------------------------------------------------------------------------------------------
# Sweeps


def test_sweep_data_best_trial_and_failures(runs: Path) -> None:
    paths = sweep_runs(runs)
    data = load_sweep(SWEEP, paths)
    assert [t.index for t in data.trials] == [0, 1, 2, 3, 4, 5]
    assert data.metric == "val_loss" and not data.maximize
    assert data.best_trial.index == 4 and data.best_trial.value == pytest.approx(0.28)
    assert [t.index for t in data.failures] == [5]
    assert data.flags == ["dropout1", "units", "activation", "epochs"]
    assert data.varied_flags == ["dropout1", "units", "activation"] and data.fixed_flags == {"epochs": 4}
    assert load_sweep(SWEEP, paths, maximize=True).best_trial.index == 0
    assert load_sweep(SWEEP, paths, metric="val_acc_missing").best is None


def test_sweep_report_page(runs: Path) -> None:
    sweep_runs(runs)
    training_run(runs, "2026-11-27T09-00-00.000Z")  # not part of the sweep
    path = gridrun.sweep_report(SWEEP, runs_dir=runs, open_browser=False)
    assert path == runs / "reports" / f"{SWEEP}.html"
    page = path.read_text()
    rows = re.findall(r'<tr class="([^"]*) status-row-(\w+)">', page)
    assert len(rows) == 6 and [r[0] for r in rows].count("best") == 1 and rows[0][0] == "best"
    # sorted by the sweep's metric (val_loss, lower first), the failed trial without a value last
    assert re.findall(r'<td class="num" data-sort="(\d+)">', page) == ["4", "3", "2", "1", "0", "5"]
    assert re.search(r'<th [^>]*class="metric judged" aria-sort="ascending">val_loss</th>', page)
    # the best trial links to its run report, which exists
    link = re.search(r'<p id="best-trial">.*?<a href="([^"]+)">', page, re.S).group(1)
    assert link == "../2026-11-27T08-00-04.000Z/report.html" and (path.parent / link).is_file()
    # failures listed with their errors, escaped
    text = text_of(page)
    assert "Failures" in text and f"ValueError: exploded at units=256 {XSS}" in text
    assert "Same in every trial: epochs=4" in text  # a constant flag is no axis and no column
    assert not re.search(r'<th class="flag">epochs</th>', page)
    assert "<script>alert" not in page
    figs = figures(page)
    pc = figs["parcoords"]["data"][0]
    assert pc["type"] == "parcoords"
    assert [d["label"] for d in pc["dimensions"]] == ["dropout1", "units", "activation", "val_loss"]
    assert pc["dimensions"][-1]["values"] == pytest.approx([0.41, 0.39, 0.35, 0.33, 0.28])
    # text flags: one tick per value; run content is entity-escaped for plotly, which draws it as text
    assert pc["dimensions"][2]["ticktext"] == [html_lib.escape(v, quote=False) for v in sorted({"relu", "tanh", XSS})]
    kinds = {f["layout"]["title"]["text"]: f["data"][0]["type"] for k, f in figs.items()
             if k != "parcoords" and not k.startswith("analysis-")}  # analysis charts: tests/test_analysis.py
    assert kinds == {"dropout1": "scatter", "units": "scatter", "activation": "box", "best val_loss so far": "scatter"}
    best_marks = [t for f in figs.values() for t in f["data"] if t.get("name") == "best trial"]
    assert len(best_marks) == 3 and all(t["y"] == [pytest.approx(0.28)] for t in best_marks)


def test_sweep_report_from_dataframe_and_latest(runs: Path) -> None:
    sweep_runs(runs)
    df = gridrun.ls_runs(runs, sweep=SWEEP)
    df = df[df["status"] == "completed"]
    path = gridrun.sweep_report(df, runs_dir=runs, output=runs.parent / "s.html", open_browser=False)
    page = path.read_text()
    assert len(re.findall(r"status-row-", page)) == 5 and "Failures" not in text_of(page)
    assert gridrun.sweep_report(runs_dir=runs, open_browser=False).name == f"{SWEEP}.html"
    with pytest.raises(GridrunError, match="no runs of sweep 'nope'"):
        gridrun.sweep_report("nope", runs_dir=runs, open_browser=False)


def test_sweep_with_only_failed_trials(runs: Path) -> None:
    for i in range(2):
        make_run(runs, f"2026-11-27T08-00-0{i}.000Z", status="failed", flags={"units": 64 * (i + 1)},
                 sweep="s1", trial=i, error_message=f"boom {i}")
    data = load_sweep("s1", sorted(runs.iterdir()))
    assert data.best is None and len(data.failures) == 2
    text = text_of(gridrun.sweep_report("s1", runs_dir=runs, open_browser=False).read_text())
    assert "No completed trial recorded val_loss" in text and "boom 0" in text and "boom 1" in text


def test_sweep_report_without_sweeps_is_a_clear_error(runs: Path) -> None:
    training_run(runs)
    with pytest.raises(GridrunError, match="tuning-run"):
        gridrun.sweep_report(runs_dir=runs, open_browser=False)


# --------------------------------------------------------------------------------------------------
# Browser opening, CLI, live server


def test_browser_opens_only_when_there_is_a_display(runs: Path, monkeypatch) -> None:
    run = training_run(runs)
    opened: list[str] = []
    monkeypatch.setattr(pages.webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.setattr(pages.webbrowser, "get", lambda: object())
    monkeypatch.setattr(pages.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    gridrun.view_run(run.name, runs_dir=runs)
    assert opened == []
    monkeypatch.setenv("DISPLAY", ":0")
    gridrun.view_run(run.name, runs_dir=runs)
    assert opened == [(run / "report.html").resolve().as_uri()]
    gridrun.view_run(run.name, runs_dir=runs, open_browser=False)
    assert len(opened) == 1


def test_cli_commands(runs: Path, two_runs, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    sweep_runs(runs)
    monkeypatch.chdir(runs.parent)
    assert main(["view", "--no-open", two_runs[0].name, "-o", "a.html"]) == 0
    assert "Report: a.html" in capsys.readouterr().out and Path("a.html").is_file()
    assert main(["compare", "--no-open", two_runs[0].name, two_runs[1].name]) == 0
    assert "compare-" in capsys.readouterr().out
    assert main(["sweep-report", SWEEP, "--no-open", "--metric", "loss"]) == 0
    assert f"reports/{SWEEP}.html" in capsys.readouterr().out
    assert main(["view", "--no-open", "../../etc"]) == 2
    err = capsys.readouterr().err
    assert "not inside the runs dir" in err and "gridrun ls" in err
    assert main(["compare", "--no-open", two_runs[0].name]) == 2
    assert main(["view", "--live", "--no-open", two_runs[0].name]) == 0
    assert "is not running" in capsys.readouterr().out
    live = training_run(runs, "2026-11-27T09-30-00.000Z", status="running")
    assert main(["view", "--no-open", live.name]) == 0
    assert f"snapshot. `gridrun view --live {live.name}`" in capsys.readouterr().out


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_live_server_serves_page_and_metrics_only(runs: Path) -> None:
    run = training_run(runs, status="running", metrics={"loss": [0.9]}, epochs=3)
    from gridrun.report import serve_run

    with serve_run(run.name, runs_dir=runs, open_browser=False) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, body = _get(server.url)
        page = body.decode()
        assert status == 200 and "gridrunLive()" in page and "Live: this page follows the run" in page
        assert "snapshot" not in text_of(page)
        assert json.loads(_get(server.url + "metrics.json")[1]) == {"loss": [0.9]}
        (run / "metrics.json").write_text(json.dumps({"loss": [0.9, 0.4]}))
        assert json.loads(_get(server.url + "metrics.json")[1]) == {"loss": [0.9, 0.4]}
        assert json.loads(_get(server.url + "properties.json")[1])["status"] == "running"
        for path in ("flags.json", "output.log", "source/train.py", "../flags.json", "%2e%2e/etc/passwd"):
            assert _get(server.url + path)[0] == 404, path


def test_cli_live_serves_until_the_run_ends(runs: Path, monkeypatch, capsys) -> None:
    run = training_run(runs, status="running", metrics={"loss": [0.9]}, epochs=3)
    from gridrun.commands import view

    monkeypatch.setattr(view, "LINGER_S", 0.2)

    def finish() -> None:
        time.sleep(1.0)
        props = json.loads((run / "properties.json").read_text())
        props.update(status="completed", completed=True)
        (run / "properties.json").write_text(json.dumps(props))

    thread = threading.Thread(target=finish)
    thread.start()
    assert main(["view", "--live", "--no-open", "--runs-dir", str(runs)]) == 0
    thread.join()
    out = capsys.readouterr().out
    assert "Live report of run" in out and "http://127.0.0.1:" in out and "Live server stopped" in out
    assert "snapshot" not in text_of((run / "report.html").read_text())


# --------------------------------------------------------------------------------------------------
# Page size: one shared plotly.js per runs dir, or a self-contained page


def test_pages_share_one_versioned_plotly_file(runs: Path, two_runs) -> None:
    a, b = two_runs
    sweep_runs(runs)
    view = gridrun.view_run(a.name, runs_dir=runs, open_browser=False)
    shared = runs / "reports" / pages.plotly_file_name()
    assert re.fullmatch(r"plotly-\d+\.\d+\.\d+\.min\.js", shared.name)
    assert shared.read_text() == str(pages.plotly_js())
    page = view.read_text()
    assert len(page.encode()) <= 300_000  # was ~4.9 MB with plotly.js inlined
    assert f'<script src="../reports/{shared.name}" data-gridrun-plotly="{shared.name}"></script>' in page
    assert str(pages.plotly_js())[:60] not in page
    # compare and sweep pages live in reports/, beside the shared file; it is written once
    before = shared.stat().st_mtime_ns
    for page_path in (gridrun.compare_runs(runs_dir=runs, open_browser=False),
                      gridrun.sweep_report(SWEEP, runs_dir=runs, open_browser=False)):
        html = page_path.read_text()
        assert f'<script src="{shared.name}" data-gridrun-plotly=' in html and len(html.encode()) <= 300_000
    assert shared.stat().st_mtime_ns == before
    assert sorted(p.name for p in (runs / "reports").glob("plotly-*")) == [shared.name]
    # a truncated shared file (an interrupted copy) is written again
    shared.write_text("// cut")
    gridrun.view_run(a.name, runs_dir=runs, open_browser=False)
    assert shared.read_text() == str(pages.plotly_js())


def test_self_contained_pages_inline_plotly(runs: Path, two_runs, tmp_path: Path) -> None:
    a, _ = two_runs
    out = tmp_path / "mail" / "a.html"
    path = gridrun.view_run(a.name, runs_dir=runs, output=out, open_browser=False, self_contained=True)
    assert path == out
    for page in (out.read_text(), (a / "report.html").read_text()):
        assert page.count(str(pages.plotly_js())[:60]) == 1 and 'data-gridrun-plotly="' not in page
    assert list(out.parent.iterdir()) == [out]  # nothing else to send
    assert not (runs / "reports").exists()
    cmp = gridrun.compare_runs(runs_dir=runs, open_browser=False, self_contained=True)
    assert str(pages.plotly_js())[:60] in cmp.read_text()


def test_inline_plotly_turns_a_shared_page_into_a_self_contained_one(runs: Path) -> None:
    run = training_run(runs)
    shared = gridrun.view_run(run.name, runs_dir=runs, open_browser=False).read_text()
    assert pages.inline_plotly(shared) == pages.run_page(load_run(run))


def test_cli_self_contained(runs: Path, two_runs, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    sweep_runs(runs)
    monkeypatch.chdir(runs.parent)
    head = str(pages.plotly_js())[:60]
    assert main(["view", "--no-open", "--self-contained", two_runs[0].name, "-o", "a.html"]) == 0
    assert head in Path("a.html").read_text() and not Path(pages.plotly_file_name()).exists()
    assert main(["compare", "--no-open", "--self-contained"]) == 0
    assert main(["sweep-report", SWEEP, "--no-open", "--self-contained", "-o", "s.html"]) == 0
    assert head in Path("s.html").read_text()
    assert main(["sweep-report", SWEEP, "--no-open", "-o", "s2.html"]) == 0
    assert head not in Path("s2.html").read_text() and Path(pages.plotly_file_name()).is_file()


# --------------------------------------------------------------------------------------------------
# Charts and tables that read well


def test_epoch_axes_have_integer_ticks(runs: Path) -> None:
    from gridrun.report.charts import epoch_step

    assert [epoch_step(n) for n in (1, 2, 10, 11, 25, 35, 60, 200, 1000)] == [1, 1, 1, 2, 5, 5, 10, 20, 100]
    short = training_run(runs, metrics={"loss": [0.9, 0.5], "val_loss": [0.8, 0.6]})
    for fig in figures(pages.run_page(load_run(short))).values():
        x = fig["layout"]["xaxis"]
        assert (x["tickmode"], x["dtick"], x["tick0"], x["tickformat"]) == ("linear", 1, 1, "d")
    long = training_run(runs, "2026-11-27T09-00-00.000Z", metrics={"loss": curve(1.0, 0.9, 35)})
    (fig,) = figures(pages.run_page(load_run(long))).values()
    assert fig["layout"]["xaxis"]["dtick"] == 5
    cmp = figures(pages.compare_page(load_run(short), load_run(long)))
    assert cmp["cmp-0"]["layout"]["xaxis"]["dtick"] == 5  # the longer run sets the ticks


def test_train_and_test_curves_share_a_chart(runs: Path) -> None:
    from gridrun.report.charts import metric_groups

    assert metric_groups(["train_loss", "train_acc", "test_loss", "test_acc", "lr"]) == [
        ["train_loss", "test_loss"], ["train_acc", "test_acc"], ["lr"]]
    assert metric_groups(["loss", "val_loss", "test_loss", "val_", "test"]) == [
        ["loss", "val_loss", "test_loss"], ["val_"], ["test"]]
    run = training_run(runs, metrics={"train_acc": [0.5, 0.7, 0.8], "test_acc": [0.45, 0.6, 0.7]})
    (fig,) = figures(pages.run_page(load_run(run))).values()
    assert [t["name"] for t in fig["data"]] == ["train_acc", "test_acc"]
    assert fig["layout"]["title"]["text"] == "acc"
    assert fig["data"][0]["line"]["color"] != fig["data"][1]["line"]["color"]
    other = training_run(runs, "2026-11-27T09-00-00.000Z", metrics={"train_acc": [0.6, 0.9], "test_acc": [0.5, 0.8]})
    (fig,) = figures(pages.compare_page(load_run(run), load_run(other))).values()
    assert [(t["name"], t["line"]["dash"]) for t in fig["data"]] == [
        ("A: train_acc", "solid"), ("A: test_acc", "dot"), ("B: train_acc", "solid"), ("B: test_acc", "dot")]


def test_sweep_table_sorts_by_the_metric_of_the_sweep_manifest(runs: Path) -> None:
    sweep_runs(runs)
    (runs / "sweeps").mkdir()
    (runs / "sweeps" / f"{SWEEP}.json").write_text(json.dumps({"id": SWEEP, "metric": "val_loss", "mode": "max"}))
    page = gridrun.sweep_report(SWEEP, runs_dir=runs, open_browser=False).read_text()
    assert re.findall(r'<td class="num" data-sort="(\d+)">', page) == ["0", "1", "2", "3", "4", "5"]
    assert re.search(r'class="metric judged" aria-sort="descending">val_loss<', page)
    assert "higher</strong>" in page or "(higher is better)" in text_of(page)
    # an explicit metric wins over the manifest; loss is equal in every trial: trial order
    page = gridrun.sweep_report(SWEEP, runs_dir=runs, open_browser=False, metric="loss").read_text()
    assert re.search(r'class="metric judged" aria-sort="ascending">loss<', page)
    assert re.findall(r'<td class="num" data-sort="(\d+)">', page) == ["0", "1", "2", "3", "4", "5"]


def test_report_path_shows_the_page_inline_in_jupyter(runs: Path) -> None:
    run = training_run(runs)
    path = gridrun.view_run(run.name, runs_dir=runs, open_browser=False)
    assert isinstance(path, Path) and path == run.resolve() / "report.html"
    html = path._repr_html_()
    srcdoc = html_lib.unescape(re.search(r'<iframe srcdoc="([^"]*)"', html).group(1))
    assert srcdoc == pages.inline_plotly(path.read_text()) and str(pages.plotly_js())[:60] in srcdoc
    assert 'sandbox="allow-scripts"' in html
    assert path.parent._repr_html_() is None  # derived paths show as plain paths


def _flag_axes(page: str) -> dict[str, str | None]:
    """flag name -> the x axis type of its chart ("log", or None for plotly's default linear)."""
    return {f["layout"]["title"]["text"]: f["layout"].get("xaxis", {}).get("type")
            for k, f in figures(page).items() if k.startswith("flag-")}  # fmt: skip


def test_sweep_report_draws_log_scale_flags_on_log_axes(tmp_path: Path) -> None:
    """A flag the sweep drew log-uniformly gets a log axis even when its values span less than two
    decades; a uniform one stays linear; parallel coordinates show log10 with ticks in the flag's units."""
    script = tmp_path / "train.py"
    script.write_text("import gridrun\nFLAGS = gridrun.flags(lr=0.01, dropout=0.1, units=32)\n"
                      "for e in range(2):\n    gridrun.log_metrics(val_loss=FLAGS.lr * 10 + FLAGS.dropout + e)\n")
    runs = tmp_path / "runs"
    gridrun.tuning_run(script, {"lr": gridrun.loguniform(1e-3, 5e-2), "dropout": gridrun.uniform(0.0, 0.5),
                                "units": gridrun.randint(16, 512, log=True)},
                       sample=6, seed=0, runs_dir=runs, quiet=True)  # fmt: skip
    page = gridrun.sweep_report(runs_dir=runs, open_browser=False).read_text()
    assert _flag_axes(page) == {"lr": "log", "dropout": None, "units": "log"}
    lr = [t["flags"]["lr"] for t in [{"flags": json.loads((p / "flags.json").read_text())}
                                     for p in runs.iterdir() if (p / "flags.json").exists()]]
    assert len(lr) == 6 and max(lr) / min(lr) < 100  # a span the rule of two decades alone leaves linear
    (pc,) = figures(page)["parcoords"]["data"]
    dims = {d["label"]: d for d in pc["dimensions"]}
    assert set(dims) == {"lr (log)", "dropout", "units (log)", "val_loss"}
    import math

    assert sorted(dims["lr (log)"]["values"]) == pytest.approx(sorted(math.log10(v) for v in lr))
    ticks = dims["lr (log)"]["tickvals"]
    assert [10**t for t in ticks] == pytest.approx([float(x) for x in dims["lr (log)"]["ticktext"]])


def test_flag_values_spanning_two_decades_get_a_log_axis() -> None:
    """Learning rates given as a list (no range to say so) are log-scaled by their span."""
    from gridrun.report import charts

    trials = [{"flags": {"lr": lr, "units": u}, "value": 1.0 + i} for i, (lr, u) in
              enumerate([(1e-4, 32), (1e-3, 64), (1e-2, 128), (1e-1, 32)])]  # fmt: skip
    figs = {c.title: c.figure for c in charts.flag_charts(["lr", "units"], trials, "val_loss", list("abcd"))}
    assert figs["lr"]["layout"]["xaxis"]["type"] == "log"
    assert figs["units"]["layout"]["xaxis"].get("type") is None
    assert charts.log_scale("lr", [0.01, 0.02], scales={"lr": "log"})
    assert not charts.log_scale("lr", [0.0, 0.02], scales={"lr": "log"})  # zero: no log axis
    assert not charts.log_scale("units", [32, 64])
    # a flag the sweep drew uniformly stays linear whatever its span (0.001 to 0.45 is 2.6 decades)
    assert not charts.log_scale("dropout", [0.001, 0.45], scales={"dropout": "linear"})
    assert charts.log_scale("dropout", [0.001, 0.45])
