"""Parity over seeds: is a precision's result within float32's own seed-to-seed spread? (notebook 05).

Micikevicius et al. (2018) call mixed precision "at parity" when it matches float32 within
the run-to-run variation of float32 training itself. The multiple, ``PARITY_K`` = 2
standard deviations, is this course's rule. Pandas only, so ``effcourse.report`` uses it too.
"""

from __future__ import annotations

PARITY_K = 2.0  # differences within PARITY_K float32 standard deviations count as parity


def parity_table(runs, reference: str = "float32", k: float = PARITY_K):
    """Per policy: mean and spread over seeds of test loss and accuracy, and the parity test.

    ``runs``: a DataFrame or list of dicts, one row per training run, with ``policy``,
    ``test_loss`` and ``accuracy`` (a fraction). A policy is ``at parity`` when its mean loss
    and mean accuracy (in points) each differ from the reference's by at most ``k`` times the
    reference's sample standard deviation (``ddof=1``: the reference needs two seeds or more).

    Introduced in notebook 05.
    """
    import pandas as pd

    runs = pd.DataFrame(runs)
    missing = {"policy", "test_loss", "accuracy"} - set(runs.columns)
    if missing:
        raise ValueError(f"runs need the columns policy, test_loss, accuracy; missing {sorted(missing)}.")
    if (n_ref := int((runs["policy"] == reference).sum())) < 2:
        raise ValueError(
            f"parity needs at least two {reference} runs (seeds) to measure a spread; got {n_ref}."
        )
    runs = runs.assign(loss=runs["test_loss"].astype(float), acc=100 * runs["accuracy"].astype(float))
    g = runs.groupby("policy", sort=False)
    out = pd.DataFrame(
        {
            "seeds": g.size(),
            "test loss": g["loss"].mean(),
            "test loss sd": g["loss"].std(ddof=1),
            "accuracy (%)": g["acc"].mean(),
            "accuracy sd (points)": g["acc"].std(ddof=1),
        }
    )
    base = out.loc[reference]
    out["test loss - float32"] = out["test loss"] - base["test loss"]
    out["accuracy - float32 (points)"] = out["accuracy (%)"] - base["accuracy (%)"]
    out["loss limit"] = k * base["test loss sd"]
    out["accuracy limit (points)"] = k * base["accuracy sd (points)"]
    out["at parity"] = (out["test loss - float32"].abs() <= out["loss limit"]) & (
        out["accuracy - float32 (points)"].abs() <= out["accuracy limit (points)"]
    )
    return out
