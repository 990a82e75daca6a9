"""Exercise 05.3's checks: the prediction recorded before the training, then its directions against
constructed step-time ratios."""

import pytest

from effcourse import checks

CPU_LIKE = {"float32": 1.0, "mixed_float16": 64.0, "mixed_bfloat16": 0.47}  # this CPU: float16 much slower
GPU_LIKE = {"float32": 1.0, "mixed_float16": 0.4, "mixed_bfloat16": 0.45}  # tensor cores: both faster


@pytest.mark.parametrize(
    "ratios, right",
    [
        (CPU_LIKE, {"mixed_float16": "slower", "mixed_bfloat16": "faster"}),
        (GPU_LIKE, {"mixed_float16": "faster", "mixed_bfloat16": "faster"}),
    ],
    ids=["cpu", "gpu"],
)
def test_right_directions_pass(ratios, right, capsys):
    checks.nb05.speed_direction(right, ratios)
    out = capsys.readouterr().out
    assert out.startswith("PASS") and out.count("PASS") == 1
    checks.nb05.speed_direction({k: f" {v.upper()} " for k, v in right.items()}, ratios)  # case and spaces


@pytest.mark.parametrize("ratios", [CPU_LIKE, GPU_LIKE], ids=["cpu", "gpu"])
def test_wrong_direction_fails_with_a_hint_not_the_answer(ratios):
    for policy in ("mixed_float16", "mixed_bfloat16"):
        right = {p: "faster" if ratios[p] < 1 else "slower" for p in ("mixed_float16", "mixed_bfloat16")}
        wrong = dict(right, **{policy: "slower" if right[policy] == "faster" else "faster"})
        with pytest.raises(checks.CheckFailed, match="hardware report") as err:
            checks.nb05.speed_direction(wrong, ratios)
        message = str(err.value)
        assert policy in message and "section 5" in message
        assert f"{ratios[policy]:.2f}" not in message and "should be" not in message


@pytest.mark.parametrize("r", [0.8, 0.93, 1.0, 1.08, 1.25])
def test_within_noise_either_answer_passes(r):
    ratios = dict(CPU_LIKE, mixed_bfloat16=r)
    for word in ("faster", "slower"):
        checks.nb05.speed_direction({"mixed_float16": "slower", "mixed_bfloat16": word}, ratios)
    with pytest.raises(checks.CheckFailed):  # the other policy is still judged
        checks.nb05.speed_direction({"mixed_float16": "faster", "mixed_bfloat16": "faster"}, ratios)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (None, "not written yet"),
        (..., "not written yet"),
        ({"mixed_float16": ..., "mixed_bfloat16": ...}, "not written yet"),
        ({"mixed_float16": "slower"}, "no entry for 'mixed_bfloat16'"),
        ({"mixed_bfloat16": "faster"}, "no entry for 'mixed_float16'"),
        ({"mixed_float16": "slow", "mixed_bfloat16": "faster"}, "'faster' or 'slower'"),
        ({"mixed_float16": 64.0, "mixed_bfloat16": "faster"}, "'faster' or 'slower'"),
        (["slower", "faster"], "dict"),
    ],
)
def test_placeholder_missing_and_malformed_answers_fail(answer, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        checks.nb05.speed_prediction(answer)  # before the training: nothing measured yet
    with pytest.raises(checks.CheckFailed, match=hint):
        checks.nb05.speed_direction(answer, CPU_LIKE)


def test_a_well_formed_prediction_is_recorded_before_anything_is_measured(capsys):
    checks.nb05.speed_prediction({"mixed_float16": "Slower ", "mixed_bfloat16": "faster"})
    out = capsys.readouterr().out
    assert out.startswith("PASS") and out.count("PASS") == 1
    assert "mixed_float16 slower, mixed_bfloat16 faster" in out
