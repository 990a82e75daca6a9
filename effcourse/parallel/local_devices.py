"""The devices to parallelise over, and what the measurements ran on (notebook 07).

``devices()`` returns the real GPUs if there are any, else the logical CPU devices made by
``effcourse.setup(logical_cpus=N)``: the same code runs on a laptop, in CI and on a
multi-GPU host. Logical CPUs share the same cores, so they show that the code is right,
never that it is fast.
"""
from __future__ import annotations

import numpy as np

from .. import env


def devices(n: int | None = None) -> list[str]:
    """The devices to parallelise over: real GPUs if present, else logical CPUs (notebook 07).

    ``n`` asks for exactly that many (the first ``n``); too few is a clear error saying how
    to get more (``effcourse.setup(logical_cpus=n)`` in a fresh kernel).
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
            f"and call effcourse.setup(logical_cpus={n}) first (it must run before any "
            "TensorFlow op), or ask for fewer.")
    return found[: int(n)]


def hardware() -> dict:
    """What the parallel measurements ran on: CPU, cores, GPUs and the devices used (notebook 07)."""
    rep = env.hardware_report()
    devs = devices()
    return {"cpu": rep["cpu"], "physical_cores": rep["cpu_count"], "gpus": len(rep["gpus"]),
            "device_kind": "GPU" if rep["gpus"] else "logical CPU",
            "devices": len(devs), "tensorflow": rep["tensorflow"]}


def hardware_line() -> str:
    """``hardware()`` as one printable line (notebook 07)."""
    h = hardware()
    return (f"{h['cpu']} | {h['physical_cores']} cores | GPUs: {h['gpus']} | "
            f"{h['devices']} {h['device_kind']} devices | TensorFlow {h['tensorflow']}")
