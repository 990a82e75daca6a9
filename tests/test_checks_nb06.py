"""The exercise checks of notebook 06 (early exits): each fails on the placeholder and on the
typical mistakes it is meant to catch, and passes on a reference answer."""

import numpy as np
import pytest

from effcourse import checks

JUDGEMENT = "Higher: the measurement also pays for the exit decisions and the copies between stages."


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def good_exit_rule(exit_logits, rule, threshold):
    n, last = len(exit_logits[0]), len(exit_logits) - 1
    idx, undecided = np.full(n, last), np.ones(n, dtype=bool)
    for k, z in enumerate(exit_logits[:last]):
        z = np.asarray(z, dtype=np.float64)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        if rule == "confidence":
            passes = 1.0 / np.exp(z).sum(axis=1) > threshold
        else:
            passes = -(np.exp(log_p) * log_p).sum(axis=1) / np.log(z.shape[1]) < threshold
        leave = undecided & passes
        idx[leave], undecided = k, undecided & ~leave
    return np.stack(exit_logits)[idx, np.arange(n)].argmax(axis=1), idx


def test_check_exit_rule():
    checks.nb06.exit_rule(good_exit_rule)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.exit_rule(todo)
    with pytest.raises(checks.CheckFailed, match="tuple"):
        checks.nb06.exit_rule(lambda e, r, t: good_exit_rule(e, r, t)[1])

    def last_passing(exit_logits, rule, threshold):
        out = [good_exit_rule([z, exit_logits[-1]], rule, threshold) for z in exit_logits[:-1]]
        idx = np.full(len(exit_logits[0]), len(exit_logits) - 1)
        for k, (_, i) in enumerate(out):
            idx[i == 0] = k
        return np.stack(exit_logits)[idx, np.arange(len(idx))].argmax(axis=1), idx

    with pytest.raises(checks.CheckFailed, match="FIRST exit"):
        checks.nb06.exit_rule(last_passing)

    def not_strict(exit_logits, rule, threshold):
        nudge = 1e-12 if rule == "confidence" else -1e-12
        return good_exit_rule(
            exit_logits, rule, threshold - nudge if rule == "confidence" else threshold + 1e-12
        )

    with pytest.raises(checks.CheckFailed, match="strict"):
        checks.nb06.exit_rule(not_strict)

    def final_predictions(exit_logits, rule, threshold):
        return exit_logits[-1].argmax(axis=1), good_exit_rule(exit_logits, rule, threshold)[1]

    with pytest.raises(checks.CheckFailed, match="predictions"):
        checks.nb06.exit_rule(final_predictions)

    def unnormalised(exit_logits, rule, threshold):
        if rule == "confidence":
            return good_exit_rule(exit_logits, rule, threshold)
        return good_exit_rule(exit_logits, rule, threshold / np.log(10))

    with pytest.raises(checks.CheckFailed, match="log"):
        checks.nb06.exit_rule(unnormalised)


def test_check_operating_point():
    def good(table, reference, max_drop):
        ok = table[table["accuracy"] >= reference - max_drop]
        return ok.sort_values("mean_macs").iloc[0]["threshold"]

    checks.nb06.pick_operating_point(good)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.pick_operating_point(todo)
    with pytest.raises(checks.CheckFailed, match="most accurate"):
        checks.nb06.pick_operating_point(lambda t, r, d: t.sort_values("accuracy").iloc[-1]["threshold"])
    with pytest.raises(checks.CheckFailed, match="fraction"):
        checks.nb06.pick_operating_point(lambda t, r, d: good(t, r, d * 100))
    with pytest.raises(checks.CheckFailed, match="hard-code"):
        checks.nb06.pick_operating_point(lambda t, r, d: 0.9)


def test_check_threshold_under_budget():
    def good(table, stage_ms, budget_ms):
        cum = np.cumsum(stage_ms)
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ cum
        ok = table[pred <= budget_ms].assign(pred=pred[pred <= budget_ms])
        if ok.empty:
            return None
        return ok.sort_values(["accuracy", "pred"], ascending=[False, True]).iloc[0]["threshold"]

    checks.nb06.threshold_under_budget(good, JUDGEMENT)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb06.threshold_under_budget(todo, JUDGEMENT)
    with pytest.raises(checks.CheckFailed, match="never exit"):
        checks.nb06.threshold_under_budget(
            lambda t, s, b: t.sort_values("accuracy").iloc[-1]["threshold"], JUDGEMENT
        )
    with pytest.raises(checks.CheckFailed, match="most accurate"):
        checks.nb06.threshold_under_budget(lambda t, s, b: 0.5, JUDGEMENT)

    def own_stage_only(table, stage_ms, budget_ms):  # charges the exit's own stage, not the cumulative sum
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ np.asarray(stage_ms)
        return table[pred <= budget_ms].sort_values("accuracy").iloc[-1]["threshold"]

    with pytest.raises(checks.CheckFailed, match="cumulative"):
        checks.nb06.threshold_under_budget(own_stage_only, JUDGEMENT)

    def ties_to_the_dearer(table, stage_ms, budget_ms):
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ np.cumsum(stage_ms)
        ok = table[pred <= budget_ms]
        return ok[ok["accuracy"] == ok["accuracy"].max()]["threshold"].max()

    with pytest.raises(checks.CheckFailed, match="tie"):
        checks.nb06.threshold_under_budget(ties_to_the_dearer, JUDGEMENT)
    with pytest.raises(checks.CheckFailed, match="tie|fixed"):
        checks.nb06.threshold_under_budget(lambda t, s, b: 0.95, JUDGEMENT)  # hard-coded
    with pytest.raises(checks.CheckFailed, match="judgement"):
        checks.nb06.threshold_under_budget(todo)
    with pytest.raises(checks.CheckFailed, match="reason"):
        checks.nb06.threshold_under_budget(todo, "higher")

    def never_none(table, stage_ms, budget_ms):
        pred = table[["share_exit1", "share_exit2", "share_final"]].to_numpy() @ np.cumsum(stage_ms)
        ok = table.assign(pred=pred)
        ok = ok[ok["pred"] <= budget_ms] if (ok["pred"] <= budget_ms).any() else ok
        return ok.sort_values(["accuracy", "pred"], ascending=[False, True]).iloc[0]["threshold"]

    with pytest.raises(checks.CheckFailed, match="None"):
        checks.nb06.threshold_under_budget(never_none, JUDGEMENT)
