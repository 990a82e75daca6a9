"""The setup doctor: ``python -m effcourse.doctor`` (or ``make doctor``) checks a machine for the course.

It reports versions, Keras 2 mode, the MNIST file, the CPU's vector units, the GPUs, what
notebooks 03, 05 and 07 will use here, and every problem with its fix; exit status 1 when the
course cannot run. MNIST not downloaded yet but reachable is a warning; at a terminal the doctor
offers the download (``--download``: without asking, ``--no-download``: never).
``collect()`` reads the machine into facts, ``diagnose(facts)`` (pure) turns them into findings.
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
    """One line of the report: a level (FAIL, WARN, ok), what was checked, what was found, the fix."""

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
    """True when a TCP connection to the URL's host (port 443) opens within ``timeout`` seconds."""
    from urllib.parse import urlparse

    try:
        with socket.create_connection((urlparse(url).hostname, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _data_facts(download: bool = False) -> dict:
    from effcourse import data

    missing = not os.environ.get("EFFCOURSE_DATA_DIR") and not (data.data_dir() / data.FILENAME).exists()
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
    """Read this machine (versions, Keras mode, data, CPU, GPUs, XNNPACK); ``download``: fetch MNIST first."""
    facts = dict(python=platform.python_version(), python_tuple=tuple(sys.version_info[:2]))
    facts["versions"] = {name: _version(dist) for dist, name in PACKAGES.items()}
    facts.update(keras3_version=_version("keras"), profile=os.environ.get("EFFCOURSE_PROFILE", "full"))
    facts["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    if facts["versions"]["TensorFlow"] is None:
        return facts  # nothing below works without TensorFlow
    import effcourse  # noqa: F401  (selects Keras 2 before TensorFlow resolves tf.keras)
    from effcourse import hardware, parallel, profile

    import tensorflow as tf

    cpuinfo = hardware.read_cpuinfo()
    gpus = parallel.plan._this_machines_gpus()
    smi = hardware.nvidia_smi_gpus()
    facts.update(keras_module=getattr(tf.keras, "__name__", ""), data=_data_facts(download), gpus=gpus)
    facts.update(cpu=hardware.cpu_name(cpuinfo), cpu_count=os.cpu_count(), onednn=hardware.onednn_enabled())
    facts.update(cpu_features=hardware.cpu_features(cpuinfo), build=hardware.build_info())
    facts.update(driver_gpus=None if smi is None else len(smi), support=hardware.support(cpuinfo, gpus=gpus))
    facts["split"] = profile.active().section("07_parallelism").logical_cpus
    if tiny_model:
        facts["xnnpack"] = _xnnpack()
    return facts


def _xnnpack() -> str:
    """'all', 'partly (...)' or 'none': whether XNNPACK takes over a tiny Dense model; or the error."""
    try:
        from effcourse import convert

        import tf_keras

        model = tf_keras.Sequential([tf_keras.layers.Input((8,)), tf_keras.layers.Dense(4)])
        return convert.TFLiteModel(convert.to_tflite(model)).delegated()
    except Exception as err:  # noqa: BLE001  (reported, not raised)
        return f"error: {type(err).__name__}: {err}"


def diagnose(facts: dict) -> list[Finding]:
    """Every check as a ``Finding`` (pure: facts in, findings out)."""
    from effcourse import hardware

    (lo, hi), py = PYTHON_RANGE, facts["python"]
    fix = f"use Python {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]} (TensorFlow 2.21's range): "
    fix += "`conda env create -f environment.yml`"
    out = [
        Finding(OK, "Python", py)
        if lo <= tuple(facts["python_tuple"]) <= hi
        else Finding(FAIL, "Python", py, fix)
    ]
    for name, version in facts["versions"].items():
        fix = "`pip install -e .` in the course folder (or `make venv`)"
        out.append(Finding(OK, name, version) if version else Finding(FAIL, name, "not installed", fix))
    if facts["versions"].get("TensorFlow") is None:
        return out
    keras = facts.get("keras_module", "")
    if keras.startswith("tf_keras"):
        out.append(Finding(OK, "Keras 2 mode", f"tf.keras is {keras} (tfmot needs Keras 2)"))
    else:
        k3 = f" {facts['keras3_version']}" if facts.get("keras3_version") else ""
        fix = "tfmot needs Keras 2: `pip install tf_keras` (in the course's requirements), "
        fix += "`import effcourse` before tensorflow, or set TF_USE_LEGACY_KERAS=1"
        out.append(Finding(FAIL, "Keras 2 mode", f"tf.keras is {keras or 'keras'} (Keras 3{k3})", fix))
    out.append(_data_finding(facts["data"]))
    feats = facts["cpu_features"]
    have = [hardware.CPU_FEATURES[f] for f, v in feats.items() if v]
    unknown = all(v is None for v in feats.values())
    units = (
        "vector units unknown (read from /proc/cpuinfo, which only Linux has)"
        if unknown
        else "units: " + (", ".join(have) or "none of AVX2/AVX-512/VNNI/bf16/fp16")
    )
    onednn = {True: "yes", False: "no", None: "unknown"}[facts["onednn"]]
    out.append(Finding(OK, "CPU", f"{facts['cpu']} x{facts['cpu_count']}; {units}; oneDNN {onednn}"))
    if not unknown and feats.get("avx2") is False:
        fix = "expect every notebook to take longer than its stated run time"
        out.append(Finding(WARN, "CPU", "no AVX2: TensorFlow's CPU kernels run slowly", fix))
    return out + _gpu_findings(facts) + _notebook_findings(facts)


def _data_finding(d: dict) -> Finding:
    if d["ok"]:
        return Finding(OK, "MNIST data", f"{d['path']} (shapes and sha256 verified)")
    if d.get("missing") and d.get("reachable"):
        fix = f"{PREPARE} downloads and verifies it (11 MB) and trains the baselines; or `python -m "
        fix += "effcourse.doctor --download`; notebook 00 also downloads it on first use"
        return Finding(WARN, "MNIST data", "not downloaded yet (the download can be reached from here)", fix)
    if d.get("missing"):
        fix = f"on a connected machine run {PREPARE}, then copy data/mnist.npz here, "
        fix += "or set EFFCOURSE_DATA_DIR to a folder (a share) holding mnist.npz"
        found = "not downloaded yet, and the download cannot be reached (no network?)"
        return Finding(FAIL, "MNIST data", found, fix)
    first, *rest = d["error"].splitlines()
    return Finding(FAIL, "MNIST data", first, " ".join(rest))


def _gpu_findings(facts) -> list[Finding]:
    from effcourse import hardware

    build = facts["build"]
    cuda = (
        f"TensorFlow built with CUDA {build['cuda']}, cuDNN {build['cudnn']}"
        if build["cuda_build"]
        else "TensorFlow built without CUDA"
    )
    out = []
    for g in facts["gpus"]:
        cc = g.get("compute_capability")
        mem = f", {g['memory_mb']:,} MB" if g.get("memory_mb") else ", memory unknown"
        cc_text = ".".join(map(str, cc)) if cc else "unknown"
        out.append(Finding(OK, "GPU", f"{g['name']} (compute capability {cc_text}{mem}); {cuda}"))
        if cc and tuple(cc) < hardware.GPU_FLOAT16_CC:
            found = f"{g['name']} has no tensor cores (compute capability < 7.0)"
            out.append(Finding(WARN, "GPU", found, "notebook 05's mixed float16 will not be faster on it"))
    if out:
        return out
    visible = facts.get("cuda_visible_devices")
    if visible is not None and visible.strip() in ("", "-1"):
        fix = "unset CUDA_VISIBLE_DEVICES (or list the GPUs to use) and restart"
        return [Finding(WARN, "GPU", f"none visible: CUDA_VISIBLE_DEVICES={visible!r} hides every GPU", fix)]
    if facts.get("driver_gpus"):
        fix = '`pip install -c constraints.txt -e ".[gpu]"` (tensorflow[and-cuda]; Linux or WSL2) '
        fix += "and check the driver with nvidia-smi"
        found = f"nvidia-smi lists {facts['driver_gpus']} GPU(s), TensorFlow sees none ({cuda})"
        return [Finding(WARN, "GPU", found, fix)]
    return [Finding(OK, "GPU", f"none ({cuda}): the course runs on the CPU")]


def _notebook_findings(facts) -> list[Finding]:
    from effcourse import parallel

    s = facts["support"]
    if s["gpu_float16"] or s["gpu_bfloat16"]:
        bf16 = " (bfloat16 too)" if s["gpu_bfloat16"] else ""
        gain = f"mixed float16 on tensor cores: expect faster training steps{bf16}"
    elif s["float16_units"] or s["bfloat16_units"]:
        kinds = [k for k, v in (("float16", s["cpu_float16"]), ("bfloat16", s["cpu_bfloat16"])) if v]
        gain = f"CPU {' and '.join(kinds)} units (through oneDNN): a gain is possible, measure it"
    else:
        gain = "no native float16/bfloat16 units: mixed precision is emulated, expect it slower than float32"
    out = [Finding(OK, "notebook 05", gain)]
    try:
        visible, driver = facts.get("cuda_visible_devices"), facts.get("driver_gpus")
        plan = parallel.device_plan(
            gpus=facts["gpus"],
            cpus=facts["cpu_count"],
            split=facts["split"],
            visible=visible,
            driver_gpus=driver,
        )
        pipe = parallel.pipeline_mode(plan).name
        out.append(
            Finding(OK, "notebook 07", f"up to {plan.count} replicas: {plan.reason} Pipelines run {pipe}.")
        )
    except parallel.DevicePlanError as err:
        out.append(Finding(WARN, "notebook 07", str(err), "see the README's GPU section"))
    x = facts.get("xnnpack")
    if x == "all":
        out.append(Finding(OK, "notebook 03", "XNNPACK active: LiteRT delegates the whole test model to it"))
    elif x is not None:
        fix = "LiteRT runs its built-in kernels: latencies will be higher than the notebook's text"
        out.append(Finding(WARN, "notebook 03", f"XNNPACK delegation: {x}", fix))
    return out


def render(findings: list[Finding], facts: dict | None = None) -> str:
    """The report: one line per finding, then the problems with their fixes and the verdict."""
    width = max(len(f.what) for f in findings)
    lines = ["effcourse doctor" + (f" (profile {facts['profile']})" if facts else "")]
    lines += [f"  [{f.level:>4}] {f.what:<{width}}  {f.found}" for f in findings]
    problems = [f for f in findings if f.level != OK]
    if problems:
        lines.append("\nProblems and fixes:")
        lines += [f"  {f.level} {f.what}: {f.found}\n       fix: {f.fix}" for f in problems]
    fails = sum(f.level == FAIL for f in findings)
    if fails:
        lines.append(f"\nThe course cannot run here: {fails} problem(s) to fix first.")
    else:
        lines.append("\nThe course can run here." + (" Read the warnings above." if problems else ""))
    return "\n".join(lines)


def exit_status(findings: list[Finding]) -> int:
    """1 when any finding is a FAIL (the course cannot run), else 0."""
    return int(any(f.level == FAIL for f in findings))


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
    """Collect, diagnose, print; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m effcourse.doctor", description="Check this machine for the course; say every fix."
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--download", action="store_true", help="download MNIST first if it is missing")
    group.add_argument("--no-download", action="store_true", help="never download or ask")
    args = parser.parse_args(argv)
    facts = collect(download=args.download or (not args.no_download and _offer_download()))
    findings = diagnose(facts)
    print(render(findings, facts))
    return exit_status(findings)


if __name__ == "__main__":
    sys.exit(main())
