"""`gridrun ls` on a terminal: which columns the default view shows, and that it fits (checked in tmux)."""

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import time

import pytest
from test_runs import make_run

from gridrun._io import write_json
from gridrun.commands import ls
from gridrun.errors import GridrunError

CHAPTER_FLAGS = {"dropout1": [0.2, 0.3, 0.4], "dropout2": [0.2, 0.3], "nodes1": [64, 128, 256],
                 "nodes2": [64, 128], "optimizer": ["rmsprop", "adam"], "lr_annealing": [0.1, 0.05]}


def chapter_sweep(root, n=12):
    """A sweep like the chapter's (6 flags that vary, 2 that do not), plus runs of another script."""
    combos = list(itertools.product(*CHAPTER_FLAGS.values()))[::13][:n]
    for i, combo in enumerate(combos):
        flags = dict(zip(CHAPTER_FLAGS, combo), epochs=30, batch_size=128)
        make_run(root, 10 + i, sweep="sw1", flags=flags)  # later runs: lower val_loss
    make_run(root, 0, flags={"units": 32, "learning_rate_schedule": "cosine-with-warmup"}, script="setup.py")
    make_run(root, 1, flags={"units": 64, "learning_rate_schedule": "cosine-with-warmup"}, script="setup.py")
    return root


def args(root, **kw):
    base = dict(runs_dir=str(root), order=None, ascending=False, descending=False, head=None, sweep=None,
                script=None, columns=None, wide=False, format="table")
    base.update(kw)
    return argparse.Namespace(**base)


def lines_of(root, width, **kw):
    a = args(root, **kw)
    return ls.table_lines(a, ls.sort_decreasing(a), width)


def header(lines):
    return lines[0].split()


def test_default_view_fits_and_keeps_the_sort_column_whole(tmp_path):
    root = chapter_sweep(tmp_path)
    import gridrun

    best = gridrun.ls_runs(root, order="metric_val_loss", decreasing=False).head(5)
    for width in (80, 120, 60):
        out = lines_of(root, width, order="metric_val_loss", ascending=True, head=5)
        assert header(out)[:3] == ["run", "status", "val_loss"], out
        assert all(len(line) <= width for line in out), out
        rows = out[2:7]
        for line, (_, run) in zip(rows, best.iterrows()):
            name = run["run_dir"].rsplit("/", 1)[-1]
            assert line.split()[0] == name and f"{run['metric_val_loss']:.4g}" in line.split(), line
        assert "…" not in "".join(rows)
        # no flag of the other script (empty in the rows shown), none that is the same in every row
        assert not {"units", "learning_rate_schedule", "epochs", "batch_size"} & set(header(out))
    wide = lines_of(root, 120, order="metric_val_loss", ascending=True, head=5)
    assert {"dropout1", "nodes1"} <= set(header(wide))  # these differ among the five best
    narrow = lines_of(root, 60, order="metric_val_loss", ascending=True, head=5)
    assert narrow[-1].startswith("(") and "--wide" in narrow[-1]  # what did not fit is named


def test_flags_that_differ_among_the_rows_shown(tmp_path):
    root = chapter_sweep(tmp_path)
    rows = ls._Rows(__import__("gridrun.runindex").runindex.scan(root, heavy=False), [])
    order = ls._order(rows, "start", True)
    keep, flags = ls.default_columns(rows, order[-2:], None, None)  # the two runs of the other script
    assert keep == ["run_dir", "status", "metric_val_loss"] and flags == ["flag_units"]
    keep, flags = ls.default_columns(rows, order, None, None)
    assert {"flag_nodes1", "flag_units"} <= set(flags)  # missing in a row (another script) is no value
    assert not {"flag_epochs", "flag_learning_rate_schedule"} & set(flags)
    keep, flags = ls.default_columns(rows, order[-1:], None, None)  # one row: its flags
    assert set(flags) == {"flag_units", "flag_learning_rate_schedule"}
    keep, _ = ls.default_columns(rows, order, "flag_nodes1", None)  # sorted by a flag: it and the metric
    assert keep == ["run_dir", "status", "script", "flag_nodes1", "metric_val_loss"]  # (two scripts: which)


def test_sweep_metric_from_the_manifest(tmp_path):
    root = chapter_sweep(tmp_path)
    out = lines_of(root, 100, sweep="sw1")
    assert header(out)[:3] == ["run", "status", "val_loss"]  # no metric recorded: val_loss
    (root / "sweeps").mkdir()
    write_json(root / "sweeps" / "sw1.json", {"id": "sw1", "metric": "val_acc", "mode": "max"})
    out = lines_of(root, 100, sweep="sw1")
    assert header(out)[:3] == ["run", "status", "val_acc"]
    assert sum(line.startswith("2026-") for line in out) == 12


def test_wide_columns_and_errors(tmp_path):
    root = chapter_sweep(tmp_path)
    wide = lines_of(root, 80, wide=True, head=3)
    assert {"loss", "val_acc", "dropout1", "epochs"} <= set(header(wide)) and max(map(len, wide)) > 80
    assert "units" not in header(wide)  # empty in the rows shown
    out = lines_of(root, 80, columns=["run_dir", "flag_units", "start"], head=2)
    assert header(out)[:2] == ["run", "units"] and "start" in header(out)
    with pytest.raises(GridrunError, match="no such column"):
        lines_of(root, 80, order="metric_nope")
    assert lines_of(tmp_path / "none", 80) == ["No runs."]


