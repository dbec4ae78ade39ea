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


def test_starting_ray_after_jax_prints_no_fork_warnings(tmp_path):
    """Issue 22 item 10: the test run printed four `os.fork() was called ... JAX is multithreaded`
    warnings: ray.init starting its servers (fork + exec) in a session that had imported JAX."""
    import os
    import subprocess
    import sys

    code = ("import jax, jax.numpy as jnp\njnp.ones(3).sum().block_until_ready()\n"
            "from gridrun.executors.ray import RayExecutor\nex = RayExecutor(jobs=1)\n"
            "def f(x):\n    return abs(x)\n"
            "print(ex._ray.get(ex.submit(f, -3)))\nex._ray.shutdown()\n")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr
    assert "os.fork()" not in out.stderr, out.stderr
