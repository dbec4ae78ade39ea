"""Extension points: samplers, pruners and executors given as objects, or by names that packages
register with entry points; their options from Python and the command line (docs/extending.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _util import manifest

import gridrun
from gridrun.errors import GridrunError
from gridrun.executors.inprocess import InProcessExecutor

ROOT = Path(__file__).resolve().parents[1]

# the loss at epoch e is q * (1 + 1/e): a smaller q is a better trial
LOOP = textwrap.dedent("""
    import gridrun
    FLAGS = gridrun.flags(
        gridrun.flag_numeric("q", 0.5, "quality: lower is better", values=[0.1, 0.5, 0.9]),
        gridrun.flag_integer("epochs", 4, "epochs"),
    )
    for e in range(1, FLAGS.epochs + 1):
        gridrun.log_metrics(epoch=e, val_loss=FLAGS.q * (1 + 1 / e))
""")


@pytest.fixture
def loop_script(tmp_path):
    path = tmp_path / "loop.py"
    path.write_text(LOOP)
    return path


class StepSampler(gridrun.Sampler):
    """q = 0.9, 0.8, 0.7, ... in trial order; remembers what it was told."""

    name = "step"

    def __init__(self, start: float = 0.9) -> None:
        self.start = start
        self.told: list[tuple[int, str, float | None]] = []

    def ask(self, trial):
        return {"q": round(self.start - 0.1 * trial.trial, 3)}

    def tell(self, trial):
        self.told.append((trial.trial, str(trial.status), self.value(trial)))


class ThresholdPruner(gridrun.Pruner):
    """Stop a trial whose value is above `limit` from epoch 2 on."""

    name = "threshold"

    def __init__(self, limit: float = 1.0) -> None:
        super().__init__()
        self.limit = limit
        self.heard: list[tuple[int, int]] = []

    def report(self, trial, epoch, value):
        self.heard.append((trial, epoch))
        return epoch >= 2 and value > self.limit


class CountingExecutor(InProcessExecutor):
    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.submitted = 0

    def submit(self, fn, task):
        self.submitted += 1
        return super().submit(fn, task)


def test_a_sampler_a_pruner_and_an_executor_defined_here_run_a_real_sweep(loop_script, tmp_path):
    runs = tmp_path / "runs"
    sampler, pruner, executor = StepSampler(), ThresholdPruner(limit=0.9), CountingExecutor()
    df = gridrun.tuning_run(loop_script, {"q": gridrun.uniform(0.0, 1.0), "epochs": [4]}, sample=5,
                            sampler=sampler, prune=pruner, backend=executor, runs_dir=runs, quiet=True)
    m = manifest(runs)
    assert sorted(t["flags"]["q"] for t in m["trials"]) == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert m["sampler"] == "step" and m["pruner"]["name"] == "threshold"
    status = {t["flags"]["q"]: t["status"] for t in m["trials"]}
    # value at epoch 2 is 1.5 q: above 0.9 for q > 0.6
    assert status == {0.9: "pruned", 0.8: "pruned", 0.7: "pruned", 0.6: "completed", 0.5: "completed"}
    assert sorted(df["epochs_completed"]) == [2, 2, 2, 4, 4]
    assert executor.submitted == 5
    assert sorted(s for _, s, _ in sampler.told) == ["completed"] * 2 + ["pruned"] * 3
    assert {(t, e) for t, e in pruner.heard} >= {(0, 1), (0, 2), (4, 4)}


def test_an_optuna_sampler_object_is_wrapped(loop_script, tmp_path):
    optuna = pytest.importorskip("optuna")
    runs = tmp_path / "runs"
    chosen = optuna.samplers.RandomSampler(seed=0)
    gridrun.tuning_run(loop_script, {"q": gridrun.uniform(0.05, 0.95), "epochs": [1]}, sample=4,
                       sampler=chosen, runs_dir=runs, quiet=True)
    m = manifest(runs)
    assert m["sampler"] == "optuna:RandomSampler" and all(t["status"] == "completed" for t in m["trials"])
    assert len({t["flags"]["q"] for t in m["trials"]}) == 4
    with pytest.raises(GridrunError, match="same sampler object"):  # a resume by name cannot rebuild it
        gridrun.tuning_run(resume=m["id"], runs_dir=runs, quiet=True)


def test_options_reach_the_constructors_typed_and_bad_keys_name_the_accepted_ones(loop_script, tmp_path, capsys):
    pytest.importorskip("optuna")
    from gridrun import cli

    runs = tmp_path / "runs"
    args = ["tuning-run", str(loop_script), "--flag", "q=uniform(0.05,0.95)", "--flag", "epochs=4", "--sample", "4",
            "--seed", "2", "--sampler", "tpe", "--sampler-opt", "n_startup_trials=2", "--sampler-opt",
            "multivariate=true", "--prune", "hyperband", "--prune-opt", "brackets=2", "--prune-opt", "reduction=2",
            "--runs-dir", str(runs), "-q"]
    assert cli.main(args) == 0
    m = manifest(runs)
    assert m["sampler_options"] == {"n_startup_trials": 2, "multivariate": True}
    assert m["pruner"]["brackets"] == [1, 2] and m["pruner"]["options"] == {"brackets": 2, "reduction": 2.0}
    capsys.readouterr()
    assert cli.main(args[:-3] + ["--prune-opt", "patience=3", "--runs-dir", str(runs), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--prune-opt patience: pruner 'hyperband' takes grace, reduction, max_epochs, brackets, promote")
    assert cli.main(args[:12] + ["--sampler-opt", "n_startup_trials=many", "--runs-dir", str(runs), "-q"]) == 2
    assert "--sampler-opt n_startup_trials='many' is not a whole number" in capsys.readouterr().err
    with pytest.raises(GridrunError, match="median' takes warmup, startup"):
        gridrun.tuning_run(loop_script, prune="median", prune_options={"grace": 2}, runs_dir=runs, quiet=True)


def test_registry_types_text_by_the_signature():
    from gridrun._registry import typed

    assert typed("3", int, 1, "x") == 3 and typed("0.5", float, 1.0, "x") == 0.5
    assert typed("none", int | None, None, "x") is None and typed("4", int | None, None, "x") == 4
    assert typed("no", bool, True, "x") is False and typed("abc", str, "", "x") == "abc"
    assert typed("7", None, 2, "x") == 7 and typed("a", None, None, "x") == "a"  # no hint: the default's type
    with pytest.raises(GridrunError, match="x='yes please' is not true or false"):
        typed("yes please", bool, False, "x")


PLUGIN = textwrap.dedent("""
    import gridrun

    class WorseThan(gridrun.Pruner):
        name = "worse-than"

        def __init__(self, limit: float = 1.0, after: int = 1) -> None:
            super().__init__()
            self.limit, self.after = limit, after

        def report(self, trial, epoch, value):
            return epoch >= self.after and value > self.limit
