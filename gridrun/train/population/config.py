"""What a population is told (`PopulationConfig`, built once by the sweep and sent with its group
tasks) and what it measured (`PopulationStats`, per `Population`). No JAX here: the sweep's client
builds the configuration."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ...errors import GridrunError
from ...pbt import PBTConfig

_OFF = ("0", "false", "no", "off")


@dataclass(frozen=True)
class PopulationConfig:
    """How a population trains its trials (docs/population.md). Frozen and picklable: the sweep builds
    it once (`from_env` at the command-line edge) and sends it with every group task, so a remote
    worker trains as the client planned, whatever its own environment says."""

    max_size: int | None = None  # trials per compiled program (--population-size); None: as memory allows
    merge_widths: bool = True  # Sequential trials differing in hidden widths train as one padded program
    slot_refill: bool = True  # a program of max_size slots is refilled as its trials end (else: chunks)
    devices: int | None = None  # at most this many local devices per group (1: no sharding; None: all)
    size_cap: int | None = None  # caps the size estimated from device memory (per device)
    host_rows: bool | None = None  # refilled slots' rows cut with numpy (True), on the device (False), by backend (None)
    stats_file: str | None = None  # each population appends its PopulationStats here as one JSON line (benchmarks)
    pbt: PBTConfig | None = None  # population-based training inside each program (gridrun/pbt.py); None: off
    # trials a sweep's pruner watches: together (True), one after another (False), by the backend (None: together
    # except on a CPU, where a population loses ASHA's short trials to sequential training; widths.Costs)
    pruned_together: bool | None = None
    # lone trials (where the cost model says a vmapped program loses) trained at a time; None: the backend's
    # model (widths.parallel_trials: the process's cores, at most 4, on a CPU; 1 elsewhere)
    parallel: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_size", "devices", "size_cap", "parallel"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise GridrunError(f"PopulationConfig({name}={value!r}): use a positive integer or None")
        if self.pbt is not None and not isinstance(self.pbt, PBTConfig):
            raise GridrunError(f"PopulationConfig(pbt={self.pbt!r}): use a gridrun.pbt.PBTConfig or None")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> PopulationConfig:
        """The configuration the environment asks for (GRIDRUN_WIDTH_MERGE=0, GRIDRUN_SLOT_REFILL=0,
        GRIDRUN_POPULATION_SIZE=N, GRIDRUN_POPULATION_DEVICES=N, GRIDRUN_POPULATION_STATS=path,
        GRIDRUN_POPULATION_PRUNED=1/0: pruned trials together or one after another,
        GRIDRUN_POPULATION_PARALLEL=N: lone trials at a time), with
        `given` values (those not None) taking precedence. Read once, where the sweep is set up."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "merge_widths": env.get("GRIDRUN_WIDTH_MERGE", "1").strip().lower() not in _OFF,
            "slot_refill": env.get("GRIDRUN_SLOT_REFILL", "1").strip().lower() not in _OFF,
            "size_cap": _positive(env, "GRIDRUN_POPULATION_SIZE"),
            "devices": _positive(env, "GRIDRUN_POPULATION_DEVICES"),
            "stats_file": env.get("GRIDRUN_POPULATION_STATS") or None,
            "pruned_together": _switch(env, "GRIDRUN_POPULATION_PRUNED"),
            "parallel": _positive(env, "GRIDRUN_POPULATION_PARALLEL"),
        }
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - names)
        if unknown:
            raise GridrunError(f"PopulationConfig has no setting {unknown[0]!r}; the settings are {sorted(names)}")
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)


def _switch(env: Mapping[str, str], name: str) -> bool | None:
    """An on/off variable: True, False, or None when unset or empty."""
    text = (env.get(name) or "").strip().lower()
    return None if not text else text not in _OFF


def _positive(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name)
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise GridrunError(f"{name}={text!r}: use a positive integer") from None
    return max(1, value)


@dataclass
class PopulationStats:
    """What one population trained: seconds inside its programs' training loops, trial-epochs trained,
    slot-epochs run (a frozen member's slot counts, a finished trial's not), seconds of the epochs'
    programs, and seconds spent releasing and refilling slots."""

    train_seconds: float = 0.0
    trial_epochs: int = 0
    slot_epochs: int = 0
    epoch_seconds: float = 0.0
    release_seconds: float = 0.0
    pbt_seconds: float = 0.0  # PBT's decisions, exploit gathers and explore updates
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, trial_epochs: int = 0, slot_epochs: int = 0, epoch_seconds: float = 0.0,
              release_seconds: float = 0.0, train_seconds: float = 0.0, pbt_seconds: float = 0.0) -> None:
        with self._lock:
            self.trial_epochs += trial_epochs
            self.slot_epochs += slot_epochs
            self.epoch_seconds += epoch_seconds
            self.release_seconds += release_seconds
            self.train_seconds += train_seconds
            self.pbt_seconds += pbt_seconds

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def append_to(self, path: str) -> None:
        """Append these stats as one JSON line to `path` (see PopulationConfig.stats_file)."""
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(self.as_dict()) + "\n")

    @staticmethod
    def read_totals(path: str) -> dict[str, float]:
        """The sums of every population's stats appended to `path`."""
        total = PopulationStats().as_dict()
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        for k, v in json.loads(line).items():
                            total[k] = total.get(k, 0) + v
        except FileNotFoundError:
            pass
        return total
