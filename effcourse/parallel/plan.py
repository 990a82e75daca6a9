"""Which devices notebook 07 runs on, and why: 0, 1 or many GPUs.

``device_plan`` is a pure decision from a device list (this machine's, or made up in tests);
``apply_plan`` makes the devices in TensorFlow, before its first op:

* no GPU: the CPU split into logical devices: the code is the multi-GPU code, the speed one CPU's;
* one GPU: the GPU split into memory-limited logical GPUs, which share its compute;
* two or more GPUs: the real GPUs, one replica each, memory growth on (so that the worker
  processes of section 4 still find memory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import EffcourseError

DEFAULT_SPLIT = 4  # logical devices when nothing else is said
LOGICAL_GPU_MB = 1024  # memory limit of one logical GPU: the demos' models need a few MB
GPU_HEADROOM = 0.8  # share of a GPU's memory the logical GPUs may take together


class DevicePlanError(EffcourseError, ValueError):
    """The devices asked for cannot be made on this machine; the message says what can.

    Introduced in notebook 07.
    """


@dataclass(frozen=True)
class DevicePlan:
    """The devices notebook 07 replicates over, and the reason they were chosen.

    ``kind`` "gpu" or "cpu"; ``devices`` the device names TensorFlow will list; ``logical``
    True when they are slices of one physical device (they share its compute);
    ``memory_limit_mb`` each logical GPU's limit; ``device_memory_mb`` the smallest real
    GPU's memory where the driver told it; ``warnings`` what the learner should know.

    Introduced in notebook 07.
    """

    kind: str
    devices: tuple
    logical: bool
    reason: str
    warnings: tuple = ()
    physical_gpus: int = 0
    memory_limit_mb: int | None = None
    device_memory_mb: int | None = None

    @property
    def count(self) -> int:
        return len(self.devices)

    def describe(self) -> str:
        """The reason and every warning, as lines to print."""
        return "\n".join([self.reason, *(f"Note: {w}" for w in self.warnings)])


def _plan(kind, n, logical, reason, warnings=(), **kw) -> DevicePlan:
    names = tuple(f"/device:{kind.upper()}:{i}" for i in range(n))
    return DevicePlan(kind, names, logical, reason, tuple(warnings), **kw)


def _gpu_diagnosis(visible, driver_gpus) -> list[str]:
    """Why TensorFlow might see no GPU although the machine has one."""
    if visible is not None and visible.strip() in ("", "-1"):
        return [
            f"CUDA_VISIBLE_DEVICES is set to {visible!r}, which hides every GPU from TensorFlow: unset it "
            "(or list the GPUs to use, e.g. CUDA_VISIBLE_DEVICES=0) and restart the kernel."
        ]
    if driver_gpus:  # the driver sees GPUs, nothing hides them: TensorFlow lacks CUDA
        return [
            f"nvidia-smi lists {driver_gpus} GPU(s) but TensorFlow cannot use them: install the CUDA build "
            "with `pip install -e '.[gpu]'` (tensorflow[and-cuda]) and check `python -m effcourse.doctor`."
        ]
    return []


def device_plan(
    requested=None,
    gpus=None,
    cpus=None,
    *,
    split=DEFAULT_SPLIT,
    kind="auto",
    gpu_mb=LOGICAL_GPU_MB,
    visible=...,
    driver_gpus=...,
) -> DevicePlan:
    """Choose the devices for the multi-device demos, and say why; nothing is changed.

    ``requested``: exactly that many devices (a ``DevicePlanError`` if this machine cannot
    give them); None: the real GPUs if there are two or more, else ``split`` logical devices.
    ``kind``: "auto", "gpu" (GPUs or an error) or "cpu" (logical CPUs even with GPUs).
    ``gpus``: dicts with a ``name`` and an optional ``memory_mb`` (default: this machine's);
    ``cpus``: cores (default ``os.cpu_count()``); ``gpu_mb``: each logical GPU's limit;
    ``visible`` (``CUDA_VISIBLE_DEVICES``) and ``driver_gpus`` (nvidia-smi's count) only
    explain a machine whose GPUs TensorFlow does not see.

    Introduced in notebook 07.
    """
    for name, value in (("requested", requested), ("split", split)):
        if value is not None and (type(value) is not int or value < 1):
            raise DevicePlanError(f"{name} must be a positive whole number of devices, got {value!r}")
    if kind not in ("auto", "gpu", "cpu"):
        raise DevicePlanError(f"kind must be 'auto', 'gpu' or 'cpu', got {kind!r}")
    gpus = list(_this_machines_gpus() if gpus is None else gpus)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is ... else visible
    if driver_gpus is ... and not gpus:
        from .. import hardware

        driver_gpus = len(hardware.nvidia_smi_gpus() or [])
    n = requested or split
    shared = (
        f"they share the same {cpus or os.cpu_count()} physical cores, so they show that the code is right"
    )
    if not gpus or kind == "cpu":
        if kind == "gpu":
            hint = _gpu_diagnosis(visible, driver_gpus) or ["Use kind='auto' or 'cpu'."]
            raise DevicePlanError("GPUs were asked for (kind='gpu') but TensorFlow sees none. " + hint[0])
        why = f"asked for (kind='cpu'), {len(gpus)} GPU(s) left unused" if kind == "cpu" else "no usable GPU"
        notes = [] if kind == "cpu" else _gpu_diagnosis(visible, driver_gpus)
        if n == 1:
            return _plan(
                "cpu", 1, False, f"1 CPU device ({why}), as asked: nothing to replicate over.", notes
            )
        return _plan(
            "cpu", n, True, f"{n} logical CPU devices ({why}): {shared}, not that it is fast.", notes
        )
    names = ", ".join(g.get("name", "GPU") for g in gpus)
    if len(gpus) >= 2:
        n = requested or len(gpus)
        if n > len(gpus):
            raise DevicePlanError(
                f"{requested} devices asked for, but this machine has {len(gpus)} GPUs. Ask for at most "
                f"{len(gpus)}, or for logical CPU devices with kind='cpu'."
            )
        memories = [g.get("memory_mb") for g in gpus[:n]]
        unused = [f"{len(gpus) - n} of the {len(gpus)} GPUs left unused (requested={n})."][: len(gpus) - n]
        why = f"{n} real GPUs, one replica each ({names}): real parallel compute; memory grows as needed"
        smallest = min(memories) if all(memories) else None
        return _plan("gpu", n, False, why, unused, physical_gpus=n, device_memory_mb=smallest)
    memory = gpus[0].get("memory_mb")
    if requested == 1:
        why = f"1 GPU ({names}), as asked: one device, nothing to replicate over."
        return _plan("gpu", 1, False, why, physical_gpus=1, device_memory_mb=memory)
    notes = []
    if not memory:
        notes.append(
            f"the GPU's memory size is unknown (no nvidia-smi): each logical GPU gets {gpu_mb} MB; "
            "if TensorFlow cannot make them, ask for fewer (requested=2) or lower gpu_mb."
        )
    elif int(memory * GPU_HEADROOM // gpu_mb) < n:
        fits = int(memory * GPU_HEADROOM // gpu_mb)
        if requested:
            raise DevicePlanError(
                f"{requested} logical GPUs of {gpu_mb} MB each need {requested * gpu_mb:,} MB, but the GPU has "
                f"{memory:,} MB (at most {GPU_HEADROOM:.0%} of it is given out): {fits} fit. Ask for at most "
                f"{fits}, lower gpu_mb, or use kind='cpu'."
            )
        if fits < 2:
            why = (
                f"{n} logical CPU devices (the one GPU is too small to split): {shared}, not that it is fast."
            )
            note = (
                f"the GPU's {memory:,} MB hold fewer than 2 logical GPUs of {gpu_mb} MB: using logical CPUs."
            )
            return _plan("cpu", n, True, why, [note])
        notes.append(f"only {fits} logical GPUs of {gpu_mb} MB fit in {memory:,} MB, not {n}.")
        n = fits
    why = (
        f"1 GPU ({names}) split into {n} logical GPUs of {gpu_mb} MB each, so the multi-device demos run: "
        "they share the one GPU's compute, so they show that the code is right, not a speed-up."
    )
    return _plan("gpu", n, True, why, notes, physical_gpus=1, memory_limit_mb=gpu_mb)


def _this_machines_gpus() -> list[dict]:
    """Physical GPUs TensorFlow sees (``hardware.gpu_devices``) with the driver's memory size where known."""
    from .. import hardware

    gpus = hardware.gpu_devices()
    smi = hardware.nvidia_smi_gpus() if gpus else None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:  # TensorFlow's GPU i is the i-th id in CUDA_VISIBLE_DEVICES, when it lists indices
        ids = [int(v) for v in visible.split(",")] if visible else list(range(len(gpus)))
    except ValueError:  # UUIDs: the driver's order cannot be matched
        ids = []
    for i, g in enumerate(gpus):
        g["memory_mb"] = smi[ids[i]]["memory_mb"] if smi and i < len(ids) and ids[i] < len(smi) else None
    return gpus


def apply_plan(plan: DevicePlan) -> list[str]:
    """Make the plan's devices in TensorFlow (before its first op); return their names.

    A CPU plan splits the CPU; a one-GPU plan splits the GPU into memory-limited logical
    GPUs; a multi-GPU plan makes the first N GPUs visible with memory growth. A clear
    ``DevicePlanError`` when TensorFlow had already initialised its devices or cannot
    initialise the GPU.

    Introduced in notebook 07.
    """
    import tensorflow as tf

    from .. import env

    restart = "Restart the kernel and apply the plan before any TensorFlow op (before effcourse.setup)."
    if plan.kind == "cpu":
        try:
            env._configure_devices(plan.count)
        except RuntimeError as err:
            raise DevicePlanError(str(err)) from err
        got = [d.name for d in tf.config.list_logical_devices("CPU")]
    else:
        physical = tf.config.list_physical_devices("GPU")
        if len(physical) < plan.physical_gpus:
            raise DevicePlanError(
                f"The plan uses {plan.physical_gpus} GPU(s) but TensorFlow sees "
                f"{len(physical)}: make the plan on this machine (parallel.device_plan())."
            )
        use = physical[: plan.physical_gpus]
        try:
            tf.config.set_visible_devices(use, "GPU")
            if plan.logical:
                config = tf.config.LogicalDeviceConfiguration(memory_limit=plan.memory_limit_mb)
                tf.config.set_logical_device_configuration(use[0], [config] * plan.count)
            else:
                for gpu in use:
                    tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as err:  # TensorFlow already created its devices
            raise DevicePlanError(
                f"TensorFlow has already initialised its devices in this process, so "
                f"they can no longer be split or hidden. {restart} ({err})"
            ) from err
        try:
            got = [d.name for d in tf.config.list_logical_devices("GPU")]
        except Exception as err:  # noqa: BLE001  (CUDA errors surface as many types)
            raise DevicePlanError(
                f"TensorFlow could not initialise the GPU ({err}). Check the driver with nvidia-smi and the "
                "install with `python -m effcourse.doctor`; to run on the CPU instead, restart the kernel "
                "and use parallel.device_plan(kind='cpu')."
            ) from err
    if len(got) < plan.count:
        raise DevicePlanError(
            f"TensorFlow made {len(got)} {plan.kind.upper()} device(s), not the {plan.count} "
            f"planned ({plan.reason}). Restart the kernel and ask for fewer (requested=...)."
        )
    return got[: plan.count]


def hardware_line(plan: DevicePlan) -> str:
    """What the measurements ran on, as one printable line: CPU, cores, GPUs, the plan's devices.

    Introduced in notebook 07.
    """
    import tensorflow as tf

    from .. import hardware

    kind = f"{'logical ' if plan.logical else ''}{plan.kind.upper()}"
    return (
        f"{hardware.cpu_name()} | {os.cpu_count()} cores | GPUs: {len(hardware.gpu_devices())} | "
        f"{plan.count} {kind} device{'s' if plan.count != 1 else ''} | TensorFlow {tf.__version__}"
    )


def mirrored(device_list):
    """A ``tf.distribute.MirroredStrategy`` over ``device_list`` that can live next to others.

    Every ``MirroredStrategy`` numbers its collective groups from 1, so a second strategy over
    another number of devices in the same process fails ("joining a group with size 4, but
    that group has size 2"). Each one made here gets its own key range, as TensorFlow's own
    tests do (``_collective_key_base`` in tensorflow/python/distribute/strategy_combinations.py).

    Introduced in notebook 07.
    """
    import tensorflow as tf

    cls = tf.distribute.MirroredStrategy
    if hasattr(cls, "_collective_key_base"):  # a TF-internal class attribute; absent: no-op
        cls._collective_key_base += 100_000
    return cls(list(device_list))
