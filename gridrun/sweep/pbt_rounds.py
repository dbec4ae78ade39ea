"""PBT outside a population (docs/population.md, "Sequential PBT"): rounds of `interval` epochs through
checkpoints, on the sequential, local-worker, Dask and Ray executors.

A `--pbt` sweep without `--population` runs each trial in its own run dir, in segments:

- The sweep's channel (the one a pruner uses) hears every trial's metric after each epoch; `handle`
  answers PAUSE (sweep/trial.py) at each multiple of the interval before the trial's last epoch, and
  at once when the metric is not finite (that trial waits for the round's end, to be replaced). The
  trial stops there, its `last` checkpoint kept, and its run dir records it as paused.
- `promote` (the state's promotion hook, as `--prune asha --promote` uses it) continues nothing until
  every trial of the sweep is paused or ended: then it takes the round's decisions with the very
  functions population mode uses (gridrun/pbt.py `decide` and `explore`, the generator
  `rng(seed, epoch)`, members by trial number, one decision per group of trials that share the flags
  PBT cannot mutate), and releases the round's trials one at a time. A recipient's run dir gets its
  donor's `last` checkpoint of that epoch at once (a hard link, before any donor trains on), its flags
  (in the manifest: the next segment's task) the explored values, and its lineage event.
- The loop continues a released trial in the same run dir (`prepare`): from its own checkpoint, or a
  recipient from the donor's, with `resume_from["exploit"]` telling the trial's driver to scale the
  state's current learning rate by the ratio of its new learning rate to the donor's (as the population
  exploit does; train/driver.py Member.start_from).
- After every segment `after_attempt` records the story population PBT records: `hp_<flag>` per epoch
  in metrics.json, `pbt_settings` and the lineage `pbt` in properties.json.

Everything a resume needs is in the manifest: each trial's lineage (`pbt` in the trial's entry) and
its current flags; a decided but not yet continued recipient needs nothing more, since its run dir
already holds the donor's checkpoint. In-process, every segment runs in the same process, so a
script's compiled training program is reused across segments (its hyperparameters are traced).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt
from .. import pbt as decisions
from .. import rundir
from .._io import read_json, write_json
from ..errors import GridrunError
from ..record import Status, read_metrics
from .manifest import Manifest
from .state import Trial
from .trial import PAUSE

WAITING = (Status.PENDING, Status.RUNNING)  # a trial in one of these holds the round back
DECIDED = "pbt_decided"  # a paused attempt's mark: the round's decisions are taken, it may continue
LINEAGE = "pbt"  # the lineage key, in the manifest's trial entries and in properties.json (as population mode)


class PBTRounds:
    """Sequential PBT's coordinator (see the module docstring): the channel's handler, the state's
    promotion hook, and the loop's hooks around each segment."""

    def __init__(self, config: decisions.PBTConfig, manifest: Manifest, runs_dir: str | os.PathLike) -> None:
        self.config, self.manifest, self.runs_dir = config, manifest, Path(runs_dir)
        self.lock = threading.RLock()
        self.epochs: int | None = None  # the trials' epochs (fit's `epochs`), learned from their reports
        self.seconds = 0.0  # spent deciding and linking checkpoints (the benchmark's exploit/explore time)
        self.rounds = 0
        self.segments = 0  # segments continued from a checkpoint
        self.names = [f.name for f in config.flags]

    # ----------------------------------------------------------------------------------------------
    # The worker's reports

    @property
    def interval(self) -> int:
        if self.config.interval is not None:
            return self.config.interval
        if self.epochs is None:  # a resumed sweep before any report: its trials' recorded `epochs`
            for t in self.manifest.trials:
                props = read_json(self.runs_dir / t.run_dir / rundir.PROPERTIES_FILE, {}) if t.run_dir else {}
                if isinstance((props or {}).get("epochs"), int):
                    self.epochs = int(props["epochs"])
                    break
        return self.config.interval_for(self.epochs or 0)

    def handle(self, message: Mapping[str, Any]) -> bool | str:
        """A trial's metric after an epoch -> PAUSE at the round's end (or now, when it is not finite)."""
        # the rows of metrics.json, not the values: a replaced diverged trial has gaps before its round's end
        epoch, value = int(message.get("rows") or message["epoch"]), float(message["value"])
        total = message.get("epochs")
        if isinstance(total, int) and total > 0:
            self.epochs = self.epochs or total
            if epoch >= total:
                return False
        if not math.isfinite(value):
            return PAUSE  # replaced at the round's end, never a donor (pbt.decide)
        return PAUSE if epoch % self.interval == 0 else False

    def round_of(self, epoch: int) -> int:
        """The round a trial paused at `epoch` belongs to: the next multiple of the interval."""
        n = self.interval
        return max(1, math.ceil(epoch / n)) * n

    # ----------------------------------------------------------------------------------------------
    # The round's decisions

    def promote(self, paused: Mapping[int, int]) -> int | None:
        """The paused trial to continue now ({trial: the epoch it paused at}), or None: a trial released
        by the round's decisions; else, once no trial runs or waits to start, the next round's decisions."""
        with self.lock, self.manifest.lock:
            trials = self.manifest.trials
            # decided for (recorded on the paused attempt, so that a resume continues the same round)
            ready = sorted(i for i in paused if trials[i].last is not None and trials[i].last.extra.get(DECIDED))
            if ready:
                return ready[0]
            if not paused or any(t.status in WAITING for t in trials):
                return None
            t0 = time.perf_counter()
            epoch = min(self.round_of(e) for e in paused.values())
            members = sorted(i for i, e in paused.items() if self.round_of(e) == epoch)
            self.decide(epoch, [trials[i] for i in members])
            self.rounds += 1
            self.seconds += time.perf_counter() - t0
            for i in members:
                trials[i].last.extra[DECIDED] = epoch  # type: ignore[union-attr]
            self.record_stats()
            self.manifest.touch()
            return members[0]

    def group_key(self, t: Trial) -> tuple[tuple[str, str], ...]:
        """Trials that share every flag PBT cannot mutate decide together (population mode groups by them too)."""
        return tuple(sorted((k, repr(v)) for k, v in t.flags.items() if k not in self.names))

    def decide(self, epoch: int, members: list[Trial]) -> dict[int, int]:
        """Take round `epoch`'s decisions for the trials paused at it (by trial number); apply them.
        Returns {recipient trial: donor trial}."""
        groups: dict[Any, list[Trial]] = {}
        for t in sorted(members, key=lambda t: t.trial):
            t.extra.setdefault("pbt_initial", {k: t.flags[k] for k in self.names if k in t.flags})
            groups.setdefault(self.group_key(t), []).append(t)
        out: dict[int, int] = {}
        for group in groups.values():
            # the flags that vary in the group (as GroupPBT.create finds them among a program's trials)
            names = [n for n in self.names if all(n in t.extra["pbt_initial"] for t in group)
                     and len({float(t.extra["pbt_initial"][n]) for t in group}) >= 2]
            if not names:
                continue
            flags = [f for f in self.config.flags if f.name in names]
            gen = decisions.rng(self.config.seed, epoch)
            values = [self.value(t, epoch) for t in group]
            moves = decisions.decide(values, self.config.mode, self.config.quantile, gen)
            for a in sorted(moves):  # the draws in trial order, as population mode makes them
                recipient, donor = group[a], group[moves[a]]
                new = decisions.explore({n: donor.flags[n] for n in names}, flags, self.config.resample, gen)
                self.exploit(recipient, donor, epoch, new)
                out[recipient.trial] = donor.trial
        return out

    def value(self, t: Trial, epoch: int) -> float:
        """The trial's metric at `epoch` (NaN when it has none: a diverged trial, replaced)."""
        series = read_metrics(self.runs_dir / str(t.run_dir)).get(self.config.metric) or []
        v = series[epoch - 1] if len(series) >= epoch else None
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

    def exploit(self, recipient: Trial, donor: Trial, epoch: int, values: dict[str, Any]) -> None:
        """The recipient continues from the donor's state at `epoch` with `values`: the donor's last
        checkpoint linked into the recipient's run dir now, its flags and lineage updated."""
        src = ckpt.checkpoint_path(self.runs_dir / str(donor.run_dir), "last")
        header = ckpt.read_header(src)
        if header is None or header.get("epoch") != epoch:
            got = "none" if header is None else f"one of epoch {header.get('epoch')}"
            raise GridrunError(
                f"--pbt: trial {recipient.trial} is to continue from trial {donor.trial}'s state of epoch {epoch}, but "
                f"its run {donor.run_dir} keeps {got} as its last checkpoint: sequential PBT continues trials from "
                f"their last checkpoints, so drop --checkpoints best/none (and checkpoint= in the script), or run "
                f"with --population")
        folder = self.runs_dir / str(recipient.run_dir) / ckpt.CHECKPOINT_DIR
        folder.mkdir(exist_ok=True)
        dst = folder / "last.ckpt"
        tmp = folder / f".last.{os.getpid()}.tmp"
        try:
            os.link(src, tmp)
        except OSError:
            import shutil

            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        event = {"epoch": int(epoch), "copied_from": donor.trial, "run": donor.run_dir,
                 "values": {k: values[k] for k in sorted(values)},
                 "donor_values": {k: donor.flags[k] for k in sorted(values)}}
        recipient.extra[LINEAGE] = list(recipient.extra.get(LINEAGE) or []) + [event]
        recipient.flags.update(values)

    # ----------------------------------------------------------------------------------------------
    # Around each segment

    def prepare(self, t: Trial, run_dir: Path) -> dict[str, Any] | None:
        """The run dir of `t` (its own, reused) ready for the next segment: metrics.json cut to the
        checkpoint's epoch (a diverged recipient's padded to it), the paused marks dropped (the trial
        gets its current values from its task's flags; flags.json keeps those it started with, as in
        population mode). Returns resume_from ({"epoch", "run", "exploit"?}), None for a trial's first segment."""
        if len(t.attempts) < 2 or t.attempts[-2].run_dir != run_dir.name:
            return None  # a first segment, or a failed one's retry: from epoch 0 in a new run dir
        header = ckpt.read_header(ckpt.checkpoint_path(run_dir, "last"))
        epoch = header.get("epoch") if header else None
        if not isinstance(epoch, int) or epoch < 1:
            raise GridrunError(
                f"--pbt: trial {t.trial} is to continue from its last checkpoint, but its run {run_dir.name} keeps "
                f"none: sequential PBT continues trials from their checkpoints, so drop --checkpoints none (and "
                f"checkpoint=None in the script), or run with --population")
        events = t.extra.get(LINEAGE) or []
        exploit = bool(events) and events[-1]["epoch"] == epoch  # the checkpoint is still the donor's
        metrics = read_metrics(run_dir)
        cut = {k: (list(v) + [None] * max(0, epoch - len(v)))[:epoch] for k, v in metrics.items()}
        if exploit:  # a replaced diverged trial: the epochs it did not finish are gaps, not its values
            cut = {k: [None if isinstance(x, float) and not math.isfinite(x) else x for x in v] for k, v in cut.items()}
        if cut != metrics:
            write_json(run_dir / rundir.METRICS_FILE, cut, indent=None)
        props = read_json(run_dir / rundir.PROPERTIES_FILE, {}) or {}
        for k in ("paused", "paused_epoch", "pruned", "pruned_epoch", "error_message", "error_traceback"):
            props.pop(k, None)
        write_json(run_dir / rundir.PROPERTIES_FILE, props)  # flags.json keeps the values it started with
        self.segments += 1
        self.record_stats()
        out: dict[str, Any] = {"epoch": epoch, "run": run_dir.name}
        if exploit:
            last = events[-1]
            out.update(run=last["run"], exploit={"values": last["values"], "donor_values": last["donor_values"]})
        return out

    def after_attempt(self, t: Trial, run_dir: Path) -> None:
        """A segment ended: its epochs' `hp_<flag>` (the values it ran with), the trial's lineage and PBT
        settings in properties.json, and flags.json back at the values it started with (the script's
        gridrun.flags() wrote the segment's), as population mode records them."""
        from ..record import adopt

        initial = t.extra.setdefault("pbt_initial", {k: t.flags[k] for k in self.names if k in t.flags})
        flags_file = run_dir / rundir.FLAGS_FILE
        flags = read_json(flags_file, None)
        if isinstance(flags, dict) and any(flags.get(k) != v for k, v in initial.items() if k in flags):
            write_json(flags_file, {**flags, **{k: v for k, v in initial.items() if k in flags}})  # as it started
        metrics = read_metrics(run_dir)
        rows = max((len(v) for k, v in metrics.items() if not k.startswith("hp_")), default=0)
        names = [n for n in self.names if n in t.flags]
        for n in names:
            series = list(metrics.get(f"hp_{n}") or [])[:rows]
            series += [t.flags[n]] * (rows - len(series))
            metrics[f"hp_{n}"] = series
        if names and rows:
            write_json(run_dir / rundir.METRICS_FILE, metrics, indent=None)
        settings = {"interval": self.interval, "quantile": self.config.quantile, "resample": self.config.resample,
                    "metric": self.config.metric, "mode": self.config.mode, "flags": sorted(names), "paths": {},
                    "sequential": True}
        lineage = [{k: v for k, v in e.items() if k != "donor_values"} for e in t.extra.get(LINEAGE) or []]
        adopt(run_dir, pbt_settings=settings, pbt=lineage)

    def record_stats(self) -> None:
        """This session's counts in the manifest (`pbt_stats`: rounds decided, segments continued, seconds
        spent deciding and linking checkpoints), for bench/pbt.py's time breakdown."""
        self.manifest.data["pbt_stats"] = {"rounds": self.rounds, "segments": self.segments,
                                           "decide_seconds": round(self.seconds, 6)}

