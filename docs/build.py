"""Regenerate the numbers in the docs by running the commands the docs show.

    python docs/build.py                          # run every marked command, rewrite docs/chapter13.md
    python docs/build.py --only mlp,tuned         # just these runs (the other numbers stay as they are)
    python docs/build.py --dataset digits --check # quick: do the commands still run? (CI); writes nothing

Markers are HTML comments, invisible when the page is rendered:

    <!-- gridrun:run mlp -->            the next fenced block holds the command(s) to run, one name per
    ```bash                             command in order (`<!-- gridrun:run plain dropout -->`); a
    gridrun training-run scripts/x.py   name ending in `?` is only checked (--check), never run to
    ```                                 make numbers (its numbers are not generated)

    <!-- gridrun:output mlp -->         the next fenced block becomes what the run's script printed
    ```
    ...
    ```

    <!--=mlp.min_val_loss-->0.3076<!--/-->      an inline number from the run `mlp` (see VALUES);
    <!--=mlp.final_loss:.3f-->0.166<!--/-->     with a format spec after the name

    <!-- gridrun:machine -->...<!-- gridrun:end -->   where and when the numbers were made

Every `gridrun training-run` / `tuning-run` command runs in its own fresh runs dir (`--runs-dir` added)
from the repository root; `python ...` commands just have to exit with status 0. `--dataset NAME`
passes `--flag dataset=NAME` (`--dataset NAME` to plain python commands) and `--epochs N` caps the
epochs, for quick checks; numbers are only rewritten for full runs without --check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "chapter13.md"]

RUN_MARK = re.compile(r"<!-- gridrun:run ([^>]*?) -->\n(```[^\n]*\n)(.*?)(\n```)", re.S)
OUTPUT_MARK = re.compile(r"(<!-- gridrun:output ([\w-]+) -->\n```[^\n]*\n)(.*?)(\n```)", re.S)
VALUE_MARK = re.compile(r"(<!--=([\w-]+)\.(\w+)(?::([^>]*?))?-->)(.*?)(<!--/-->)", re.S)
MACHINE_MARK = re.compile(r"(<!-- gridrun:machine -->)(.*?)(<!-- gridrun:end -->)", re.S)


class BuildError(Exception):
    pass


@dataclass
class Command:
    name: str
    text: str  # as the doc shows it (continuation lines joined)
    check_only: bool = False


@dataclass
class Result:
    name: str
    seconds: float
    output: str  # what the script printed (output.log of its run dir)
    values: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Reading the markers


def commands(text: str) -> list[Command]:
    out = []
    for m in RUN_MARK.finditer(text):
        names = m.group(1).split()
        lines = re.sub(r"\\\n\s*", "", m.group(3)).splitlines()
        cmds = [line.split("#", 1)[0].strip() for line in lines]
        cmds = [c for c in cmds if c]
        if len(names) != len(cmds):
            raise BuildError(f"marker 'gridrun:run {m.group(1)}' names {len(names)} runs for {len(cmds)} commands")
        for name, cmd in zip(names, cmds):
            out.append(Command(name.rstrip("?"), cmd, check_only=name.endswith("?")))
    return out


def referenced(text: str) -> dict[str, set[str]]:
    """run name -> the value keys the text uses (outputs count as key 'output')."""
    refs: dict[str, set[str]] = {}
    for m in VALUE_MARK.finditer(text):
        refs.setdefault(m.group(2), set()).add(m.group(3))
    for m in OUTPUT_MARK.finditer(text):
        refs.setdefault(m.group(2), set()).add("output")
    return refs


# --------------------------------------------------------------------------------------------------
# Running a command


def argv_for(cmd: str, runs_dir: Path, dataset: str | None, epochs: int | None) -> list[str]:
    args = shlex.split(cmd)
    if args[0] == "gridrun":
        if len(args) < 3 or args[1] not in ("training-run", "tuning-run"):
            raise BuildError(f"cannot run {cmd!r}: marked gridrun commands are training-run or tuning-run")
        replaced = {name for name, v in (("dataset", dataset), ("epochs", epochs)) if v}
        kept: list[str] = []
        i = 0
        while i < len(args):  # drop the --flag NAME=... that --dataset / --epochs replace
            if args[i] == "--flag" and i + 1 < len(args) and args[i + 1].split("=", 1)[0] in replaced:
                i += 2
                continue
            kept.append(args[i])
            i += 1
        args = kept
        extra = ["--runs-dir", str(runs_dir)]
        if dataset:
            extra += ["--flag", f"dataset={dataset}"]
        if epochs:
            extra += ["--flag", f"epochs={epochs}"]
        return [sys.executable, "-m", "gridrun.cli", *args[1:], *extra]
    if args[0] in ("python", "python3"):
        if dataset:
            args = _set_option(args, "--dataset", dataset)
        if epochs:
            args = _set_option(args, "--epochs", str(epochs))
        return [sys.executable, *args[1:]]
    raise BuildError(f"cannot run {cmd!r}: marked commands start with gridrun or python")


def _set_option(args: list[str], option: str, value: str) -> list[str]:
    if option in args:
        i = args.index(option)
        return [*args[: i + 1], value, *args[i + 2 :]]
    return [*args, option, value]


_SAY = threading.Lock()


def say(line: str) -> None:
    """One whole line on stdout, also when commands run in parallel (--jobs)."""
    with _SAY:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def run(command: Command, work: Path, dataset: str | None, epochs: int | None, quiet: bool) -> Result:
    runs_dir = work / command.name
    argv = argv_for(command.text, runs_dir, dataset, epochs)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.pop("GRIDRUN_RUN_DIR", None)
    say(f"[{command.name}] {command.text}")
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BuildError(f"[{command.name}] `{command.text}` failed with status {proc.returncode}:\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")  # fmt: skip
    if not quiet:
        say(f"[{command.name}] ok in {seconds:.1f} s")
    result = Result(command.name, seconds, proc.stdout)
    run_dirs = sorted(p for p in runs_dir.glob("*") if (p / "properties.json").is_file()) if runs_dir.is_dir() else []
    if len(run_dirs) == 1:
        result.output = (run_dirs[0] / "output.log").read_text(encoding="utf-8")
        result.output = result.output.replace(str(runs_dir) + os.sep, "runs/").strip("\n")
        result.values = run_values(run_dirs[0], seconds)
    return result


def run_values(run_dir: Path, seconds: float) -> dict[str, Any]:
    """The numbers a doc can quote about one run (see VALUES)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    props = json.loads((run_dir / "properties.json").read_text())
    evaluation = json.loads((run_dir / "evaluation.json").read_text()) if (run_dir / "evaluation.json").exists() else {}
    values: dict[str, Any] = {"seconds": seconds, "epochs": props.get("epochs_completed"),
                              "max_epochs": props.get("epochs"), "dataset": props.get("dataset")}  # fmt: skip
    for name, series in metrics.items():
        series = [v for v in series if isinstance(v, (int, float))]
        if series:
            values[f"final_{name}"] = series[-1]
    val = metrics.get("val_loss") or []
    finite = [(v, i) for i, v in enumerate(val) if isinstance(v, (int, float))]
    if finite:
        best, i = min(finite)
        values["min_val_loss"], values["best_epoch"] = best, i + 1
    accs = [v for v in metrics.get("val_acc") or [] if isinstance(v, (int, float))]
    if accs:
        values["max_val_acc"] = max(accs)
    for name, value in evaluation.items():
        values[f"test_{name}"] = value
    return values


