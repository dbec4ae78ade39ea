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
    # sweeps
    "tuning_run": "sweep",
    "build_grid": "grid",
    "uniform": "space",
    "loguniform": "space",
    "randint": "space",
    "sample_grid": "grid",
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


if TYPE_CHECKING:  # for type checkers and IDEs
    from . import datasets  # noqa: F401
    from .analysis import importance, pareto  # noqa: F401
    from .errors import FlagError, GridrunError  # noqa: F401
    from .flagspec import Flags, flag_boolean, flag_integer, flag_numeric, flag_string, flags  # noqa: F401
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
