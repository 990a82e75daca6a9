"""Self-checks for the exercises of notebook 09 (deploying with ONNX and ONNX Runtime)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import call, fail, one_pass_line_each, passed


def calibration_reader(reader_class) -> None:
    """Exercise 09.1: a CalibrationDataReader giving one image per ``get_next``, then None; ``rewind`` restarts."""
    from onnxruntime.quantization import CalibrationDataReader

    if not (isinstance(reader_class, type) and issubclass(reader_class, CalibrationDataReader)):
        fail("ImageReader must be a class derived from onnxruntime.quantization.CalibrationDataReader.")
    images = np.random.default_rng(9).random((5, 4, 4, 1)).astype(np.float32)
    reader = call(reader_class, images, "x", name="ImageReader")
    feeds = []
    for _ in range(len(images) + 2):
        item = call(reader.get_next, name="ImageReader.get_next")
        if item is None:
            break
        feeds.append(item)
    if len(feeds) > len(images):
        fail(f"after the last of {len(images)} images get_next must return None: the quantizer stops there.")
    if len(feeds) == 1 and len(images) > 1:
        fail("give one image per get_next call (a batch of one), not all the images at once.")
    if len(feeds) < len(images):
        fail(f"{len(images)} images gave only {len(feeds)} feeds before None: give every image once.")
    for i, feed in enumerate(feeds):
        if not isinstance(feed, dict):
            fail(
                f"get_next returns a dict {{input name: array}} (ONNX Runtime's feed), got {type(feed).__name__}."
            )
        if list(feed) != ["x"]:
            fail(f"key the dict by the input name given to __init__ ('x' here), got keys {list(feed)}.")
        arr = np.asarray(feed["x"])
        if arr.shape != (1, *images.shape[1:]):
            fail(
                f"each feed is a batch of one image, shape {(1, *images.shape[1:])}; feed {i} has {arr.shape}."
            )
        if arr.dtype != np.float32:
            fail(f"the model's input is float32; feed {i} is {arr.dtype}.")
        if not np.array_equal(arr[0], images[i]):
            fail("give the images themselves, in their order, unchanged.")
    call(reader.rewind, name="ImageReader.rewind")
    again = call(reader.get_next, name="ImageReader.get_next")
    if not isinstance(again, dict) or not np.array_equal(np.asarray(again.get("x"))[0], images[0]):
        fail("after rewind() the next get_next starts again at the first image.")
    other = call(reader_class, images[2:], "x", name="ImageReader")
    first = call(other.get_next, name="ImageReader.get_next")
    if not isinstance(first, dict) or not np.array_equal(np.asarray(first.get("x"))[0], images[2]):
        fail("a new reader starts at its own first image: keep the position on the instance (self).")
    return passed("one float32 image per get_next, keyed by the input name, then None; rewind starts over.")


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
    ``measured``: ``quantize.compare_latency``'s table of two rows. A wrong side fails when the
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
            "setting runs (the optimised graphs of section 4): which one computes in int8, and "
            "which one turns int8 back into float around every float operation?"
        )
    verdict = "right side" if side == winner else f"too close to call on this machine (within {close_call}x)"
    return passed(
        f"you predicted {side} {ratio:.2f}x faster; measured {winner} {got:.2f}x faster ({verdict}; your "
        f"ratio is off by a factor {max(ratio, got) / min(ratio, got):.2f})."
    )


one_pass_line_each(__name__)  # every check above prints exactly one PASS line
