"""Which models one device can hold, and what K-way splitting changes, measured (notebook 07).

Model (and pipeline) parallelism exists for models too big for one device. ``memory_sweep``
trains a few widths of the balanced MLP, then splits each one K ways
(``split_sequential``, stages of near-equal bytes from ``split_by_bytes``) and measures
what every device holds (``memory_per_device``): the bytes of the variables actually
placed there (weights, and Adam's two moments built on the stage's device), read from the
placed tensors, and on GPUs what the device's allocator gained
(``tf.config.experimental.get_memory_info``). ``device_budget`` states the per-device
budget the chart draws, and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .plan import DevicePlanError

MB = 1024 * 1024


def variable_bytes(variables) -> int:
    """Bytes held by a list of variables (elements x bytes per element), read from the tensors.

    Introduced in notebook 07.
    """
    return int(sum(int(np.prod(v.shape)) * v.dtype.size for v in variables))


def _device_of(variable) -> str:
    """'/device:CPU:1' from a variable's full placement ('/job:localhost/replica:0/task:0/device:CPU:1')."""
    name = variable.device or ""
    return "/device:" + name.rpartition("/device:")[2] if "/device:" in name else name


def split_by_bytes(model, k: int) -> list[int]:
    """Boundaries for ``split_sequential`` giving ``k`` stages of near-equal parameter bytes.

    Greedy: stage j starts at the layer whose running total of bytes is closest to j/k of
    the whole, and every stage gets at least one layer with weights (a layer without
    weights, such as Flatten, stays with the next one). Not the best possible split in
    every case (that is exercise 4), but close for the balanced MLP.

    Introduced in notebook 07.
    """
    layers = list(model.layers)
    sizes = [variable_bytes(layer.weights) for layer in layers]
    weighted = [i for i, s in enumerate(sizes) if s]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive whole number of stages, got {k!r}")
    if k > len(weighted):
        raise ValueError(f"{k} stages need {k} layers with weights; {model.name} has {len(weighted)}.")
    prefix = np.concatenate([[0], np.cumsum(sizes)])
    total, cuts = prefix[-1], []
    for j in range(1, k):
        lo = cuts[-1] if cuts else 0
        # a boundary i: the stage before it gets a weighted layer, and k - j weighted layers remain after it
        options = [
            i
            for i in range(lo + 1, len(layers))
            if prefix[i] > prefix[lo] and sum(1 for w in weighted if w >= i) >= k - j
        ]
        cuts.append(min(options, key=lambda i: (abs(prefix[i] - j * total / k), i)))
    return cuts


def _allocated(device: str, read) -> int | None:
    """Bytes a GPU's allocator holds now (``read``: ``get_memory_info``); None on CPUs or when it cannot tell."""
    if "GPU" not in device.upper():  # CPU devices share one allocator: its figure is not per device
        return None
    try:
        return int(read(device.replace("/device:", ""))["current"])
    except (ValueError, KeyError, TypeError, RuntimeError):
        return None


