"""The setup doctor: ``python -m effcourse.doctor`` (or ``make doctor``) checks a machine for the course.

Run it first, as a learner or an instructor. It reports the Python and package versions,
Keras 2 mode, the MNIST file and its verification, the CPU's vector units, the GPUs
(compute capability, memory, CUDA/cuDNN as TensorFlow sees them), what notebooks 03, 05
and 07 will use on this machine, and every problem with its fix. The exit status is 1 when
the course cannot run (a missing package, Keras 3 active, no verified data that it can
get), else 0. MNIST not downloaded yet on a machine that can reach the download is a
warning naming the one command (``make prepare``); asked at a terminal, the doctor offers
the download itself (``--download`` does it without asking, ``--no-download`` never asks).

``collect()`` reads the machine into a dict of facts; ``diagnose(facts)`` (pure) turns them
into findings; ``render`` prints them. Tests pass made-up facts. Introduced in notebook 00
(and the README's first steps).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
from dataclasses import dataclass
from importlib import metadata

PACKAGES = {
    "tensorflow": "TensorFlow",
    "tf-keras": "tf_keras",
    "tensorflow-model-optimization": "tfmot",
    "ai-edge-litert": "LiteRT",
    "filelock": "filelock",  # the results log's lock (every notebook)
}
PYTHON_RANGE = ((3, 10), (3, 12))  # pyproject's requires-python ">=3.10,<3.13"
FAIL, WARN, OK = "FAIL", "WARN", "ok"
PREPARE = "`make prepare` (without make: `python -m effcourse.prepare`)"


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report: a level (FAIL, WARN, ok), what was checked, what was found, the fix.

    Introduced in notebook 03.
    """

    level: str
    what: str
    found: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def can_reach(url: str, timeout: float = 3.0) -> bool:
    """True when a TCP connection to the URL's host (port 443) opens within ``timeout`` seconds.

    Introduced in notebook 00.
    """
    from urllib.parse import urlparse

    try:
        with socket.create_connection((urlparse(url).hostname, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _data_facts(download: bool = False) -> dict:
    from effcourse import data

    env_dir = os.environ.get("EFFCOURSE_DATA_DIR")
    missing = not env_dir and not (data.data_dir() / data.FILENAME).exists()
    try:
        path = data.locate(download=download)
        data.load_raw(path, verify=True)
        return {"ok": True, "path": str(path)}
    except data.DataError as err:
        facts = {"ok": False, "error": str(err), "missing": missing}
        if missing:
            facts["reachable"] = can_reach(data.KERAS_URL)
        return facts


def collect(tiny_model: bool = True, download: bool = False) -> dict:
    """Read this machine: versions, Keras mode, data, CPU, GPUs, device plan, XNNPACK (the doctor's facts).

    ``download=True`` downloads MNIST first when it is missing. Introduced in notebook 05.
    """
    facts = {
        "python": platform.python_version(),
        "python_tuple": tuple(sys.version_info[:2]),
        "versions": {name: _version(dist) for dist, name in PACKAGES.items()},
        "keras3_version": _version("keras"),
        "profile": os.environ.get("EFFCOURSE_PROFILE", "full"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if facts["versions"]["TensorFlow"] is None:
        return facts  # nothing below works without TensorFlow
    import effcourse  # noqa: F401  (selects Keras 2 before TensorFlow resolves tf.keras)
    from effcourse import hardware, parallel

    import tensorflow as tf

    facts["keras_module"] = getattr(tf.keras, "__name__", "")
    facts["data"] = _data_facts(download)
    cpuinfo = hardware.read_cpuinfo()
    facts["cpu"] = hardware.cpu_name(cpuinfo)
    facts["cpu_count"] = os.cpu_count()
    facts["cpu_features"] = hardware.cpu_features(cpuinfo)
    facts["onednn"] = hardware.onednn_enabled()
    gpus = parallel.plan._this_machines_gpus()
    facts["gpus"] = gpus
    smi = hardware.nvidia_smi_gpus()
    facts["driver_gpus"] = None if smi is None else len(smi)
    facts["build"] = hardware.build_info()
    facts["support"] = hardware.support(cpuinfo, gpus=gpus)
    facts["split"] = _logical_split()
    if tiny_model:
        facts["xnnpack"] = _xnnpack()
    return facts


def _logical_split() -> int:
    from effcourse import profile

    return profile.active().section("07_parallelism").logical_cpus


def _xnnpack() -> str:
    """'all', 'partly (...)' or 'none': whether XNNPACK takes over a tiny Dense model; or the error."""
    try:
        from effcourse import convert

        import tf_keras

        model = tf_keras.Sequential([tf_keras.layers.Input((8,)), tf_keras.layers.Dense(4)])
        return convert.TFLiteModel(convert.to_tflite(model)).delegated()
    except Exception as err:  # noqa: BLE001  (reported, not raised)
        return f"error: {type(err).__name__}: {err}"


def _word(v) -> str:
    return {True: "yes", False: "no", None: "unknown"}[v]


def diagnose(facts: dict) -> list[Finding]:
    """Every check as a ``Finding`` (pure: facts in, findings out).

    Introduced in notebook 03.
    """
    out = []
    lo, hi = PYTHON_RANGE
    py = tuple(facts["python_tuple"])
    out.append(
        Finding(OK, "Python", facts["python"])
        if lo <= py <= hi
        else Finding(
            FAIL,
            "Python",
            facts["python"],
            f"use Python {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]} (TensorFlow 2.21's range): `conda env create -f environment.yml`",
        )
    )
    for name, version in facts["versions"].items():
        if version is None:
            out.append(
                Finding(
                    FAIL, name, "not installed", "`pip install -e .` in the course folder (or `make venv`)"
                )
            )
        else:
            out.append(Finding(OK, name, version))
    if facts["versions"].get("TensorFlow") is None:
        return out
    keras = facts.get("keras_module", "")
    if keras.startswith("tf_keras"):
        out.append(Finding(OK, "Keras 2 mode", f"tf.keras is {keras} (tfmot needs Keras 2)"))
    else:
        out.append(
            Finding(
                FAIL,
                "Keras 2 mode",
                f"tf.keras is {keras or 'keras'} (Keras 3"
                + (f" {facts['keras3_version']})" if facts.get("keras3_version") else ")"),
                "tfmot needs Keras 2: `pip install tf_keras` (in the course's requirements), "
                "`import effcourse` before tensorflow, or set TF_USE_LEGACY_KERAS=1",
            )
        )
    out.append(_data_finding(facts["data"]))
    feats = facts["cpu_features"]
    from effcourse import hardware

    have = [hardware.CPU_FEATURES[f] for f, v in feats.items() if v]
    unknown = all(v is None for v in feats.values())
    out.append(
        Finding(
            OK,
            "CPU",
            f"{facts['cpu']} x{facts['cpu_count']}; "
            + (
                "vector units unknown (read from /proc/cpuinfo, which only Linux has)"
                if unknown
                else "units: " + (", ".join(have) or "none of AVX2/AVX-512/VNNI/bf16/fp16")
            )
            + f"; oneDNN {_word(facts['onednn'])}",
        )
    )
    if not unknown and feats.get("avx2") is False:
        out.append(
            Finding(
                WARN,
                "CPU",
                "no AVX2: TensorFlow's CPU kernels run slowly",
                "expect every notebook to take longer than its stated run time",
            )
        )
    out += _gpu_findings(facts)
    out += _notebook_findings(facts)
    return out


def _data_finding(d: dict) -> Finding:
    if d["ok"]:
        return Finding(OK, "MNIST data", f"{d['path']} (shapes and sha256 verified)")
    if d.get("missing") and d.get("reachable"):
        return Finding(
            WARN,
            "MNIST data",
            "not downloaded yet (the download can be reached from here)",
            f"{PREPARE} downloads and verifies it (11 MB) and trains the baselines; "
            "or `python -m effcourse.doctor --download`; notebook 00 also downloads it on first use",
        )
    first, *rest = d["error"].splitlines()
    if d.get("missing"):
        return Finding(
            FAIL,
            "MNIST data",
            "not downloaded yet, and the download cannot be reached (no network?)",
            "on a connected machine run " + PREPARE + ", then copy data/mnist.npz here, "
            "or set EFFCOURSE_DATA_DIR to a folder (a share) holding mnist.npz",
        )
    return Finding(FAIL, "MNIST data", first, " ".join(rest))


def _gpu_findings(facts) -> list[Finding]:
    out = []
    build = facts["build"]
    cuda = (
        f"TensorFlow built with CUDA {build['cuda']}, cuDNN {build['cudnn']}"
        if build["cuda_build"]
        else "TensorFlow built without CUDA"
    )
    gpus = facts["gpus"]
    if gpus:
        for g in gpus:
            cc = g.get("compute_capability")
            mem = f", {g['memory_mb']:,} MB" if g.get("memory_mb") else ", memory unknown"
            out.append(
                Finding(
                    OK,
                    "GPU",
                    f"{g['name']} (compute capability "
                    f"{'.'.join(map(str, cc)) if cc else 'unknown'}{mem}); {cuda}",
                )
            )
            if cc and tuple(cc) < hardware_cc():
                out.append(
                    Finding(
                        WARN,
                        "GPU",
                        f"{g['name']} has no tensor cores (compute capability < 7.0)",
                        "notebook 05's mixed float16 will not be faster on it",
                    )
                )
        return out
    visible = facts.get("cuda_visible_devices")
    if visible is not None and visible.strip() in ("", "-1"):
        out.append(
            Finding(
                WARN,
                "GPU",
                f"none visible: CUDA_VISIBLE_DEVICES={visible!r} hides every GPU",
                "unset CUDA_VISIBLE_DEVICES (or list the GPUs to use) and restart",
            )
        )
    elif facts.get("driver_gpus"):
        out.append(
            Finding(
                WARN,
                "GPU",
                f"nvidia-smi lists {facts['driver_gpus']} GPU(s), TensorFlow sees none ({cuda})",
                '`pip install -c constraints.txt -e ".[gpu]"` (tensorflow[and-cuda]; Linux or WSL2) '
                "and check the driver with nvidia-smi",
            )
        )
    else:
        out.append(Finding(OK, "GPU", f"none ({cuda}): the course runs on the CPU"))
    return out


def hardware_cc() -> tuple:
    from effcourse import hardware

    return hardware.GPU_FLOAT16_CC


def _notebook_findings(facts) -> list[Finding]:
    from effcourse import parallel

    out = []
    s = facts["support"]
    if s["gpu_float16"] or s["gpu_bfloat16"]:
        gain = "mixed float16 on tensor cores: expect faster training steps" + (
            " (bfloat16 too)" if s["gpu_bfloat16"] else ""
        )
    elif s["float16_units"] or s["bfloat16_units"]:
        kinds = [k for k, v in (("float16", s["cpu_float16"]), ("bfloat16", s["cpu_bfloat16"])) if v]
        gain = f"CPU {' and '.join(kinds)} units (through oneDNN): a gain is possible, measure it"
    else:
        gain = "no native float16/bfloat16 units: mixed precision is emulated, expect it slower than float32"
    out.append(Finding(OK, "notebook 05", gain))
    try:
        plan = parallel.device_plan(
            split=facts["split"],
            gpus=facts["gpus"],
            cpus=facts["cpu_count"],
            visible=facts.get("cuda_visible_devices"),
            driver_gpus=facts.get("driver_gpus"),
        )
        pipe = parallel.pipeline_mode(plan)
        out.append(
            Finding(
                OK, "notebook 07", f"up to {plan.count} replicas: {plan.reason} Pipelines run {pipe.name}."
            )
        )
    except parallel.DevicePlanError as err:
        out.append(Finding(WARN, "notebook 07", str(err), "see the README's GPU section"))
    x = facts.get("xnnpack")
    if x is None:
        pass
    elif x == "all":
        out.append(Finding(OK, "notebook 03", "XNNPACK active: LiteRT delegates the whole test model to it"))
    else:
        out.append(
            Finding(
                WARN,
                "notebook 03",
                f"XNNPACK delegation: {x}",
                "LiteRT runs its built-in kernels: latencies will be higher than the notebook's text",
            )
        )
    return out


def render(findings: list[Finding], facts: dict | None = None) -> str:
    """The report: one line per finding, then the problems with their fixes and the verdict.

    Introduced in notebook 03.
    """
    width = max(len(f.what) for f in findings)
    lines = ["effcourse doctor" + (f" (profile {facts['profile']})" if facts else "")]
    lines += [f"  [{f.level:>4}] {f.what:<{width}}  {f.found}" for f in findings]
    problems = [f for f in findings if f.level != OK]
    if problems:
        lines.append("\nProblems and fixes:")
        lines += [f"  {f.level} {f.what}: {f.found}\n       fix: {f.fix}" for f in problems]
    fails = [f for f in findings if f.level == FAIL]
    lines.append(
        "\n"
        + (
            f"The course cannot run here: {len(fails)} problem(s) to fix first."
            if fails
            else "The course can run here." + (" Read the warnings above." if problems else "")
        )
    )
    return "\n".join(lines)


def exit_status(findings: list[Finding]) -> int:
    """1 when any finding is a FAIL (the course cannot run), else 0.

    Introduced in notebook 03.
    """
    return 1 if any(f.level == FAIL for f in findings) else 0


def _offer_download(ask=input) -> bool:
    """At a terminal, when MNIST is missing and reachable: ask whether to download it now."""
    try:
        from effcourse import data
    except ImportError:  # no TensorFlow yet: the report says what to install first
        return False

    if os.environ.get("EFFCOURSE_DATA_DIR") or (data.data_dir() / data.FILENAME).exists():
        return False
    if not sys.stdin.isatty() or not can_reach(data.KERAS_URL):
        return False
    answer = ask(f"MNIST is not downloaded yet. Download it now into {data.data_dir()} (11 MB)? [Y/n] ")
    return answer.strip().lower() in ("", "y", "yes")


def main(argv=None) -> int:
    """Collect, diagnose, print; return the exit status.

    Introduced in notebook 03.
    """
    parser = argparse.ArgumentParser(
        prog="python -m effcourse.doctor", description="Check this machine for the course; say every fix."
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--download", action="store_true", help="download MNIST first if it is missing")
    group.add_argument("--no-download", action="store_true", help="never download or ask")
    args = parser.parse_args(argv)
    download = args.download or (not args.no_download and _offer_download())
    facts = collect(download=download)
    findings = diagnose(facts)
    print(render(findings, facts))
    return exit_status(findings)


if __name__ == "__main__":
    sys.exit(main())
