"""Which devices the multi-device demos run on, and why: 0, 1 or many GPUs (notebook 07).

``device_plan`` is a pure decision from a device list (read from this machine, or made up
in tests); ``apply_plan`` makes the devices in TensorFlow (before its first op); and
``demo_sizes`` turns a device count into the replica counts, pipeline stages and Gantt
chart notebook 07 runs, so that no part of it ever gets an empty list:

* no GPU: the CPU split into logical devices (``effcourse.setup(logical_cpus=N)``'s split):
  the code is the multi-GPU code, the speed is one CPU's;
* one GPU: the GPU split into logical GPUs, each with a memory limit
  (``tf.config.set_logical_device_configuration``), so the same demos run; they share
  the one GPU's compute, as logical CPUs share the cores;
* two or more GPUs: the real GPUs, one replica each, memory growth on (so that the
  worker processes of section 4 still find memory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import EffcourseError

DEVICE_PREFIX = "/device:"  # as tf.config.list_logical_devices names them
DEFAULT_SPLIT = 4  # logical devices when nothing else is said (notebook 07's quick profile)
LOGICAL_GPU_MB = 1024  # memory limit of one logical GPU: the demos' models need a few MB
GPU_HEADROOM = 0.8  # share of a GPU's memory the logical GPUs may take together


class DevicePlanError(EffcourseError, ValueError):
    """The devices asked for cannot be made on this machine; the message says what can.

    Introduced in notebook 07.
    """


@dataclass(frozen=True)
class DevicePlan:
    """The devices notebook 07 replicates over, and the reason they were chosen.

    ``kind`` "gpu" or "cpu"; ``devices`` the logical device names TensorFlow will list;
    ``logical`` True when they are slices of fewer physical devices (they share compute);
    ``memory_limit_mb`` each logical GPU's limit; ``memory_growth`` for real GPUs;
    ``device_memory_mb`` the smallest real GPU's memory where the driver reported it;
    ``physical_gpus`` how many physical GPUs the plan uses; ``warnings`` what the learner
    should know (a fallback, an unknown memory size, GPUs left unused).

    Introduced in notebook 07.
    """

    kind: str
    devices: tuple
    logical: bool
    reason: str
    warnings: tuple = ()
    physical_gpus: int = 0
    memory_limit_mb: int | None = None
    memory_growth: bool = False
    device_memory_mb: int | None = None

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def real_devices(self) -> int:
        """How many devices really compute in parallel: the GPUs, or 1 for logical slices of one device."""
        return 1 if self.logical else self.count

    def describe(self) -> str:
        """The reason and every warning, as lines to print."""
        return "\n".join([self.reason, *(f"Note: {w}" for w in self.warnings)])


def _devices(n: int) -> str:
    return f"{n} device{'s' if n != 1 else ''}"


def _names(kind: str, n: int) -> tuple:
    return tuple(f"{DEVICE_PREFIX}{kind.upper()}:{i}" for i in range(n))


def _positive(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DevicePlanError(f"{name} must be a positive whole number of devices, got {value!r}")
    return value


def _gpu_diagnosis(visible: str | None, driver_gpus: int | None) -> list[str]:
    """Why TensorFlow might see no GPU although the machine has one."""
    notes = []
    if visible is not None and visible.strip() in ("", "-1"):
        notes.append(
            f"CUDA_VISIBLE_DEVICES is set to {visible!r}, which hides every GPU from TensorFlow: "
            "unset it (or list the GPUs to use, e.g. CUDA_VISIBLE_DEVICES=0) and restart the kernel."
        )
    if driver_gpus and not notes:  # the driver sees GPUs, nothing hides them: TensorFlow lacks CUDA
        notes.append(
            f"nvidia-smi lists {driver_gpus} GPU(s) but TensorFlow cannot use them: install the "
            "CUDA build with `pip install -e '.[gpu]'` (tensorflow[and-cuda]) and check "
            "`python -m effcourse.doctor`."
        )
    return notes


def device_plan(
    requested: int | None = None,
    gpus: list | None = None,
    cpus: int | None = None,
    *,
    split: int = DEFAULT_SPLIT,
    kind: str = "auto",
    gpu_mb: int = LOGICAL_GPU_MB,
    visible: str | None = ...,
    driver_gpus: int | None = ...,
) -> DevicePlan:
    """Choose the devices for the multi-device demos, and say why.

    ``requested``: exactly that many devices (an error if this machine cannot give them);
    None: the automatic choice, with ``split`` logical devices where there are fewer than
    two GPUs. ``kind``: "auto", "gpu" (GPUs or an error) or "cpu" (logical CPUs even with
    GPUs). ``gpus``: the GPUs as dicts with an optional ``memory_mb`` (default: this machine's,
    from ``effcourse.hardware``); ``cpus``: physical cores (default ``os.cpu_count()``);
    ``gpu_mb``: each logical GPU's memory limit; ``visible`` (``CUDA_VISIBLE_DEVICES``) and
    ``driver_gpus`` (nvidia-smi's count) only explain a machine whose GPUs TensorFlow does
    not see. Pure: nothing is changed; ``apply_plan`` makes the devices.

    Introduced in notebook 07.
    """
    requested = _positive("requested", requested)
    split = _positive("split", split)
    if kind not in ("auto", "gpu", "cpu"):
        raise DevicePlanError(f"kind must be 'auto', 'gpu' or 'cpu', got {kind!r}")
    if gpus is None:
        gpus = _this_machines_gpus()
    if cpus is None:
        cpus = os.cpu_count() or 1
    if visible is ...:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if driver_gpus is ...:
        driver_gpus = None if gpus else _driver_gpu_count()
    gpus = list(gpus)
    target = requested or split
    cores = f"{cpus} physical core{'s' if cpus != 1 else ''}"

    if kind == "gpu" and not gpus:
        raise DevicePlanError(
            "GPUs were asked for (kind='gpu') but TensorFlow sees none. "
            + " ".join(
                _gpu_diagnosis(visible, driver_gpus)
                or ["This machine has no GPU TensorFlow can use: use kind='auto' or 'cpu'."]
            )
        )
    if not gpus or kind == "cpu":
        warnings = [] if kind == "cpu" else _gpu_diagnosis(visible, driver_gpus)
        why = (
            f"logical CPU devices asked for (kind='cpu'), {len(gpus)} GPU(s) left unused"
            if kind == "cpu"
            else "no GPU that TensorFlow can use"
        )
        if target == 1:
            return DevicePlan(
                "cpu",
                _names("cpu", 1),
                logical=False,
                warnings=tuple(warnings),
                reason=f"1 CPU device ({why}), as asked: nothing to replicate over.",
            )
        return DevicePlan(
            "cpu",
            _names("cpu", target),
            logical=True,
            warnings=tuple(warnings),
            reason=(
                f"{target} logical CPU devices ({why}): they share the same "
                f"{cores}, so they show that the multi-device code is right, not that it is fast."
            ),
        )

    if len(gpus) >= 2:
        n = len(gpus) if requested is None else requested
        if n > len(gpus):
            raise DevicePlanError(
                f"{requested} devices asked for, but this machine has {len(gpus)} GPUs. Ask for at most "
                f"{len(gpus)}, or for logical CPU devices with kind='cpu'."
            )
        warnings = (
            [f"{len(gpus) - n} of the {len(gpus)} GPUs left unused (requested={n})."] if n < len(gpus) else []
        )
        memories = [g.get("memory_mb") for g in gpus[:n]]
        return DevicePlan(
            "gpu",
            _names("gpu", n),
            logical=False,
            physical_gpus=n,
            memory_growth=True,
            device_memory_mb=min(memories) if all(memories) else None,
            warnings=tuple(warnings),
            reason=f"{n} real GPUs, one replica each ({_gpu_names(gpus[:n])}): real parallel "
            "compute; memory grows as needed so other processes can share them.",
        )

    # one GPU
    gpu = gpus[0]
    if requested == 1:
        return DevicePlan(
            "gpu",
            _names("gpu", 1),
            logical=False,
            physical_gpus=1,
            memory_growth=True,
            device_memory_mb=gpu.get("memory_mb"),
            reason=f"1 GPU ({_gpu_names(gpus)}), as asked: one device, nothing to replicate over.",
        )
    memory = gpu.get("memory_mb")
    warnings = []
    n = target
    if memory:
        fits = int(memory * GPU_HEADROOM // gpu_mb)
        if fits < target:
            if requested is not None:
                raise DevicePlanError(
                    f"{requested} logical GPUs of {gpu_mb} MB each need {requested * gpu_mb:,} MB, but the GPU has "
                    f"{memory:,} MB (at most {GPU_HEADROOM:.0%} of it is given out): {fits} fit. Ask for at most "
                    f"{fits}, lower gpu_mb, or use kind='cpu'."
                )
            if fits >= 2:
                warnings.append(
                    f"only {fits} logical GPUs of {gpu_mb} MB fit in {memory:,} MB, not {target}."
                )
                n = fits
            else:
                return DevicePlan(
                    "cpu",
                    _names("cpu", target),
                    logical=True,
                    warnings=(
                        f"the GPU's {memory:,} MB hold fewer than 2 logical GPUs of {gpu_mb} MB: using logical "
                        "CPU devices instead.",
                    ),
                    reason=f"{target} logical CPU devices (the one GPU is too small to split): they share the "
                    f"same {cores}, so they show that the code is right, not that it is fast.",
                )
    else:
        warnings.append(
            f"the GPU's memory size is unknown (no nvidia-smi): each logical GPU gets {gpu_mb} MB; "
            "if TensorFlow cannot make them, ask for fewer (requested=2) or lower gpu_mb."
        )
    return DevicePlan(
        "gpu",
        _names("gpu", n),
        logical=True,
        physical_gpus=1,
        memory_limit_mb=gpu_mb,
        warnings=tuple(warnings),
        reason=f"1 GPU ({_gpu_names(gpus)}) split into {n} logical GPUs of {gpu_mb} MB each, so the multi-device "
        "demos run: they share the one GPU's compute, so they show that the code is right, not a speed-up.",
    )


def _gpu_names(gpus) -> str:
    names = [g.get("name") or g.get("device") or "GPU" for g in gpus]
    if len(set(names)) == 1:
        return f"{len(names)} x {names[0]}" if len(names) > 1 else names[0]
    return ", ".join(names)


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


def _driver_gpu_count() -> int | None:
    from .. import hardware

    smi = hardware.nvidia_smi_gpus()
    return None if smi is None else len(smi)


def apply_plan(plan: DevicePlan) -> list[str]:
    """Make the plan's devices in TensorFlow; must run before its first op.

    CPU plans split the CPU (as ``effcourse.setup(logical_cpus=N)``); a one-GPU plan splits
    the GPU into memory-limited logical GPUs; a multi-GPU plan makes the first N GPUs
    visible with memory growth. Returns the logical device names TensorFlow then lists:
    a clear ``DevicePlanError`` when TensorFlow had already initialised its devices, or
    cannot initialise the GPU.

    Introduced in notebook 07.
    """
    import tensorflow as tf

    from .. import env

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
                f"The plan uses {plan.physical_gpus} GPU(s) but TensorFlow sees {len(physical)}: "
                "make the plan on this machine (parallel.device_plan())."
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
                "TensorFlow has already initialised its devices in this process, so they can no longer be "
                "split or hidden. Restart the kernel and apply the plan before any TensorFlow op "
                f"(before effcourse.setup). ({err})"
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


@dataclass(frozen=True)
class DemoSizes:
    """What notebook 07 runs for a number of devices: never an empty list.

    ``gradient_replicas``: counts > 1 for the gradient check (empty with one device, and
    ``notes`` says so); ``scaling_replicas``: counts for the throughput sweep (at least
    [1]); ``fit_replicas``: the replicas of the ``model.fit`` demo; ``pipe_stages``: K for
    the GPipe sweep (at least [1]); ``gantt``: the (K, M) drawn; ``model_devices``: device
    indices for the 3-stage model-parallel split; ``memory_splits``: the K-way splits whose
    bytes per device section 7 measures (always 1, one device); ``notes``: what was left out and why.

    Introduced in notebook 07.
    """

    devices: int
    gradient_replicas: list
    scaling_replicas: list
    fit_replicas: int
    pipe_stages: list
    micro_batches: list
    gantt: tuple
    model_devices: list
    notes: list
    memory_splits: list = field(default_factory=lambda: [1])


def demo_sizes(
    n_devices: int, replicas, pipe_stages, micro_batches, gantt=None, memory_splits=()
) -> DemoSizes:
    """The replica counts, pipeline stages and Gantt chart for ``n_devices`` devices.

    ``replicas``, ``pipe_stages``, ``micro_batches`` and ``gantt`` are the profile's wishes
    (e.g. (1, 2, 4), (2, 4), (1, 2, 4, 8), (4, 8)); counts above ``n_devices`` are left out
    and said so. With one device the demos still run: one replica, a one-stage pipeline.
    ``memory_splits`` (e.g. (2, 4)): the K-way splits of section 7, fitted the same way.

    Introduced in notebook 07.
    """
    n = _positive("n_devices", n_devices)
    replicas, stages, micro = sorted(set(replicas)), sorted(set(pipe_stages)), sorted(set(micro_batches))
    if not replicas or not stages or not micro:
        raise ValueError("replicas, pipe_stages and micro_batches each need at least one value")
    notes = []
    fit = [r for r in replicas if r <= n] or [1]
    grad = [r for r in fit if r > 1]
    if not grad:
        notes.append("1 device: no gradient check across replicas (it needs 2 or more devices).")
    left = [r for r in replicas if r > n]
    if left:
        notes.append(f"replica counts {left} left out: {_devices(n)}.")
    k = [s for s in stages if s <= n]
    if not k:
        k = [min(n, max(stages))]
        notes.append(f"pipeline stages {stages} need more devices than {_devices(n)}: running K={k[0]}.")
    elif len(k) < len(stages):
        notes.append(f"pipeline stages {[s for s in stages if s > n]} left out: {_devices(n)}.")
    want = tuple(gantt) if gantt is not None else (max(k), max(micro))
    chosen = want if want[0] in k and want[1] in micro else (max(k), max(micro))
    if chosen != want:
        notes.append(f"Gantt chart for K={chosen[0]}, M={chosen[1]} instead of K={want[0]}, M={want[1]}.")
    splits = sorted(set(int(s) for s in memory_splits) | {1})
    fitted = [s for s in splits if s <= n]
    if len(fitted) < len(splits):
        notes.append(f"memory splits K={[s for s in splits if s > n]} left out: {_devices(n)}.")
    return DemoSizes(
        memory_splits=fitted,
        devices=n,
        gradient_replicas=grad,
        scaling_replicas=fit,
        fit_replicas=max(fit),
        pipe_stages=k,
        micro_batches=micro,
        gantt=chosen,
        model_devices=[i % n for i in range(3)],
        notes=notes,
    )
