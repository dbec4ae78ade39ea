"""The README's quick start model reports accuracy: recorded as a metric and an evaluation, and printed."""

import json
import re
import subprocess
import sys
from pathlib import Path

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
