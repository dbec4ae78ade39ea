"""gridrun._io.write_reusing: a rewritten file's next version goes over its previous version's file in
place, then swaps names with it; atomic, never writes over a file another name links to."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from gridrun import _io
from gridrun import checkpoint as C


def _swapping(tmp_path) -> bool:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    ok = _io.exchange(a, b)
    return ok and a.read_text() == "b" and b.read_text() == "a"


def test_versions_alternate_between_two_files_written_in_place(tmp_path):
    if not _swapping(tmp_path):
        pytest.skip("this file system cannot swap names (renameat2 RENAME_EXCHANGE)")
    path = tmp_path / "x.ckpt"
    inodes = []
    for i in range(6):
        data = [b"head%d\n" % i, bytes([i]) * (1000 - 100 * i)]  # shrinking: the spare is cut to size
        reused = _io.write_reusing(path, data)
        assert reused == (i > 0)  # the first write has nothing to swap with
        assert path.read_bytes() == b"".join(data)
        inodes.append(path.stat().st_ino)
    assert len(set(inodes[1:])) == 2 and inodes[2] == inodes[4] and inodes[3] == inodes[5]  # two files, in turn
    assert _io.spare_of(path).read_bytes()[:6] == b"head4\n"  # the previous version, next to be written over
    _io.drop_spare(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "x.ckpt"]


def test_a_spare_another_name_links_to_is_never_written_over(tmp_path):
    if not _swapping(tmp_path):
        pytest.skip("this file system cannot swap names (renameat2 RENAME_EXCHANGE)")
    path = tmp_path / "last.ckpt"
    _io.write_reusing(path, b"one")
    keep = tmp_path / "other-run-last.ckpt"
    os.link(path, keep)  # e.g. sequential PBT hands a trial's last checkpoint to another trial as a hard link
    _io.write_reusing(path, b"two")  # "one" is now the spare, and still `keep`
    _io.write_reusing(path, b"three")  # must not write over `keep`'s file
    assert keep.read_bytes() == b"one" and path.read_bytes() == b"three"
    assert _io.spare_of(path).read_bytes() == b"two"


def test_without_name_swapping_it_is_an_atomic_replace(tmp_path, monkeypatch):
    monkeypatch.setattr(_io, "_renameat2", False)
    path = tmp_path / "x.ckpt"
    for i in range(3):
        assert _io.write_reusing(path, [b"v", str(i).encode()]) is False
        assert path.read_bytes() == b"v%d" % i
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"]


@pytest.mark.parametrize("swapping", [True, False])
def test_a_checkpointer_keeps_one_file_for_best_and_last_of_the_same_epoch(tmp_path, monkeypatch, swapping):
    if not swapping:
        monkeypatch.setattr(_io, "_renameat2", False)
    elif not _swapping(tmp_path):
        pytest.skip("this file system cannot swap names")
    run = tmp_path / "run"
    saver = C.Checkpointer(run, "both", metric="val_loss", background=True)
    for e, loss in enumerate([0.9, 0.7, 0.8, 0.6], 1):  # best at 1, 2, 4; last every epoch
        saver.on_epoch(e, {"val_loss": loss}, lambda e=e: {"w": np.full(3, float(e), np.float32)})
    props = saver.close()
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # no spare left behind
    assert os.path.samefile(folder / "best.ckpt", folder / "last.ckpt")  # epoch 4 both: one file
    assert props["checkpoint_bytes"] == (folder / "best.ckpt").stat().st_size
    assert float(C.load_state(run, "best")["w"][0]) == 4.0 == float(C.load_state(run, "last")["w"][0])


LIVE_SCRIPT = '''
import json, os
import gridrun
from gridrun import rundir
run = rundir.current().run_dir
inodes = []
for e in range(4):
    gridrun.log_metrics(loss=1.0 / (e + 1))
    inodes.append(os.stat(run / "metrics.json").st_ino)
    assert json.loads((run / "metrics.json").read_text())["loss"][-1] == 1.0 / (e + 1)
print("INODES", json.dumps(inodes))
'''


def test_a_running_run_rewrites_its_metrics_in_place_and_leaves_no_spare(tmp_path):
    import json

    import gridrun

    swapping = _swapping(tmp_path)
    script = tmp_path / "live.py"
    script.write_text(LIVE_SCRIPT)
    row = gridrun.training_run(script, runs_dir=tmp_path / "runs", echo=False)
    run = tmp_path / "runs" / str(row["run_dir"].iloc[0]).rsplit("/", 1)[-1]
    inodes = json.loads((run / "output.log").read_text().split("INODES", 1)[1])
    if swapping:  # the first epoch's file, then two files in turn
        assert inodes[1] == inodes[3] and inodes[1] != inodes[2]
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # finish() deleted the spares
    assert gridrun.ls_runs(runs_dir=tmp_path / "runs")["metric_loss"].iloc[0] == 0.25


def test_a_sweeps_manifest_is_rewritten_in_place_and_leaves_no_spare(tmp_path, monkeypatch):
    """A running sweep's manifest goes through write_reusing (`Manifest.live`); its end retires it."""
    import gridrun
    from gridrun.sweep import manifest as M

    reused = []
    real = M.write_json

    def spy(path, data, indent=1, reuse=False):
        reused.append(reuse)
        return real(path, data, indent, reuse)

    monkeypatch.setattr(M, "write_json", spy)
    script = tmp_path / "live.py"
    script.write_text("import gridrun\nFLAGS = gridrun.flags(gridrun.flag_integer('k', 1, values=[1, 2, 3]))\n"
                      + LIVE_SCRIPT)
    df = gridrun.tuning_run(script, runs_dir=tmp_path / "runs", quiet=True)
    assert (df["status"] == "completed").all()
    assert reused[0] is False and True in reused  # the plan written plainly, then rewritten in place while live
    sweeps = tmp_path / "runs" / "sweeps"
    assert [p.name for p in sweeps.iterdir()] == [f"{df['sweep'].iloc[0]}.json"]  # no spare left


@pytest.mark.parametrize("nonfinite", [False, True])
def test_dumps_fast_path_writes_what_the_cleaning_walk_writes(nonfinite, tmp_path):
    """`dumps` hands plain values to json's C encoder and takes `clean_json`'s walk only when that
    refuses them: the text parses to the same values either way, one outer member a line."""
    import json
    from pathlib import Path

    values = {"n": 3, "f": 0.5, "np32": np.float32(0.25), "np64": np.float64(1.5), "i64": np.int64(7),
              "bool": np.bool_(True), "arr": np.arange(3), "tuple": (1, "a"), "path": Path("/x/y"),
              "none": None, "text": "é", "trials": [{"a": 1}, {"b": [np.float32(2.0)]}], "empty": {}}
    bad = {**values, "nan": float("nan"), "inf": [np.float32("inf")], "deep": {"x": [{"y": -math.inf}]}}
    for data in (values, bad):
        text = _io.dumps(data, nonfinite=nonfinite)
        walked = json.dumps(_io.clean_json(data, nonfinite), allow_nan=False, ensure_ascii=False)
        assert json.loads(text) == json.loads(walked)
        lines = text.splitlines()
        assert lines[0] == "{" and lines[-1] == "}" and len(lines) == 2 + len(data) + 3  # trials: an item a line, then "]"
        assert _io.dumps(data, indent=None, nonfinite=nonfinite) == json.dumps(json.loads(walked), ensure_ascii=False)
    assert '"nan": "NaN"' in _io.dumps(bad, nonfinite=True) and '"nan": null' in _io.dumps(bad)