""")


def test_a_package_registers_a_pruner_by_entry_point_and_the_cli_uses_it(loop_script, tmp_path):
    """An installed distribution, as pip leaves it: a module and a .dist-info with entry_points.txt."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "gridrun_worse.py").write_text(PLUGIN)
    info = site / "gridrun_worse-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gridrun-worse\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gridrun.pruners]\nworse-than = gridrun_worse:WorseThan\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    env.pop("GRIDRUN_RUN_DIR", None)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "gridrun.cli", "tuning-run"]
    shown = subprocess.run(cmd + ["--help"], env=env, capture_output=True, text=True, check=True).stdout
    assert re.search(r"none, asha, hyperband, median,\s+worse-than", shown)
    subprocess.run(cmd + [str(loop_script), "--flag", "q=0.1,0.5,0.9", "--ordered", "--prune", "worse-than",
                          "--prune-opt", "limit=0.8", "--prune-opt", "after=2", "--runs-dir", str(runs), "-q"],
                   env=env, check=True, cwd=tmp_path)
    m = manifest(runs)
    assert m["pruner"] == {"name": "worse-than", "options": {"limit": 0.8, "after": 2}}
    # at epoch 2, 1.5 q: only q=0.9 (1.35) is above 0.8
    assert {t["flags"]["q"]: t["status"] for t in m["trials"]} == {0.1: "completed", 0.5: "completed", 0.9: "pruned"}
    # without the package the name is unknown, and the error says where names come from
    bad = subprocess.run(cmd + [str(loop_script), "--prune", "worse-than", "--runs-dir", str(runs)],
                         env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'worse-than'" in bad.stderr


def _blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_the_extending_docs_examples_run(tmp_path, monkeypatch):
    """docs/extending.md's sampler and pruner examples, run as written next to a train.py like theirs."""
    (tmp_path / "train.py").write_text(textwrap.dedent("""
        import gridrun
        FLAGS = gridrun.flags(gridrun.flag_numeric("lr", 0.01, values=gridrun.loguniform(1e-4, 1e-1)),
                              gridrun.flag_integer("epochs", 6))
        for epoch in range(1, FLAGS.epochs + 1):
            gridrun.log_metrics(epoch=epoch, val_loss=abs(FLAGS.lr - 0.01) * 100 + 1 / epoch)
    """))
    monkeypatch.chdir(tmp_path)
    blocks = _blocks((ROOT / "docs" / "extending.md").read_text())
    examples = [b for b in blocks if "gridrun.tuning_run(" in b]
    assert len(examples) >= 3
    for code in examples:
        lines = sum(bool(line.strip()) for line in code.splitlines())
        assert 12 <= lines <= 30, f"an example of {lines} lines"
        namespace: dict = {"__name__": "example"}
        exec(compile(code, "docs/extending.md", "exec"), namespace)
        df = namespace["df"]
        assert len(df) > 0 and set(df["status"]) <= {"completed", "pruned"}
