"""Hardware detection in one place: CPU name and flags, GPUs, oneDNN (notebooks 00 and 05).

Everything is read from the machine (/proc/cpuinfo, TensorFlow's device list); what cannot be
read is None (unknown), never a guess. Parsers take the text as an argument, so tests pass
made-up /proc/cpuinfo files.
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
# CPU flags the doctor reports: vector units the CPU kernels use.
CPU_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI (int8 dot products)",
    "avx_vnni": "AVX-VNNI (int8 dot products)",
    "amx_int8": "AMX int8 tiles",
    **{flag: f"{kind} ({flag})" for flag, kind in CPU_FLAGS.items()},
}


def read_cpuinfo(path: str = CPUINFO) -> str | None:
    """The text of /proc/cpuinfo, or None where there is none (macOS, Windows: flags then unknown).
    Introduced in notebook 05."""
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def cpu_name(cpuinfo_text: str | None = ...) -> str:
    """The CPU's model name from /proc/cpuinfo (default: this machine's), else what ``platform`` says.
    Introduced in notebook 00."""
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
    found = set()
    for line in (cpuinfo_text or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    return {flag: (flag in found if found else None) for flag in wanted}


def cpu_flags(cpuinfo_text: str | None) -> dict:
    """Which of ``CPU_FLAGS`` the CPU reports: {flag: True/False}, or {flag: None} if unknown.
    Introduced in notebook 05."""
    return _flags_present(cpuinfo_text, CPU_FLAGS)


def cpu_features(cpuinfo_text: str | None) -> dict:
    """Which of ``CPU_FEATURES`` the CPU reports: {flag: True/False}, {flag: None} if unknown.
    Introduced in notebook 00."""
    return _flags_present(cpuinfo_text, CPU_FEATURES)


def gpu_devices() -> list[dict]:
    """Physical GPUs TensorFlow sees, with their names and compute capabilities.
    Introduced in notebook 05."""
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:  # noqa: BLE001  (details are best effort)
            details = {}
        name, cc = details.get("device_name", gpu.name), details.get("compute_capability")
        out.append({"device": gpu.name, "name": name, "compute_capability": cc})
    return out


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN CPU kernels (None if it cannot be told).
    Introduced in notebook 05."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # noqa: BLE001  (private API; unknown if it moved)
        return None


def support(cpuinfo_text: str | None = ..., gpus: list | None = None) -> dict:
    """Detect native float16 / bfloat16 arithmetic on this machine: GPUs and CPU flags.
    Introduced in notebook 05.

    GPU tensor cores: float16 from compute capability 7.0 (Volta), bfloat16 from 8.0 (Ampere).
    CPU: the ``CPU_FLAGS`` (TensorFlow reaches them through oneDNN). Unreadable flags or
    capabilities give None (unknown), not False. ``cpuinfo_text`` and ``gpus`` are for tests.
    """
    if cpuinfo_text is ...:
        cpuinfo_text = read_cpuinfo()
    gpus = gpu_devices() if gpus is None else gpus
    flags = cpu_flags(cpuinfo_text)
    ccs = [g.get("compute_capability") for g in gpus]
    gpu_f16 = any(cc is not None and tuple(cc) >= GPU_FLOAT16_CC for cc in ccs)
    gpu_bf16 = any(cc is not None and tuple(cc) >= GPU_BFLOAT16_CC for cc in ccs)

    def cpu_has(kind):
        vals = [v for f, v in flags.items() if CPU_FLAGS[f] == kind]
        return True if True in vals else None if None in vals else False

    def combine(on_gpu, on_cpu):
        return True if on_gpu or on_cpu else None if on_cpu is None or None in ccs else False

    cpu_f16, cpu_bf16 = cpu_has("float16"), cpu_has("bfloat16")
    name = _model_name(cpuinfo_text) or cpu_name()  # a text naming no CPU: this machine's name
    out = {"cpu": name, "cpu_flags": flags, "gpus": gpus, "onednn": onednn_enabled()}
    out.update(cpu_float16=cpu_f16, cpu_bfloat16=cpu_bf16, gpu_float16=gpu_f16, gpu_bfloat16=gpu_bf16)
    return dict(out, float16_units=combine(gpu_f16, cpu_f16), bfloat16_units=combine(gpu_bf16, cpu_bf16))


def support_table(s: dict | None = None):
    """``support()`` as a small DataFrame for display.
    Introduced in notebook 05."""
    import pandas as pd

    s = s or support()
    word = {True: "yes", False: "no", None: "unknown"}.get
    rows = [("CPU", s["cpu"]), ("oneDNN enabled in TensorFlow", word(s["onednn"]))]
    rows += [(f"CPU flag {flag} ({CPU_FLAGS[flag]})", word(v)) for flag, v in s["cpu_flags"].items()]
    rows += [(f"GPU {g['name']}", f"compute capability {g['compute_capability']}") for g in s["gpus"]]
    rows += [] if s["gpus"] else [("GPU", "none found")]
    rows += [("native float16 arithmetic", word(s["float16_units"]))]
    rows += [("native bfloat16 arithmetic", word(s["bfloat16_units"]))]
    return pd.DataFrame(rows, columns=["what", "value"]).set_index("what")


def nvidia_smi_gpus(run=None) -> list[dict] | None:
    """GPUs the NVIDIA driver lists (``nvidia-smi``, even those TensorFlow cannot use): name and MB.
    Introduced in notebook 07. None without a driver; ``run`` (tests) returns nvidia-smi's text."""
    import shutil
    import subprocess

    args = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]
    if run is not None:
        text = run(args)
    elif shutil.which("nvidia-smi") is None:
        return None
    else:
        try:
            text = subprocess.run(args, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return None
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
    Introduced in notebook 00."""
    import tensorflow as tf

    try:
        info = dict(tf.sysconfig.get_build_info())
    except Exception:  # noqa: BLE001  (best effort)
        info = {}
    cuda_build = bool(info.get("is_cuda_build", False))
    return {"cuda_build": cuda_build, "cuda": info.get("cuda_version"), "cudnn": info.get("cudnn_version")}
