"""The sweep: a tuning run's trials, from plan to outcome.

| module | owns |
|---|---|
| tuning.py | the verb `tuning_run`: a checked `SweepSpec`, plans or resumes a sweep, picks the executor |
| samplers.py | which values each trial runs with: the Sampler base class and its registry (`gridrun.samplers`) |
| pruners.py | which trials stop early: the Pruner base class and its registry (`gridrun.pruners`) |
| loop.py | the loop: submits trials to an executor, records each outcome |
| state.py | typed trials and attempts, the queue, what each outcome means (no I/O) |
| manifest.py | the sweep manifest runs/sweeps/<id>.json: plan, save, reconcile on resume |
| progress.py | the live progress display and the end-of-sweep summary |
| trial.py | the worker side: a trial task, and the function a worker runs for it |
| groups.py | population mode's grouping of trials into group tasks |

It may import flags, grid, executors, runner, rundir, record and runs; nothing below imports it.
"""

from __future__ import annotations

from .manifest import Manifest, list_sweeps
from .tuning import CONFIRM_ABOVE, tuning_run

__all__ = ["CONFIRM_ABOVE", "Manifest", "list_sweeps", "tuning_run"]
