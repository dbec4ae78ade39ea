"""gridrun export: the runs in TensorBoard event files, or in an MLflow tracking store."""

from __future__ import annotations

import argparse

from ._common import add_runs_dir

NAME = "export"
HELP = "Export runs to TensorBoard event files or an MLflow tracking store (optional extras)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    tb = sub.add_parser("tensorboard", help="per-epoch scalars and the HParams table, for `tensorboard --logdir DIR` "
                                            "(pip install gridrun[tensorboard])",
                        description="Write one TensorBoard run per gridrun run into DIR: per-epoch scalars, "
                                    "and the HParams plugin's table of flags and final metrics. Run it again to "
                                    "update (its earlier files are replaced).")
    tb.add_argument("dir", metavar="DIR", help="the TensorBoard log dir to write")
    ml = sub.add_parser("mlflow", help="one MLflow run per run, nested under a parent run per sweep "
                                       "(pip install gridrun[mlflow])",
                        description="Log one MLflow run per gridrun run (params = flags, metrics per epoch, "
                                    "status, the run dir's files as artifacts), nested under a parent run per "
                                    "sweep. Run it again to update: runs are found by their gridrun.run tag.")
    ml.add_argument("--tracking-uri", metavar="URI",
                    help="MLflow tracking store, e.g. sqlite:///mlflow.db or http://host:5000 (default: "
                         "MLflow's own, $MLFLOW_TRACKING_URI)")
    ml.add_argument("--experiment", default="gridrun", help="MLflow experiment name (default: gridrun)")
    ml.add_argument("--no-artifacts", action="store_true", help="do not copy the run dirs' files as artifacts")
    for p in (tb, ml):
        add_runs_dir(p)
        p.add_argument("--sweep", metavar="SWEEP_ID", help="only the runs of this tuning run (default: every run)")


def run(args: argparse.Namespace) -> int:
    from .. import export

    if args.target == "tensorboard":
        n = len(export.run_dirs(args.runs_dir, args.sweep))
        logdir = export.tensorboard(args.dir, args.runs_dir, args.sweep)
        print(f"Exported {n} run{'s' if n != 1 else ''} to {logdir}: tensorboard --logdir {logdir}")
        return 0
    ids = export.mlflow(args.tracking_uri, args.runs_dir, args.sweep, experiment=args.experiment,
                        artifacts=not args.no_artifacts)
    where = args.tracking_uri or "MLflow's default tracking store"
    print(f"Exported {len(ids)} run{'s' if len(ids) != 1 else ''} to {where}, experiment '{args.experiment}'")
    return 0
