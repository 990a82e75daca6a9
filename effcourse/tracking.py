"""Experiment tracking: runs and their settings in TensorBoard's HParams dashboard (notebook 08).

``log_runs`` writes one run per row (parameters as hyperparameters, metrics as scalars) for
any sweep (08's trials, 02's sparsities, 04's cluster counts); the folder is replaced as a
whole, so a re-run leaves one run per row. ``read_runs`` reads a log back. View it with
``tensorboard --logdir build/tensorboard`` (the HPARAMS tab).
"""

from __future__ import annotations

import math
import numbers
import shutil
from pathlib import Path


def _value(v):
    """A value TensorBoard HParams accepts (bool, int, float, str), or None to leave it out."""
    import numpy as np

    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if isinstance(v, (bool, str)):
        return v
    return int(v) if isinstance(v, numbers.Integral) else float(v) if isinstance(v, numbers.Real) else str(v)


def _domain(values):
    from tensorboard.plugins.hparams import api as hp

    values = [v for v in values if v is not None]
    if values and all(isinstance(v, bool) for v in values):
        return hp.Discrete([False, True])
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        distinct = sorted(set(values))
        if len(distinct) <= 12:
            return hp.Discrete([float(v) for v in distinct])
        return hp.RealInterval(float(min(values)), float(max(values)))
    return hp.Discrete(sorted({str(v) for v in values}))


def log_runs(rows, log_dir, metrics, params=None, run_name: str = "run", names=None) -> Path:
    """Log ``rows`` (dicts of parameters and metrics) to TensorBoard HParams under ``log_dir``, one run each.
    Introduced in notebook 08.

    ``metrics``: the keys logged as scalars; ``params``: the settings (default: every other
    key). None and NaN values are left out of a run. Runs are named ``names[i]``, else
    ``f"{run_name}-{i:03d}"``. Returns ``log_dir``.
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    rows = [dict(r) for r in rows]
    metrics = list(metrics)
    if not rows:
        raise ValueError("log_runs needs at least one row (a dict of parameters and metrics).")
    if not metrics:
        raise ValueError("log_runs needs the names of the metrics, e.g. metrics=['accuracy', 'size_bytes'].")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    unknown = [m for m in metrics if m not in keys]
    if unknown:
        raise KeyError(f"No row has the metrics {unknown}; the rows hold {keys}.")
    params = [k for k in (params if params is not None else keys) if k not in metrics]
    if names is not None and len(names) != len(rows):
        raise ValueError(f"names has {len(names)} entries for {len(rows)} rows.")
    names = [f"{run_name}-{i:03d}" for i in range(len(rows))] if names is None else [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError("Run names must be distinct (one run per row).")
    target = Path(log_dir)
    staging = target.with_name(target.name + ".writing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    hparams = {p: hp.HParam(p, _domain([_value(r.get(p)) for r in rows])) for p in params}
    with tf.summary.create_file_writer(str(staging)).as_default():
        hp.hparams_config(
            hparams=list(hparams.values()), metrics=[hp.Metric(m, display_name=m) for m in metrics]
        )
    for name, row in zip(names, rows):
        with tf.summary.create_file_writer(str(staging / name)).as_default():
            values = {hparams[p]: _value(row.get(p)) for p in params}
            hp.hparams({k: v for k, v in values.items() if v is not None}, trial_id=name)
            for m in metrics:
                v = _value(row.get(m))
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    tf.summary.scalar(m, float(v), step=0)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def read_runs(log_dir) -> dict:
    """{run name: {"params": {...}, "metrics": {...}}} read back from a ``log_runs`` folder.
    Introduced in notebook 08."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    root = Path(log_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"No TensorBoard log folder at {root}.")
    runs = {}
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        out = {"params": {}, "metrics": {}}
        for event_file in sorted(run.glob("events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(str(event_file)):
                for value in event.summary.value:
                    plugin = value.metadata.plugin_data
                    if plugin.plugin_name == "hparams":
                        data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
                        for k, v in data.session_start_info.hparams.items():
                            kind = v.WhichOneof("kind")
                            out["params"][k] = getattr(v, kind)
                    else:
                        out["metrics"][value.tag] = float(tf.make_ndarray(value.tensor))
        runs[run.name] = out
    return runs
