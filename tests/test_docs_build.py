"""docs/build.py: the numbers in docs/chapter13.md come from running the commands it shows.

The rewriting is checked on a small page; the real page's marked commands are run on the digits data
set (2 epochs, quick) to check that they still run, and nothing is written by --check.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "docs" / "chapter13.md"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_build"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("docs_build", None)


PAGE = """Intro.
<!-- gridrun:machine -->old machine<!-- gridrun:end -->

<!-- gridrun:run a b? -->
```bash
gridrun training-run scripts/x.py --flag dataset=fashion_mnist \\
    --flag units=64   # comment
python scripts/y.py --epochs 5
```

<!-- gridrun:output a -->
```
old output
```

Loss <!--=a.min_val_loss-->0.9<!--/--> at epoch <!--=a.best_epoch-->3<!--/--> in <!--=a.seconds-->99<!--/--> s,
final <!--=a.final_loss:.2f-->0.5<!--/-->; untouched <!--=c.test_acc-->0.1<!--/-->.
"""


def test_markers_are_read_and_rewritten(build) -> None:
    cmds = build.commands(PAGE)
    assert [(c.name, c.text, c.check_only) for c in cmds] == [
        ("a", "gridrun training-run scripts/x.py --flag dataset=fashion_mnist --flag units=64", False),
        ("b", "python scripts/y.py --epochs 5", True),
    ]
    assert build.referenced(PAGE) == {"a": {"min_val_loss", "best_epoch", "seconds", "final_loss", "output"},
                                      "c": {"test_acc"}}
    result = build.Result("a", 12.34, "x", values={"min_val_loss": 0.30761, "best_epoch": 9, "seconds": 12.34,
                                                    "final_loss": 0.16617})
    result.output = "Data: fashion_mnist\nTest loss: 0.4008"
    new = build.rewrite(PAGE, {"a": result}, "made here")
    assert "<!-- gridrun:machine -->made here<!-- gridrun:end -->" in new
    assert "<!-- gridrun:output a -->\n```\nData: fashion_mnist\nTest loss: 0.4008\n```" in new
    assert ("Loss <!--=a.min_val_loss-->0.3076<!--/--> at epoch <!--=a.best_epoch-->9<!--/--> in "
            "<!--=a.seconds-->12<!--/--> s") in new
    assert "final <!--=a.final_loss:.2f-->0.17<!--/-->; untouched <!--=c.test_acc-->0.1<!--/-->." in new
    assert build.rewrite(new, {"a": result}, "made here") == new  # idempotent: markers survive
    with pytest.raises(build.BuildError, match="has no value 'min_val_loss'"):
        build.rewrite(PAGE, {"a": build.Result("a", 1.0, "", values={"seconds": 1.0})}, None)
    with pytest.raises(build.BuildError, match="names 1 runs for 2 commands"):
        build.commands(PAGE.replace("gridrun:run a b?", "gridrun:run a"))


def test_commands_get_a_fresh_runs_dir_and_the_quick_overrides(build, tmp_path: Path) -> None:
    cmd = "gridrun training-run scripts/x.py --flag dataset=fashion_mnist --flag units=64"
    argv = build.argv_for(cmd, tmp_path, "digits", 2)
    assert argv[:3] == [sys.executable, "-m", "gridrun.cli"]
    assert argv[3:] == ["training-run", "scripts/x.py", "--flag", "units=64", "--runs-dir", str(tmp_path),
                        "--flag", "dataset=digits", "--flag", "epochs=2"]
    assert build.argv_for(cmd, tmp_path, None, None)[3:] == [*cmd.split()[1:], "--runs-dir", str(tmp_path)]
    assert build.argv_for("python scripts/y.py --epochs 5", tmp_path, "digits", 2)[1:] == [
        "scripts/y.py", "--epochs", "2", "--dataset", "digits"]
    with pytest.raises(build.BuildError, match="start with gridrun or python"):
        build.argv_for("rm -rf /", tmp_path, None, None)


def test_run_values_from_a_run_dir(build, tmp_path: Path) -> None:
    import json

    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"loss": [0.9, 0.5, 0.4], "val_loss": [0.8, 0.6, 0.7],
                                                  "val_acc": [0.7, 0.8, 0.79], "lr": [0.001] * 3}))
    (run / "properties.json").write_text(json.dumps({"epochs_completed": 3, "epochs": 10, "dataset": "digits"}))
    (run / "evaluation.json").write_text(json.dumps({"loss": 0.65, "acc": 0.81}))
    values = build.run_values(run, 4.2)
    assert values == {"seconds": 4.2, "epochs": 3, "max_epochs": 10, "dataset": "digits", "final_loss": 0.4,
                      "final_val_loss": 0.7, "final_val_acc": 0.79, "final_lr": 0.001, "min_val_loss": 0.6,
                      "best_epoch": 2, "max_val_acc": 0.8, "test_loss": 0.65, "test_acc": 0.81}


def test_chapter_numbers_all_come_from_marked_runs(build) -> None:
    text = CHAPTER.read_text()
    names = {c.name for c in build.commands(text)}
    assert {"mlp", "tuned", "dropout-bn"} <= names
    refs = build.referenced(text)
    assert set(refs) <= names
    assert sum(len(v) for v in refs.values()) >= 30
    assert "<!-- gridrun:machine -->" in text


@pytest.mark.timeout(1200)  # 9 commands, each a fresh JAX process: ~1.5 min on an idle 2-core CPU
def test_marked_commands_still_run_on_digits(build) -> None:
    """What CI runs: every marked command of chapter13.md, on digits for 2 epochs; nothing is written."""
    before = CHAPTER.read_bytes()
    names = [c.name for c in build.commands(before.decode())]
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "--dataset", "digits", "--check",
                           "--epochs", "2", "--jobs", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1150)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    done = re.findall(r"^\[([\w-]+)\] ok in [\d.]+ s$", proc.stdout, re.M)
    assert sorted(done) == sorted(names) and len(names) >= 9
    assert "nothing written (--check)" in proc.stdout
    assert CHAPTER.read_bytes() == before
