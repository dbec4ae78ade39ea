"""The runs table's index (gridrun/runindex.py): same table as reading every summary, never a stale row."""

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from _oldframe import old_frame, old_ls_runs
from test_runs import make_run

import gridrun
from gridrun import runindex
from gridrun._io import write_json
from gridrun.record import write_summary
from gridrun.rundir import RunContext


def _mixed_runs(root):
    make_run(root, 0, sweep="s1")
    make_run(root, 1, sweep="s1", status="failed")
    make_run(root, 2, flags={"lr": 2e-5, "note": "x"})  # another script: other flags
    make_run(root, 3, flags={"lr": 1, "bn": True})
    make_run(root, 4, ended=False)  # still active: no summary.json
    d = make_run(root, 5, sweep="s2")
    RunContext.open(d).write_properties(best_epoch=2, extra=None)
    write_summary(d)
    (root / "reports").mkdir()  # not a run
    return root


def _same(a, b):
    pd.testing.assert_frame_equal(a, b)


def test_listing_equals_reading_every_summary_with_and_without_the_index(tmp_path, monkeypatch):
    root = _mixed_runs(tmp_path)
    monkeypatch.setattr(runindex, "RACY_NS", 0)  # cache rows at once (they are all final)
    for _attempt in ("no index yet", "from the index"):
        _same(gridrun.ls_runs(root), old_ls_runs(root))
        _same(gridrun.ls_runs(root, order="metric_val_loss", decreasing=False),
              old_ls_runs(root, order="metric_val_loss", decreasing=False))
        for sweep in ("s1", "s2", "nosuch"):
            _same(gridrun.ls_runs(root, sweep=sweep), old_ls_runs(root, sweep=sweep))
        assert gridrun.ls_runs(root, latest_n=2)["run_dir"].tolist() == old_ls_runs(root)["run_dir"][:2].tolist()
    stats = runindex.scan(root).stats
    assert stats == {"cached": 5, "read": 0, "live": 1, "written": 0}, stats  # the active run is read live
    assert (root / runindex.INDEX_DIR).is_dir() and "run_dir" in gridrun.ls_runs(root).columns
    light = runindex.scan(root, heavy=False)
    assert not {"output", "model", "error_traceback"} & set(light.keys()) and len(light) == 6


def test_shards_are_jsonl_files_and_shards_named_json_before_are_still_read(tmp_path, monkeypatch):
    root = _mixed_runs(tmp_path)
    monkeypatch.setattr(runindex, "RACY_NS", 0)
    gridrun.ls_runs(root)
    index = root / runindex.INDEX_DIR
    shards = sorted(index.iterdir())
    assert shards and all(p.suffix == ".jsonl" for p in shards)
    for shard in shards:  # one JSON text a line
        lines = shard.read_bytes().splitlines()
        assert len(lines) == 3 and all(isinstance(json.loads(line), (dict, list)) for line in lines)
        shard.rename(shard.with_suffix(".json"))  # as an earlier gridrun named them
    scan = runindex.scan(root, write=False)
    assert scan.stats["cached"] == 5 and scan.stats["read"] == 0, scan.stats  # the old shards' rows are used
    _same(gridrun.ls_runs(root), old_ls_runs(root))  # ... and the listing renames them
    assert sorted(p.name for p in index.iterdir()) == [p.name for p in shards]
    assert runindex.scan(root).stats == {"cached": 5, "read": 0, "live": 1, "written": 0}


def test_frame_of_rows_matches_pandas_from_records(tmp_path):
    rows = [{"run_dir": "a", "metric_x": 1, "flag_a": 1, "flag_b": "s", "flag_c": True, "start": "2026-01-01T00:00:00Z",
             "completed": None, "samples": 3, "custom": "c"},
            {"run_dir": "b", "metric_x": None, "flag_a": None, "flag_b": None, "flag_d": 1.5, "completed": True,
             "eval_z": "oops", "samples": None, "custom2": [1, 2]},
            {"run_dir": "c", "metric_x": 0.5, "flag_a": 3, "flag_b": 2, "learning_rate": "0.1", "end": "bad"}]
    from gridrun.runs import _frame

    for subset in (rows, rows[:1], rows[1:], []):
        _same(_frame([dict(r) for r in subset]), old_frame([dict(r) for r in subset]))


