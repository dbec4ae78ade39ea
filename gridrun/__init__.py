"""gridrun: hyperparameter grid and random search for JAX/Flax training scripts, after R's tfruns.

The public API is listed here. Names are loaded lazily, so `import gridrun` stays cheap: a script that
only declares flags never pays for importing JAX, and a CLI call like `gridrun ls` starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_API: dict[str, str] = {
    # flags (module named flagspec so that `gridrun.flags` stays the function)
    "flags": "flagspec",
    "flag_numeric": "flagspec",
    "flag_integer": "flagspec",
    "flag_boolean": "flagspec",
    "flag_string": "flagspec",
    "Flags": "flagspec",
    "FlagError": "errors",
    "GridrunError": "errors",
    # the active run (script side)
    "run_dir": "rundir",
    "is_run_active": "rundir",
    "is_pruned": "rundir",
    "log_metrics": "rundir",
    "write_properties": "rundir",
    "write_evaluation": "rundir",
    "write_run_metadata": "rundir",
    "artifacts_dir": "rundir",
    "create_run_dir": "rundir",
    # running and listing
    "training_run": "runner",
    "ls_runs": "runs",
    "latest_run": "runs",
    "run_info": "runs",
    "clean_runs": "runs",
    "purge_runs": "runs",
    "copy_run": "runs",
    # a run's trained model
    "load_model": "train.restore",
    "load_state": "checkpoint",
    # sweeps
    "tuning_run": "sweep",
    "build_grid": "grid",
    "uniform": "space",
    "loguniform": "space",
    "randint": "space",
    "sample_grid": "grid",
    # extending sweeps (docs/extending.md)
    "Sampler": "sweep.samplers",
    "Pruner": "sweep.pruners",
    "Executor": "executors",
    "TrialPruned": "errors",
    # training
    "fit": "train",
    "fit_loop": "train",
    "evaluate": "train",
    "predict": "train",
    "Sequential": "train",
    "Dense": "train",
    "BatchNorm": "train",
    "Dropout": "train",
    "l1": "train",
    "l2": "train",
    "l1_l2": "train",
    "EarlyStopping": "train",
    "ReduceLROnPlateau": "train",
    "LambdaCallback": "train",
    "Stopper": "train",
    "History": "train",
    "optimizer": "train",
    # reports
    "view_run": "report",
    "compare_runs": "report",
    "sweep_report": "report",
    "serve_run": "report",
    # what a sweep's runs say
    "importance": "analysis",
    "pareto": "analysis",
}

__all__ = sorted(_API) + ["datasets", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "datasets":
        return importlib.import_module(".datasets", __name__)
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'gridrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


# The same names for type checkers and IDEs, module by module as in _API (tests/test_architecture.py
# keeps the two lists equal).
if TYPE_CHECKING:
    from . import datasets  # noqa: F401
    from .analysis import importance, pareto  # noqa: F401
    from .checkpoint import load_state  # noqa: F401
    from .errors import FlagError, GridrunError, TrialPruned  # noqa: F401
    from .executors import Executor  # noqa: F401
    from .flagspec import Flags, flag_boolean, flag_integer, flag_numeric, flag_string, flags  # noqa: F401
    from .grid import build_grid, sample_grid  # noqa: F401
    from .report import compare_runs, serve_run, sweep_report, view_run  # noqa: F401
    from .rundir import (  # noqa: F401
        artifacts_dir,
        create_run_dir,
        is_pruned,
        is_run_active,
        log_metrics,
        run_dir,
        write_evaluation,
        write_properties,
        write_run_metadata,
    )
    from .runner import training_run  # noqa: F401
    from .runs import clean_runs, copy_run, latest_run, ls_runs, purge_runs, run_info  # noqa: F401
    from .space import loguniform, randint, uniform  # noqa: F401
    from .sweep import tuning_run  # noqa: F401
    from .sweep.pruners import Pruner  # noqa: F401
    from .sweep.samplers import Sampler  # noqa: F401
    from .train import (  # noqa: F401
        BatchNorm,
        Dense,
        Dropout,
        EarlyStopping,
        History,
        LambdaCallback,
        ReduceLROnPlateau,
        Sequential,
        Stopper,
        evaluate,
        fit,
        fit_loop,
        l1,
        l1_l2,
        l2,
        optimizer,
        predict,
    )
    from .train.restore import load_model  # noqa: F401
