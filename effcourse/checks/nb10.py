"""Self-checks for the exercises of notebook 10 (a small transformer made cheaper to run)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import call, fail, one_pass_line_each, passed


def _kernels():
    rng = np.random.default_rng(10)
    w = rng.normal(0, 0.1, size=(64, 6)).astype(np.float32)
    w[5, 2] = 1.5  # one large weight: it should spoil only its own group's scale
    zero = w.copy()
    zero[:16, 1] = 0.0  # a group of zeros
    return [(w, 4, 16), (w, 3, 64), (w, 8, 32), (zero, 4, 16), (w, 2, 8)]


def quantize_groups(fn) -> None:
    """Exercise 10.1: symmetric round-to-nearest codes and scales, one scale per group of rows per column."""
    for w, bits, group in _kernels():
        got = call(fn, w.copy(), bits, group, name="quantize_groups")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            fail(f"return two arrays, (codes, scales); got {type(got).__name__}.")
        codes, scales = (np.asarray(a) for a in got)
        rows, cols = w.shape
        if codes.shape != w.shape:
            fail(f"codes should have the kernel's shape {w.shape}; got {codes.shape}.")
        if scales.shape != (rows // group, cols):
            fail(
                f"with {rows} rows and group={group}, scales should have shape {(rows // group, cols)} "
                f"(one per group of rows, per column); got {scales.shape}."
            )
        if codes.dtype != np.int8:
            fail(f"codes should be int8 integers; got {codes.dtype}.")
        qmax = 2 ** (bits - 1) - 1
        if np.abs(codes.astype(int)).max() > qmax:
            fail(f"at {bits} bits the codes must stay within -{qmax}..{qmax} (symmetric, 2^(bits-1) - 1).")
        groups = w.reshape(rows // group, group, cols)
        peak = np.abs(groups).max(axis=1)
        want_scales = np.where(peak == 0, 1.0, peak / qmax)
        if not np.all(np.isfinite(scales)) or np.any((peak == 0) & (scales != 1)):
            fail("a group of zeros needs a scale of 1: its largest |w| is 0, and w / 0 is not a number.")
        if not np.allclose(scales, want_scales, rtol=1e-5, atol=1e-8):
            fail(
                f"at bits={bits}, group={group} some scales are off: each is the group's largest |w| "
                "divided by the largest code, computed per column over that group's rows only."
            )
        want = np.clip(np.round(groups / want_scales[:, None, :]), -qmax, qmax).reshape(w.shape)
        if not np.array_equal(codes.astype(int), want.astype(int)):
            share = float(np.mean(codes.astype(int) != want))
            fail(
                f"at bits={bits}, group={group}, {share:.1%} of the codes differ: round w / scale to the "
                "nearest integer (np.round), then clip to the symmetric range."
            )
    return passed(
        "codes and scales are right at 2, 3, 4 and 8 bits, for several group sizes and a group of zeros."
    )


def _sweep(rows):
    return pd.DataFrame(rows, columns=["bits", "group", "bytes", "validation", "test"])


def choose_quantization(fn) -> None:
    """Exercise 10.2: the smallest variant within a byte budget and an accuracy floor, judged on validation."""
    table = _sweep(
        [
            (8, "per channel", 9000, 0.990, 0.970),
            (4, "per channel", 5000, 0.950, 0.999),  # below the floor on validation, high on test
            (4, 32, 5600, 0.985, 0.985),
            (4, 16, 6200, 0.988, 0.980),
            (3, 32, 4400, 0.940, 0.940),
            (3, 16, 5600, 0.987, 0.987),  # as small as (4, 32) and more accurate
        ]
    )
    table.index = [f"v{i}" for i in range(len(table))]
    cases = [
        ((0.99, 0.01, 8000), "v5", "two rows tie on bytes: take the more accurate one"),
        ((0.99, 0.01, 5500), None, "no row within both budgets: return None"),
        ((1.0, 0.06, 4400), "v4", "the budgets are inclusive: a row may use exactly the budget"),
        ((0.99, 0.001, 10000), "v0", "judge on the validation column"),
        ((0.99, 0.06, 10000), "v4", "the smallest row within both budgets"),
    ]
    for (reference, max_drop, max_bytes), want, why in cases:
        got = call(fn, table.copy(), reference, max_drop, max_bytes, name="choose_quantization")
        if isinstance(got, (np.integer, np.str_)):
            got = got.item()
        if got != want:
            hint = why
            if got == "v1":
                hint = "that row meets the floor only on test: choose on validation"
            fail(
                f"with float32 validation {reference}, max_drop {max_drop} and max_bytes {max_bytes:,} "
                f"your rule returned {got!r}. Hint: {hint}."
            )
    return passed(
        "your rule picks the smallest variant within both budgets, judged on validation, on five tables."
    )


def head_importance(fn) -> None:
    """Exercise 10.3: accuracy lost when each head alone is masked, on made-up evaluate() functions."""
    cases = [([3, 2], [[0.05, 0.0, 0.2], [0.01, 0.3]]), ([2, 2, 1], [[0.1, 0.02], [0.0, 0.07], [0.15]])]
    for heads, value in cases:
        calls = []

        def evaluate(mask, value=value, calls=calls):
            calls.append(mask)
            off = [(layer, h) for layer, m in enumerate(mask) for h, on in enumerate(m) if not on]
            return 0.9 - sum(value[layer][h] for layer, h in off) - 0.01 * len(off) ** 2

        got = np.asarray(call(fn, evaluate, list(heads), name="head_importance"), dtype=float)
        if got.shape != (len(heads), max(heads)):
            fail(
                f"return an array (layers, heads): with heads {heads} that is {(len(heads), max(heads))}; got {got.shape}."
            )
        for layer, n in enumerate(heads):
            for h in range(n):
                want = value[layer][h] + 0.01
                if abs(got[layer, h] - want) > 1e-9:
                    if abs(got[layer, h] + want) < 1e-9:
                        fail(
                            "the signs are reversed: importance = accuracy with all heads on - accuracy with one off."
                        )
                    fail(
                        f"with heads {heads}, head {h} of layer {layer} is off: expected the accuracy lost with that "
                        "head alone switched off; mask one head at a time (head_mask([(layer, head)], heads_per_layer)), "
                        "the others on."
                    )
        if len(calls) > sum(heads) + 2:
            fail(
                f"evaluate was called {len(calls)} times: once for the full model and once per head is enough."
            )
    return passed("your importances match on two made-up models (5 heads in 2 layers, 5 in 3).")


one_pass_line_each(__name__)
