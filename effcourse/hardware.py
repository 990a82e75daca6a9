"""Hardware detection in one place: CPU name and flags, GPUs, oneDNN (notebooks 00 and 05).

``env.hardware_report`` (notebook 00) names the CPU with ``cpu_name``; ``precision``
(notebook 05) asks ``support`` which float16 / bfloat16 arithmetic units this machine has.
Everything is read from the machine (/proc/cpuinfo, TensorFlow's device list): where it
cannot be read the answer is None (unknown), never a guess. Every function that parses
takes the text as an argument, so the logic is tested with made-up /proc/cpuinfo files.
"""

from __future__ import annotations

import platform

CPUINFO = "/proc/cpuinfo"
# CPU flags (as in /proc/cpuinfo) that give native low-precision arithmetic.
CPU_FLAGS = {
    "avx512_bf16": "bfloat16",  # AVX-512 BF16: VDPBF16PS dot products (Cooper Lake, Zen 4+)
    "amx_bf16": "bfloat16",  # AMX tiles with bfloat16 (Sapphire Rapids+)
    "avx512_fp16": "float16",  # AVX-512 FP16 arithmetic (Sapphire Rapids+)
    "amx_fp16": "float16",  # AMX tiles with float16 (Granite Rapids+)
}
GPU_FLOAT16_CC = (7, 0)  # tensor cores with float16: Volta and later
GPU_BFLOAT16_CC = (8, 0)  # tensor cores with bfloat16: Ampere and later