def memory_per_device(model, k: int, device_list, optimizer: str = "adam", memory_info=None) -> list[dict]:
    """Split ``model`` over the first ``k`` devices and measure what each device holds.

    The stages come from ``split_sequential(model, split_by_bytes(model, k), ...)``; each
    stage's optimizer ("adam": two moments per weight; "sgd": tf_keras' SGD, which makes a
    momentum buffer per weight; None: no optimizer) is
    built under its device, as a model-parallel trainer would. Per device: the layers,
    ``weights_bytes`` and ``optimizer_bytes`` summed from the variables whose placement
    (``variable.device``) is that device, ``bytes`` their total, and ``allocator_bytes``:
    what a GPU's allocator gained meanwhile (``memory_info``, default
    ``tf.config.experimental.get_memory_info``), None on CPUs (logical CPU devices share one
    allocator, whose figure is the whole process's).
    A step needs gradients and activations on top of these variables.

    Introduced in notebook 07.
    """
    import tensorflow as tf
    import tf_keras

    from .model_parallel import split_sequential

    device_list = list(device_list)
    if k > len(device_list):
        raise DevicePlanError(
            f"a {k}-way split needs {k} devices; this plan has {len(device_list)}. Ask for fewer stages."
        )
    if optimizer not in ("adam", "sgd", None):
        raise ValueError(f"optimizer must be 'adam', 'sgd' or None, got {optimizer!r}")
    used = device_list[:k]
    read = memory_info or tf.config.experimental.get_memory_info
    before = {d: _allocated(d, read) for d in used}
    stages = split_sequential(model, split_by_bytes(model, k), device_list=used)
    slots = []
    for stage in stages:
        if optimizer is None:
            continue
        with tf.device(stage.device):
            opt = tf_keras.optimizers.Adam() if optimizer == "adam" else tf_keras.optimizers.SGD()
            opt.build(stage.model.trainable_variables)
        slots.extend(opt.variables)
    after = {d: _allocated(d, read) for d in used}
    rows = {d: {"device": d, "layers": [], "weights_bytes": 0, "optimizer_bytes": 0} for d in used}
    for stage in stages:
        for v in stage.model.variables:
            rows.setdefault(
                _device_of(v),
                {"device": _device_of(v), "layers": [], "weights_bytes": 0, "optimizer_bytes": 0},
            )["weights_bytes"] += variable_bytes([v])
        rows[stage.device]["layers"].extend(stage.layers)
    for v in slots:
        rows.setdefault(
            _device_of(v), {"device": _device_of(v), "layers": [], "weights_bytes": 0, "optimizer_bytes": 0}
        )["optimizer_bytes"] += variable_bytes([v])
    out = []
    for d, row in rows.items():
        gained = None
        if before.get(d) is not None and after.get(d) is not None and after[d] > before[d]:
            gained = after[d] - before[d]
        out.append({**row, "bytes": row["weights_bytes"] + row["optimizer_bytes"], "allocator_bytes": gained})
    return out


@dataclass(frozen=True)
class DeviceBudget:
    """The memory one device may use in notebook 07's chart, and where that figure comes from.

    ``bytes`` the budget; ``device_mb`` the device's own memory or limit (None: logical CPUs,
    which have none of their own); ``reason`` a sentence to print.

    Introduced in notebook 07.
    """

    bytes: int
    device_mb: int | None
    reason: str

    @property
    def mb(self) -> float:
        return self.bytes / MB


def device_budget(plan, stated_mb: float) -> DeviceBudget:
    """The per-device memory budget for a device plan: the stated one, or the device's own if smaller.

    ``stated_mb`` (the profile's ``device_budget_mb``) is deliberately small, so that models
    that train in a minute outgrow it; logical CPU devices have no memory of their own (they
    share the machine's RAM), a one-GPU plan's logical GPUs have their memory limit, real
    GPUs their memory (``plan.device_memory_mb`` where nvidia-smi told it).

    Introduced in notebook 07.
    """
    if isinstance(stated_mb, bool) or not isinstance(stated_mb, (int, float)) or not stated_mb > 0:
        raise ValueError(f"stated_mb must be a positive number of MB, got {stated_mb!r}")
    own = (
        plan.memory_limit_mb
        if plan.logical and plan.kind == "gpu"
        else getattr(plan, "device_memory_mb", None)
    )
    stated = f"a stated budget of {stated_mb:g} MB per device (the profile's device_budget_mb)"
    small = "small on purpose, so that models which train in a minute outgrow it"
    if plan.kind == "cpu":
        return DeviceBudget(
            int(stated_mb * MB),
            None,
            f"Logical CPU devices have no memory of their own (they share this machine's RAM), so the chart "
            f"uses {stated}, {small}. On a GPU the budget is the GPU's memory.",
        )
    what = "each logical GPU's memory limit" if plan.logical else "each GPU's memory"
    if own is None:
        return DeviceBudget(
            int(stated_mb * MB),
            None,
            f"{what[0].upper()}{what[1:]} is unknown here: the chart uses {stated}, {small}.",
        )
    if own < stated_mb:
        return DeviceBudget(int(own * MB), own, f"The budget is {what}, {own:,} MB (less than {stated}).")
    return DeviceBudget(
        int(stated_mb * MB),
        own,
        f"The chart uses {stated}, {small}: {what} is {own:,} MB, which every width here fits; the "
        "lesson scales, a model of a few GB against a GPU of a few GB.",
    )