def test_table_order_matches_ls_runs(tmp_path):
    import gridrun

    root = chapter_sweep(tmp_path)
    for order, kw in ((None, {}), ("metric_val_loss", {}), ("flag_nodes1", {"ascending": True}),
                      ("metric_val_acc", {"descending": True})):
        a = args(root, order=order, **kw)
        df = gridrun.ls_runs(root, order=order, decreasing=ls.sort_decreasing(a))
        out = ls.table_lines(a, ls.sort_decreasing(a), 200)
        assert [line.split()[0] for line in out[2:]] == [p.rsplit("/", 1)[-1] for p in df["run_dir"]]


def _tmux(*argv, socket):
    return subprocess.run(["tmux", "-L", socket, *argv], capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: the terminal check needs it")
@pytest.mark.parametrize("width", [80, 120])
def test_ls_in_a_real_terminal(tmp_path, width):
    root = chapter_sweep(tmp_path / "runs")
    socket = f"gridrun-test-{os.getpid()}-{width}"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(ls.__file__)))
    cmd = (f"env -u COLUMNS PYTHONPATH={os.path.dirname(repo)} {sys.executable} -m gridrun.cli ls "
           f"--runs-dir {root} --order metric_val_loss --ascending --head 5; echo __DO''NE__")  # typed != printed
    try:
        assert _tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", "30", socket=socket).returncode == 0
        _tmux("send-keys", "-t", "t", cmd, "Enter", socket=socket)
        deadline = time.time() + 90
        screen = ""
        while time.time() < deadline:
            screen = _tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-100", socket=socket).stdout
            if "\n__DONE__" in screen:
                break
            time.sleep(0.3)
    finally:
        _tmux("kill-server", socket=socket)
    lines = screen.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    table = lines[start:lines.index("__DONE__")]
    assert all(len(line) <= width for line in table), table
    assert table[0].split()[:3] == ["run", "status", "val_loss"], table
    import gridrun

    best = gridrun.ls_runs(root, order="metric_val_loss", decreasing=False).head(5)
    for line, (_, run) in zip(table[2:7], best.iterrows()):
        assert line.split()[0] == run["run_dir"].rsplit("/", 1)[-1]
        assert f"{run['metric_val_loss']:.4g}" in line.split()
    assert "…" not in "\n".join(table[2:7])
    if width >= 120:
        assert {"dropout1", "nodes1"} <= set(table[0].split())


def test_ls_script_keeps_one_scripts_runs_and_the_view_says_which_script_when_mixed(tmp_path):
    """Issue 22 item 5: the quick start's table put the set-up run of another script first, unsaid."""
    import gridrun

    root = chapter_sweep(tmp_path)
    for wanted in ("setup.py", "setup"):
        df = gridrun.ls_runs(root, script=wanted, order="metric_val_loss", decreasing=False)
        assert len(df) == 2 and set(df["script"]) == {"setup.py"}
    best = gridrun.ls_runs(root, script="train.py").query("metric_val_loss == metric_val_loss.max()")
    assert list(best["script"]) == ["train.py"] and len(best) == 1
    with pytest.raises(GridrunError, match="no runs of script 'nosuch.py': scripts with runs there: setup.py, train.py"):
        gridrun.ls_runs(root, script="nosuch.py")
    # the fitted view: a script column when the rows shown come from two scripts, none for one
    mixed = lines_of(root, 120, order="metric_val_loss", descending=True, head=4)  # the two setup.py runs first
    assert header(mixed)[:3] == ["run", "status", "script"], mixed
    assert [line.split()[2] for line in mixed[2:6]] == ["setup.py", "setup.py", "train.py", "train.py"]
    one = lines_of(root, 120, order="metric_val_loss", descending=True, script="train.py")
    assert "script" not in header(one) and len(one) == 2 + 12
    out = subprocess.run([sys.executable, "-m", "gridrun.cli", "ls", "--runs-dir", str(root), "--script", "setup",
                          "--format", "csv", "--columns", "script"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["script", "setup.py", "setup.py"]
    bad = subprocess.run([sys.executable, "-m", "gridrun.cli", "ls", "--runs-dir", str(root), "--script", "x.py"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no runs of script 'x.py'" in bad.stderr and bad.stderr.count("\n") == 1


def test_ls_order_by_a_metric_named_without_its_prefix_says_which_column(tmp_path):
    import gridrun

    root = chapter_sweep(tmp_path)
    with pytest.raises(GridrunError, match=r"cannot order runs by val_loss \(did you mean metric_val_loss\?\)"):
        lines_of(root, 100, order="val_loss")
    with pytest.raises(GridrunError, match=r"val_loss \(did you mean metric_val_loss\?\)"):
        gridrun.ls_runs(root, order="val_loss")
    with pytest.raises(GridrunError, match=r"optimiser \(did you mean flag_optimizer\?\)"):
        gridrun.ls_runs(root, order="optimiser")
    out = subprocess.run([sys.executable, "-m", "gridrun.cli", "ls", "--runs-dir", str(root), "--order", "val_loss"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "did you mean metric_val_loss?" in out.stderr
