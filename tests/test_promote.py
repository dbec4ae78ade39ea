"""Pausing and promoting (issue 19): `--prune asha --promote` (and hyperband) pause every trial at each rung,
its checkpoint kept, and continue the best paused ones from their checkpoints once they are in the best
1/reduction of the trials that reached the rung; none is stopped for arriving early; paused trials
still waiting when the sweep ends are stopped; `--resume` continues a sweep with paused trials."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import gridrun
from gridrun import checkpoint as C
from gridrun.record import Status
from gridrun.sweep.manifest import Manifest, list_sweeps
from gridrun.sweep.pruners import ASHA, Hyperband, make_pruner
from gridrun.sweep.state import Outcome, SweepState, Trial
from gridrun.sweep.trial import PAUSE

SCRIPT = '''
import os
import numpy as np
import gridrun

FLAGS = gridrun.flags(lr=0.01, epochs=6, stop_lr=0.0, marker="")
rng = np.random.default_rng(0)
centers = rng.normal(0, 2.0, (3, 8))
y = rng.integers(0, 3, 300)
x = (centers[y] + rng.normal(0, 1.0, (300, 8))).astype(np.float32)


def end(epoch, logs):  # Ctrl-C once, in the trial of lr == stop_lr, at its first epoch
    if FLAGS.lr == FLAGS.stop_lr and epoch + 1 == 1 and not os.path.exists(FLAGS.marker):
        open(FLAGS.marker, "w").close()
        raise KeyboardInterrupt


model = gridrun.Sequential([gridrun.Dense(16, activation="relu"), gridrun.Dropout(0.2),
                            gridrun.Dense(3, activation="softmax")])
gridrun.fit(model, x, y, loss="sparse_categorical_crossentropy", epochs=FLAGS.epochs, batch_size=32,
            optimizer=gridrun.optimizer("sgd", learning_rate=FLAGS.lr), validation_split=0.2,
            callbacks=[gridrun.LambdaCallback(on_epoch_end=end)])
'''

LRS = [0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001]


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def test_asha_promote_pauses_at_every_rung_and_promotes_the_top_fraction():
    p = ASHA(grace=1, reduction=2, promote=True)
    assert [p(0, e, 1.0) for e in (1, 2, 3)] == [PAUSE, PAUSE, False]  # rungs 1, 2, 4: never stopped
    assert p.promote({1: 1}) is None  # trial 1 is not at a rung
    p2 = ASHA(grace=1, reduction=2, promote=True)
    assert p2(0, 1, 0.5) == PAUSE
    assert p2.promote({0: 1}) is None  # one trial at the rung: floor(1/2) = 0 to promote
    assert p2(1, 1, 0.9) == PAUSE
    assert p2.promote({0: 1, 1: 1}) == 0  # the better of two
    assert p2.promote({1: 1}) is None  # the worse one is not in the best half
    assert p2(2, 1, 0.1) == PAUSE and p2(3, 1, 0.2) == PAUSE
    assert p2.promote({1: 1, 2: 1, 3: 1}) == 2  # the best half of four: trials 2 and 3 (0 went on already)
    assert p2(0, 2, 0.4) == PAUSE and p2(2, 2, 0.05) == PAUSE
    assert p2.promote({0: 2, 2: 2, 3: 1}) == 2  # the highest rung first
    assert ASHA(promote=False)(0, 1, 1.0) is False  # without promote a lone trial goes on at its first rung
    hb = make_pruner("hyperband", {"promote": "true", "reduction": 2})
    assert isinstance(hb, Hyperband) and all(b.promoting for b in hb.brackets)
    assert hb.describe()["promote"] is True


def test_the_state_keeps_paused_trials_out_of_the_queue_until_promoted():
    trials = [Trial(trial=i, flags={"x": i}) for i in range(3)]
    asked: list[dict[int, int]] = []
    choice: dict[str, int | None] = {"next": None}

    def promote(paused):
        asked.append(dict(paused))
        return choice["next"]

    state = SweepState(trials, promote=promote)
    i = state.next_trial()
    state.start(i, "run0", "now")
    state.record(i, Outcome(status=Status.PAUSED, paused_epoch=1))
    assert trials[0].status == Status.PAUSED and trials[0].attempts[-1].extra["paused_epoch"] == 1
    assert state.next_trial() == 1 and asked[-1] == {0: 1}  # not promoted: the queue's next trial
    choice["next"] = 0
    assert state.next_trial() == 0  # promoted before the queue's trial 2
    state.start(0, "run0b", "now")
    state.record(0, Outcome(status=Status.COMPLETED))
    state.start(1, "run1", "now")
    state.record(1, Outcome(status=Status.PAUSED, paused_epoch=1))
    choice["next"] = None
    assert state.next_trial() == 2
    state.start(2, "run2", "now")
    state.record(2, Outcome(status=Status.COMPLETED))
    assert state.next_trial() is None
    assert [t.trial for t in state.stop_paused()] == [1]
    assert trials[1].status == Status.PRUNED and state.final_status() == "completed"
    resumed = SweepState([Trial(trial=0, flags={}, status=Status.PAUSED)])
    assert list(resumed.queue) == []  # on resume a paused trial waits for promotion, it is not rerun


def _runs(df):
    return {Path(d): json.loads((Path(d) / "properties.json").read_text()) for d in df["run_dir"]}


def _check_promotions(runs: Path, reduction: float) -> Manifest:
    """Every trial in the best 1/reduction of a rung went on past it; the others were stopped there."""
    (path,) = list_sweeps(runs)
    manifest = Manifest.load(runs, json.loads(path.read_text())["id"])
    reached: dict[int, dict[int, float]] = {}
    furthest: dict[int, int] = {}
    for t in manifest.trials:
        assert t.status in (Status.COMPLETED, Status.PRUNED), (t.trial, t.status)
        final = json.loads((runs / t.run_dir / "metrics.json").read_text())["val_loss"]
        furthest[t.trial] = len(final)
        for rung in (1, 2, 4):
            if len(final) >= rung:
                reached.setdefault(rung, {})[t.trial] = final[rung - 1]
    for rung, values in reached.items():
        k = math.floor(len(values) / reduction)
        for t in sorted(values, key=values.get)[:k]:
            assert furthest[t] > rung, (rung, t, values)
    assert min(furthest.values()) >= 1  # none was stopped before its first rung
    return manifest


def test_a_promoting_sweep_continues_its_best_trials_from_their_checkpoints(script, tmp_path):
    runs = tmp_path / "runs"
    df = gridrun.tuning_run(script, {"lr": LRS}, runs_dir=runs, backend="inprocess", quiet=True, ordered=True,
                            prune="asha", prune_options={"grace": 1, "reduction": 2, "promote": True})
    manifest = _check_promotions(runs, 2)
    props = _runs(df)
    paused = [p for p in props.values() if p.get("paused_epoch")]
    assert paused and all(p["status"] in ("paused", "pruned") or p.get("paused") for p in paused)
    continued = [d for d, p in props.items() if p.get("resumed_from_epoch")]
    assert continued, "no trial was promoted"
    # a promoted trial's metrics over all its epochs equal the same trial's trained without pausing
    best = manifest.trials[int(np.argmin([t.metrics.get("val_loss", np.inf) if t.status == Status.COMPLETED
                                          else np.inf for t in manifest.trials]))]
    assert best.status == Status.COMPLETED and len(best.attempts) >= 2
    alone = gridrun.training_run(script, dict(best.flags), runs_dir=tmp_path / "alone", echo=False)
    want = json.loads((Path(alone["run_dir"].iloc[0]) / "metrics.json").read_text())
    got = json.loads((runs / best.run_dir / "metrics.json").read_text())
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for t in manifest.trials:  # stopped paused trials keep no checkpoint; completed ones do
        if t.status == Status.PRUNED:
            assert not (runs / t.run_dir / "checkpoints").exists()
        else:
            assert C.info(runs / t.run_dir)["last"]["epoch"] == 6


def test_resume_continues_a_sweep_with_paused_trials(script, tmp_path):
    runs = tmp_path / "runs"
    marker = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        gridrun.tuning_run(script, {"lr": LRS, "stop_lr": [0.0003], "marker": [str(marker)]}, runs_dir=runs,
                           backend="inprocess", quiet=True, ordered=True, prune="asha",
                           prune_options={"grace": 1, "reduction": 2, "promote": True})
    (path,) = list_sweeps(runs)
    data = json.loads(path.read_text())
    statuses = {t["status"] for t in data["trials"]}
    assert "paused" in statuses and "interrupted" in statuses, statuses
    gridrun.tuning_run(resume=data["id"], runs_dir=runs, backend="inprocess", quiet=True)
    manifest = _check_promotions(runs, 2)
    assert manifest.data["status"] == "completed"
    assert all(t.status in (Status.COMPLETED, Status.PRUNED) for t in manifest.trials)


def test_cli_promote_needs_a_successive_halving_pruner(script, tmp_path, capsys):
    from gridrun import cli

    code = cli.main(["tuning-run", str(script), "--flag", "lr=0.1", "--runs-dir", str(tmp_path / "r"), "--promote"])
    assert code != 0
    assert "--promote applies to --prune asha or hyperband" in capsys.readouterr().err