def read_cpuinfo(path: str = CPUINFO) -> str | None:
    """The text of /proc/cpuinfo, or None where there is none (macOS, Windows: flags then read as unknown).

    Introduced in notebook 05.
    """
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def cpu_name(cpuinfo_text: str | None = ...) -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` says.

    ``cpuinfo_text`` defaults to this machine's /proc/cpuinfo; pass a text to test the parsing.

    Introduced in notebook 00.
    """
    if cpuinfo_text is ...:
        cpuinfo_text = read_cpuinfo()
    return _model_name(cpuinfo_text) or platform.processor() or platform.machine()


def _model_name(cpuinfo_text: str | None) -> str | None:
    for line in (cpuinfo_text or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def _flags_present(cpuinfo_text: str | None, wanted) -> dict:
    """{flag: True/False} for each wanted flag of a /proc/cpuinfo text; {flag: None} if unreadable."""
    found: set[str] = set()
    for line in (cpuinfo_text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    if not found:
        return {flag: None for flag in wanted}
    return {flag: flag in found for flag in wanted}


def cpu_flags(cpuinfo_text: str | None) -> dict:
    """Which of ``CPU_FLAGS`` the CPU reports: {flag: True/False}, or {flag: None} if unknown.

    Introduced in notebook 05.
    """
    return _flags_present(cpuinfo_text, CPU_FLAGS)


def gpu_devices() -> list[dict]:
    """Physical GPUs TensorFlow sees, with their names and compute capabilities.

    Introduced in notebook 05.
    """
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:  # noqa: BLE001  (details are best effort)
            details = {}
        out.append(
            {
                "device": gpu.name,
                "name": details.get("device_name", gpu.name),
                "compute_capability": details.get("compute_capability"),
            }
        )
    return out


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN CPU kernels (None if it cannot be told).

    Introduced in notebook 05.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # noqa: BLE001  (private API; unknown if it moved)
        return None


def support(cpuinfo_text: str | None = ..., gpus: list | None = None) -> dict:
    """Detect native float16 / bfloat16 arithmetic on this machine: GPUs and CPU flags.

    * GPU: tensor cores for float16 need compute capability >= 7.0 (Volta+), for bfloat16
      >= 8.0 (Ampere+).
    * CPU: ``avx512_bf16`` / ``amx_bf16`` give bfloat16, ``avx512_fp16`` / ``amx_fp16`` float16
      arithmetic, read from /proc/cpuinfo (TensorFlow reaches them through oneDNN).

    Nothing is assumed: where the flags cannot be read the answer is None (unknown), not
    False. ``cpuinfo_text`` and ``gpus`` can be given to test the logic.

    Introduced in notebook 05.
    """
    if cpuinfo_text is ...:
        cpuinfo_text = read_cpuinfo()
    if gpus is None:
        gpus = gpu_devices()
    flags = cpu_flags(cpuinfo_text)
    name = _model_name(cpuinfo_text) or cpu_name()  # a text naming no CPU: this machine's name

    def cc_at_least(gpu, need):
        cc = gpu.get("compute_capability")
        return None if cc is None else tuple(cc) >= need

    gpu_f16 = [g for g in gpus if cc_at_least(g, GPU_FLOAT16_CC)]
    gpu_bf16 = [g for g in gpus if cc_at_least(g, GPU_BFLOAT16_CC)]

    def cpu_has(kind):
        vals = [v for f, v in flags.items() if CPU_FLAGS[f] == kind]
        if any(v is True for v in vals):
            return True
        return None if any(v is None for v in vals) else False

    def combine(gpu_list, cpu_value):
        if gpu_list or cpu_value is True:
            return True
        if cpu_value is None or any(g.get("compute_capability") is None for g in gpus):
            return None
        return False

    cpu_f16, cpu_bf16 = cpu_has("float16"), cpu_has("bfloat16")
    return {
        "cpu": name,
        "cpu_flags": flags,
        "gpus": gpus,
        "onednn": onednn_enabled(),
        "cpu_float16": cpu_f16,
        "cpu_bfloat16": cpu_bf16,
        "gpu_float16": bool(gpu_f16),
        "gpu_bfloat16": bool(gpu_bf16),
        "float16_units": combine(gpu_f16, cpu_f16),
        "bfloat16_units": combine(gpu_bf16, cpu_bf16),
    }


def support_table(s: dict | None = None):
    """``support()`` as a small DataFrame for display.

    Introduced in notebook 05.
    """
    import pandas as pd

    s = s or support()

    def word(v):
        return {True: "yes", False: "no", None: "unknown"}[v]

    rows = [
        {"what": "CPU", "value": s["cpu"]},
        {"what": "oneDNN enabled in TensorFlow", "value": word(s["onednn"])},
    ]
    rows += [
        {"what": f"CPU flag {flag} ({CPU_FLAGS[flag]})", "value": word(v)}
        for flag, v in s["cpu_flags"].items()
    ]
    if s["gpus"]:
        rows += [
            {"what": f"GPU {g['name']}", "value": f"compute capability {g['compute_capability']}"}
            for g in s["gpus"]
        ]
    else:
        rows.append({"what": "GPU", "value": "none found"})
    rows += [
        {"what": "native float16 arithmetic", "value": word(s["float16_units"])},
        {"what": "native bfloat16 arithmetic", "value": word(s["bfloat16_units"])},
    ]
    return pd.DataFrame(rows).set_index("what")


# --- added for the learner's own hardware (parallel.device_plan, effcourse.doctor) ---

# CPU flags (as in /proc/cpuinfo) the doctor reports: vector units the CPU kernels use.
CPU_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI (int8 dot products)",
    "avx_vnni": "AVX-VNNI (int8 dot products)",
    "amx_int8": "AMX int8 tiles",
    **{flag: f"{kind} ({flag})" for flag, kind in CPU_FLAGS.items()},
}


def cpu_features(cpuinfo_text: str | None) -> dict:
    """Which of ``CPU_FEATURES`` the CPU reports: {flag: True/False}, {flag: None} if unknown.

    Introduced in notebook 00.
    """
    return _flags_present(cpuinfo_text, CPU_FEATURES)


def nvidia_smi_gpus(run=None) -> list[dict] | None:
    """GPUs the NVIDIA driver lists (``nvidia-smi``): name and memory in MB; None without a driver.

    Independent of TensorFlow, so a GPU that TensorFlow cannot use (no CUDA libraries, a
    hidden ``CUDA_VISIBLE_DEVICES``) still shows here. ``run`` (tests) replaces the call:
    it takes the argument list and returns nvidia-smi's text output, or None.

    Introduced in notebook 07.
    """
    import shutil
    import subprocess

    args = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]
    if run is None:
        if shutil.which("nvidia-smi") is None:
            return None
        try:
            text = subprocess.run(args, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    else:
        text = run(args)
    if text is None:
        return None
    out = []
    for line in text.strip().splitlines():
        name, _, memory = line.rpartition(",")
        try:
            out.append({"name": name.strip(), "memory_mb": int(float(memory))})
        except ValueError:
            continue
    return out


def build_info() -> dict:
    """CUDA and cuDNN versions this TensorFlow was built with (``tf.sysconfig.get_build_info``).

    Introduced in notebook 00.
    """
    import tensorflow as tf

    try:
        info = dict(tf.sysconfig.get_build_info())
    except Exception:  # noqa: BLE001  (best effort)
        info = {}
    return {
        "cuda_build": bool(info.get("is_cuda_build", False)),
        "cuda": info.get("cuda_version"),
        "cudnn": info.get("cudnn_version"),
    }
