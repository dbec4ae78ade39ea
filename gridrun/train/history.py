"""`History`: what `fit` returns. Per-epoch metrics, the chapter's print format, and `plot()`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .. import rundir

_PLOT_LOCK = threading.Lock()


class History:
    """`history.history` is {"loss": [...], "acc": [...], "val_loss": [...], "val_acc": [...], "lr": [...]}.

    It also holds the trained state, so `gridrun.evaluate(history, x, y)` and `gridrun.predict(history, x)`
    work on it (`history.state` is the train-state pytree, `history.params` the fit settings).
    """

    def __init__(self, params: dict[str, Any], engine: Any = None, state: Any = None, hparams: Any = None) -> None:
        self.history: dict[str, list[float]] = {}
        self.params = params  # samples, validation_samples, batch_size, epochs, ...
        self.engine = engine
        self.state = state
        self.hparams = hparams
        # Population mode with width merging: the group's padded (engine, state, hparams), whose compiled
        # evaluate/predict are shared by the whole group; `state` stays the trial's own, unpadded one.
        self.padded: tuple[Any, Any, Any] | None = None

    def evaluator(self) -> tuple[Any, Any, Any]:
        """(engine, state, hparams) to evaluate and predict with."""
        return self.padded or (self.engine, self.state, self.hparams)

    @property
    def epoch(self) -> list[int]:
        return list(range(self.epochs_completed))

    @property
    def epochs_completed(self) -> int:
        return max((len(v) for v in self.history.values()), default=0)

    def append(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def _ordered_keys(self) -> list[str]:
        keys = list(self.history)
        val = [k for k in keys if k.startswith("val_")]
        train = [k for k in keys if not k.startswith("val_") and k != "lr"]
        return val + train + (["lr"] if "lr" in keys else [])

    def __str__(self) -> str:
        p = self.params
        head = f"Trained on {p.get('samples', 0):,} samples"
        if p.get("validation_samples"):
            head += f", validated on {p['validation_samples']:,} samples"
        head += f" (batch_size={p.get('batch_size')}, epochs={self.epochs_completed})"
        lines = [head, "Final epoch (plot to see history):"]
        width = max((len(k) for k in self.history), default=0)
        for k in self._ordered_keys():
            lines.append(f"{k:>{width}}: {self.history[k][-1]:.4g}")
        return "\n".join(lines)

    __repr__ = __str__

    def plot(self, path: str | Path | None = None, metrics: list[str] | None = None) -> str:
        """Plot loss and metrics per epoch (training vs validation) to a PNG; returns its path.

        Default path: artifacts/history.png of the active run, else ./history.png.
        """
        if path is None:
            folder = rundir.artifacts_dir()
            path = Path(folder) / "history.png" if folder else Path("history.png")
        path = Path(path)
        names = metrics or [k for k in self.history if not k.startswith("val_") and k != "lr"]
        if "lr" in self.history and len(set(self.history["lr"])) > 1 and metrics is None:
            names.append("lr")
        with _PLOT_LOCK:
            self._draw(path, names)
        return str(path)

    def _draw(self, path: Path, names: list[str]) -> None:
        # A bare Figure with the Agg canvas, not pyplot (no display needed); under _PLOT_LOCK because
        # matplotlib's text layout (mathtext parser, font caches) is shared and not thread-safe, and
        # population trials are threads that plot at the same time.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 2.6 * len(names)))
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)
        epochs = range(1, self.epochs_completed + 1)
        for ax, name in zip(axes[:, 0], names):
            ax.plot(epochs, self.history[name], "o-", ms=3, label="training" if name != "lr" else "lr")
            if f"val_{name}" in self.history:
                ax.plot(epochs, self.history[f"val_{name}"], "o-", ms=3, label="validation")
            if name == "lr":
                ax.set_yscale("log")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8)
        axes[-1, 0].set_xlabel("epoch")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
