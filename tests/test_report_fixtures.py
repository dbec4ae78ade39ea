"""Run dirs for the report tests, written by hand from docs/run-dir.md (no other gridrun code).

Imported by tests/test_report*.py; it holds no tests itself.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

XSS = "<script>alert(1)</script>"


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    """A valid red PNG, built with zlib (so the fixture needs no imaging library)."""
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def curve(start: float, factor: float, n: int) -> list[float]:
    return [round(start * factor**i, 6) for i in range(n)]


def make_run(
    runs_dir: Path,
    name: str,
    *,
    flags: dict[str, Any] | None = None,
    metrics: dict[str, list[Any]] | None = None,
    status: str = "completed",
    evaluation: dict[str, Any] | None = None,
    output: str = "",
    sources: dict[str, str] | None = None,
    artifacts: dict[str, bytes] | None = None,
    **properties: Any,
) -> Path:
    """Write one run dir: flags.json, metrics.json, properties.json, evaluation.json, output.log, ..."""
    run = Path(runs_dir) / name
    run.mkdir(parents=True)
    epochs = max((len(v) for v in (metrics or {}).values()), default=0)
    date, _, time = name.partition("T")
    start = f"{date}T{time[:8].replace('-', ':')}{time[8:12]}000Z"
    props: dict[str, Any] = {
        "script": "train.py",
        "script_path": "/home/user/project/train.py",
        "start": start,
        "end": None if status == "running" else start[:17] + "59.000000Z",
        "status": status,
        "completed": status == "completed",
        "exit_code": None if status == "running" else (0 if status == "completed" else 1),
        "versions": {"python": "3.11.9", "gridrun": "0.1.0", "jax": "0.10.2"},
        "hostname": "testhost",
        "pid": 1234,
        "context": "local",
        "type": "training",
        "epochs_completed": epochs,
    }
    props.update(properties)
    files = {"properties.json": props, "flags.json": flags or {}, "metrics.json": metrics or {}}
    if evaluation is not None:
        files["evaluation.json"] = evaluation
    for fname, data in files.items():
        (run / fname).write_text(json.dumps(data), encoding="utf-8")
    (run / "output.log").write_text(output, encoding="utf-8")
    if sources:
        for rel, text in sources.items():
            (run / "source" / rel).parent.mkdir(parents=True, exist_ok=True)
            (run / "source" / rel).write_text(text, encoding="utf-8")
    if artifacts:
        for rel, data in artifacts.items():
            (run / "artifacts" / rel).parent.mkdir(parents=True, exist_ok=True)
            (run / "artifacts" / rel).write_bytes(data)
    return run


SCRIPT_A = '''import gridrun

FLAGS = gridrun.flags(
    gridrun.flag_numeric("dropout1", 0.4),
    gridrun.flag_integer("units", 128),
)

def main():
    print("training with", FLAGS.units, "units")
'''

SCRIPT_B = SCRIPT_A.replace("0.4", "0.3").replace('"training with"', '"training (v2) with"')


def training_run(runs_dir: Path, name: str = "2026-11-27T06-44-38.123Z", **overrides: Any) -> Path:
    """A completed MNIST-like run with every section of the report filled in."""
    n = 5
    args: dict[str, Any] = dict(
        flags={"dropout1": 0.4, "units": 128, "activation": "relu", "batchnorm": False},
        metrics={
            "loss": curve(0.9, 0.7, n),
            "acc": [0.71, 0.83, 0.88, 0.91, 0.93],
            "val_loss": curve(0.8, 0.8, n),
            "val_acc": [0.75, 0.84, 0.87, 0.89, 0.9],
            "lr": [0.001] * n,
        },
        evaluation={"loss": 0.31, "acc": 0.912},
        output="Epoch 1/5\nloss: 0.9 <b>bold?</b>\nEpoch 5/5\ndone\n",
        sources={"train.py": SCRIPT_A, "flags.yml": "units: 128\n"},
        artifacts={"plots/history.png": tiny_png(), "model.msgpack": b"\x00\x01binary"},
        samples=48000,
        validation_samples=12000,
        batch_size=128,
        epochs=n,
        loss_function="categorical_crossentropy",
        optimizer="rmsprop",
        learning_rate=0.001,
        model="Sequential\n  Dense(256) -> (None, 256)   200,960 params\n  Dense(10)  -> (None, 10)      2,570 params",
    )
    args.update(overrides)
    return make_run(runs_dir, name, **args)


def sweep_runs(runs_dir: Path, sweep: str = "sweep-20261127-a1b2") -> list[Path]:
    """A 6-trial sweep over dropout1 x units x activation: one failed trial, trial 4 the best."""
    grid = [
        (0.2, 64, "relu"), (0.4, 64, "tanh"), (0.2, 128, "relu"),
        (0.4, 128, XSS), (0.3, 256, "relu"), (0.4, 256, "tanh"),
    ]  # fmt: skip
    final_val = [0.41, 0.39, 0.35, 0.33, 0.28, None]  # trial 5 failed before validating
    paths = []
    for i, ((dropout, units, act), val) in enumerate(zip(grid, final_val)):
        name = f"2026-11-27T08-00-{i:02d}.000Z"
        failed = val is None
        metrics = {"loss": curve(1.0, 0.75, 4), "val_loss": curve(val / 0.729, 0.9, 4) if val else [None] * 4}
        if failed:
            metrics = {"loss": [1.2]}
        paths.append(make_run(
            runs_dir, name,
            flags={"dropout1": dropout, "units": units, "activation": act, "epochs": 4},
            metrics=metrics,
            status="failed" if failed else "completed",
            sweep=sweep, trial=i,
            error_message=f"ValueError: exploded at units={units} {XSS}" if failed else None,
            error_traceback="Traceback (most recent call last):\n  File \"train.py\", line 9\nValueError: exploded"
            if failed else None,
        ))  # fmt: skip
    return paths
