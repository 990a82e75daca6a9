"""The results log every notebook writes to, and the Pareto frontier (notebook 00).

One row per measured variant in ``build/results/<profile>.csv``, appended under a file lock
and replaced atomically (parallel notebooks, crashes); a re-run replaces the rows with the same
(notebook, model, variant, profile). Technique-specific metrics go in ``extra`` (JSON).
``variant`` is a label for people; programs select rows by ``technique``, ``setting`` and
``role`` (``reference`` / ``treated``). The schema per notebook: docs/DESIGN.md ("Results log").
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np

from . import env
from .errors import EffcourseError

COLUMNS = (
    "notebook technique model variant setting role accuracy size_bytes dense_fp32_bytes latency_ms "
    "latency_p90_ms macs profile timestamp versions extra"
).split()
KEY = ["notebook", "model", "variant", "profile"]
REQUIRED = ["notebook", "technique", "model", "variant"]
METRICS = ["accuracy", "size_bytes", "dense_fp32_bytes", "latency_ms", "latency_p90_ms", "macs"]
FIELDS = ["setting", "role"]  # structured fields a program selects rows by (not measurements)
ROLES = ("reference", "treated")


class ResultError(EffcourseError, ValueError):
    """A results row that is incomplete or holds impossible values.
    Introduced in notebook 00."""


def path(profile: str | None = None) -> Path:
    """build/results/<profile>.csv.
    Introduced in notebook 00."""
    from . import profile as _profile

    return env.build_dir("results") / f"{profile or _profile.active().name}.csv"


@contextlib.contextmanager
def _locked(target: Path):
    """Hold ``<target>.lock`` while the log is read, changed and replaced (every OS: ``filelock``)."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_suffix(".lock"))):
        yield


def _validate(row: dict) -> dict:
    missing = [k for k in REQUIRED if not isinstance(row.get(k), str) or not row[k].strip()]
    if missing:
        got = {k: row.get(k) for k in missing}
        raise ResultError(f"results.record needs non-empty text for {missing}; got {got}.")
    for key in FIELDS:
        if row.get(key) is not None and (not isinstance(row[key], str) or not row[key].strip()):
            raise ResultError(f"{key} must be non-empty text or None, got {row[key]!r}")
    if row.get("role") is not None and row["role"] not in ROLES:
        raise ResultError(f"role must be one of {ROLES} or None, got {row['role']!r}")
    if all(row.get(k) is None for k in METRICS) and not row.get("extra"):
        raise ResultError(
            "results.record got no measurement: give at least one of "
            f"{METRICS} or a technique-specific metric as a keyword."
        )
    for key in [k for k in METRICS if row.get(k) is not None]:
        try:
            value = float(row[key])
        except (TypeError, ValueError) as err:
            raise ResultError(f"{key} must be a number, got {row[key]!r}") from err
        if not math.isfinite(value) or value < 0:
            raise ResultError(f"{key} must be finite and >= 0, got {value}")
        if key == "accuracy" and value > 1:
            raise ResultError(f"accuracy is a fraction in [0, 1], got {value} (did you pass percent?)")
        row[key] = value
    return row


def record(
    notebook: str,
    technique: str,
    model: str,
    variant: str,
    *,
    setting: str | None = None,
    role: str | None = None,
    accuracy=None,
    size_bytes=None,
    dense_fp32_bytes=None,
    latency_ms=None,
    latency_p90_ms=None,
    macs=None,
    profile: str | None = None,
    **extra,
) -> dict:
    """Append one measured variant to the results log (replacing an earlier run of it).
    Introduced in notebook 00."""
    import pandas as pd

    from . import profile as _profile

    prof = profile or _profile.active().name
    row = dict(notebook=notebook, technique=technique, model=model, variant=variant, setting=setting)
    row.update(role=role, accuracy=accuracy, size_bytes=size_bytes, dense_fp32_bytes=dense_fp32_bytes)
    row.update(latency_ms=latency_ms, latency_p90_ms=latency_p90_ms, macs=macs)
    row["extra"] = {k: v.item() if isinstance(v, np.generic) else v for k, v in extra.items()}
    row = _validate(row)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    row.update(
        profile=prof, timestamp=now, versions=env.versions(), extra=json.dumps(row["extra"], sort_keys=True)
    )
    target = path(prof)
    with _locked(target):
        old = load(prof).reindex(columns=COLUMNS) if target.exists() else pd.DataFrame(columns=COLUMNS)
        old = old[~(old[KEY].astype(str) == [str(row[k]) for k in KEY]).all(axis=1)]
        new = pd.DataFrame([row], columns=COLUMNS)
        table = new if old.empty else pd.concat([old[COLUMNS], new], ignore_index=True)
        env.atomic_write_bytes(target, table.to_csv(index=False).encode())
    return row


def load(profile: str | None = None):
    """The results log of a profile as a DataFrame (empty if nothing was recorded yet).
    Introduced in notebook 00.

    Adds ``compression`` = dense_fp32_bytes / size_bytes; columns an older log lacks read as empty.
    """
    import pandas as pd

    target = path(profile)
    if not target.exists():
        return pd.DataFrame(columns=COLUMNS + ["compression"])
    table = pd.read_csv(target).reindex(columns=COLUMNS)
    for col in FIELDS:
        table[col] = table[col].astype(object).where(table[col].notna(), None)
    for col in METRICS:
        table[col] = pd.to_numeric(table[col], errors="coerce")
    table["compression"] = table["dense_fp32_bytes"] / table["size_bytes"]
    return table


def extra(table, key: str):
    """One technique-specific metric from the ``extra`` JSON column, as a Series.
    Introduced in notebook 02."""
    return table["extra"].map(lambda s: json.loads(s).get(key) if isinstance(s, str) else None)


def pareto_mask(size, accuracy) -> np.ndarray:
    """True for points no other point beats (at most as large, at least as accurate, better in one).
    Introduced in notebook 00. NaNs are never on the frontier."""
    size = np.asarray(size, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    ok = np.isfinite(size) & np.isfinite(acc)
    mask = np.zeros(len(size), dtype=bool)
    for i in np.flatnonzero(ok):
        better_or_equal = ok & (size <= size[i]) & (acc >= acc[i])
        strictly = (size < size[i]) | (acc > acc[i])
        mask[i] = not np.any(better_or_equal & strictly)
    return mask


def pareto_front(table, size: str = "size_bytes", accuracy: str = "accuracy"):
    """The rows of ``table`` on the accuracy-versus-size Pareto frontier, sorted by size.
    Introduced in notebook 08."""
    return table[pareto_mask(table[size], table[accuracy])].sort_values(size)
