"""Regenerate the numbers in the docs by running the commands the docs show.

    python docs/build.py                          # run every marked command, rewrite docs/chapter13.md
    python docs/build.py --only mlp,tuned         # just these runs (the other numbers stay as they are)
    python docs/build.py --dataset digits --check # quick: do the commands still run? (CI); writes nothing
    python docs/build.py README.md                # just the README's quick start

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

    <!-- gridrun:screenshot analysis #analysis img/sweep-analysis.png -->
                                        after session `analysis` ran, the element `#analysis` of the last
                                        report page it printed (`Sweep report: PATH`) is captured in
                                        headless Chromium into img/sweep-analysis.png (relative to the
                                        page; a palette PNG, to stay small)

    <!-- gridrun:session quickstart -->  the next fenced block is a session (the README's quick start):
    ```bash                             its commands run in order, as a user types them, in one fresh
    python train.py                     folder holding the page's `# NAME.py` python blocks (and the
    gridrun tuning-run train.py ...     repository's scripts/), sharing that folder's runs/; its values
    ```                                 (SESSION_VALUES) count what the whole session did

Every `gridrun training-run` / `tuning-run` command runs in its own fresh runs dir (`--runs-dir` added)
from the repository root; `python ...` commands just have to exit with status 0. `--dataset NAME`
passes `--flag dataset=NAME` (`--dataset NAME` to plain python commands) and `--epochs N` caps the
epochs, for quick checks; numbers are only rewritten for full runs without --check. A `python ...`
command runs in a folder of its own (its script given by its path from the repository root), so whatever
it writes to its working directory (e.g. `history.plot()`'s ./history.png) lands there, never in the
repository. A session always runs as written (--dataset and --epochs do not apply to it).
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
DOCS = [ROOT / "docs" / "chapter13.md", ROOT / "README.md"]

RUN_MARK = re.compile(r"<!-- gridrun:run ([^>]*?) -->\n(```[^\n]*\n)(.*?)(\n```)", re.S)
OUTPUT_MARK = re.compile(r"(<!-- gridrun:output ([\w-]+) -->\n```[^\n]*\n)(.*?)(\n```)", re.S)
VALUE_MARK = re.compile(r"(<!--=([\w-]+)\.(\w+)(?::([^>]*?))?-->)(.*?)(<!--/-->)", re.S)
SESSION_MARK = re.compile(r"<!-- gridrun:session ([\w-]+) -->\n```[^\n]*\n(.*?)\n```", re.S)
FILE_BLOCK = re.compile(r"```python\n# ([\w-]+\.py)\n(.*?)```", re.S)
MACHINE_MARK = re.compile(r"(<!-- gridrun:machine -->)(.*?)(<!-- gridrun:end -->)", re.S)
SCREENSHOT_MARK = re.compile(r"<!-- gridrun:screenshot ([\w-]+) (\S+) (\S+\.png) -->")
REPORT_LINE = re.compile(r"report: (\S+\.html)")


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
    page: Path | None = None  # a session's last report page (for screenshots)


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
        args = [_earlier_run(a, runs_dir) for a in args]
        if dataset:
            args = _set_option(args, "--dataset", dataset)
        if epochs:
            args = _set_option(args, "--epochs", str(epochs))
        return [sys.executable, *args[1:]]
    raise BuildError(f"cannot run {cmd!r}: marked commands start with gridrun or python")


def _earlier_run(arg: str, runs_dir: Path) -> str:
    """`@NAME` in a python command: the run dir made by the page's earlier command NAME (its one run),
    so a command can work on what another recorded (scripts/evaluate_run.py loads its model)."""
    if not arg.startswith("@"):
        return arg
    made = runs_dir.parent / arg[1:]
    found = sorted(p for p in made.glob("*") if (p / "properties.json").is_file()) if made.is_dir() else []
    if len(found) != 1:
        raise BuildError(f"{arg}: the command {arg[1:]!r} must run before, and record exactly one run "
                         f"(found {len(found)} in {made})")
    return str(found[0])


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


def child_env() -> dict[str, str]:
    """The environment of every command: this checkout first on the path, no active run, no display (a
    report command writes its page and opens no browser)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    for name in ("GRIDRUN_RUN_DIR", "DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    return env


def working_dir(argv: list[str], runs_dir: Path) -> Path:
    """Where a command runs: gridrun commands from the repository root (they write into --runs-dir), a
    plain `python` command in `runs_dir` itself, its script path made absolute, so that files it writes
    to its working directory stay out of the repository."""
    if argv[1:3] == ["-m", "gridrun.cli"]:
        return ROOT
    runs_dir.mkdir(parents=True, exist_ok=True)
    if len(argv) > 1 and not argv[1].startswith("-") and (ROOT / argv[1]).exists():
        argv[1] = str(ROOT / argv[1])
    return runs_dir


def run(command: Command, work: Path, dataset: str | None, epochs: int | None, quiet: bool) -> Result:
    runs_dir = work / command.name
    argv = argv_for(command.text, runs_dir, dataset, epochs)
    cwd = working_dir(argv, runs_dir)
    say(f"[{command.name}] {command.text}")
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=child_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BuildError(f"[{command.name}] `{command.text}` failed with status {proc.returncode}:\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")  # fmt: skip
    if not quiet:
        say(f"[{command.name}] ok in {seconds:.1f} s")
    result = Result(command.name, seconds, proc.stdout.strip("\n"))
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
# Sessions: a page's commands run in order in one folder, as a user types them


@dataclass
class Session:
    name: str
    commands: list[str]  # as the page shows them (comments dropped, continuation lines joined)
    files: dict[str, str]  # file name -> text, from the page's "# NAME.py" python blocks


SESSION_VALUES = ("seconds (all commands), models (trained: recorded runs and plain `python` runs), runs "
                  "(recorded), sweeps (tuning runs that trained), trials_<k> (the k-th sweep's trials, from 1)")
SESSION_COUNTS = ("models", "runs", "sweeps")  # exact numbers: --check fails when the page quotes others


def sessions(text: str) -> list[Session]:
    files = {m.group(1): m.group(2) for m in FILE_BLOCK.finditer(text)}
    out = []
    for m in SESSION_MARK.finditer(text):
        lines = re.sub(r"\\\n\s*", "", m.group(2)).splitlines()
        cmds = [shlex.join(shlex.split(line, comments=True)) for line in lines]
        out.append(Session(m.group(1), [c for c in cmds if c], files))
    return out


def session_argv(cmd: str) -> list[str]:
    args = shlex.split(cmd)
    if args[0] == "gridrun":
        return [sys.executable, "-m", "gridrun.cli", *args[1:]]
    if args[0] in ("python", "python3"):
        return [sys.executable, *args[1:]]
    raise BuildError(f"cannot run {cmd!r}: session commands start with gridrun or python")


def run_session(session: Session, work: Path) -> Result:
    folder = work / session.name
    folder.mkdir(parents=True)
    for name, code in session.files.items():
        (folder / name).write_text(code, encoding="utf-8")
    (folder / "scripts").symlink_to(ROOT / "scripts", target_is_directory=True)
    say(f"[{session.name}] {len(session.commands)} commands in {folder}")
    plain = 0
    page = None
    t0 = time.perf_counter()
    for cmd in session.commands:
        argv = session_argv(cmd)
        plain += argv[0] == sys.executable and argv[1].endswith(".py")
        proc = subprocess.run(argv, cwd=folder, env=child_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"[{session.name}] `{cmd}` failed with status {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")  # fmt: skip
        for m in REPORT_LINE.finditer(proc.stdout):
            page = folder / m.group(1)
    seconds = time.perf_counter() - t0
    values = session_values(folder / "runs", plain, seconds)
    shown = ", ".join(f"{k}={format_value(v, k, None)}" for k, v in values.items())
    say(f"[{session.name}] ok in {seconds:.1f} s: {shown}")
    return Result(session.name, seconds, "", values, page=page)


def session_values(runs_dir: Path, plain: int, seconds: float) -> dict[str, Any]:
    """What a session did, counted from its runs dir (see SESSION_VALUES)."""
    runs = [json.loads((p / "properties.json").read_text()) for p in sorted(runs_dir.iterdir())
            if (p / "properties.json").is_file()] if runs_dir.is_dir() else []  # fmt: skip
    trials: dict[str, int] = {}  # sweep id -> its trials, in the order the sweeps started
    for props in runs:
        if props.get("sweep"):
            trials[props["sweep"]] = trials.get(props["sweep"], 0) + 1
    values: dict[str, Any] = {"seconds": seconds, "models": len(runs) + plain, "runs": len(runs),
                              "sweeps": len(trials)}  # fmt: skip
    values.update({f"trials_{k}": n for k, n in enumerate(trials.values(), 1)})
    return values


def screenshot(page: Path, selector: str, out: Path, width: int = 1100) -> int:
    """Capture element `selector` of `page` in headless Chromium (every plotly chart drawn first) into
    `out`, a palette PNG; returns its size in bytes."""
    from io import BytesIO

    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},3000", "--hide-scrollbars", "--enable-unsafe-swiftshader",
                "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.set_page_load_timeout(300)
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 300, poll_frequency=0.1).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from(document.querySelectorAll('.chart'))"
            ".every(function (c) { return c.classList.contains('js-plotly-plot'); })"))
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        if not found:
            raise BuildError(f"{page}: no element {selector!r} to capture")
        driver.execute_script("arguments[0].scrollIntoView(); window.dispatchEvent(new Event('resize'));", found[0])
        time.sleep(1.0)  # charts laid out again at the window's size
        png = found[0].screenshot_as_png
    finally:
        driver.quit()
    image = Image.open(BytesIO(png)).convert("RGB").quantize(colors=128)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    return out.stat().st_size


