"""What `fit(verbose=1)` shows: a live progress bar over epochs (loss, metrics, time) on a terminal,
one plain line per epoch elsewhere (logs, pipes, the output.log of a run).

An epoch is one compiled program (a `lax.scan` over its batches), so progress is reported per epoch:
reporting batches from inside the compiled loop would cost a host callback per step.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class EpochProgress:
    def __init__(self, epochs: int, stream: TextIO | None = None, terminal: bool | None = None) -> None:
        self.epochs = int(epochs)
        self.stream = stream or sys.stdout
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.t0 = time.perf_counter()
        self.bar = None
        if self.terminal:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(file=self.stream, force_terminal=True)
            self.bar = Progress(TextColumn("epoch"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                                TextColumn("{task.fields[logs]}"), console=console, transient=False)
            self.task = self.bar.add_task("fit", total=self.epochs, logs="")
            self.bar.start()

    def update(self, epoch: int, record: dict[str, Any]) -> None:
        """Epoch `epoch` (0-based) has finished with these logs."""
        items = " - ".join(f"{k}: {v:.4g}" for k, v in record.items())
        if self.bar is not None:
            self.bar.update(self.task, completed=epoch + 1, logs=items)
        else:
            took = time.perf_counter() - self.t0
            print(f"Epoch {epoch + 1}/{self.epochs} - {took:.2f}s - {items}", file=self.stream, flush=True)
        self.t0 = time.perf_counter()

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
