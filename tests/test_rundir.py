import datetime as dt
import json
import multiprocessing as mp
import re
import threading

import gridrun
from gridrun import rundir
from gridrun._io import read_json, write_json
from gridrun.rundir import RunContext, activate, create_run_dir


def test_name_format_is_tfruns_like_and_sortable(tmp_path):
    ts = dt.datetime(2026, 11, 27, 6, 44, 38, 123456, tzinfo=dt.UTC)
    path = create_run_dir(tmp_path, ts)
    assert path.name == "2026-11-27T06-44-38.123Z"
    again = create_run_dir(tmp_path, ts)
    assert again.name == "2026-11-27T06-44-38.123Z-1"
    later = create_run_dir(tmp_path, ts + dt.timedelta(milliseconds=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, again.name, later.name]


def _make_many(args):
    root, n, ts = args
    return [create_run_dir(root, ts).name for _ in range(n)]


def test_unique_names_under_concurrency(tmp_path):
    # Many processes, all using the same timestamp: the worst case for a clash.
    ts = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with mp.get_context("spawn").Pool(6) as pool:
        names = [n for chunk in pool.map(_make_many, [(str(tmp_path), 40, ts)] * 6) for n in chunk]
    names += [n for chunk in pool_threads(tmp_path, ts) for n in chunk]
    assert len(names) == 240 + 80 and len(set(names)) == len(names)
    assert len(list(tmp_path.iterdir())) == len(names)
    assert all(re.fullmatch(r"2026-01-01T00-00-00\.000Z(-\d+)?", n) for n in names)


def pool_threads(root, ts):
    out = []
    threads = [threading.Thread(target=lambda: out.append(_make_many((root, 20, ts)))) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return out


def test_atomic_write_never_exposes_partial_file(tmp_path):
    path = tmp_path / "metrics.json"
    big = {"loss": [float(i) / 7 for i in range(20000)]}
    write_json(path, {"loss": []})
    stop = threading.Event()
    seen = []

    def reader():
        while not stop.is_set():
            seen.append(json.loads(path.read_text()))  # raises on a partial file

    t = threading.Thread(target=reader)
    t.start()
    for i in range(30):
        write_json(path, {"loss": big["loss"][: 500 * i]})
    stop.set()
    t.join()
    assert seen and all(isinstance(s["loss"], list) for s in seen)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_nonfinite_written_as_strings_and_floats_exact(tmp_path):
    write_json(tmp_path / "x.json", {"a": float("nan"), "b": 2e-5, "c": [1e-5, float("inf")]})
    assert read_json(tmp_path / "x.json") == {"a": "NaN", "b": 2e-5, "c": [1e-5, "Infinity"]}


def test_script_api_is_noop_without_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert gridrun.run_dir() is None and not gridrun.is_run_active()
    gridrun.log_metrics(loss=1.0)
    gridrun.write_properties(x=1)
    assert gridrun.artifacts_dir() is None
    assert list(tmp_path.iterdir()) == []


def test_log_metrics_live_and_padded(tmp_path):
    ctx = RunContext(run_dir=tmp_path)
    with activate(ctx):
        assert gridrun.is_run_active() and gridrun.run_dir() == str(tmp_path)
        gridrun.log_metrics(loss=1.0, val_loss=2.0)
        assert read_json(tmp_path / "metrics.json") == {"loss": [1.0], "val_loss": [2.0]}
        gridrun.log_metrics(loss=0.5)
        gridrun.log_metrics(epoch=4, loss=0.25, lr=0.1)  # a new label: the next epoch (labels kept)
        gridrun.log_metrics(epoch=2, val_loss=1.5)
        gridrun.write_properties(custom="yes")
        gridrun.write_evaluation(loss=0.3)
        gridrun.write_evaluation(acc=0.9)
        meta = gridrun.write_run_metadata("tensorboard", {"logdir": "x"})
        art = gridrun.artifacts_dir()
    m = read_json(tmp_path / "metrics.json")
    assert m == {"loss": [1.0, 0.5, 0.25], "val_loss": [2.0, 1.5], "lr": [None, None, 0.1]}
    assert read_json(tmp_path / "properties.json") == {"epoch_labels": [1, 2, 4], "custom": "yes"}
    assert read_json(tmp_path / "evaluation.json") == {"loss": 0.3, "acc": 0.9}
    assert read_json(meta) == {"logdir": "x"} and (tmp_path / "artifacts").is_dir() and art.endswith("artifacts")


def test_env_var_activates_recording(tmp_path, monkeypatch):
    target = tmp_path / "myrun"
    monkeypatch.setenv(rundir.ENV_RUN_DIR, str(target))
    gridrun.log_metrics(loss=3.0)
    assert read_json(target / "metrics.json") == {"loss": [3.0]}


def test_ask_yes_no_defaults_and_no_terminal(monkeypatch):
    import io

    from gridrun._io import ask_yes_no

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal())
    for answer, default, expected in (("", True, True), ("", False, False), ("n", True, False), ("Yes", False, True)):
        monkeypatch.setattr("builtins.input", lambda prompt, a=answer: a)
        assert ask_yes_no("Proceed?", default) is expected
    monkeypatch.setattr("sys.stdin", io.StringIO())  # a pipe: nobody to ask
    assert ask_yes_no("Proceed?", True) is None
