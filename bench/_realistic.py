"""Build realistic run dirs for the listing benchmarks: copies of a real run's files.

A template is a real ended run (by default one `mnist_mlp.py` run on digits, made with `gridrun
training-run`); each copy gets its own name and start time, varied flags, metrics, evaluation and output
numbers, and a summary.json of the template's shape (about 2 kB: the model summary and the output tail
dominate), written as gridrun writes it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

from gridrun import rundir
from gridrun._io import dumps

RECORD_FILES = (rundir.PROPERTIES_FILE, rundir.FLAGS_FILE, rundir.METRICS_FILE, rundir.EVALUATION_FILE,
                rundir.OUTPUT_FILE, rundir.SUMMARY_FILE)
REPO = Path(__file__).resolve().parents[1]


def make_template(folder: Path) -> Path:
    """One real run of scripts/mnist_mlp.py on digits (about 20 s); returns its run dir."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-m", "gridrun.cli", "training-run", str(REPO / "scripts" / "mnist_mlp.py"),
                    "--flag", "dataset=digits", "--runs-dir", str(folder)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    runs = sorted(p for p in folder.iterdir() if (p / rundir.SUMMARY_FILE).is_file())
    if not runs:
        raise SystemExit(f"the template run in {folder} has no summary.json")
    return runs[-1]


def _numbers(text: str, rng: random.Random) -> str:
    return re.sub(r"(?<=[:=] )\d+\.\d+", lambda m: f"{rng.random():.4g}", text)


def build(root: Path, n: int, template: Path, full: bool = False, seed: int = 0,
          start: dt.datetime | None = None, sweep_every: int = 100) -> None:
    """Write `n` ended runs into `root` as copies of `template` (with `full`, source/ and artifacts/ too)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = {f: (template / f).read_text(encoding="utf-8") for f in RECORD_FILES if (template / f).is_file()}
    props = json.loads(files[rundir.PROPERTIES_FILE])
    flags = json.loads(files[rundir.FLAGS_FILE])
    metrics = json.loads(files[rundir.METRICS_FILE])
    evaluation = json.loads(files.get(rundir.EVALUATION_FILE, "{}"))
    summary = json.loads(files[rundir.SUMMARY_FILE])
    output = files.get(rundir.OUTPUT_FILE, "")
    t0 = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(n):
        ts = t0 + dt.timedelta(seconds=20 * i, milliseconds=rng.randrange(1000))
        name = rundir.run_name(ts)
        d = root / name
        d.mkdir()
        f = dict(flags, nodes1=rng.choice([64, 128, 256, 512]), nodes2=rng.choice([32, 64, 128]),
                 optimizer=rng.choice(["rmsprop", "adam", "sgd"]), batch_size=rng.choice([64, 128]))
        scale = 0.5 + rng.random()
        m = {k: [v * scale if isinstance(v, float) else v for v in series] for k, series in metrics.items()}
        e = {k: v * (0.5 + rng.random()) for k, v in evaluation.items()}
        sweep = f"2026-01-01T00-00-00Z-{i // sweep_every:04x}" if sweep_every else None
        p = dict(props, start=rundir.iso(ts), end=rundir.iso(ts + dt.timedelta(seconds=15)), sweep=sweep,
                 trial=(i % sweep_every) + 1 if sweep_every else None, batch_size=f["batch_size"], pid=10000 + i)
        out = _numbers(output, rng).replace(template.name, name)
        s = dict(summary)
        s.update({f"eval_{k}": v for k, v in e.items()})
        s.update({f"metric_{k}": v[-1] for k, v in m.items()})
        s.update({f"flag_{k}": v for k, v in f.items()})
        s.update(metrics=str(d / rundir.METRICS_FILE), source_code=str(d / rundir.SOURCE_DIR), start=p["start"],
                 end=p["end"], sweep=sweep, trial=p["trial"], batch_size=f["batch_size"], output=out[-2000:])
        for fname, data in ((rundir.PROPERTIES_FILE, dumps(p)), (rundir.FLAGS_FILE, dumps(f)),
                            (rundir.METRICS_FILE, dumps(m, indent=None)), (rundir.EVALUATION_FILE, dumps(e)),
                            (rundir.OUTPUT_FILE, out), (rundir.SUMMARY_FILE, dumps(s, indent=None))):
            with open(d / fname, "w", encoding="utf-8") as fh:
                fh.write(data)
        if full:
            for sub in (rundir.SOURCE_DIR, rundir.ARTIFACTS_DIR):
                if (template / sub).is_dir():
                    shutil.copytree(template / sub, d / sub)