def take_screenshots(doc: Path, text: str, results: dict[str, Result], work: Path, check: bool) -> None:
    """The page's screenshot markers whose session ran: written beside the page (into `work` with --check)."""
    for m in SCREENSHOT_MARK.finditer(text):
        r = results.get(m.group(1))
        if r is None:
            continue
        if r.page is None or not r.page.is_file():
            raise BuildError(f"[{r.name}] the screenshot needs a report page, and the session printed none "
                             f"(end it with `gridrun sweep-report --no-open`)")
        out = work / Path(m.group(3)).name if check else doc.parent / m.group(3)
        size = screenshot(r.page, m.group(2), out)
        say(f"[{r.name}] {m.group(2)} of {r.page.name} -> {out} ({size / 1024:.0f} KiB)")


def stale_counts(text: str, results: dict[str, Result], names: set[str]) -> list[str]:
    """The session counts the page quotes that differ from what its sessions did."""
    stale = []
    for m in VALUE_MARK.finditer(text):
        r = results.get(m.group(2))
        key = m.group(3)
        if m.group(2) in names and r is not None and (key in SESSION_COUNTS or key.startswith("trials_")):
            if key in r.values and format_value(r.values[key], key, m.group(4)) != m.group(5):
                stale.append(f"{m.group(2)}.{key} is {m.group(5)} on the page, {r.values[key]} measured")
    return stale


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
            f"{'data set ' + ', '.join(datasets) + ', ' if datasets else ''}load average {load} when it finished (the machine is "
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
    parser.add_argument("docs", nargs="*", type=Path, default=DOCS, help="markdown files (default: docs/chapter13.md and README.md)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    try:
        with tempfile.TemporaryDirectory(prefix="gridrun-docs-") as tmp:
            work = Path(args.work) if args.work else Path(tmp)
            for doc in (d.resolve() for d in args.docs):
                text = doc.read_text(encoding="utf-8")
                cmds = [c for c in commands(text) if only is None or c.name in only]
                if not args.check:
                    cmds = [c for c in cmds if not c.check_only]
                chosen = [s for s in sessions(text) if only is None or s.name in only]
                refs = referenced(text)
                known = {c.name for c in commands(text)} | {s.name for s in sessions(text)}
                if unknown := sorted(set(refs) - known):
                    raise BuildError(f"{doc.name}: numbers refer to runs no marker runs: {', '.join(unknown)}")
                later = [c for c in cmds if any(a.startswith("@") for a in shlex.split(c.text))]  # use others' runs
                with ThreadPoolExecutor(max(1, args.jobs)) as pool:
                    done = list(pool.map(lambda c: run(c, work, args.dataset, args.epochs, quiet=False),
                                         [c for c in cmds if c not in later]))
                done += [run(c, work, args.dataset, args.epochs, quiet=False) for c in later]
                done += [run_session(s, work) for s in chosen]  # alone: their durations are quoted
                results = {r.name: r for r in done}
                for c in [*cmds, *chosen]:
                    missing = sorted(refs.get(c.name, set()) - set(results[c.name].values) - {"output"})
                    if missing:
                        what = SESSION_VALUES if isinstance(c, Session) else VALUES
                        raise BuildError(f"[{c.name}] the doc quotes {', '.join(missing)}, which the run does "
                                         f"not give; values: {what}")  # fmt: skip
                if not args.epochs:
                    take_screenshots(doc, text, results, work, args.check)
                new = rewrite(text, results, None if args.check else machine_line(results))
                if args.check and (stale := stale_counts(text, results, {s.name for s in chosen})):
                    raise BuildError(f"{doc.relative_to(ROOT)}: " + "; ".join(stale)
                                     + f" (run python docs/build.py {doc.relative_to(ROOT)})")
                if args.check:
                    ran = f"{len(cmds)} commands" + (f" and {len(chosen)} sessions" if chosen else "")
                    print(f"{doc.relative_to(ROOT)}: {ran} ran; nothing written (--check)")
                elif args.epochs:
                    print(f"{doc.relative_to(ROOT)}: not written (--epochs makes numbers of another setup)")
                else:
                    doc.write_text(new, encoding="utf-8")
                    print(f"{doc.relative_to(ROOT)}: rewritten from {len(cmds)} runs and {len(chosen)} sessions")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
