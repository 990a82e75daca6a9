"""Environment: Keras 2 mode, seeds, logs, paths and the hardware report (notebook 00).

The one module that knows about ``TF_USE_LEGACY_KERAS``: tfmot needs Keras 2 (``tf_keras``),
and ``tf.keras`` is Keras 3 unless that variable is set before TensorFlow resolves it.
"""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

# Settled at import, before TensorFlow can be imported by anything else in the package.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide C++ INFO and WARNING, keep errors
os.environ["TF_USE_LEGACY_KERAS"] = "1"

from . import quiet as _quiet  # noqa: E402
from .errors import EffcourseError  # noqa: E402

_quiet.install()  # hide TensorFlow's native log lines (C-level stderr) before it is imported


class Keras3Error(EffcourseError, RuntimeError):
    """TensorFlow resolved tf.keras to Keras 3 before effcourse could select Keras 2.
    Introduced in notebook 00."""


def _check_keras2():
    import tensorflow as tf

    name = getattr(tf.keras, "__name__", "")
    if not name.startswith("tf_keras"):
        raise Keras3Error(
            "TensorFlow was imported before effcourse and tf.keras is Keras 3 "
            f"({name or 'keras'}); tfmot needs Keras 2 (tf_keras). Restart the kernel "
            "(Kernel > Restart) and run `import effcourse` before importing tensorflow "
            "or keras, or set TF_USE_LEGACY_KERAS=1 in the environment."
        )


def project_root() -> Path:
    """The course's top folder: $EFFCOURSE_ROOT, else the checkout holding this package.
    Introduced in notebook 02."""
    if os.environ.get("EFFCOURSE_ROOT"):
        return Path(os.environ["EFFCOURSE_ROOT"]).resolve()
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd().resolve()


def build_dir(*parts: str) -> Path:
    """A folder under build/ (created): cache, results, figures, logs (all git-ignored).
    Introduced in notebook 01."""
    path = project_root().joinpath("build", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


_WINDOWS = os.name == "nt"


def _replace(tmp: Path, path: Path, tries: int = 50) -> None:
    """os.replace; on Windows retried for up to 5 s while another process holds ``path`` open."""
    import time

    for attempt in range(tries):
        try:
            os.replace(tmp, path)
            return
        except PermissionError:
            if not _WINDOWS or attempt == tries - 1:
                raise
            time.sleep(0.1)


def atomic_write_bytes(path: os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and a rename: never half-written.
    Introduced in notebook 00."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def seed_everything(seed: int = 42, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TF ops deterministic.
    Introduced in notebook 00."""
    import numpy as np
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _configure_devices(logical_cpus: int | None) -> None:
    import tensorflow as tf

    if not logical_cpus:
        return
    import numbers

    if isinstance(logical_cpus, bool) or not isinstance(logical_cpus, numbers.Integral):
        raise TypeError(f"logical_cpus must be a whole number of devices (an int), got {logical_cpus!r}")
    if logical_cpus < 1:
        raise ValueError(f"logical_cpus must be >= 1, got {logical_cpus}")
    logical_cpus = int(logical_cpus)
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == logical_cpus:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus
        )
    except RuntimeError as err:  # TensorFlow already created its devices
        raise RuntimeError(
            f"Cannot split the CPU into {logical_cpus} logical devices: TensorFlow has already initialised "
            "its devices in this process. Restart the kernel and call "
            f"effcourse.setup(logical_cpus={logical_cpus}) before running any TensorFlow op."
        ) from err


def hardware_report() -> dict:
    """Versions and devices of this machine, as a dict (printed by setup; the CPU name from ``hardware``).
    Introduced in notebook 03."""
    import tensorflow as tf
    import tf_keras
    import tensorflow_model_optimization as tfmot

    from . import hardware

    rep = dict(python=platform.python_version(), tensorflow=tf.__version__, tf_keras=tf_keras.__version__)
    rep.update(tfmot=tfmot.__version__, cpu=hardware.cpu_name(), cpu_count=os.cpu_count())
    rep["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return dict(rep, logical_devices=[d.name for d in tf.config.list_logical_devices()])


def versions() -> str:
    """A short version string stored with every results row.
    Introduced in notebook 00."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    return f"tf={tf.__version__};tfmot={tfmot.__version__};py={platform.python_version()}"


def setup(seed: int = 42, deterministic: bool = True, logical_cpus: int | None = None, quiet: bool = False):
    """Prepare a notebook: Keras 2, seeds, quiet logs, devices; print a report; return the profile.
    Introduced in notebook 00.

    ``logical_cpus`` splits the CPU into that many logical devices (notebook 07); it must
    run before any TensorFlow op.
    """
    from . import profile as _profile

    _check_keras2()
    prof = _profile.active()
    _configure_devices(logical_cpus)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    seed_everything(seed, deterministic)
    if not quiet:
        rep = hardware_report()
        versions = f"TensorFlow {rep['tensorflow']} | tf_keras {rep['tf_keras']} | tfmot {rep['tfmot']}"
        gpus, n_logical = ", ".join(rep["gpus"]) or "none", len(rep["logical_devices"])
        print(f"effcourse profile: {prof.name} ({prof.description})\nPython {rep['python']} | {versions}")
        print(f"CPU: {rep['cpu']} x{rep['cpu_count']} | GPUs: {gpus} | logical devices: {n_logical}")
    return prof
