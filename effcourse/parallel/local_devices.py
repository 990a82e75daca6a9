"""The devices to parallelise over, and what the measurements ran on (notebook 07).

``devices()`` returns the real GPUs if there are any, else the logical CPU devices made by
``effcourse.setup(logical_cpus=N)``: the same code runs on a laptop, in CI and on a
multi-GPU host. Logical CPUs share the same cores, so they show that the code is right,
never that it is fast.
"""

from __future__ import annotations

import numpy as np


def devices(n: int | None = None) -> list[str]:
    """The devices to parallelise over: real GPUs if present, else logical CPUs.

    ``n`` asks for exactly that many (the first ``n``); too few is a clear error saying how
    to get more (``effcourse.setup(logical_cpus=n)`` in a fresh kernel).

    Introduced in notebook 07.
    """
    import tensorflow as tf

    found = [d.name for d in tf.config.list_logical_devices("GPU")]
    if not found:
        found = [d.name for d in tf.config.list_logical_devices("CPU")]
    if n is None:
        return found
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if n > len(found):
        kind = "GPUs" if "GPU" in found[0] else "logical CPU devices"
        raise ValueError(
            f"Asked for {n} devices but this process has {len(found)} {kind}. Restart the kernel "
            f"and apply parallel.device_plan(requested={n}) first (parallel.apply_plan, before any "
            f"TensorFlow op; on a machine without GPUs effcourse.setup(logical_cpus={n}) does the "
            "same), or ask for fewer."
        )
    return found[: int(n)]


def hardware() -> dict:
    """What the parallel measurements ran on: CPU, cores, GPUs and the devices used.

    CPU and GPUs come from ``effcourse.hardware`` (physical GPUs; ``devices`` counts the
    logical devices in use, e.g. 4 logical GPUs on one physical GPU).

    Introduced in notebook 07.
    """
    import os

    import tensorflow as tf

    from .. import hardware as hw

    gpus = hw.gpu_devices()
    devs = devices()
    logical_gpus = any("GPU" in d for d in devs)
    kind = ("GPU" if len(devs) <= len(gpus) else "logical GPU") if logical_gpus else "logical CPU"
    return {
        "cpu": hw.cpu_name(),
        "physical_cores": os.cpu_count(),
        "gpus": len(gpus),
        "gpu_names": [g["name"] for g in gpus],
        "device_kind": kind,
        "devices": len(devs),
        "tensorflow": tf.__version__,
    }


def hardware_line() -> str:
    """``hardware()`` as one printable line.

    Introduced in notebook 07.
    """
    h = hardware()
    return (
        f"{h['cpu']} | {h['physical_cores']} cores | GPUs: {h['gpus']} | "
        f"{h['devices']} {h['device_kind']} device{'s' if h['devices'] != 1 else ''} | "
        f"TensorFlow {h['tensorflow']}"
    )
