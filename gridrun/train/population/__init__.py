"""Population mode: many trials of one script trained together as one vmapped JAX program.

Each trial runs the user's script, unchanged, in its own thread (its own run context, flags and
output.log). When a script calls `gridrun.fit` or `gridrun.fit_loop` (train/loop.py, the user's own
init/step functions), the call is handed to the coordinator and the thread waits. Once every live trial
is either waiting in `fit` or finished, the coordinator groups the waiting calls by their static
configuration (model structure, loss, optimizer, callbacks' monitors, batch size, data) and trains each
group as ONE compiled program: `jax.vmap` of the engine's epoch over the stacked train states and float
hyperparameters of the group. Every trial keeps its own seed, dropout masks, data order, EarlyStopping
and ReduceLROnPlateau state. Each trial's epochs go through its own `Member` of the epoch driver
(train/driver.py), which records them and applies the one stop rule of every path (non-finite loss,
EarlyStopping, the sweep's pruner, a Stopper, the epoch budget); a trial that stops is frozen by a mask
and stops recording. Then each thread gets its own trained state back and its script goes on
(evaluate, plots, ...) exactly as in a sequential run.

Width merging (gridrun/train/widths.py): gridrun.Sequential trials that differ only in the units of
hidden Dense layers join one group, trained as the widest structure with zero-padding and per-trial unit
masks; each trial gets its state back at its own shapes. The results equal unpadded training up to float
rounding. `PopulationConfig(merge_widths=False)` turns it off.

Groups larger than the device's memory allows are split into chunks (estimated from parameter and
activation sizes and the free memory), or capped with `max_size`; a group larger than its program is
trained in refilled slots (slots.py). With several local devices a group's arrays are sharded along the
trial axis. A trial that finishes without reaching `fit`/`fit_loop` gets a notice in its output.log
and its properties (`trial_ending`).

How a population trains is one frozen `PopulationConfig`, built by the sweep (environment variables
are read once, by `PopulationConfig.from_env`, where the sweep is set up) and sent with its group tasks;
what it trained is the `PopulationStats` of its `Population` (`Population.stats`).

    config.py       PopulationConfig, PopulationStats (no JAX)
    request.py      FitRequest: one trial's call as the coordinator receives it
    coordinator.py  Population: trial threads, the rendezvous, grouping; active(), trial_ending()
    program.py      train_group: one vmapped, sharded program for a group
    slots.py        train_slots: a program of N slots refilled as its trials end, shrunk when it pays
    memory.py       auto_size, trial_bytes: how many trials one program may hold
"""

from .config import PopulationConfig, PopulationStats
from .coordinator import NOTICE, Population, active, trial_ending
from .memory import auto_size, device_free_bytes, trial_bytes
from .program import population_devices, train_group, vmapped
from .request import FitRequest
from .slots import COMPILE_SECONDS_GUESS, _SlotPrograms, can_refill, ladder, shrink_pays, train_slots

__all__ = [
    "COMPILE_SECONDS_GUESS",
    "NOTICE",
    "FitRequest",
    "Population",
    "PopulationConfig",
    "PopulationStats",
    "_SlotPrograms",
    "active",
    "auto_size",
    "can_refill",
    "device_free_bytes",
    "ladder",
    "population_devices",
    "shrink_pays",
    "train_group",
    "train_slots",
    "trial_bytes",
    "trial_ending",
    "vmapped",
]
