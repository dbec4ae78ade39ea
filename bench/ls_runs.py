"""How long does listing take over many realistic runs? (issue 13 item 9 targets, on the 2-core machine:
`ls_runs` over 10,000 runs <= 0.3 s cold, `gridrun ls --head 5` <= 0.5 s as a whole process, 100,000
runs listed in <= 3 s)

    python bench/ls_runs.py [--runs 10000] [--template RUN_DIR] [--keep DIR] [--repeat 5]

Builds run dirs as copies of a real run (by default one `mnist_mlp.py` run on digits, made first: about
20 s; see bench/_realistic.py), then measures, each time in fresh processes ("cold": a new interpreter,
its first listing; the files are in the OS cache, as on a machine that has listed or written them):

- `ls_runs` with the runs dir's index current, next to the baseline of the previous `ls_runs` (reading
  every summary.json, pandas from_records), fresh processes alternating, median of --repeat;
- the first listing ever (no index: reads every summary and writes the index);
- `gridrun ls --head 5` as a whole process (interpreter start included), next to `python -c pass`, and
  the same order of the previous code (import pandas + the previous listing + head 5).

Times are wall-clock seconds with the CPU seconds of the process in brackets; on a shared machine the
CPU seconds are the steadier figure. The machine's load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _realistic  # noqa: E402

# The previous ls_runs (before the index), as the baseline: one summary.json per run, from_records. It is
# the same code the tests use as their oracle (tests/_oldframe.py), imported from there.
BASELINE = f"""
import sys
sys.path.insert(0, {str(REPO / "tests")!r})
from _oldframe import old_ls_runs as previous_ls_runs
"""

TIMED = r'''
import json, resource, sys, time
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
import pandas  # both ls_runs return a DataFrame: its import is not the listing
which, root = sys.argv[1], sys.argv[2]
if which == "new":
    import gridrun.runs
    listing = gridrun.runs.ls_runs
else:
    exec(compile(BASELINE, "baseline", "exec"))
    listing = previous_ls_runs
c, t = cpu(), time.perf_counter()
df = listing(root)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": cpu() - c, "rows": len(df), "cols": len(df.columns)}))
'''.replace("BASELINE", repr(BASELINE))

OLD_CLI = BASELINE + r'''
import sys
df = previous_ls_runs(sys.argv[1]).head(5)
print(df[["run_dir", "status"] + [c for c in df.columns if c.startswith(("metric_", "flag_"))]].to_string())
'''


def env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    e.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode cached
    return e


def timed_listing(which: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", TIMED, which, str(root)], env=env(), capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def whole_process(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a whole process (interpreter start included)."""
    before = os.times()
    t = __import__("time").perf_counter()
    subprocess.run(argv, env=env(), stdout=subprocess.DEVNULL, check=True)
    wall = __import__("time").perf_counter() - t
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt(wall: list[float], cpu: list[float]) -> str:
    return f"{med(wall):.3f} s [cpu {med(cpu):.3f} s] (median of {len(wall)}; min {min(wall):.3f})"


def load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--template", help="a real ended run dir to copy (default: make one mnist_mlp.py run)")
    ap.add_argument("--keep", help="build into this folder and keep it (reused when it holds runs)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--full", action="store_true", help="copy source/ and artifacts/ into each run too")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="gridrun-bench-"))
    if not (root.is_dir() and any(root.iterdir())):
        template = Path(args.template) if args.template else _realistic.make_template(
            Path(tempfile.mkdtemp(prefix="gridrun-template-")))
        t = __import__("time").perf_counter()
        _realistic.build(root, args.runs, template, full=args.full)
        size = (template / "summary.json").stat().st_size
        print(f"built {args.runs} copies of {template} (summary.json {size} bytes) in "
              f"{__import__('time').perf_counter() - t:.0f} s under {root}")
    index = root / ".index"
    print(load())

    # the first listing ever: no index yet (it reads every summary.json and writes the index)
    subprocess.run(["rm", "-rf", str(index)], check=True)
    first = timed_listing("new", root)
    print(f"first listing (no index, writes it): {first['wall']:.3f} s [cpu {first['cpu']:.3f} s], "
          f"{first['rows']} rows x {first['cols']} columns")
    timed_listing("new", root)  # rows of summaries too recent to cache (RACY_NS) are cached now

    new_w, new_c, old_w, old_c = [], [], [], []
    for _ in range(args.repeat):  # alternating, each a fresh process
        r = timed_listing("new", root)
        new_w.append(r["wall"])
        new_c.append(r["cpu"])
        r = timed_listing("old", root)
        old_w.append(r["wall"])
        old_c.append(r["cpu"])
    print(f"ls_runs, cold, index current:        {fmt(new_w, new_c)}  [target <= 0.3 s at 10,000 runs]")
    print(f"previous ls_runs (every summary):    {fmt(old_w, old_c)}")
    print(f"ratio previous / ls_runs: {med(old_w) / med(new_w):.1f}x wall, {med(old_c) / med(new_c):.1f}x cpu")

    cli = [sys.executable, "-m", "gridrun.cli", "ls", "--runs-dir", str(root), "--head", "5"]
    old_cli = [sys.executable, "-c", OLD_CLI, str(root)]
    floor = [sys.executable, "-c", "pass"]
    for argv in (cli, old_cli, floor):  # warm-up: bytecode caches
        whole_process(argv)
    res: dict[str, tuple[list[float], list[float]]] = {"cli": ([], []), "old": ([], []), "floor": ([], [])}
    for _ in range(args.repeat):
        for key, argv in (("cli", cli), ("old", old_cli), ("floor", floor)):
            w, c = whole_process(argv)
            res[key][0].append(w)
            res[key][1].append(c)
    print(f"gridrun ls --head 5, whole process:  {fmt(*res['cli'])}  [target <= 0.5 s]")
    print(f"previous code, same table:           {fmt(*res['old'])}")
    print(f"python -c pass (interpreter start):  {fmt(*res['floor'])}")
    print(f"ratio previous / gridrun ls: {med(res['old'][0]) / med(res['cli'][0]):.1f}x wall")
    print(load())


if __name__ == "__main__":
    main()
