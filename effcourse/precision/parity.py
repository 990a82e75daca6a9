"""Parity over seeds: is a precision's result within float32's own seed-to-seed spread? (notebook 05).

Micikevicius et al. (2018) call mixed precision "at parity" when its accuracy matches
float32's within the run-to-run variation of float32 training itself. Here: every policy
trains from the same initial weights on the same batches for each seed; a policy is at
parity when the difference of its mean final test loss and of its mean test accuracy from
float32's means is at most ``k`` (2) times float32's seed-to-seed standard deviation
(``ddof=1``, the sample standard deviation). ``parity_table`` does the arithmetic only
(numpy and pandas: ``effcourse.report`` uses it too); ``train_seeds`` runs the experiment.
"""

from __future__ import annotations

import numpy as np

PARITY_K = 2.0  # differences within PARITY_K float32 standard deviations count as parity


def parity_table(runs, reference: str = "float32", k: float = PARITY_K):
    """Per policy: mean and spread of test loss and accuracy over seeds, and the parity test, notebook 05.

    ``runs`` is a DataFrame (or a list of dicts) with one row per training run and columns
    ``policy``, ``test_loss`` and ``accuracy`` (a fraction). Returns one row per policy:
    ``seeds``; ``test loss`` mean and ``test loss sd``; ``accuracy (%)`` mean and
    ``accuracy sd (points)``; the differences from the reference's means; the limits,
    ``k`` times the reference's standard deviations; and ``at parity``: both differences
    within their limits. The reference needs at least two seeds (a spread).

    Introduced in notebook 05.
    """
    import pandas as pd

    runs = pd.DataFrame(runs)
    missing = {"policy", "test_loss", "accuracy"} - set(runs.columns)
    if missing:
        raise ValueError(f"runs need the columns policy, test_loss, accuracy; missing {sorted(missing)}.")
    if not k > 0:
        raise ValueError(f"k (standard deviations allowed) must be > 0, got {k}.")
    ref = runs[runs["policy"] == reference]
    if len(ref) < 2:
        raise ValueError(
            f"parity needs at least two {reference} runs (seeds) to measure a spread; got {len(ref)}."
        )
    rows = []
    for policy, grp in runs.groupby("policy", sort=False):
        loss, acc = grp["test_loss"].astype(float), 100 * grp["accuracy"].astype(float)
        rows.append(
            {
                "policy": policy,
                "seeds": len(grp),
                "test loss": loss.mean(),
                "test loss sd": loss.std(ddof=1) if len(grp) > 1 else np.nan,
                "accuracy (%)": acc.mean(),
                "accuracy sd (points)": acc.std(ddof=1) if len(grp) > 1 else np.nan,
            }
        )
    out = pd.DataFrame(rows).set_index("policy")
    base = out.loc[reference]
    out["test loss - float32"] = out["test loss"] - base["test loss"]
    out["accuracy - float32 (points)"] = out["accuracy (%)"] - base["accuracy (%)"]
    out["loss limit"] = k * base["test loss sd"]
    out["accuracy limit (points)"] = k * base["accuracy sd (points)"]
    out["at parity"] = (out["test loss - float32"].abs() <= out["loss limit"]) & (
        out["accuracy - float32 (points)"].abs() <= out["accuracy limit (points)"]
    )
    return out


def train_seeds(
    build,
    policies,
    data,
    seeds=(0, 1, 2),
    steps: int = 100,
    chunk: int = 25,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    desc: str = "seed",
):
    """Train ``build()`` under every policy for every seed; return (runs DataFrame, {seed: SideBySide}), notebook 05.

    For each seed: the initial weights come from ``build()`` after seeding, every policy
    starts from those weights (``with_policy``) and trains the same ``steps`` on the same
    batches (the seed also fixes the batch order), side by side in interleaved timed chunks
    (``train_side_by_side``). Each run is evaluated on ``data``'s test split. The runs
    table has one row per (seed, policy): ``seed``, ``policy``, ``test_loss``, ``accuracy``,
    ``final_train_loss`` (mean of the last tenth of the steps), ``step_ms``.

    Introduced in notebook 05.
    """
    import pandas as pd

    from .. import data as _data
    from .. import env
    from .measurement import train_side_by_side
    from .policies import with_policy
    from .scaling import compile_mixed

    rows, sides = [], {}
    for seed in seeds:
        env.seed_everything(int(seed))
        init = build()
        runs = {p: compile_mixed(with_policy(init, p), p, learning_rate=learning_rate) for p in policies}
        side = train_side_by_side(
            runs,
            data.x_train,
            data.y_train,
            steps=steps,
            chunk=chunk,
            batch_size=batch_size,
            seed=int(seed),
            desc=f"{desc} {seed}: {len(runs)} policies side by side",
        )
        sides[seed] = side
        step_ms, tail = side.step_ms(), max(1, steps // 10)
        for p, model in runs.items():
            loss, acc = model.evaluate(_data.pipeline(data.x_test, data.y_test, 512), verbose=0)
            rows.append(
                {
                    "seed": int(seed),
                    "policy": p,
                    "test_loss": float(loss),
                    "accuracy": float(acc),
                    "final_train_loss": float(np.mean(side.losses[p][-tail:])),
                    "step_ms": step_ms[p],
                }
            )
    return pd.DataFrame(rows), sides
