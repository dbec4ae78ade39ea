"""`gridrun export mlflow`: one MLflow run per gridrun run, nested under a parent run per sweep.

Each MLflow run gets: params = the flags; the per-epoch metrics (step = epoch, 1-based) and the
evaluation values (`eval_<name>`); the status (FINISHED for completed, FAILED, KILLED for interrupted
or pruned, left RUNNING for a run still going; the gridrun status itself in the tag `gridrun.status`);
its start and end times; and the run dir's files as artifacts (flags, metrics, output, sources,
artifacts/ with any checkpoints kept there). A run of a sweep is nested under the sweep's parent run
(tag `mlflow.parentRunId`). Idempotent: runs are found again by their tags `gridrun.run` (the run
name) and `gridrun.sweep_parent` (a sweep's parent), so a second export updates them: only epochs not
yet logged are added, params are logged once, artifacts are copied over. Uses MLflow's client only
(mlflow-skinny is enough).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..errors import GridrunError
from . import need, number, run_dirs, timestamp

RUN_TAG = "gridrun.run"
SWEEP_TAG = "gridrun.sweep_parent"
STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}
PARAM_LIMIT = 6000  # MLflow's longest param value


def _quote(text: str) -> str:
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _find(client: Any, experiment_id: str, tag: str, value: str) -> Any:
    found = client.search_runs([experiment_id], f"tags.`{tag}` = {_quote(value)}", max_results=2)
    return found[0] if found else None


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def export(tracking_uri: str | None = None, runs_dir: str | os.PathLike = "runs", sweep: str | None = None, *,
           experiment: str = "gridrun", artifacts: bool = True) -> dict[str, str]:
    need("mlflow", "mlflow")
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ..report.rundata import load_run

    paths = run_dirs(runs_dir, sweep)
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        experiment_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    except MlflowException as exc:
        first = str(exc).split("\n")[0]
        raise GridrunError(f"MLflow tracking store {tracking_uri or '(default)'}: {first}; give another "
                           "with --tracking-uri (e.g. sqlite:///mlflow.db)") from None
    parents: dict[str, str] = {}
    out: dict[str, str] = {}
    for path in paths:
        run = load_run(path, with_files=False)
        p = run.properties
        start = timestamp(p.get("start"))
        sweep_id = p.get("sweep") if isinstance(p.get("sweep"), str) and p.get("sweep") else None
        tags = {RUN_TAG: run.name, "gridrun.status": run.status, "gridrun.run_dir": str(path.resolve()),
                "mlflow.runName": run.name}
        if p.get("script"):
            tags["mlflow.source.name"] = str(p["script"])
        if sweep_id:
            tags["gridrun.sweep"] = sweep_id
            if isinstance(p.get("trial"), int):
                tags["gridrun.trial"] = str(p["trial"])
            if sweep_id not in parents:
                parents[sweep_id] = _parent(client, experiment_id, sweep_id, start)
            tags["mlflow.parentRunId"] = parents[sweep_id]
        existing = _find(client, experiment_id, RUN_TAG, run.name)
        if existing is None:
            mlrun = client.create_run(experiment_id, start_time=_ms(start), tags=tags, run_name=run.name)
            logged_params: dict[str, str] = {}
            steps: dict[str, int] = {}
        else:
            mlrun = existing
            logged_params = dict(existing.data.params)
            steps = {k: max((m.step for m in client.get_metric_history(mlrun.info.run_id, k)), default=0)
                     for k in existing.data.metrics}
        run_id = mlrun.info.run_id
        params = [Param(k, _param(v)) for k, v in run.applied_flags.items() if k not in logged_params]
        wall = start or time.time()
        metrics = []
        for name, values in run.metrics.items():
            for step, v in enumerate(values, start=1):
                if step > steps.get(name, 0) and number(v) is not None:
                    metrics.append(Metric(name, float(v), _ms(wall + step) or 0, step))
        last = max((len(v) for v in run.metrics.values()), default=0)
        for name, v in run.evaluation.items():
            key = f"eval_{name}"
            if number(v) is not None and key not in steps:
                metrics.append(Metric(key, float(v), _ms(wall + last + 1) or 0, max(last, 1)))
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        for i in range(0, max(len(metrics), 1), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(run_id, metrics=metrics[i:i + 1000], params=params if i == 0 else [],
                             tags=tag_list if i == 0 else [])
        if artifacts:
            client.log_artifacts(run_id, str(path))
        if run.status in STATUS:
            client.set_terminated(run_id, STATUS[run.status], end_time=_ms(timestamp(p.get("end"))))
        out[run.name] = run_id
    for sweep_id, parent_id in parents.items():
        _close_parent(client, parent_id, runs_dir, sweep_id)
    return out


def _param(v: Any) -> str:
    import json

    text = v if isinstance(v, str) else json.dumps(v)
    return text[:PARAM_LIMIT]


def _parent(client: Any, experiment_id: str, sweep_id: str, start: float | None) -> str:
    found = _find(client, experiment_id, SWEEP_TAG, sweep_id)
    if found is not None:
        return found.info.run_id
    run = client.create_run(experiment_id, start_time=_ms(start), run_name=f"sweep {sweep_id}",
                            tags={SWEEP_TAG: sweep_id, "gridrun.sweep": sweep_id})
    return run.info.run_id


def _close_parent(client: Any, parent_id: str, runs_dir: str | os.PathLike, sweep_id: str) -> None:
    """The sweep's parent run: the manifest's sampler, metric and counts as params/tags, ended as the sweep."""
    from mlflow.entities import Param, RunTag

    from .._io import read_json

    data = read_json(Path(runs_dir) / "sweeps" / f"{sweep_id}.json", {}) or {}
    if not isinstance(data, dict):
        data = {}
    logged = client.get_run(parent_id).data.params
    params = [Param(k, _param(data[k])) for k in ("sampler", "metric", "mode", "seed", "sample")
              if data.get(k) is not None and k not in logged]
    tags = [RunTag(f"gridrun.count.{k}", str(v)) for k, v in (data.get("counts") or {}).items()]
    client.log_batch(parent_id, params=params, tags=tags)
    if data.get("status") not in ("running", "pending"):
        client.set_terminated(parent_id, "FINISHED", end_time=_ms(timestamp(data.get("updated"))))
