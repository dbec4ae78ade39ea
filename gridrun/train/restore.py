"""Restore mode: `gridrun.load_model` rebuilds a run's model by rerunning its script.

The script is the model's definition. `load_model` reruns the run's source snapshot with its recorded
flags in *restore mode*: the first `gridrun.fit` / `gridrun.fit_loop` call builds the model and its
program as in training, then, instead of training, reads the checkpoint (gridrun/checkpoint.py) into
that model's state and ends the script run with the control-flow exception `Restored`, which
`load_model` catches and turns into a `TrainedModel`.
"""

from __future__ import annotations

import contextvars
import io
import os
import runpy
import tempfile
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import read_json
from ..checkpoint import CheckpointError, ModelRebuildError, read_checkpoint, resolve_run_dir, restore_into


class TrainedModel:
    """What `gridrun.load_model` returns: the run's model with its trained state.

    `gridrun.predict(model, x)` and `gridrun.evaluate(model, x, y)` take it (as they take a History).
    `model.module` is the model object the script built (a Sequential, a linen module, an nnx module
    holding the trained weights), `model.state` the trained state (fit: the train-state pytree; fit_loop:
    your own state, nnx objects merged), `model.history` the History rebuilt around it (its per-epoch
    metrics read from the run), `model.epoch` the epoch the checkpoint holds."""

    def __init__(self, module: Any, history: Any, run_dir: Path, which: str, epoch: int | None) -> None:
        self.module, self.history, self.run_dir, self.which, self.epoch = module, history, run_dir, which, epoch

    @property
    def state(self) -> Any:
        return self.history.state

    def predict(self, x: Any) -> Any:
        from .fit import predict

        return predict(self, x)

    def evaluate(self, x: Any, y: Any, *, record: bool = True) -> dict[str, float]:
        from .fit import evaluate

        return evaluate(self, x, y, record=record)

    def __repr__(self) -> str:
        name = getattr(self.module, "name", None) or type(self.module).__name__
        return f"<gridrun model {name} of run {self.run_dir.name}, {self.which} checkpoint (epoch {self.epoch})>"


class Restored(BaseException):  # noqa: N818 - control flow, like StopIteration
    """Raised by fit / fit_loop in restore mode once the model is rebuilt: ends the script run."""

    def __init__(self, model: TrainedModel) -> None:
        super().__init__("model restored")
        self.model = model


@dataclass
class _Restore:
    run_dir: Path
    which: str
    header: dict[str, Any]
    raw: dict[str, Any]


_RESTORE: contextvars.ContextVar[_Restore | None] = contextvars.ContextVar("gridrun_restore", default=None)


def restoring() -> bool:
    """Whether this thread runs a script for `load_model` (fit / fit_loop then restore, not train)."""
    return _RESTORE.get() is not None


def restore(history: Any, template: Any, finish: Callable[[Any], Any]) -> None:
    """In restore mode, called by fit / fit_loop: put the checkpoint into `template` (the tree they
    save, built fresh), let `finish(tree)` set `history.state` (and the user's module) and return the
    model object, then end the script run with `Restored`."""
    r = _RESTORE.get()
    assert r is not None
    tree = restore_into(template, r.raw, r.header, f"the {r.which} checkpoint of run {r.run_dir}")
    module = finish(tree)
    from ..record import read_metrics

    metrics = read_metrics(r.run_dir)
    epoch = r.header.get("epoch")
    if isinstance(epoch, int):  # the run's per-epoch metrics up to the checkpoint's epoch
        history.history = {k: [v for v in vals[:epoch] if v is not None] for k, vals in metrics.items()}
    raise Restored(TrainedModel(module, history, r.run_dir, r.which, epoch))


def _forget_modules(folder: Path) -> None:
    """Unload the modules a script imported from its snapshot folder, so that loading another run whose
    helper module has the same name imports that run's own (the loaded model keeps what it uses)."""
    import sys

    prefix = str(folder) + os.sep
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(prefix):
            del sys.modules[name]


def load_model(run: Any = None, which: str = "best", *, runs_dir: str | os.PathLike = "runs") -> TrainedModel:
    """The trained model of a run (a run dir, a run name or an ls_runs() row), from its `which`
    ("best" or "last") checkpoint, in any process. See the module docstring and docs/user-guide.md
    ("Loading a run's model"): the run's script snapshot is rerun with its flags up to its first
    gridrun.fit / fit_loop call, which restores instead of training."""
    from .. import rundir
    from .._scriptenv import script_environment
    from ..rundir import RunContext

    run_dir = resolve_run_dir(run, runs_dir)
    header, raw = read_checkpoint(run_dir, which)
    props = read_json(run_dir / rundir.PROPERTIES_FILE, {}) or {}
    script = run_dir / rundir.SOURCE_DIR / str(props.get("script") or "")
    fallback = ("load the weights with gridrun.load_state(run, target=...) into a model built by your own code")
    if not props.get("script") or not script.is_file():
        raise ModelRebuildError(f"run {run_dir} keeps no copy of its script ({rundir.SOURCE_DIR}/{props.get('script')}), "
                                f"which defines its model: {fallback}")
    flags = read_json(run_dir / rundir.FLAGS_FILE, {}) or {}
    args = [str(a) for a in props.get("script_args") or []]
    out = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="gridrun-restore-") as tmp:
        ctx = RunContext(run_dir=Path(tmp), flags=dict(flags))  # what the script records goes nowhere
        ctx.properties.update(script_args=args, script_path=str(script))
        token = _RESTORE.set(_Restore(run_dir, which, header, raw))
        try:
            with script_environment(script.parent, [str(script), *args]), rundir.activate(ctx), \
                    redirect_stdout(out), redirect_stderr(out):
                runpy.run_path(str(script), run_name="__main__")
        except Restored as done:
            return done.model
        except CheckpointError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the script's own failure, reported with the fallback
            if isinstance(exc, KeyboardInterrupt):
                raise
            what = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if isinstance(exc, SystemExit):
                what = f"it exited with status {exc.code}"
            raise ModelRebuildError(f"rebuilding the model of run {run_dir} by running its script "
                                    f"{rundir.SOURCE_DIR}/{script.name} failed before its gridrun.fit/fit_loop call "
                                    f"({what}); if the script needs files or settings that are gone, restore them, or "
                                    f"{fallback}") from exc
        finally:
            _RESTORE.reset(token)
            _forget_modules(script.parent)
    raise ModelRebuildError(f"the script of run {run_dir} ({rundir.SOURCE_DIR}/{script.name}) ran to its end without "
                            f"calling gridrun.fit or gridrun.fit_loop, so it builds no model to restore: {fallback}")
