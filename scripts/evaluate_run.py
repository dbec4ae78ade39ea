"""Load a run's trained model and evaluate it on the test set, without training anything.

    python scripts/evaluate_run.py runs/2026-11-29T16-45-15.194Z [--which best|last]

`gridrun.load_model` rebuilds the model from the run's own script snapshot and flags and restores its
checkpoint (docs/user-guide.md, "Loading a run's model"). The test set is prepared as the run's script
prepared it: the data set and the `standardize` flag are read from the run's record.
"""

import argparse

import gridrun
from gridrun.datasets import load_prepared

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run", help="a run dir or a run name")
parser.add_argument("--which", default="best", choices=["best", "last"], help="which checkpoint (default best)")
parser.add_argument("--runs-dir", default="runs", help="where a run name is looked up")
parser.add_argument("--dataset", help="ignored: the run's own data set is used (docs/build.py passes it)")
parser.add_argument("--epochs", help="ignored: nothing is trained (docs/build.py passes it)")
args = parser.parse_args()

model = gridrun.load_model(args.run, args.which, runs_dir=args.runs_dir)
info = gridrun.run_info(model.run_dir.name, runs_dir=model.run_dir.parent)
data = load_prepared(info.properties.get("dataset") or info.flags.get("dataset", "auto"),
                     standardized=bool(info.flags.get("standardize")))
(_, _), (x_test, y_test) = data
scores = gridrun.evaluate(model, x_test, y_test, record=False)
print(f"Loaded the {args.which} checkpoint of run {model.run_dir.name} (epoch {model.epoch}); nothing retrained")
print(f"Test loss: {scores['loss']:.4f}, test accuracy: {scores['acc']:.4f}")
