"""Issue 12 in a real terminal (tmux, at 80 and 120 columns): what a user sees and copies.

Item 3: `training-run train.py --nodes1 64` says how to write the flag. Item 5: `python train.py` with
`gridrun.fit`'s default verbose shows the epoch progress bar (and a run's output.log plain lines).
Item 2: the `View:` hint printed after a run with a non-default --runs-dir works when copied.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import gridrun

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: no terminal to test in")

ROOT = Path(__file__).resolve().parents[1]

FIT = """
import numpy as np, gridrun
FLAGS = gridrun.flags(epochs=3)
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 4)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = gridrun.Sequential([gridrun.Dense(8, activation="relu"), gridrun.Dense(2, activation="softmax")])
gridrun.fit(model, x, y, loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"],
            epochs=FLAGS.epochs, batch_size=32)
print("FIT DONE")
"""

TRAIN = """
import gridrun
FLAGS = gridrun.flags(nodes1=2**5)
gridrun.log_metrics(loss=1.0 / FLAGS.nodes1)
"""


class Terminal:
    """A tmux session running bash at a given width, in `cwd`, with this checkout's gridrun on PATH."""

    def __init__(self, cwd: Path, width: int):
        self.name = f"gridrun-test-{uuid.uuid4().hex[:8]}"
        bindir = cwd / ".bin"
        bindir.mkdir(exist_ok=True)
        (bindir / "gridrun").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m gridrun.cli "$@"\n')
        (bindir / "gridrun").chmod(0o755)
        env = {"PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "TERM": "xterm-256color",
               "PS1": "$ ", "GRIDRUN_JAX_CACHE": str(ROOT / ".jax_cache"), "HOME": os.environ.get("HOME", "/tmp")}
        args = ["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", "30", "-c", str(cwd)]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        subprocess.run(args + ["bash --norc --noprofile"], check=True)
        subprocess.run(["tmux", "set-option", "-t", self.name, "history-limit", "5000"], check=True)
        self.width = width

    def run(self, command: str, timeout: float = 180) -> str:
        """Type `command` and Enter; wait for it to end; return the screen's text (wrapped lines joined)."""
        marker = f"__END_{uuid.uuid4().hex[:6]}__"
        subprocess.run(["tmux", "send-keys", "-t", self.name, "clear; tmux clear-history", "Enter"], check=True)
        time.sleep(0.3)
        subprocess.run(["tmux", "send-keys", "-t", self.name, f"{command}; echo {marker}$?", "Enter"], check=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if re.search(rf"^{marker}\d+", text, re.M):
                return text
            time.sleep(0.5)
        raise AssertionError(f"`{command}` did not end in {timeout} s; screen:\n{self.screen()}")

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", self.name],
                              capture_output=True, text=True, check=True).stdout

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture(params=[80, 120], ids=lambda w: f"{w}cols")
def term(request, tmp_path):
    (tmp_path / "fit.py").write_text(FIT)
    (tmp_path / "train.py").write_text(TRAIN)
    t = Terminal(tmp_path, request.param)
    yield t
    t.close()


def test_unknown_option_message_in_a_terminal(term):
    text = term.run("gridrun training-run train.py --nodes1 64")
    assert "flags go as --flag nodes1=64" in text and "Traceback" not in text
    assert re.search(r"__END_\w+__2", text)


def test_fit_shows_a_progress_bar_on_a_terminal_and_plain_lines_in_output_log(term, tmp_path):
    text = term.run(f"{shlex.quote(sys.executable)} fit.py")
    assert "FIT DONE" in text
    bar = next((ln for ln in text.splitlines() if re.search(r"epoch\s+3/3", ln)), None)
    assert bar is not None and "━" in bar and "loss:" in bar, text  # rich's bar, with the latest logs
    assert len(bar) <= term.width
    assert "Epoch 1/3 -" not in text  # no plain lines on a terminal
    text = term.run("gridrun training-run fit.py --flag epochs=2")
    log = (gridrun.latest_run(tmp_path / "runs") / "output.log").read_text()
    assert re.search(r"^Epoch 1/2 - [\d.]+s - loss: ", log, re.M) and re.search(r"^Epoch 2/2 - ", log, re.M)
    assert "\x1b[" not in log and "━" not in log  # the run's log: plain lines, no terminal codes


def test_view_hint_with_a_runs_dir_works_when_copied(term):
    text = term.run("gridrun training-run train.py --runs-dir 'my runs'")
    line = next(ln for ln in text.splitlines() if ln.startswith("View:"))
    hint = line.removeprefix("View:").strip()
    assert hint.startswith("gridrun view ") and hint.endswith("--runs-dir 'my runs'")
    text = term.run(hint + " --no-open")  # pasted as printed
    assert re.search(r"^Report: .*my runs/.*report\.html", text, re.M) and re.search(r"__END_\w+__0", text)


# -- issue 22 in a real terminal: errors read as the user's, hints in the syntax where they are shown --


def test_a_gridrun_error_in_a_script_is_one_line_in_a_terminal(term, tmp_path):
    (tmp_path / "bad.py").write_text("import gridrun\n\ngridrun.log_metrics(epoch='one', loss=1.0)\n")
    text = term.run("gridrun training-run bad.py")
    errors = [ln for ln in text.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("bad.py:3: error: log_metrics(epoch='one')"), text
    assert "Traceback" not in text and "runner.py" not in text and "runpy" not in text
    text = term.run("gridrun training-run --quiet bad.py")
    assert re.search(r"^gridrun: run \S+ failed: GridrunError: log_metrics\(epoch='one'\)", text, re.M), text
    assert re.search(r"__END_\w+__1", text)


def test_plain_python_flag_hint_uses_plain_python_syntax(term):
    text = term.run(f"{shlex.quote(sys.executable)} train.py --nodes1 many")
    assert "e.g. --nodes1 64" in text and "--flag" not in text, text


def test_ls_script_in_a_terminal(term, tmp_path):
    (tmp_path / "other.py").write_text(TRAIN)
    term.run("gridrun training-run train.py && gridrun training-run other.py")
    text = term.run("gridrun ls")
    head = next(ln for ln in text.splitlines() if ln.startswith("run "))
    assert head.split()[:3] == ["run", "status", "script"], text  # two scripts: the view says which
    assert all(len(ln) <= term.width for ln in text.splitlines())
    text = term.run("gridrun ls --script other")
    head = next(ln for ln in text.splitlines() if ln.startswith("run "))
    assert "script" not in head.split() and text.count("completed") == 1, text
    text = term.run("gridrun ls --order loss")
    assert "did you mean metric_loss?" in text and re.search(r"__END_\w+__2", text)