def test_a_changed_summary_is_never_shown_stale(tmp_path, monkeypatch):
    root = tmp_path
    a = make_run(root, 0)
    make_run(root, 1)
    monkeypatch.setattr(runindex, "RACY_NS", 0)
    gridrun.ls_runs(root)
    assert runindex.scan(root).stats["cached"] == 2
    # rewritten the way gridrun does (atomic replace): the cached row is dropped for the new one
    RunContext.open(a).write_properties(status="failed", custom_note="changed")
    write_summary(a)
    df = gridrun.ls_runs(root).set_index("run_dir")
    assert df.loc[str(a), "custom_note"] == "changed" and df.loc[str(a), "status"] == "failed"
    # a summary edited in place, same size, same mtime: with the real racy window a just-changed summary
    # is not cached, so the edit shows whenever it happens
    monkeypatch.setattr(runindex, "RACY_NS", 2_000_000_000)
    b = make_run(root, 2)
    gridrun.ls_runs(root)
    path = b / "summary.json"
    st = path.stat()
    text = path.read_text()
    edited = text.replace("note2", "NOTE2")
    assert len(edited) == len(text) and edited != text
    with open(path, "r+") as fh:
        fh.write(edited)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert gridrun.ls_runs(root).set_index("run_dir").loc[str(b), "custom_note"] == "NOTE2"
    # a removed run disappears, and its row leaves the index
    import shutil

    shutil.rmtree(a)
    assert str(a) not in gridrun.ls_runs(root)["run_dir"].tolist()
    shard = runindex._Shard(root / runindex.INDEX_DIR / f"{runindex.shard_key(a.name)}.jsonl")
    assert a.name not in shard.names() and shard.names()
    shard.close()


