"""docs/build.py: the numbers in docs/chapter13.md (and the README's quick start, a session) come from
running the commands they show; docs/own-loop.md's example runs as written.

The rewriting is checked on a small page; the real page's marked commands are run on the digits data
set (2 epochs, quick) to check that they still run, and nothing is written by --check.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
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


def test_plain_python_commands_write_into_their_own_folder(build, tmp_path: Path) -> None:
    """A `python` command's files (`history.plot()` writes ./history.png outside a run) land in its own
    folder, not in the repository (a history.png was once committed that way)."""
    script = tmp_path / "writes.py"
    script.write_text("from pathlib import Path\nPath('history.png').write_bytes(b'png')\n")
    try:
        build.run(build.Command("p", f"python {script}"), tmp_path / "work", None, None, quiet=True)
        assert not (ROOT / "history.png").exists()
        assert (tmp_path / "work" / "p" / "history.png").read_bytes() == b"png"
    finally:  # before the fix the file landed in the repository: leave no stray one behind
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "history.png"], cwd=ROOT,
                                 capture_output=True).returncode == 0  # fmt: skip
        if not tracked:
            (ROOT / "history.png").unlink(missing_ok=True)
    argv = build.argv_for("python scripts/mnist_mlp.py --epochs 5", tmp_path / "q", None, None)
    assert build.working_dir(argv, tmp_path / "q") == tmp_path / "q"
    assert argv[1] == str(ROOT / "scripts" / "mnist_mlp.py") and Path(argv[1]).is_file()
    gridrun_argv = build.argv_for("gridrun training-run scripts/mnist_mlp.py", tmp_path / "r", None, None)
    assert build.working_dir(gridrun_argv, tmp_path / "r") == ROOT


def test_session_values_count_runs_sweeps_and_models(build, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    layout = [("2026-01-01T00-00-00.000Z", None)] + [(f"2026-01-01T00-00-0{i}.000Z", "s1") for i in range(1, 4)] + [
        (f"2026-01-01T00-01-0{i}.000Z", "s2") for i in range(2)]
    for name, sweep in layout:
        (runs / name).mkdir(parents=True)
        (runs / name / "properties.json").write_text(json.dumps({"sweep": sweep} if sweep else {}))
    (runs / "reports").mkdir()  # not a run
    values = build.session_values(runs, plain=1, seconds=12.5)
    assert values == {"seconds": 12.5, "models": 7, "runs": 6, "sweeps": 2, "trials_1": 3, "trials_2": 2}
    page = ("<!--=q.models-->7<!--/--> models, <!--=q.sweeps-->3<!--/--> sweeps, <!--=q.seconds-->99<!--/--> s\n"
            "<!-- gridrun:session q -->\n```bash\npython t.py  # plain\ngridrun ls --head 5\n```\n")
    (session,) = build.sessions(page)
    assert session.commands == ["python t.py", "gridrun ls --head 5"]
    result = build.Result("q", 12.5, "", values)
    assert build.stale_counts(page, {"q": result}, {"q"}) == ["q.sweeps is 3 on the page, 2 measured"]


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


# ---------------------------------------------------------------------------------------------------
# docs/own-loop.md's Flax NNX example runs as written

OWN_LOOP = ROOT / "docs" / "own-loop.md"


def own_loop_scripts() -> tuple[str, str]:
    """The "before" and "after" scripts of docs/own-loop.md's Flax NNX example."""
    text = OWN_LOOP.read_text()
    section = text[text.index("## The Flax NNX MNIST example, before and after"):]
    before, after = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    return before, after


@pytest.fixture
def fashion_env(tmp_path: Path) -> dict[str, str]:
    """The environment for the example: the real Fashion-MNIST where it is installed, else a tiny
    Fashion-MNIST-shaped set of random IDX files (the example only has to run)."""
    import os

    from gridrun import datasets
    from gridrun.errors import GridrunError

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GRIDRUN_RUN_DIR", None)
    try:
        datasets.load_fashion_mnist()
    except GridrunError:
        from test_datasets import make_set

        make_set(tmp_path / "fashion", n_train=300, n_test=300)
        env["GRIDRUN_FASHION_MNIST"] = str(tmp_path / "fashion")
    return env


