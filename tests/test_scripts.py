"""The chapter's scripts (scripts/*.py) run end to end on scikit-learn's digits with a few epochs."""

from __future__ import annotations

import json
import math
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gridrun.flagspec import declared_flags

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
CHAPTER_SCRIPTS = [
    "mnist_mlp.py",
    "mnist_capacity.py",
    "mnist_batchnorm.py",
    "mnist_regularization.py",
    "mnist_dropout.py",
    "mnist_tuned.py",
    "mnist_grid_search.py",
]
TOOL_SCRIPTS = ["evaluate_run.py"]  # works on a recorded run (tested below)


def run_script(name: str, *args: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run a script in this process as `python scripts/NAME ARGS` would, and return its globals."""
    script = SCRIPTS / name
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return runpy.run_path(str(script), run_name="__main__")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a script writes lands here
    for var in ("GRIDRUN_RUN_DIR", "GRIDRUN_FLAGS", "GRIDRUN_CONFIG"):
        monkeypatch.delenv(var, raising=False)


def test_every_chapter_script_is_tested() -> None:
    on_disk = sorted(p.name for p in SCRIPTS.glob("*.py") if not p.name.startswith("_"))
    assert on_disk == sorted(CHAPTER_SCRIPTS + TOOL_SCRIPTS)


@pytest.mark.parametrize("name", CHAPTER_SCRIPTS)
def test_script_trains_on_digits(name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_script(name, "--dataset", "digits", "--epochs", "3", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    # the history prints in the chapter's format, then the test set scores
    trained = re.search(r"Trained on ([\d,]+) samples, validated on ([\d,]+) samples \(batch_size=128, epochs=3\)", out)
    assert trained, out
    n_train, n_val = (int(g.replace(",", "")) for g in trained.groups())
    assert n_train + n_val == 1437 and abs(n_val - 0.2 * 1437) < 1  # validation_split=0.2 of digits' 1,437
    assert "val_loss:" in out and "val_acc:" in out
    match = re.search(r"Test loss: ([\d.]+), test accuracy: ([\d.]+)", out)
    assert match, out
    history, scores = ns["history"].history, ns["scores"]
    assert 1 <= len(history["loss"]) <= 3
    assert set(history) >= {"loss", "acc", "val_loss", "val_acc"}
    assert all(math.isfinite(v) for v in history["loss"] + history["val_loss"])
    assert history["loss"][-1] < history["loss"][0]  # it learns
    assert float(match.group(1)) == pytest.approx(scores["loss"], abs=1e-4)
    assert 0.0 <= scores["acc"] <= 1.0


def test_capacity_table(monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_script("mnist_capacity.py", "--dataset", "digits", "--epochs", "1", "--size", "small",
                    "--layers", "3", "--batchnorm", "true", monkeypatch=monkeypatch)
    assert ns["units"] == (16, 8, 4)
    kinds = [type(layer).__name__ for layer in ns["model"].layers]
    assert kinds == ["Dense", "BatchNorm"] * 3 + ["Dense"]
    ns = run_script("mnist_capacity.py", "--dataset", "digits", "--epochs", "1", "--size", "large",
                    "--layers", "1", monkeypatch=monkeypatch)
    assert [layer.units for layer in ns["model"].layers] == [256, 10]


def test_capacity_rejects_unknown_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from gridrun.errors import FlagError

    with pytest.raises(FlagError, match="small, medium or large"):
        run_script("mnist_capacity.py", "--dataset", "digits", "--size", "huge", monkeypatch=monkeypatch)


def test_grid_search_declares_the_chapters_flags() -> None:
    declared = declared_flags(SCRIPTS / "mnist_grid_search.py")
    defaults = {name: (spec.type, spec.default) for name, spec in declared.items()}
    assert defaults == {
        "nodes1": ("integer", 256),
        "nodes2": ("integer", 128),
        "nodes3": ("integer", 64),
        "dropout1": ("numeric", 0.4),
        "dropout2": ("numeric", 0.3),
        "dropout3": ("numeric", 0.2),
        "optimizer": ("string", "rmsprop"),
        "lr_annealing": ("numeric", 0.1),
        "dataset": ("string", "auto"),
        "epochs": ("integer", 35),
    }


def test_grid_search_runs_repeatedly_in_one_process(tmp_path: Path) -> None:
    """Tuning workers execute the script many times in one process, each into its own run dir."""
    from gridrun.rundir import create_run_dir
    from gridrun.runner import execute

    script = SCRIPTS / "mnist_grid_search.py"
    results = []
    for flags in (
        {"dataset": "digits", "epochs": 2, "nodes1": 64, "dropout1": 0.2, "optimizer": "adam"},
        {"dataset": "digits", "epochs": 2, "nodes2": 32, "lr_annealing": 0.05},
    ):
        run_dir = create_run_dir(tmp_path / "runs")
        props = execute(script, run_dir, flags, capture_output=True)
        results.append((run_dir, props))
    for (run_dir, props), flags in zip(results, ({"nodes1": 64, "optimizer": "adam"}, {"nodes2": 32})):
        assert props["status"] == "completed", props.get("error_traceback")
        recorded = json.loads((run_dir / "flags.json").read_text())
        assert {k: recorded[k] for k in flags} == flags
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert len([v for v in metrics["val_loss"] if v is not None]) == 2
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
        assert 0.0 <= evaluation["acc"] <= 1.0
        assert "Trained on 1,1" in (run_dir / "output.log").read_text()
        assert json.loads((run_dir / "properties.json").read_text())["dataset"] == "digits"


def test_scripts_share_one_copy_of_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_script("mnist_grid_search.py", "--dataset", "digits", "--epochs", "1", monkeypatch=monkeypatch)
    second = run_script("mnist_mlp.py", "--dataset", "digits", "--epochs", "1", monkeypatch=monkeypatch)
    assert first["x_train"] is second["x_train"]
    assert not first["x_train"].flags.writeable


def test_script_runs_as_a_plain_program_from_any_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "mnist_mlp.py"), "--dataset", "digits", "--epochs", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Data: digits, 1,437 training and 360 test images" in proc.stdout
    assert "Trained on 1,1" in proc.stdout and "Test loss:" in proc.stdout


def test_unknown_flag_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "mnist_grid_search.py"), "--node1", "64"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "did you mean 'nodes1'" in proc.stderr


def test_tuned_script_takes_the_tuned_recipe_as_flags(tmp_path: Path) -> None:
    """The Fashion-MNIST recipe of docs/chapter13.md is flags of mnist_tuned.py: seeds reproduce, and
    standardized inputs and other dropout rates change the training."""
    from gridrun.rundir import create_run_dir
    from gridrun.runner import execute

    tuned = {"dataset": "digits", "epochs": 3, "standardize": True, "dropout1": 0.3, "dropout2": 0.2, "dropout3": 0.1,
             "restore_best_weights": True, "lr_annealing": 0.2, "lr_patience": 2, "patience": 8}
    variants = {"a": dict(tuned, seed=0), "again": dict(tuned, seed=0), "seed1": dict(tuned, seed=1),
                "chapter": {"dataset": "digits", "epochs": 3, "seed": 0}}
    losses = {}
    for name, flags in variants.items():
        run_dir = create_run_dir(tmp_path / "runs")
        props = execute(SCRIPTS / "mnist_tuned.py", run_dir, flags, capture_output=True)
        assert props["status"] == "completed", props.get("error_traceback")
        assert json.loads((run_dir / "flags.json").read_text())["standardize"] is flags.get("standardize", False)
        losses[name] = json.loads((run_dir / "metrics.json").read_text())["val_loss"]
    assert losses["a"] == losses["again"]
    assert losses["a"] != losses["seed1"] and losses["a"] != losses["chapter"]


def test_evaluate_run_loads_the_model_and_evaluates_it_without_training(tmp_path: Path) -> None:
    """scripts/evaluate_run.py (docs/chapter13.md) loads a run's model in a fresh process and evaluates
    it on the test set: from the last checkpoint, the test figures the run itself recorded."""
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDRUN_")}
    runs = tmp_path / "runs"
    train = subprocess.run([sys.executable, "-m", "gridrun.cli", "training-run", str(SCRIPTS / "mnist_mlp.py"),
                            "--flag", "dataset=digits", "--flag", "epochs=2", "--runs-dir", str(runs), "--quiet"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    (run,) = [p for p in runs.iterdir() if (p / "properties.json").is_file()]
    recorded = json.loads((run / "evaluation.json").read_text())
    proc = subprocess.run([sys.executable, str(SCRIPTS / "evaluate_run.py"), str(run), "--which", "last"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"last checkpoint of run {run.name} (epoch 2); nothing retrained" in proc.stdout
    assert f"test accuracy: {recorded['acc']:.4f}" in proc.stdout and f"Test loss: {recorded['loss']:.4f}" in proc.stdout

