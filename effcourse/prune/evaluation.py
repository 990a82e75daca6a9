"""Measuring a pruned variant: its .tflite accuracy, size, latency and non-zeros, recorded in the results log (notebook 02)."""

from __future__ import annotations

from ..models import check_model


def measure_variant(
    model,
    baseline,
    name: str,
    variant: str,
    data,
    notebook: str,
    technique: str = "pruning",
    profile=None,
    **extra,
) -> dict:
    """Convert ``model`` to a float32 .tflite, measure it, append it to the results log; return its row.

    Introduced in notebook 02. The row (a dict for the notebook's tables) holds ``model``
    (= ``name``), ``variant``, the .tflite test ``accuracy``, ``size_bytes`` (gzip) and
    ``tflite_bytes`` (raw), ``nonzero`` weights, ``nonzero_ratio`` (the dense ``baseline``'s
    parameters per non-zero weight), ``macs``, ``latency_ms`` and every ``extra`` keyword
    (e.g. ``sparsity=0.9, epochs=2``), which also go to the results log's ``extra``.
    ``data`` is an ``effcourse.data.MNIST`` (its test split is measured); ``profile`` the
    timing profile (default: the active one).
    """
    from .. import convert, measure, results
    from ..validate import mnist_like

    check_model(model, need_graph=False, what="prune.measure_variant")
    check_model(baseline, need_graph=False, what="prune.measure_variant (baseline)")
    mnist_like(data, "prune.measure_variant")
    blob = convert.to_tflite(model)
    rep = measure.tflite_report(blob, data.x_test, data.y_test, profile)
    nonzero = measure.count_nonzero(model)
    row = dict(
        model=name,
        variant=variant,
        accuracy=rep["accuracy"],
        size_bytes=rep["size_bytes"],
        tflite_bytes=rep["raw_bytes"],
        nonzero=nonzero,
        nonzero_ratio=measure.count_params(baseline) / nonzero,
        macs=measure.macs(model),
        latency_ms=rep["latency_ms"],
        **extra,
    )
    results.record(
        notebook,
        technique,
        name,
        variant,
        accuracy=rep["accuracy"],
        size_bytes=rep["size_bytes"],
        dense_fp32_bytes=measure.dense_fp32_bytes(baseline),
        latency_ms=rep["latency_ms"],
        latency_p90_ms=rep["latency_p90_ms"],
        macs=row["macs"],
        nonzero=nonzero,
        **extra,
    )
    return row
