"""The coordinator: trial threads hand their `fit` / `fit_loop` calls to a `Population`, which groups
the waiting calls and trains each group as one program (program.py, slots.py), then wakes the trials."""

from __future__ import annotations

import contextvars
import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..._scriptenv import script_environment
from .config import PopulationConfig, PopulationStats
from .memory import auto_size
from .program import padded_request, population_devices, train_group
from .request import FitRequest
from .slots import can_refill, train_slots

_member: contextvars.ContextVar[Population | None] = contextvars.ContextVar("gridrun_population", default=None)


def active() -> Population | None:
    """The population the calling trial thread belongs to, or None (sequential mode)."""
    return _member.get()


class Population:
    """Runs trial threads and trains their `fit` calls together; see the package docstring (train/population/__init__.py)."""

    def __init__(self, config: PopulationConfig | int | None = None, *, max_size: int | None = None,
                 merge_widths: bool | None = None) -> None:
        """`config` (a PopulationConfig; an int stands for its max_size), with `max_size` and
        `merge_widths` given on their own taking precedence. Nothing is read from the environment here:
        the sweep reads it once (PopulationConfig.from_env)."""
        if config is None or isinstance(config, int):
            config = PopulationConfig(max_size=config)
        changes = {k: v for k, v in (("max_size", max_size), ("merge_widths", merge_widths)) if v is not None}
        self.config = dataclasses.replace(config, **changes)
        self.stats = PopulationStats()  # what this population trained, summed over its groups
        self._cond = threading.Condition()
        self._pending: list[FitRequest] = []
        self._live = 0
        self._local = threading.local()  # per trial thread: whether it reached a vectorizable call
        self.groups_trained: list[int] = []  # sizes of the vmapped programs run (for tests and reports)
        # per refilled group, after each epoch: (active slots, trials waiting, slots of the program)
        self.slot_activity: list[list[tuple[int, int, int]]] = []
        self.notices: list[tuple[str | None, str]] = []  # (run dir, notice) of trials that trained nothing together
        self.plans: list[Any] = []  # widths.Plan of each width-compatible group (how it trained, and why)

    # -- trial side -----------------------------------------------------------------------------------
    def submit(self, request: FitRequest) -> Any:
        """Called from a trial thread inside fit: wait for the group's training, return the state."""
        self._local.submitted = True
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.state

    def trial_ending(self) -> str | None:
        """In a trial thread of this population, just before its output capture closes: the notice
        (printed into its output.log, recorded as `population_notice`) when the trial never reached a
        vectorizable call; None otherwise."""
        if getattr(self._local, "submitted", False):
            return None
        from ... import rundir

        print(NOTICE, flush=True)
        rundir.write_properties(population_notice=NOTICE)
        folder = rundir.run_dir()
        with self._cond:
            self.notices.append((folder, NOTICE))
        return NOTICE

    # -- coordinator side -----------------------------------------------------------------------------
    def run(self, jobs: list[Callable[[], Any]]) -> list[Any]:
        """Run each job (a trial: a function that executes one script) in its own thread; train the
        fit calls they make in groups; return the jobs' results in order."""
        results: list[Any] = [None] * len(jobs)

        def target(i: int, job: Callable[[], Any]) -> None:
            _member.set(self)
            try:
                results[i] = job()
            except BaseException as exc:  # noqa: BLE001 - reported as that trial's result
                results[i] = exc
            finally:
                with self._cond:
                    self._live -= 1
                    self._cond.notify_all()

        threads = [threading.Thread(target=target, args=(i, job), name=f"gridrun-trial-{i}", daemon=True)
                   for i, job in enumerate(jobs)]
        # sys.argv is process-wide: each trial sets it to [script] and puts back what it found, so a trial
        # that ends could hand the caller's arguments (`gridrun tuning-run train.py --population`) to a
        # trial still parsing its flags ("unexpected argument"). Trials only ever see [program] here.
        # The main module, swapped by each trial's runpy, is put back once all have ended.
        with script_environment(argv=sys.argv[:1]):
            with self._cond:
                self._live = len(threads)
            for t in threads:
                t.start()
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: len(self._pending) >= self._live)
                    if not self._pending and self._live == 0:
                        break
                    batch, self._pending = self._pending, []
                self._train_all(batch)
            for t in threads:
                t.join()
        if self.config.stats_file:
            self.stats.append_to(self.config.stats_file)
        return results

    def _train_all(self, requests: list[FitRequest]) -> None:
        t0 = time.perf_counter()
        try:
            self._train_groups(requests)
        finally:
            self.stats.count(train_seconds=time.perf_counter() - t0)

    def _train_groups(self, requests: list[FitRequest]) -> None:
        from .. import widths

        cfg = self.config
        key = widths.merge_key if cfg.merge_widths else (lambda config: config)
        n_dev = population_devices(cfg.devices)
        groups: list[tuple[Any, list[FitRequest]]] = []  # (merge key, trials)
        for r in requests:
            k = key(r.engine.config)
            home = next((g for gk, g in groups if gk == k and g[0].same_data(r)), None)
            if home is None:
                groups.append((k, [r]))
            else:
                home.append(r)
        work: list[tuple[list[FitRequest], bool]] = []  # (trials, together): a program, or one trial alone
        for _, members in groups:
            for part, together in self._plan(members):
                work += [(part, True)] if together else [([r], False) for r in part]
        parallel = self._parallel()
        if parallel < 2 or all(together for _, together in work):
            for part, together in work:
                self._train_work(part, together, n_dev)
            return
        # lone trials (the very programs a sequential sweep runs) `parallel` at a time, in threads: XLA
        # runs their programs side by side, and each trial wakes as soon as its own training ends. The
        # first trial of every program starts before any program's second (their compilations overlap;
        # JAX compiles a program once when two threads ask for it), the costliest first.
        rank: dict[Any, int] = {}
        order = []
        for part, together in work:
            config = part[0].engine.config
            rank[config] = rank.get(config, -1) + 1
            order.append((0 if together else 1, rank[config], -sum(r.epochs * widths.epoch_flops(r.engine.config)
                                                                  for r in part)))
        ordered = [w for _, w in sorted(zip(order, work, strict=True), key=lambda pair: pair[0])]
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="gridrun-alone") as pool:
            for done in [pool.submit(self._train_work, part, together, n_dev) for part, together in ordered]:
                done.result()

    def _train_work(self, part: list[FitRequest], together: bool, n_dev: int) -> None:
        if together:
            self._train_together(part, n_dev)
        else:
            for r in part:
                self._train_alone(r)

    def _train_alone(self, r: FitRequest) -> None:
        """One trial alone, by the very loop and programs of a sequential `fit` / `fit_loop`
        (driver.train_alone, the engine's own compiled functions), on this coordinator thread."""
        from ..driver import train_alone
        from ..engine import on_device

        t0 = time.perf_counter()
        try:
            data = {k: on_device(v) for k, v in r.arrays.items()}
            state = r.initial if r.initial is not None else r.engine.jit_init(r.hparams, r.k_init)
            r.state = train_alone(r.engine, state, r.hparams, data, r.k_train, r.member)
            r.group_size = 1
            self.groups_trained.append(1)
            self.stats.count(r.member.completed, r.member.completed, epoch_seconds=time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - the trial's error, raised in its own thread
            r.error = exc
        finally:
            r.done.set()

    def _parallel(self) -> int:
        """Lone trials trained at a time (PopulationConfig.parallel, else the backend's cost model)."""
        from .. import widths

        return self.config.parallel or widths.parallel_trials()

    def _plan(self, members: list[FitRequest]) -> list[tuple[list[FitRequest], bool]]:
        """How a width-compatible group trains (widths.plan, the modelled cost): parts of one vmapped
        program each (padded only where padding pays), or trials alone where a population would lose.
        Each trial's "population" property says which, and a fallback to sequential training is said in
        one line."""
        from .. import widths

        if (not widths.mergeable(members[0].engine.config) or self.config.pbt is not None
                or any(r.member.resume for r in members)):  # a continued trial needs a refilled program
            return [(members, True)]  # PBT: the group's trials exploit each other inside one program
        plan = widths.plan([r.engine.config for r in members], [r.epochs for r in members], self.config.max_size,
                           parallel=self._parallel())
        self.plans.append(plan)
        parts = [([members[i] for i in idx], together) for idx, together in plan.parts]
        merged = len({widths.hidden_units(r.engine.config) for r in members}) > 1
        for part, together in parts:
            for r in part:
                if not together:
                    r.notes["sequential"] = plan.describe()
                elif merged and len(parts) > 1:
                    r.notes["width_plan"] = plan.describe()
        if plan.sequential:
            print(f"gridrun population: {len(members)} trials {plan.describe()}", file=sys.stderr, flush=True)
        return parts

    def _train_together(self, members: list[FitRequest], n_dev: int) -> None:
        from .. import widths

        cfg = self.config
        members.sort(key=lambda r: widths.hidden_units(r.engine.config))  # chunks of similar widths
        size = max(1, cfg.max_size or auto_size(padded_request(members), cap=cfg.size_cap) * n_dev)
        resumed = any(r.member.resume for r in members)  # continued trials need per-slot epoch counters
        if (len(members) > size > 1 or resumed) and cfg.slot_refill and can_refill(members):  # slots, refilled
            size = min(size, len(members))
            try:
                self.slot_activity.append(train_slots(members, size, self.stats, cfg.host_rows, cfg.pbt))
                self.groups_trained.append(size)
            except BaseException as exc:  # noqa: BLE001 - every trial of the group gets the error
                for r in members:
                    r.error = r.error or exc
            finally:
                for r in members:
                    r.done.set()
            return
        for start in range(0, len(members), size):
            self._train_chunk(members[start:start + size])

    def _train_chunk(self, chunk: list[FitRequest]) -> None:
        try:
            train_group(chunk, self.stats, self.config.devices, self.config.pbt)
            self.groups_trained.append(len(chunk))
        except BaseException as exc:  # noqa: BLE001 - every trial of the chunk gets the error
            for r in chunk:
                r.error = exc
        finally:
            for r in chunk:
                r.done.set()

NOTICE = ("gridrun population mode: this trial finished without calling gridrun.fit or gridrun.fit_loop, so "
          "there was nothing to train together with the other trials and it ran on its own, as in a sequential "
          "sweep (--population did not speed it up). Fix: train with gridrun.fit(model, x, y, ...) or hand your "
          "init and step functions to gridrun.fit_loop(...) (docs/own-loop.md).")


def trial_ending() -> str | None:
    """Called in a trial thread just before its output capture closes (gridrun/runner.py): when the
    trial is in a population but never reached a vectorizable call, print the notice into its output.log
    and record it as the run property `population_notice`; return the notice (None otherwise)."""
    pop = active()
    return None if pop is None else pop.trial_ending()
