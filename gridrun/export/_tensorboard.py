"""`gridrun export tensorboard DIR`: one TensorBoard run per gridrun run, with the HParams table.

Layout: `DIR/<run name>/` holds the run's per-epoch scalars (tag = metric name, step = epoch, 1-based),
its evaluation values (`eval_<name>`, at the last epoch) and the HParams plugin's session (flags as
hparams, its status); `DIR/` itself holds the HParams experiment (every flag and final metric), so
the HParams tab lists the runs with their flags and final metrics. Written with the tensorboard
package's own event writer and protos (no TensorFlow). Files written by an earlier export (suffix
`.gridrun`) are replaced, so exporting again never doubles a curve.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from . import need, number, run_dirs, timestamp

SUFFIX = ".gridrun"
STATUS = {"completed": "STATUS_SUCCESS", "failed": "STATUS_FAILURE", "running": "STATUS_RUNNING"}


def _writer(folder: Path) -> Any:
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"events.out.tfevents.*{SUFFIX}"):
        old.unlink()
    return EventFileWriter(str(folder), filename_suffix=SUFFIX)


def _hparams_event(tag: str, data: Any, wall_time: float) -> Any:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    value = Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))
    return Event(wall_time=wall_time, summary=Summary(value=[value]))


def _scalar(tag: str, step: int, value: float, wall_time: float) -> Any:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    return Event(wall_time=wall_time, step=step, summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]))


def _hparam_value(v: Any) -> Any:
    from google.protobuf import struct_pb2

    if isinstance(v, bool):
        return struct_pb2.Value(bool_value=v)
    if number(v) is not None:
        return struct_pb2.Value(number_value=float(v))
    return struct_pb2.Value(string_value=str(v))


def export(logdir: str | os.PathLike, runs_dir: str | os.PathLike = "runs", sweep: str | None = None) -> Path:
    need("tensorboard", "tensorboard")
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    from ..report.rundata import load_run

    root = Path(logdir)
    runs = [load_run(p, with_files=False) for p in run_dirs(runs_dir, sweep)]
    flag_types: dict[str, set[str]] = {}
    flag_values: dict[str, set[Any]] = {}
    metric_tags: list[str] = []
    for run in runs:
        wall = timestamp(run.properties.get("start")) or time.time()
        writer = _writer(root / run.name)
        for name, values in run.metrics.items():
            if name not in metric_tags:
                metric_tags.append(name)
            for step, v in enumerate(values, start=1):
                if number(v) is not None:
                    writer.add_event(_scalar(name, step, float(v), wall + step))
        last = max((len(v) for v in run.metrics.values()), default=0)
        for name, v in run.evaluation.items():
            if number(v) is not None:
                tag = f"eval_{name}"
                if tag not in metric_tags:
                    metric_tags.append(tag)
                writer.add_event(_scalar(tag, max(last, 1), float(v), wall + last + 1))
        hparams = {}
        for k, v in run.applied_flags.items():
            if v is None:
                continue
            hparams[k] = _hparam_value(v)
            kind = "bool" if isinstance(v, bool) else "number" if number(v) is not None else "string"
            flag_types.setdefault(k, set()).add(kind)
            flag_values.setdefault(k, set()).add(v if kind != "number" else None)
        start = plugin_data_pb2.SessionStartInfo(group_name=run.name, start_time_secs=wall)
        for k, v in hparams.items():
            start.hparams[k].CopyFrom(v)
        writer.add_event(_hparams_event(metadata.SESSION_START_INFO_TAG,
                                        plugin_data_pb2.HParamsPluginData(session_start_info=start,
                                                                          version=metadata.PLUGIN_DATA_VERSION),
                                        wall))
        if run.status != "running":
            end = plugin_data_pb2.SessionEndInfo(
                status=getattr(api_pb2, STATUS.get(run.status, "STATUS_UNKNOWN")),
                end_time_secs=timestamp(run.properties.get("end")) or wall)
            writer.add_event(_hparams_event(metadata.SESSION_END_INFO_TAG,
                                            plugin_data_pb2.HParamsPluginData(session_end_info=end,
                                                                              version=metadata.PLUGIN_DATA_VERSION),
                                            wall))
        writer.close()
    infos = []
    for k, kinds in flag_types.items():
        kind = next(iter(kinds)) if len(kinds) == 1 else "string"
        info = api_pb2.HParamInfo(name=k, type={"bool": api_pb2.DATA_TYPE_BOOL, "number": api_pb2.DATA_TYPE_FLOAT64,
                                                "string": api_pb2.DATA_TYPE_STRING}[kind])
        if kind in ("string", "bool") and len(kinds) == 1:
            info.domain_discrete.CopyFrom(struct_pb2.ListValue(values=[_hparam_value(v) for v in sorted(
                flag_values[k], key=str)]))
        infos.append(info)
    experiment = api_pb2.Experiment(
        name=f"sweep {sweep}" if sweep else f"runs of {Path(runs_dir).resolve().name}",
        time_created_secs=time.time(), hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t), display_name=t) for t in metric_tags])
    writer = _writer(root)
    writer.add_event(_hparams_event(metadata.EXPERIMENT_TAG,
                                    plugin_data_pb2.HParamsPluginData(experiment=experiment,
                                                                      version=metadata.PLUGIN_DATA_VERSION),
                                    time.time()))
    writer.close()
    return root
