"""Self-checks for the exercises of notebook 09 (deploying with ONNX and ONNX Runtime)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import call, close, fail, one_pass_line_each, passed


def _onnx_with(values: dict) -> bytes:
    """A small valid ONNX model whose initializers are ``values`` ({name: array}), y = x @ first + ..."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = list(values)
    first = np.asarray(values[names[0]], dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["x", names[0]], ["y"])]
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), name=k) for k, v in values.items()]
    graph = helper.make_graph(
        nodes,
        "check",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, first.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, first.shape[1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _stats_cases():
    rng = np.random.default_rng(9)
    centroids = np.array([-0.5, -0.1, 0.2, 0.7], dtype=np.float32)
    clustered = centroids[rng.integers(0, 4, size=(12, 8))]
    clustered[rng.random((12, 8)) < 0.6] = 0.0  # pruned, then clustered: 0 plus 4 shared values
    dense = rng.normal(size=(5, 3)).astype(np.float32)
    dense[0, 0] = 0.0
    return [
        (_onnx_with({"fc/kernel": clustered, "fc/bias": np.zeros(8, np.float32)}), "fc/kernel", clustered),
        (_onnx_with({"dense/kernel": dense, "other": np.ones((2, 2), np.float32)}), "dense/kernel", dense),
    ]


def initializer_stats(fn) -> None:
    """Exercise 09.1: zero share and distinct values of one initializer, read from the ONNX bytes."""
    for blob, name, values in _stats_cases():
        got = call(fn, blob, name, name="initializer_stats")
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            fail(f"return two numbers, (zero share, distinct values); got {got!r}.")
        share, distinct = got
        want_share, want_distinct = float(np.mean(values == 0)), int(np.unique(values).size)
        try:
            share, distinct = float(share), float(distinct)
        except (TypeError, ValueError):
            fail(f"both results must be numbers; got {got!r}.")
        if math.isclose(share, np.count_nonzero(values == 0)) and want_share < 1:
            fail(
                "the first number is a count of zeros; the question asks for their share (a fraction in [0, 1])."
            )
        if math.isclose(share, 1 - want_share, abs_tol=1e-9) and not math.isclose(want_share, 0.5):
            fail("you returned the share of non-zeros; count the weights equal to 0 instead.")
        if math.isclose(distinct, want_distinct - 1) and (values == 0).any():
            fail("0 is one of the stored values too: count it among the distinct values.")
        close(share, want_share, f"zero share of {name!r}", atol=1e-9, hint="np.mean(array == 0)")
        close(distinct, want_distinct, f"distinct values of {name!r}", atol=0, hint="np.unique(array).size")
    return passed("zero share and distinct values read from two ONNX files match onnx.numpy_helper's arrays.")


def _choose_reference(table: pd.DataFrame, reference_accuracy, max_drop, max_bytes):
    ok = table[
        (table["accuracy"] >= reference_accuracy - max_drop - 1e-12) & (table["gzip_bytes"] <= max_bytes)
    ]
    if not len(ok):
        return None
    return ok.sort_values(["latency_ms", "gzip_bytes"], kind="stable").index[0]


def _budget_table():
    return pd.DataFrame(
        {
            "accuracy": [0.9820, 0.9790, 0.9818, 0.9815, 0.9819, 0.9821],
            "gzip_bytes": [980_000, 240_000, 260_000, 250_000, 230_000, 900_000],
            "latency_ms": [0.020, 0.004, 0.018, 0.012, 0.012, 0.015],
        },
        index=[
            "LiteRT float32",
            "LiteRT int8",
            "ONNX Runtime dynamic",
            "ONNX Runtime int8",
            "LiteRT dynamic",
            "ONNX Runtime float32",
        ],
    )


def choose_deployment(fn) -> None:
    """Exercise 09.2: the fastest variant within an accuracy drop and a size budget (ties: the smaller file)."""
    table = _budget_table()
    ref, drop, budget = 0.9820, 0.001, 300_000
    want = _choose_reference(table, ref, drop, budget)  # "LiteRT dynamic": ties "ONNX Runtime int8", smaller
    got = call(fn, table.copy(), ref, drop, budget, name="choose_deployment")
    if got == "LiteRT int8":
        fail(
            "LiteRT int8 is the fastest but loses 0.3 points (0.9790 < 0.9820 - 0.001): keep only the "
            "rows within the accuracy budget and the size budget, then take the fastest."
        )
    if got == "ONNX Runtime float32" or got == "LiteRT float32":
        fail(f"{got} is accurate but its file is over the {budget:,} byte budget.")
    if got == "ONNX Runtime int8":
        fail(
            "ONNX Runtime int8 and LiteRT dynamic are equally fast (0.012 ms); break the tie with the "
            "smaller file (gzip_bytes)."
        )
    if got != want:
        fail(f"expected the row label {want!r} (the fastest within both budgets), got {got!r}.")
    second = table.copy()
    second.loc["LiteRT dynamic", "gzip_bytes"] = 400_000  # now over budget: the answer must move
    got2 = call(fn, second, ref, drop, budget, name="choose_deployment")
    want2 = _choose_reference(second, ref, drop, budget)
    if got2 != want2:
        fail(
            f"on a second table where LiteRT dynamic's file is over budget the answer is {want2!r}, got "
            f"{got2!r}: filter the table you are given, do not hard-code the answer."
        )
    none = call(fn, table.copy(), 0.999, drop, budget, name="choose_deployment")
    if none is not None:
        fail(f"when no row meets both budgets return None, got {none!r}.")
    return passed(
        "the fastest variant within the accuracy and size budgets is chosen, ties to the smaller file, "
        "None when none fits."
    )


def prediction(predicted: dict, measured: pd.DataFrame, close_call: float = 1.2) -> None:
    """Exercise 09.3: a prediction (which setting is faster, by how many times) against the measurement.

    ``predicted``: {"faster": a row label of ``measured``, "ratio": slower / faster, > 1}.
    ``measured``: ``deploy.compare_latency``'s table of two rows. A wrong side fails when the
    measurement is clear (ratio above ``close_call``); a close call accepts either side.
    """
    if not isinstance(predicted, dict) or set(predicted) != {"faster", "ratio"}:
        fail('write your prediction as a dict {"faster": <one of the two settings>, "ratio": <a number>}.')
    names = list(measured.index)
    if len(names) != 2:
        fail(f"the measurement should compare exactly two settings, got {names}.")
    side, ratio = predicted["faster"], predicted["ratio"]
    if side is None or side is Ellipsis or (isinstance(side, str) and side.strip() in ("", "...", "?")):
        fail(f"fill in which setting you expect to be faster: one of {names}.")
    if side not in names:
        fail(f'"faster" must be one of {names} (the measured settings), got {side!r}.')
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        fail(f'"ratio" must be a number (how many times faster), got {ratio!r}.')
    if not math.isfinite(ratio) or ratio < 1:
        fail(f'"ratio" is slower / faster, so at least 1; got {ratio!r}.')
    if ratio == 1:
        fail("a ratio of exactly 1 is a tie, not a prediction: pick a side and a guess above 1.")
    lat = measured["latency_ms"]
    winner = str(lat.idxmin())
    got = float(lat.max() / lat.min())
    if side != winner and got > close_call:
        fail(
            f"measured: {winner} is {got:.2f}x as fast, the other way round. Look at the graph each "
            "setting runs (deploy.op_counts of the optimised file): which one computes in int8, and "
            "which one turns int8 back into float around every float operation?"
        )
    verdict = "right side" if side == winner else f"too close to call on this machine (within {close_call}x)"
    return passed(
        f"you predicted {side} {ratio:.2f}x faster; measured {winner} {got:.2f}x faster ({verdict}; your "
        f"ratio is off by a factor {max(ratio, got) / min(ratio, got):.2f})."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
