"""checks.nb10: each check passes a right answer once and rejects placeholders, usual mistakes and hard-coding."""

import numpy as np
import pytest

from effcourse import checks


def todo(*args, **kwargs):
    raise NotImplementedError


def quantize_ok(w, bits, group):
    qmax = 2 ** (bits - 1) - 1
    groups = w.reshape(w.shape[0] // group, group, w.shape[1])
    scales = np.abs(groups).max(axis=1) / qmax
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
    codes = np.clip(np.round(groups / scales[:, None, :]), -qmax, qmax).astype(np.int8)
    return codes.reshape(w.shape), scales


def per_tensor(w, bits, group):  # one scale for the whole kernel, repeated: the group is ignored
    qmax = 2 ** (bits - 1) - 1
    s = np.abs(w).max() / qmax
    codes = np.clip(np.round(w / s), -qmax, qmax).astype(np.int8)
    return codes, np.full((w.shape[0] // group, w.shape[1]), s, np.float32)


def test_quantize_groups(capsys):
    checks.nb10.quantize_groups(quantize_ok)
    assert capsys.readouterr().out.count("PASS") == 1
    for wrong, hint in [
        (todo, "not written yet"),
        (lambda w, b, g: quantize_ok(w, b, g)[0], "two arrays"),
        (per_tensor, "scales are off"),
        (
            lambda w, b, g: (
                np.trunc(w / quantize_ok(w, b, g)[1].repeat(g, 0)).astype(np.int8),
                quantize_ok(w, b, g)[1],
            ),
            "codes differ",
        ),
        (lambda w, b, g: (quantize_ok(w, b, g)[0].astype(np.int32), quantize_ok(w, b, g)[1]), "int8"),
        (lambda w, b, g: (quantize_ok(w, b, g)[0], quantize_ok(w, b, g)[1].T), "shape"),
        (
            lambda w, b, g: (
                quantize_ok(w, b, g)[0],
                np.abs(w.reshape(-1, g, w.shape[1])).max(1) / (2 ** (b - 1) - 1),
            ),
            "group of zeros",
        ),
    ]:
        with pytest.raises(checks.CheckFailed, match=hint):
            checks.nb10.quantize_groups(wrong)


def choose_ok(table, reference, max_drop, max_bytes):
    ok = table[(table["bytes"] <= max_bytes) & (table["validation"] >= reference - max_drop)]
    return None if ok.empty else ok.sort_values(["bytes", "validation"], ascending=[True, False]).index[0]


def test_choose_quantization(capsys):
    checks.nb10.choose_quantization(choose_ok)
    assert capsys.readouterr().out.count("PASS") == 1

    def on_test(table, reference, max_drop, max_bytes):
        return choose_ok(table.assign(validation=table["test"]), reference, max_drop, max_bytes)

    def strict(table, reference, max_drop, max_bytes):
        return choose_ok(table, reference, max_drop, max_bytes - 1)

    def first_of_tie(table, reference, max_drop, max_bytes):
        ok = table[(table["bytes"] <= max_bytes) & (table["validation"] >= reference - max_drop)]
        return None if ok.empty else ok.sort_values("bytes", kind="stable").index[0]

    def most_accurate(table, reference, max_drop, max_bytes):
        ok = table[(table["bytes"] <= max_bytes) & (table["validation"] >= reference - max_drop)]
        return None if ok.empty else ok["validation"].idxmax()

    for wrong, hint in [
        (todo, "not written yet"),
        (first_of_tie, "more accurate"),
        (strict, "inclusive"),
        (on_test, "validation"),
        (most_accurate, "returned"),
        (lambda *a: "v5", "returned"),  # hard-coded: fails on the other tables
    ]:
        with pytest.raises(checks.CheckFailed, match=hint):
            checks.nb10.choose_quantization(wrong)


def head_mask(removed, heads_per_layer):
    mask = [np.ones(h, np.float32) for h in heads_per_layer]
    for layer, head in removed:
        mask[layer][head] = 0.0
    return mask


def importance_ok(evaluate, heads_per_layer):
    full = evaluate(head_mask([], heads_per_layer))
    drops = np.zeros((len(heads_per_layer), max(heads_per_layer)))
    for layer, heads in enumerate(heads_per_layer):
        for head in range(heads):
            drops[layer, head] = full - evaluate(head_mask([(layer, head)], heads_per_layer))
    return drops


def test_head_importance(capsys):
    checks.nb10.head_importance(importance_ok)
    assert capsys.readouterr().out.count("PASS") == 1

    def cumulative(evaluate, heads_per_layer):  # heads removed one after another, never put back
        full, removed = evaluate(head_mask([], heads_per_layer)), []
        drops = np.zeros((len(heads_per_layer), max(heads_per_layer)))
        for layer, heads in enumerate(heads_per_layer):
            for head in range(heads):
                removed.append((layer, head))
                drops[layer, head] = full - evaluate(head_mask(removed, heads_per_layer))
        return drops

    for wrong, hint in [
        (todo, "not written yet"),
        (lambda e, h: -importance_ok(e, h), "signs are reversed"),
        (cumulative, "one head at a time"),
        (lambda e, h: importance_ok(e, h)[:1], "array"),
        (
            lambda e, h: np.array([[0.06, 0.01, 0.21], [0.02, 0.31, 0.0]]),
            "array",
        ),  # hard-coded: one case only
    ]:
        with pytest.raises(checks.CheckFailed, match=hint):
            checks.nb10.head_importance(wrong)