VALUES = ("seconds, epochs, max_epochs, dataset, final_<metric> (final_loss, final_val_acc, final_lr...), "
          "min_val_loss, best_epoch (of min_val_loss), max_val_acc, test_<name> (test_loss, test_acc)")


def format_value(value: Any, key: str, spec: str | None) -> str:
    if spec:
        return format(value, spec)
    if key == "seconds":
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


# --------------------------------------------------------------------------------------------------
# Rewriting


def rewrite(text: str, results: dict[str, Result], machine: str | None) -> str:
    def output(m: re.Match) -> str:
        r = results.get(m.group(2))
        return m.group(0) if r is None else m.group(1) + r.output + m.group(4)

    def value(m: re.Match) -> str:
        r = results.get(m.group(2))
        if r is None:
            return m.group(0)
        key = m.group(3)
        if key not in r.values:
            raise BuildError(f"run '{r.name}' has no value '{key}' (it has: {', '.join(sorted(r.values))})")
        return m.group(1) + format_value(r.values[key], key, m.group(4)) + m.group(6)

    text = OUTPUT_MARK.sub(output, text)
    text = VALUE_MARK.sub(value, text)
    if machine is not None:
        text = MACHINE_MARK.sub(lambda m: m.group(1) + machine + m.group(3), text)
    return text


