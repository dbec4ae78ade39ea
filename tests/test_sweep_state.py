"""The sweep's typed state (gridrun/sweep/state.py), driven by feeding it outcomes: no executor, no I/O."""

import json

import pytest

from gridrun import scoring
from gridrun.record import Status
from gridrun.sweep.manifest import Manifest
from gridrun.sweep.state import Attempt, Outcome, SweepState, Trial


def trials(n: int) -> list[Trial]:
    return [Trial(trial=i, flags={"x": i}, combination=i) for i in range(n)]


def take(state: SweepState) -> list[int]:
    """Everything the queue hands out now."""
    out = []
    while (i := state.next_trial()) is not None:
        state.start(i, f"run{i}-{len(state.trials[i].attempts)}", "t")
        out.append(i)
    return out


def test_completed_trials_leave_the_queue_and_count():
    state = SweepState(trials(3), slots=2)
    assert take(state) == [0, 1, 2] and state.running == 3
    state.record(1, Outcome(Status.COMPLETED, metrics={"val_loss": 0.5}))
    assert state.trials[1].status == Status.COMPLETED and state.trials[1].metrics == {"val_loss": 0.5}
    assert state.done == 1 and state.running == 2 and state.next_trial() is None
    state.record(0, Outcome(Status.COMPLETED))
    state.record(2, Outcome(Status.COMPLETED))
    assert state.final_status() == "completed"


def test_failed_trial_is_retried_until_its_budget_is_spent():
    state = SweepState(trials(1), retries=2)
    for attempt in range(3):
        assert take(state) == [0]
        state.record(0, Outcome(Status.FAILED, error=f"boom {attempt}"))
    assert take(state) == []
    t = state.trials[0]
    assert t.status == Status.FAILED and t.error == "boom 2" and len(t.attempts) == 3
    assert state.failed == 1 and state.failures == 3
    assert state.final_status() == "finished_with_failures"


def test_crash_beside_others_reruns_every_trial_alone_free_of_charge():
    state = SweepState(trials(3), slots=2)
    assert take(state) == [0, 1, 2]
    state.record(0, Outcome(Status.FAILED, error="pool broke", crash=True))
    state.record(1, Outcome(Status.FAILED, error="pool broke", crash=True))
    assert state.trials[0].attempts[-1].charged is False and state.trials[0].status == Status.PENDING
    assert state.solo == {0, 1}
    # trial 2 still runs: the suspects wait until they can run alone, one at a time
    assert state.next_trial() is None
    state.record(2, Outcome(Status.COMPLETED))
    first = take(state)
    assert len(first) == 1 and state.alone(first[0])
    state.record(first[0], Outcome(Status.FAILED, error="killed again", crash=True))  # alone: its own crash
    assert state.trials[first[0]].status == Status.FAILED and state.failed == 1
    second = take(state)
    assert second and second[0] != first[0]
    state.record(second[0], Outcome(Status.COMPLETED))
    assert state.done == 2


def test_max_failures_closes_the_queue_and_fails_pending_retries():
    state = SweepState(trials(4), retries=1, max_failures=2, slots=2)
    take(state)
    state.record(0, Outcome(Status.FAILED, error="a"))  # retry queued
    state.record(1, Outcome(Status.FAILED, error="b"))  # second failure: stop
    assert state.closed and "max-failures 2" in state.stop_reason
    assert state.next_trial() is None
    assert state.trials[0].status == Status.FAILED and state.trials[1].status == Status.FAILED
    assert state.final_status() == "stopped"


def test_interrupt_inside_a_trial_stops_the_sweep_and_marks_running_ones():
    state = SweepState(trials(3), slots=2)
    take(state)
    state.record(0, Outcome(Status.INTERRUPTED, error="Ctrl-C"))
    assert state.interrupted and state.closed and state.next_trial() is None
    closed = list(state.interrupt())
    assert {a.run_dir for a in closed} == {"run1-0", "run2-0"}
    assert all(t.status == Status.INTERRUPTED for t in state.trials)
    assert state.final_status() == "interrupted"


def test_pruned_is_final_not_a_failure_and_not_rerun():
    ts = trials(2)
    ts[0].status = Status.PRUNED
    state = SweepState(ts)
    assert take(state) == [1] and state.done == 1
    state.record(1, Outcome(Status.PRUNED))
    assert state.failed == 0 and state.final_status() == "completed"


def test_manifest_json_round_trips_and_reads_todays_files(tmp_path):
    old = {  # a manifest as gridrun wrote it before the sweep package, with a key this version does not know
        "format": 1, "id": "2026-11-27T06-44-38Z-ab12", "script": "t.py", "script_path": "/x/t.py",
        "status": "completed", "counts": {"completed": 1}, "future_key": [1, 2],
        "trials": [{"trial": 0, "combination": 3, "flags": {"lr": 0.1}, "status": "completed", "run_dir": "r1",
                    "attempts": [{"run_dir": "r0", "status": "failed", "start": "s", "end": "e", "error": "x",
                                  "charged": False},
                                 {"run_dir": "r1", "status": "completed", "start": "s", "end": "e", "error": None}],
                    "error": None, "metrics": {"val_loss": 0.25}, "note": "kept"}],
    }
    path = tmp_path / "sweeps" / "m.json"
    path.parent.mkdir()
    path.write_text(json.dumps(old))
    m = Manifest(path, json.loads(path.read_text()))
    t = m.trials[0]
    assert isinstance(t, Trial) and isinstance(t.attempts[0], Attempt)
    assert t.status is Status.COMPLETED and t.attempts[0].charged is False and t.extra == {"note": "kept"}
    again = m.to_json()
    for key in ("future_key", "id", "script_path"):
        assert again[key] == old[key]
    assert again["trials"][0] == old["trials"][0]
    assert json.loads(json.dumps(again))["trials"][0]["status"] == "completed"


@pytest.mark.parametrize("metric,mode", [
    ("val_loss", "min"), ("loss", "min"), ("val_acc", "max"), ("accuracy", "max"), ("metric_val_accuracy", "max"),
    ("sparse_categorical_accuracy", "max"), ("val_auc", "max"), ("f1", "max"), ("test_r2", "max"),
    ("precision", "max"), ("val_recall", "max"), ("mae", "min"), ("val_error", "min"), ("eval_acc", "max"),
])
def test_one_scoring_rule(metric, mode):
    assert scoring.direction(metric) == mode
    assert scoring.direction(metric, "min") == "min" and scoring.direction(metric, "max") == "max"
    better, worse = (0.1, 0.9) if mode == "min" else (0.9, 0.1)
    assert scoring.is_better(better, worse, metric) and not scoring.is_better(worse, better, metric)


def test_callbacks_and_sweep_report_use_the_scoring_rule(tmp_path):
    from gridrun.train import callbacks

    assert callbacks.EarlyStopping(monitor="val_auc").sign == -1.0
    assert callbacks.EarlyStopping(monitor="val_loss").sign == 1.0
    assert callbacks.ReduceLROnPlateau(monitor="val_f1").sign == -1.0
    assert scoring.score({"loss": 0.3, "val_loss": float("nan")}) == ("loss", 0.3)
    assert scoring.score({"val_acc": 0.8}, "val_acc") == ("val_acc", 0.8)
