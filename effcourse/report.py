"""The course-wide view of the results log: what is missing, the best hand-tuned points
and the targets against the papers (notebook 08)."""
from __future__ import annotations

import numpy as np

NOTEBOOK_TITLES = {
    "01_sgd_loss_formulation": "01: the baselines",
    "02_pruning": "02: pruning",
    "03_quantization": "03: quantization",
    "04_clustering_distillation_deep_compression": "04: clustering, distillation, Deep Compression",
    "05_mixed_precision": "05: mixed precision",
    "06_dynamic_networks": "06: dynamic networks",
    "07_parallelism": "07: parallelism",
}


def missing(table, notebooks) -> list[str]:
    """The notebooks (of ``notebooks``) that have no rows in ``table`` yet."""
    have = set(table["notebook"]) if len(table) else set()
    return [nb for nb in notebooks if nb not in have]


def explain_missing(table, notebooks, profile_name: str) -> str:
    """'' if all rows are there, else a sentence saying which notebooks to run first."""
    gone = missing(table, notebooks)
    if not gone:
        return ""
    names = ", ".join(f"{nb}.ipynb" for nb in gone)
    return (f"No results from {names} in the {profile_name} profile's log yet. Run "
            f"{'it' if len(gone) == 1 else 'them'} under the same profile "
            f"(EFFCOURSE_PROFILE={profile_name}), then re-run this cell; the rest of this "
            "notebook shows what is there.")


def baseline_row(table, model: str):
    """The notebook-01 baseline row of ``model``, or None if notebook 01 has not run."""
    rows = table[(table["notebook"] == "01_sgd_loss_formulation") & (table["model"] == model)]
    return None if rows.empty else rows.iloc[-1]


def best_within(table, model: str, floor: float, notebooks=None):
    """The smallest recorded variant of ``model`` with accuracy >= ``floor`` (None if none)."""
    rows = table[(table["model"] == model) & table["size_bytes"].notna() & table["accuracy"].notna()]
    if notebooks is not None:
        rows = rows[rows["notebook"].isin(list(notebooks))]
    rows = rows[rows["accuracy"] >= floor]
    if rows.empty:
        return None
    return rows.sort_values(["size_bytes", "accuracy"], ascending=[True, False]).iloc[0]


def ratio(numerator, denominator) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is 0."""
    try:
        num, den = float(numerator), float(denominator)
    except (TypeError, ValueError):
        return float("nan")
    return num / den if den and np.isfinite(num) and np.isfinite(den) else float("nan")