def test_a_damaged_or_unwritable_index_only_costs_time(tmp_path, monkeypatch):
    root = _mixed_runs(tmp_path)
    monkeypatch.setattr(runindex, "RACY_NS", 0)
    gridrun.ls_runs(root)
    for shard in (root / runindex.INDEX_DIR).iterdir():
        data = shard.read_bytes()
        shard.write_bytes(data[: len(data) // 2])  # truncated
    _same(gridrun.ls_runs(root), old_ls_runs(root))
    for shard in (root / runindex.INDEX_DIR).iterdir():  # a foreign file of the right size
        shard.write_bytes(b'{"format": 2, "light": 5, "heavy": 2}\n{"a":1}\n[]\n')
    _same(gridrun.ls_runs(root), old_ls_runs(root))
    gridrun.ls_runs(root)  # a whole index again; then one whose columns do not match its keys
    for shard in (root / runindex.INDEX_DIR).iterdir():
        with open(shard, "rb") as fh:
            fh.readline()
            light = json.loads(fh.readline())
            heavy = fh.read()
        del light["groups"][0]["cols"]["status"]
        body = json.dumps(light).encode()
        shard.write_bytes(json.dumps({"format": 2, "light": len(body), "heavy": len(heavy) - 1}).encode()
                          + b"\n" + body + b"\n" + heavy)
    _same(gridrun.ls_runs(root), old_ls_runs(root))
    import shutil

    shutil.rmtree(root / runindex.INDEX_DIR)
    (root / runindex.INDEX_DIR).write_text("not a folder")  # the index cannot be written
    _same(gridrun.ls_runs(root), old_ls_runs(root))
    assert runindex.scan(root).stats["written"] == 0


def test_pack_round_trips_values_exactly():
    for values in ([0.1, -0.0, float("inf"), 1e-300, 2e-5], [1, 2, 2**62], [2**64, 1], [True, True], [1, 1.0],
                   [None, None], ["a", "a"], [[1], [1]], [1.5, None], [float("nan"), 0.5]):
        packed = runindex._pack(list(values))
        json.dumps(packed)
        back = runindex._unpack(json.loads(json.dumps(packed)), len(values))
        back = [back["="]] * len(values) if isinstance(back, dict) else back
        assert [(type(v), repr(v)) for v in back] == [(type(v), repr(v)) for v in values]


WRITER = textwrap.dedent("""
    import sys, time, datetime as dt
    sys.path.insert(0, {tests!r})
    from test_runs import make_run
    from gridrun.rundir import RunContext
    from gridrun.record import write_summary
    from pathlib import Path
    root, k, until = Path(sys.argv[1]), int(sys.argv[2]), time.time() + float(sys.argv[3])
    i = 0
    while time.time() < until:
        make_run(root, 10000 * (k + 1) + i, sweep=f"w{{k}}")
        i += 1
        if k == 0 and i % 5 == 0:  # one run's summary keeps changing (a counter), atomically
            ctx = RunContext.open(root / "2026-01-01T00-00-00.000Z")
            ctx.write_properties(counter=i)
            write_summary(ctx.run_dir)
        time.sleep(0.05)
""")

LISTER = textwrap.dedent("""
    import json, sys, time
    import gridrun
    from pathlib import Path
    root, until = Path(sys.argv[1]), time.time() + float(sys.argv[2])
    mut = root / "2026-01-01T00-00-00.000Z"
    n = 0
    while time.time() < until or n < 3:
        before = json.loads((mut / "summary.json").read_text()).get("counter", 0)
        df = gridrun.ls_runs(root).set_index("run_dir")
        shown = df.loc[str(mut), "counter"] if "counter" in df.columns else 0
        if not shown >= before:
            sys.exit(f"stale row: counter {{shown}} listed after {{before}} was written")
        n += 1
    print(n)
""")


def test_concurrent_sweeps_and_listings_never_show_a_stale_row(tmp_path):
    root = tmp_path / "runs"
    make_run(root, 0)  # the run whose summary keeps changing
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(runindex.Path(gridrun.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    until = 8  # seconds, > RACY_NS: rows get cached and replaced while the test runs
    tests = str(runindex.Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER.format(tests=tests), str(root), str(k), str(until)],
                              env=env) for k in range(2)]
    listers = [subprocess.Popen([sys.executable, "-c", LISTER, str(root), str(until)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    for p in listers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert int(out) > 1, "each lister should have listed several times"
    _same(gridrun.ls_runs(root), old_ls_runs(root))
    shards = list((root / runindex.INDEX_DIR).glob("*.jsonl"))
    assert shards
    for shard in shards:  # every shard left is whole and valid
        with open(shard, "rb") as fh:
            sizes = json.loads(fh.readline())
            light, heavy = json.loads(fh.read(sizes["light"] + 1)), json.loads(fh.read(sizes["heavy"] + 1))
            assert fh.read() == b"" and len(light["groups"]) == len(heavy)
        s = runindex._Shard(shard)
        assert len(s.groups) == len(heavy) and all(s.heavy(g) is not None for g in range(len(s.groups)))
        s.close()
    assert not list((root / runindex.INDEX_DIR).glob(".*.tmp"))


@pytest.mark.parametrize("name,key", [("2026-01-01T00-00-00.000Z", "2026-01-01"), ("myrun", "other"),
                                      ("2026-13", "other")])
def test_shard_key(name, key):
    assert runindex.shard_key(name) == key


def test_index_is_hidden_from_run_listings(tmp_path):
    make_run(tmp_path, 0)
    gridrun.ls_runs(tmp_path)
    (tmp_path / runindex.INDEX_DIR).mkdir(exist_ok=True)
    write_json(tmp_path / runindex.INDEX_DIR / "properties.json", {})  # even if it looked like a run
    assert len(gridrun.ls_runs(tmp_path)) == 1
