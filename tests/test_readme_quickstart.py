"""The README's quick start model reports accuracy: recorded as a metric and an evaluation, and printed."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quick_start_records_and_prints_accuracy(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme[readme.index("## Quick start"):readme.index("## Documentation")]
    code = re.findall(r"```python\n(.*?)```", quick, re.S)[0]
    (tmp_path / "train.py").write_text(code.replace("epochs=20", "epochs=1"))
    out = subprocess.run([sys.executable, "-m", "gridrun.cli", "training-run", "train.py", "--flag", "nodes1=16"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert re.search(r"test accuracy: 0\.\d{3}", out.stdout)
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "metrics.json").exists()]
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"acc", "val_acc"} <= set(metrics)
    assert 0 <= json.loads((run / "evaluation.json").read_text())["acc"] <= 1


def quick_start() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("## Quick start"):readme.index("## Documentation")]


def load_build():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_build_readme", ROOT / "docs" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_start_figures_are_generated_by_docs_build() -> None:
    """Every count and duration the quick start quotes is a docs/build.py value of its session (no typed
    figure that drifts: it once said two sweeps, 17 models and 93 s for three sweeps and 29 models)."""
    build = load_build()
    quick = quick_start()
    (session,) = build.sessions(quick)
    assert session.name == "quickstart" and "train.py" in session.files
    shown = re.search(r"<!-- gridrun:session quickstart -->\n```bash\n(.*?)```", quick, re.S).group(1)
    assert len(session.commands) == len([line for line in shown.splitlines() if line.strip()]) >= 8
    assert {"seconds", "models", "sweeps"} <= build.referenced(quick)["quickstart"]
    assert "<!-- gridrun:machine -->" in quick
    prose = build.VALUE_MARK.sub("", build.MACHINE_MARK.sub("", re.sub(r"```.*?```", "", quick, flags=re.S)))
    typed = re.findall(r"\b\d[\d.,]*\s*(?:s\b|seconds|minutes|models|sweeps|trials|runs)", prose)
    assert typed == [], f"figures typed into the quick start instead of generated: {typed}"


@pytest.mark.timeout(1200)
def test_quick_start_session_runs_and_its_counts_are_the_readmes() -> None:
    """What the quick start's commands do, run as a user types them (docs/build.py --check): they all
    succeed, and the models, runs and sweeps they make are the numbers the README quotes."""
    before = (ROOT / "README.md").read_bytes()
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "README.md", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1150)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^\[quickstart\] ok in [\d.]+ s: .*models=\d+", proc.stdout, re.M), proc.stdout
    assert "README.md: 0 commands and 1 sessions ran; nothing written (--check)" in proc.stdout
    assert (ROOT / "README.md").read_bytes() == before