def test_own_loop_example_diff_counts_are_the_docs() -> None:
    import shutil

    if shutil.which("diff") is None:
        pytest.skip("no diff program")
    before, after = own_loop_scripts()
    claim = re.search(r"(\d+) lines added,\s+(\d+) removed", OWN_LOOP.read_text())
    assert claim, "docs/own-loop.md no longer says how many lines the example changes"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "before.py").write_text(before)
        (Path(tmp) / "after.py").write_text(after)
        out = subprocess.run(["diff", "before.py", "after.py"], cwd=tmp, capture_output=True, text=True).stdout
    added = sum(line.startswith("> ") or line == ">" for line in out.splitlines())
    removed = sum(line.startswith("< ") or line == "<" for line in out.splitlines())
    assert (int(claim.group(1)), int(claim.group(2))) == (added, removed)


@pytest.mark.timeout(600)
def test_own_loop_after_script_runs_as_written(tmp_path: Path, fashion_env: dict[str, str]) -> None:
    """The "after" script, unchanged, as a recorded run on 256 rows for one epoch."""
    _, after = own_loop_scripts()
    assert "data" not in re.findall(r"^from (\w+) import", after, re.M), "the example imports a data.py"
    (tmp_path / "train.py").write_text(after)
    out = subprocess.run([sys.executable, "-m", "gridrun.cli", "training-run", "train.py", "--flag", "samples=256",
                          "--flag", "epochs=1", "--runs-dir", "runs"],
                         cwd=tmp_path, env=fashion_env, capture_output=True, text=True, timeout=580)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "metrics.json").exists()]
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(metrics)
    assert len(metrics["val_loss"]) == 1
    props = json.loads((run / "properties.json").read_text())
    assert props["status"] == "completed" and props["samples"] == 256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "train.py"]


@pytest.mark.timeout(600)
def test_own_loop_before_script_with_log_metrics_is_recorded(tmp_path: Path, fashion_env: dict[str, str]) -> None:
    """The "before" script with the page's `gridrun.log_metrics` call added where the page says, on 256
    rows for one epoch: its own loop is recorded epoch by epoch."""
    before, _ = own_loop_scripts()
    text = OWN_LOOP.read_text()
    call = re.search(r"after `test = metrics.compute\(\)`:\n\n```python\n(.*?)```", text, re.S)
    assert call, "docs/own-loop.md no longer shows where log_metrics goes in the loop"
    edits = [("from flax import nnx\n", "from flax import nnx\n\nimport gridrun\n"),
             ("batch_size, epochs = 32, 10\n", "batch_size, epochs = 32, 1\n"
              "x_train, y_train, x_test, y_test = x_train[:256], y_train[:256], x_test[:256], y_test[:256]\n"),
             ("    test = metrics.compute()\n", "    test = metrics.compute()\n" + call.group(1))]
    for old, new in edits:
        assert before.count(old) == 1, old
        before = before.replace(old, new)
    (tmp_path / "train.py").write_text(before)
    out = subprocess.run([sys.executable, "-m", "gridrun.cli", "training-run", "train.py", "--runs-dir", "runs"],
                         cwd=tmp_path, env=fashion_env, capture_output=True, text=True, timeout=580)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "metrics.json").exists()]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"loss", "accuracy", "val_loss", "val_accuracy"} and len(metrics["val_loss"]) == 1
    assert re.search(r"epoch 1: loss \d", (run / "output.log").read_text())


def test_analysis_screenshot_comes_from_its_marked_session(build) -> None:
    """docs/analysis.md's chart image is made by its session (a real sweep, then sweep-report), captured
    by a screenshot marker, and is committed small."""
    page = ROOT / "docs" / "analysis.md"
    text = page.read_text(encoding="utf-8")
    (mark,) = [m for m in build.SCREENSHOT_MARK.finditer(text)]
    session, selector, image = mark.groups()
    assert session in {s.name for s in build.sessions(text)} and selector == "#analysis"
    (chosen,) = [s for s in build.sessions(text) if s.name == session]
    assert chosen.commands[0].startswith("gridrun tuning-run") and chosen.commands[-1].startswith("gridrun sweep-report")
    assert f"]({image})" in text
    png = page.parent / image
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 100_000
    assert build.REPORT_LINE.search("Sweep report: runs/sweep-x.html").group(1) == "runs/sweep-x.html"
