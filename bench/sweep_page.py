"""How big is a sweep report of many trials, and how long does it take to write and to render?
(issue 21: the sweep page stays small and fast at 10,000 trials)

    python bench/sweep_page.py [--trials 10000] [--epochs 20] [--keep DIR] [--screenshot PNG]

Writes a synthetic sweep of --trials run dirs (flags lr log-uniform, dropout, units, activation; 80%
completed, 15% pruned at half the epochs, 5% failed; metrics val_loss, loss, n_params per epoch, and
a manifest with the ranges), then measures, in this process:

- `gridrun.sweep_report` (the page with the analysis charts: importance, all curves, heat map, Pareto
  front of val_loss and n_params) against the baseline of the same page without them: the time to
  write it and the page's size (the shared plotly.js file is not counted: it is written once per runs
  dir and cached);
- the time to render each in headless Chromium (/usr/bin/chromium with chromedriver, via selenium):
  from navigation to every chart drawn by plotly, median of 3 loads.

Prints the figures and the ratios. Timings are wall-clock seconds of the machine it runs on (those in
docs/analysis.md were taken on a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SWEEP = "2026-11-27T08-00-00Z-be11"


def write_sweep(root: Path, n: int, epochs: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    trials = []
    for i in range(n):
        lr = math.exp(rng.uniform(math.log(1e-5), math.log(1e-1)))
        dropout = round(rng.uniform(0, 0.5), 4)
        units = rng.choice([32, 64, 128, 256, 512])
        act = rng.choice(["relu", "tanh", "gelu"])
        r = rng.random()
        status = "completed" if r < 0.8 else "pruned" if r < 0.95 else "failed"
        n_ep = epochs if status == "completed" else epochs // 2 if status == "pruned" else 1
        final = 0.2 + 0.05 * (math.log10(lr) + 3) ** 2 + 0.3 * dropout + rng.gauss(0, 0.02)
        val = [round(final + (1.5 - final) * math.exp(-0.3 * e), 5) for e in range(n_ep)]
        name = f"2026-11-27T{8 + i // 3600:02d}-{i // 60 % 60:02d}-{i % 60:02d}.{i % 1000:03d}Z"
        d = root / name
        d.mkdir()
        start = f"2026-11-27T{8 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000Z"
        props = {"script": "train.py", "start": start, "end": start, "status": status,
                 "completed": status == "completed", "exit_code": 0 if status != "failed" else 1,
                 "epochs_completed": n_ep, "sweep": SWEEP, "trial": i, "type": "training"}
        (d / "properties.json").write_text(json.dumps(props))
        (d / "flags.json").write_text(json.dumps({"lr": lr, "dropout": dropout, "units": units, "activation": act,
                                                  "epochs": epochs}))
        (d / "metrics.json").write_text(json.dumps({"loss": [v * 0.9 for v in val], "val_loss": val,
                                                    "n_params": [units * 794 + 10 * units + 10] * n_ep}))
        (d / "output.log").write_text("")
        trials.append({"trial": i, "run_dir": name, "status": status})
    (root / "sweeps").mkdir(exist_ok=True)
    (root / "sweeps" / f"{SWEEP}.json").write_text(json.dumps({
        "id": SWEEP, "status": "completed", "metric": "val_loss", "mode": "min", "sampler": "random",
        "grid": {"flags": {"units": [32, 64, 128, 256, 512], "activation": ["relu", "tanh", "gelu"], "epochs": [epochs]},
                 "ranges": {"lr": {"loguniform": [1e-5, 1e-1]}, "dropout": {"uniform": [0, 0.5]}}},
        "trials": trials}))


def render_seconds(driver, page: Path) -> float:
    from selenium.webdriver.support.ui import WebDriverWait

    t = time.perf_counter()
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 600, poll_frequency=0.05).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.querySelectorAll('.chart'))"
        ".every(function (c) { return c.classList.contains('js-plotly-plot'); })"))
    return time.perf_counter() - t


def make_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900", "--enable-unsafe-swiftshader", "--disable-background-networking",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    drv.set_page_load_timeout(600)
    return drv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--keep", metavar="DIR", help="write the sweep here and keep it (default: a temp dir)")
    ap.add_argument("--screenshot", metavar="PNG", help="save a full-page screenshot of the report")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import gridrun
    from gridrun.report import analysis_charts

    tmp = None if args.keep else tempfile.TemporaryDirectory()
    root = Path(args.keep or tmp.name) / "runs"
    t = time.perf_counter()
    write_sweep(root, args.trials, args.epochs)
    print(f"wrote {args.trials:,} run dirs in {time.perf_counter() - t:.1f} s")
    pages = {}
    write_s = {}
    for label in ("baseline", "analysis"):
        original = analysis_charts.sweep_charts
        if label == "baseline":
            analysis_charts.sweep_charts = lambda data, pareto=None: []
        try:
            t = time.perf_counter()
            pages[label] = gridrun.sweep_report(SWEEP, root, output=root / "reports" / f"{label}.html",
                                                open_browser=False, pareto=["val_loss", "n_params"])
            write_s[label] = time.perf_counter() - t
        finally:
            analysis_charts.sweep_charts = original
    t = time.perf_counter()
    imp = gridrun.importance(SWEEP, runs_dir=root)
    imp_s = time.perf_counter() - t
    driver = make_driver()
    try:
        render = {k: statistics.median(render_seconds(driver, p) for _ in range(args.repeat)) for k, p in pages.items()}
        if args.screenshot:
            render_seconds(driver, pages["analysis"])
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1200, min(int(height) + 100, 16000))
            driver.save_screenshot(args.screenshot)
    finally:
        driver.quit()
    size = {k: p.stat().st_size for k, p in pages.items()}
    print(imp.to_string(index=False))
    print(f"gridrun.importance over the {args.trials:,} run dirs (ls_runs included): {imp_s:.2f} s")
    for k in pages:
        print(f"{k:8s}: page {size[k] / 1e6:.2f} MB, written in {write_s[k]:.1f} s, rendered in {render[k]:.2f} s "
              f"(median of {args.repeat})")
    print(f"analysis charts add {(size['analysis'] - size['baseline']) / 1e3:.0f} kB "
          f"({size['analysis'] / size['baseline']:.2f}x the size), write {write_s['analysis'] / write_s['baseline']:.2f}x, "
          f"render {render['analysis'] / render['baseline']:.2f}x")
    print(f"shared plotly.js (not counted): {sum(p.stat().st_size for p in (root / 'reports').glob('plotly-*')) / 1e6:.1f} MB")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