def memory_sweep(
    widths,
    data,
    epochs: int,
    splits,
    device_list,
    blocks: int = 4,
    batch_size: int = 128,
    seed: int = 0,
    desc: str = "width",
) -> list[dict]:
    """Train the balanced MLP at each width, then measure its bytes per device for every K-way split.

    For each width: ``balanced_mlp(blocks, width)`` seeded with ``seed``, Adam
    (``models.compile_classifier``), ``epochs`` over ``data``'s training images (a progress
    bar each); its test accuracy, parameters and weights file (gzip, ``measure.keras_weights_bytes``);
    then for each K of ``splits`` (1 = one device) ``memory_per_device`` over ``device_list``.
    K larger than the devices or the model's layers is left out. Returns one dict per width
    with ``per_device``: {K: rows} and ``largest``: {K: bytes of the fullest device}.

    Introduced in notebook 07.
    """
    import gc

    from .. import env, measure, models, train
    from .model_parallel import balanced_mlp

    rows = []
    for width in widths:
        env.seed_everything(seed)
        net = balanced_mlp(blocks, width=int(width), name=f"balanced_mlp_{width}")
        models.compile_classifier(net)
        train.fit(net, data, epochs=epochs, batch_size=batch_size, validation=False, desc=f"{desc} {width}")
        per_device = {
            k: memory_per_device(net, k, device_list)
            for k in sorted(set(splits) | {1})
            if k <= len(device_list) and k <= blocks + 1
        }
        rows.append(
            {
                "width": int(width),
                "blocks": blocks,
                "params": measure.count_params(net),
                "accuracy": measure.accuracy(net, data.x_test, data.y_test),
                "file_bytes": measure.keras_weights_bytes(net),
                "per_device": per_device,
                "largest": {k: max(r["bytes"] for r in per) for k, per in per_device.items()},
            }
        )
        gc.collect()
    return rows


def memory_frame(rows, budget_bytes: int):
    """The sweep as notebook 07's table: one row per width, the fullest device's MB for each K.

    Columns: width, parameters, test accuracy, "K=1 (MB)", "K=2 (MB)", ... (the largest
    device's bytes under that split), and "fewest devices that fit" (K, or "more than N").
    No rows: the first three columns and an empty table (never a KeyError downstream).

    Introduced in notebook 07.
    """
    import pandas as pd

    base = ["width", "parameters", "test accuracy"]
    if not rows:
        return pd.DataFrame(columns=[*base, "K=1 (MB)", "fewest devices that fit"])
    ks = sorted({k for r in rows for k in r["largest"]})
    out = []
    for r in rows:
        fits = [k for k in ks if k in r["largest"] and r["largest"][k] <= budget_bytes]
        out.append(
            {
                "width": r["width"],
                "parameters": r["params"],
                "test accuracy": r["accuracy"],
                **{f"K={k} (MB)": r["largest"].get(k, np.nan) / MB for k in ks},
                "fewest devices that fit": str(min(fits)) if fits else f"more than {max(ks)}",
            }
        )
    return pd.DataFrame(out)


def placement_frame(per_device):
    """What each device holds under one split (``memory_per_device``'s rows), in MB, as a table.

    Columns: device, layers, weights (MB), Adam moments (MB), total (MB), allocator gained
    (MB) (empty on CPUs). No rows: the columns only.

    Introduced in notebook 07.
    """
    import pandas as pd

    columns = ["device", "layers", "weights (MB)", "Adam moments (MB)", "total (MB)", "allocator gained (MB)"]
    rows = [
        {
            "device": r["device"],
            "layers": ", ".join(r["layers"]),
            "weights (MB)": r["weights_bytes"] / MB,
            "Adam moments (MB)": r["optimizer_bytes"] / MB,
            "total (MB)": r["bytes"] / MB,
            "allocator gained (MB)": np.nan if r["allocator_bytes"] is None else r["allocator_bytes"] / MB,
        }
        for r in per_device
    ]
    return pd.DataFrame(rows, columns=columns)
