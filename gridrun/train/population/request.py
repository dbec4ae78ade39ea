"""One trial's call of `fit` / `fit_loop` as the coordinator receives it, and what it gets back."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..driver import Member, TrainingProgram


@dataclass
class FitRequest:
    """One trial's call of `fit`, as handed to the coordinator."""

    engine: TrainingProgram  # train/engine.py Engine or train/loop.py LoopEngine
    hparams: Any  # pytree of float32 arrays (one trial)
    arrays: dict[str, np.ndarray]  # x, y (and x_val, y_val): host arrays, shared between trials
    k_init: Any
    k_train: Any
    member: Member  # records each epoch and applies the stop rule (train/driver.py)
    initial: Any = None  # the trial's own initial train state (nnx modules), instead of engine.init
    state: Any = None  # the trained (unbatched) state, filled by the coordinator
    group_size: int = 0  # how many trials were trained together with this one
    padded: tuple[Any, Any, Any] | None = None  # width-merged: (padded engine, padded state, masked hparams)
    padded_units: tuple[int, ...] | None = None  # the group's hidden widths when this trial was padded to them
    devices: int = 1  # how many devices the group's arrays were sharded over (along the trial axis)
    refilled: bool = False  # trained in a slot of a refilled program (train_slots)
    notes: dict[str, Any] = field(default_factory=dict)  # how the coordinator chose to train it (its properties)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def epochs(self) -> int:
        return self.member.epochs

    def population_info(self) -> dict[str, Any]:
        """What the trial's properties record under "population": size, and padded_units when padded."""
        info: dict[str, Any] = {"size": self.group_size}
        if self.padded_units is not None:
            info["padded_units"] = list(self.padded_units)
        if self.devices > 1:
            info["devices"] = self.devices
        if self.refilled:
            info["slot_refill"] = True
        info.update(self.notes)
        return info

    def same_data(self, other: FitRequest) -> bool:
        """Whether both trials train on the same data: the same buffers (memoized data sets, the fast
        path) or, failing that, equal contents."""
        if self.arrays.keys() != other.arrays.keys():
            return False
        return all(_same_array(self.arrays[k], other.arrays[k]) for k in self.arrays)


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.strides == b.strides:
        return True
    return bool(np.array_equal(a, b))

