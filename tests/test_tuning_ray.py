"""The Ray backend. Ray is an optional extra (gridrun[ray]); these tests are skipped where it is missing."""

import json

import pytest

import gridrun
from gridrun.sweep import list_sweeps

ray = pytest.importorskip("ray")


def test_ray_sweep(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import gridrun\nFLAGS = gridrun.flags(lr=0.1)\ngridrun.log_metrics(loss=FLAGS.lr)\n")
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"lr": [0.1, 0.2, 0.3]}, runs_dir=runs, backend="ray", jobs=2, quiet=True)
    assert len(df) == 3 and set(df["status"]) == {"completed"}
    m = json.loads(list_sweeps(runs)[0].read_text())
    for t in m["trials"]:
        props = json.loads((runs / t["run_dir"] / "properties.json").read_text())
        assert props["context"] == "ray" and props["trial"] == t["trial"]
