"""Wheels for an offline room, for this machine or another platform (``make wheelhouse``).

``pip download --platform`` evaluates environment markers for the machine it runs on and
misses Windows-only packages, so the target's set is first resolved with ``uv pip compile
--python-platform`` inside constraints.txt, then pip downloads exactly that list (``--no-deps``).
``python -m effcourse.wheelhouse [--dest wheelhouse] [--platform win_amd64] [--python-version 311]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .env import project_root
from .errors import EffcourseError

#: Installed besides the course: the installer itself and the build backend ``pip install -e .`` needs.
BUILD_TOOLS = ("pip", "setuptools>=77", "wheel")


def uv_platform(tag: str) -> str:
    """uv's ``--python-platform`` for a pip platform tag (win_amd64, macosx_14_0_arm64, manylinux_2_28_x86_64)."""
    windows = {"win_amd64": "x86_64-pc-windows-msvc", "win_arm64": "aarch64-pc-windows-msvc"}
    if tag in windows:
        return windows[tag]
    mac = re.fullmatch(r"macosx_(\d+)_(\d+)_(arm64|x86_64|universal2)", tag)
    if mac:
        return "x86_64-apple-darwin" if mac.group(3) == "x86_64" else "aarch64-apple-darwin"
    linux = re.fullmatch(r"(manylinux_2_\d+|manylinux2014)_(x86_64|aarch64)", tag)
    if linux:
        return f"{linux.group(2)}-{linux.group(1)}"
    raise EffcourseError(
        f"unknown platform tag {tag!r}: use one of win_amd64, win_arm64, macosx_<major>_<minor>_arm64, "
        "macosx_<major>_<minor>_x86_64, manylinux_2_<minor>_x86_64 (or _aarch64)"
    )


def _python_version(version: str | None) -> str | None:
    """'311', '3.11' -> '3.11'; None stays None."""
    if not version:
        return None
    digits = version.replace(".", "")
    if not re.fullmatch(r"3\d\d?", digits):
        raise EffcourseError(f"python version {version!r}: write it as 311 or 3.11")
    return f"{digits[0]}.{digits[1:]}"


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        if found := shutil.which("uv"):
            return found
    raise EffcourseError("uv is not installed: `pip install -e '.[test]'` (or `make test-venv`) installs it")


def requirements(platform=None, python_version=None, extras=(), root=None) -> list[str]:
    """The course's dependency set as ``name==version`` lines for a pip platform tag (None: here) and Python."""
    root = root or project_root()
    with tempfile.TemporaryDirectory() as tmp:
        extra_in = Path(tmp) / "build-tools.in"
        extra_in.write_text("\n".join(BUILD_TOOLS) + "\n")
        cmd = [_uv(), "pip", "compile", "pyproject.toml", str(extra_in), "--quiet", "--no-header"]
        cmd += ["--no-annotate", "--no-strip-extras", "-c", "constraints.txt"]
        for extra in extras:
            cmd += ["--extra", extra]
        if platform:
            cmd += ["--python-platform", uv_platform(platform)]
        mac = re.fullmatch(r"macosx_(\d+)_(\d+)_\w+", platform or "")  # the oldest macOS to support
        env = dict(os.environ, MACOSX_DEPLOYMENT_TARGET=f"{mac.group(1)}.{mac.group(2)}") if mac else None
        version = _python_version(python_version)
        if version:
            cmd += ["--python-version", version]
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise EffcourseError(
            f"resolving for {platform or 'this machine'} failed: {done.stderr.strip()[-1500:]}"
        )
    return [ln.split(";")[0].strip() for ln in done.stdout.splitlines() if "==" in ln]


def download(dest: Path, platform=None, python_version=None, extras=()) -> Path:
    """Resolve (per platform) and download every wheel into ``dest``; return the requirements file."""
    dest.mkdir(parents=True, exist_ok=True)
    targets = platform or [None]
    for tag in targets:
        reqs = requirements(tag, python_version, extras)
        listing = dest / f"requirements-{tag or 'this-machine'}.txt"
        listing.write_text("\n".join(reqs) + "\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(dest), "-r", str(listing)]
        if tag:
            cmd += ["--only-binary=:all:", "--platform", tag]  # pip adds the older tags it implies
            if python_version:
                cmd += ["--python-version", python_version.replace(".", ""), "--implementation", "cp"]
        print(f"{tag or 'this machine'}: {len(reqs)} packages -> {dest}", flush=True)
        subprocess.run(cmd, check=True)
    return dest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("wheelhouse"), help="folder for the wheels")
    parser.add_argument(
        "--platform", action="append", help="pip platform tag (repeat); default: this machine"
    )
    parser.add_argument("--python-version", help="e.g. 311 (default: this Python)")
    parser.add_argument("--extra", action="append", default=[], help="also an extra, e.g. test or gpu")
    args = parser.parse_args(argv)
    try:
        download(args.dest, args.platform, args.python_version, args.extra)
    except EffcourseError as err:
        print(f"make wheelhouse: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