def machine_line(results: dict[str, Result]) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))  # fmt: skip
        ram = f", {mem / 2**20:.0f} GB RAM"
    except (OSError, StopIteration, ValueError):
        ram = ""
    import jax

    devices = ", ".join(sorted({d.platform.upper() for d in jax.devices()}))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"
    datasets = sorted({str(r.values.get("dataset")) for r in results.values() if r.values.get("dataset")})
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"Numbers marked as generated were made by `python docs/build.py` on {day}: {cpu}, "
            f"{os.cpu_count()} cores{ram}, JAX {jax.__version__} on {devices}, gridrun at commit {commit}, "
            f"data set {', '.join(datasets) or '?'}, load average {load} when it finished (the machine is "
            "shared: durations are pessimistic).")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", help="pass --flag dataset=NAME to every command (e.g. digits, quick)")
    parser.add_argument("--epochs", type=int, help="cap the epochs of every command (quick checks)")
    parser.add_argument("--check", action="store_true", help="run the commands, check them, write nothing")
    parser.add_argument("--only", help="comma-separated run names to run (others keep their numbers)")
    parser.add_argument("--work", help="folder for the runs dirs (default: a temporary folder)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="commands at a time (default 1: durations are then comparable)")
    parser.add_argument("docs", nargs="*", type=Path, default=DOCS, help="markdown files (default: chapter13)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    try:
        with tempfile.TemporaryDirectory(prefix="gridrun-docs-") as tmp:
            work = Path(args.work) if args.work else Path(tmp)
            for doc in args.docs:
                text = doc.read_text(encoding="utf-8")
                cmds = [c for c in commands(text) if only is None or c.name in only]
                if not args.check:
                    cmds = [c for c in cmds if not c.check_only]
                refs = referenced(text)
                known = {c.name for c in commands(text)}
                if unknown := sorted(set(refs) - known):
                    raise BuildError(f"{doc.name}: numbers refer to runs no marker runs: {', '.join(unknown)}")
                with ThreadPoolExecutor(max(1, args.jobs)) as pool:
                    done = list(pool.map(lambda c: run(c, work, args.dataset, args.epochs, quiet=False), cmds))
                results = {r.name: r for r in done}
                for c in cmds:
                    missing = sorted(refs.get(c.name, set()) - set(results[c.name].values) - {"output"})
                    if missing:
                        raise BuildError(f"[{c.name}] the doc quotes {', '.join(missing)}, which the run does "
                                         f"not give; values: {VALUES}")  # fmt: skip
                new = rewrite(text, results, None if args.check else machine_line(results))
                if args.check:
                    print(f"{doc.relative_to(ROOT)}: {len(cmds)} commands ran; nothing written (--check)")
                elif args.epochs:
                    print(f"{doc.relative_to(ROOT)}: not written (--epochs makes numbers of another setup)")
                else:
                    doc.write_text(new, encoding="utf-8")
                    print(f"{doc.relative_to(ROOT)}: rewritten from {len(cmds)} runs")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
