"""Every learner's machine: the Makefile's Python and .venv, the extras, the constraints file, the
wheelhouse for another platform, the command-line entry points, and the POSIX-only code paths run
with the POSIX modules made unavailable (no Windows machine here)."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _unreachable(message: str) -> bool:
    """True when a resolver's message says the package index could not be reached (no network)."""
    words = ("failed to fetch", "dns", "connect", "network", "timed out", "offline", "resolve host")
    return any(w in message.lower() for w in words)


def _names(reqs):
    return {re.split(r"[<>=~!\[ ;]", r.strip(), maxsplit=1)[0].lower() for r in reqs}


# --- extras: the learner set, test tools, GPU ----------------------------------------------------


def test_plain_install_is_the_learners_set_and_test_tools_are_an_extra():
    base, extras = _names(PROJECT["dependencies"]), PROJECT["optional-dependencies"]
    assert {"jupyterlab", "ipykernel", "ipywidgets", "nbclient", "nbconvert", "filelock"} <= base
    assert not base & {"pytest", "nbval", "playwright", "ruff"}
    assert _names(extras["test"]) >= {"pytest", "nbval", "playwright", "ruff", "uv"}
    assert extras["gpu"] == ["tensorflow[and-cuda]>=2.21,<2.22"]  # on top of the learner set
    assert "dev" not in extras
    ruff = [r for r in extras["test"] if r.startswith("ruff")]
    assert ruff and "==" in ruff[0], "ruff is pinned: a new release must not fail make test"


# --- the constraints file ----------------------------------------------------------------------

LOCK = ROOT / "constraints.txt"


def _locked():
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.startswith("#") or "==" not in line:
            continue
        name, _, rest = line.partition("==")
        pins.setdefault(name.strip().lower(), []).append(rest.split()[0].rstrip(";"))
    return pins


def test_constraints_pin_every_package_for_every_platform():
    pins = _locked()
    every = _names(PROJECT["dependencies"]) | {
        n for extra in PROJECT["optional-dependencies"].values() for n in _names(extra)
    }
    assert every <= set(pins), f"not locked: {every - set(pins)}"
    assert pins["tensorflow"] == ["2.21.0"] and pins["tf-keras"] == ["2.21.0"]
    assert all(v.startswith("0.8.") for v in pins["tensorflow-model-optimization"])
    text = LOCK.read_text()
    # universal: Windows- and macOS-only packages are there, under markers
    assert re.search(r"^pywinpty==\S+ ; os_name == 'nt'", text, re.M)
    assert re.search(r"^colorama==\S+ ; sys_platform == 'win32'", text, re.M)
    assert re.search(r"^appnope==\S+ ; sys_platform == 'darwin'", text, re.M)
    assert "make lock" in text.splitlines()[1]
    ruff_pin = next(r for r in PROJECT["optional-dependencies"]["test"] if r.startswith("ruff"))
    assert pins["ruff"] == [ruff_pin.split("==")[1]]


def test_the_installed_versions_are_the_locked_ones():
    """This environment (CI's, made by `make venv`) installed through the constraints file."""
    from importlib import metadata

    if not os.environ.get("CI"):
        pytest.skip("checked under CI, whose .venv `make` built through constraints.txt")
    pins = _locked()
    for name in ("tensorflow", "pandas", "matplotlib", "jupyterlab", "ruff", "filelock"):
        assert metadata.version(name) in pins[name], name


# --- the Makefile: which Python, the .venv, offline rooms (nothing is downloaded) ---------------

make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
MAKE = shutil.which("make") or "make"


def _env(**extra):
    # `make test` runs these tests inside make: without the parent's MAKELEVEL/MAKEFLAGS the
    # child prints only the recipe (no "Entering directory" lines, no inherited flags).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "PYTHON")}
    env.update(extra)
    return env


def run_make(*args, check=True, **env):
    cmd = [MAKE, "--no-print-directory", *args]
    return subprocess.run(cmd, cwd=ROOT, env=_env(**env), capture_output=True, text=True, check=check)


def dry_run(*args, **env):
    return run_make("-n", *args, **env).stdout


FAKE_PYTHON = """\
#!/bin/sh
# A stand-in interpreter: says it is Python $VERSION, makes a venv by copying itself, logs pip calls.
case "$1" in
  -c) [ "$VERSION_OK" = 1 ] ;;
  --version) echo "Python $VERSION" ;;
  -m) echo "$*" >> "$LOG"; if [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi ;;
esac
"""


def fake_python(folder: Path, name: str, version: str, ok: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    body = FAKE_PYTHON.replace("$VERSION_OK", "1" if ok else "0").replace("$VERSION", version)
    path.write_text(body)
    path.chmod(0o755)
    return path


@make
def test_make_finds_a_supported_python_in_turn(tmp_path):
    """PYTHON unset: python3.12, then 3.11, then 3.10, the first that runs (a pyenv shim may not)."""
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir, "python3.11", "3.11.9", ok=True)
    fake_python(bin_dir, "python3.10", "3.10.14", ok=True)
    broken = bin_dir / "python3.12"
    broken.write_text("#!/bin/sh\nexit 127\n")  # a shim for a version that is not installed
    broken.chmod(0o755)
    out = run_make(
        "--eval", "which-python: ; @echo $(PYTHON)", "which-python", PATH=f"{bin_dir}:/usr/bin:/bin"
    ).stdout
    assert out.strip() == "python3.11"
    assert (
        run_make(
            "--eval",
            "w: ; @echo $(PYTHON)",
            "w",
            PATH=f"{bin_dir}:/usr/bin:/bin",
            PYTHON="/opt/py/bin/python3",
        ).stdout.strip()
        == "/opt/py/bin/python3"
    )


@make
def test_make_refuses_an_unsupported_python_with_the_fix(tmp_path):
    py313 = fake_python(tmp_path / "bin", "python3.13", "3.13.0", ok=False)
    venv = tmp_path / "venv"
    done = run_make("venv", f"PYTHON={py313}", f"VENV={venv}", check=False, LOG=str(tmp_path / "log"))
    assert done.returncode != 0
    assert "needs Python 3.10, 3.11 or 3.12" in done.stderr and "3.13.0" in done.stderr
    assert "make venv PYTHON=python3.12" in done.stderr
    assert not venv.exists() and not (tmp_path / "log").exists()  # nothing was created or installed


@make
def test_make_rebuilds_a_venv_whose_install_did_not_finish(tmp_path):
    py = fake_python(tmp_path / "bin", "python3.11", "3.11.9", ok=True)
    venv, log = tmp_path / "venv", tmp_path / "log"
    (venv / "bin").mkdir(parents=True)
    (venv / "half-installed-leftover").write_text("")  # a failed install: no stamp
    shutil.copy(py, venv / "bin" / "python")
    args = ["venv", f"PYTHON={py}", f"VENV={venv}", f"WHEELHOUSE={tmp_path}/none"]
    run_make(*args, LOG=str(log))
    assert not (venv / "half-installed-leftover").exists() and (venv / ".effcourse-installed").exists()
    calls = log.read_text().splitlines()
    assert calls[0] == f"-m venv {venv}"
    assert calls[-1] == "-m pip install --quiet -c constraints.txt -e ."
    # a finished .venv is kept, and updated in place when pyproject.toml changes
    (venv / "marker").write_text("")
    os.utime(venv / ".effcourse-installed", (1, 1))
    run_make(*args, LOG=str(log))
    assert (venv / "marker").exists() and log.read_text().count("-m venv") == 1


@make
def test_learner_venv_and_test_tools_install_through_the_constraints(tmp_path):
    lines = dry_run("venv", "test-venv", "VENV=/nonexistent/venv", f"WHEELHOUSE={tmp_path}/none").splitlines()
    installs = [ln for ln in lines if "pip install" in ln and "--upgrade pip" not in ln]
    assert installs == [
        "/nonexistent/venv/bin/python -m pip install --quiet -c constraints.txt -e '.'",
        "/nonexistent/venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'",
    ]
    gpu = dry_run("venv", "VENV=/nonexistent/venv", "EXTRAS=gpu", f"WHEELHOUSE={tmp_path}/none")
    assert "-c constraints.txt -e '.[gpu]'" in gpu
    for target in ("test", "unit", "lint", "notebooks"):
        assert ".effcourse-test-installed" in dry_run(
            target, "VENV=/nonexistent/venv", f"WHEELHOUSE={tmp_path}/none"
        )


@make
def test_venv_installs_offline_only_when_the_wheelhouse_holds_wheels(tmp_path):
    (tmp_path / "wh").mkdir()
    (tmp_path / "wh" / "tensorflow-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl").write_bytes(b"")
    offline = dry_run("venv", "VENV=/nonexistent/venv", f"WHEELHOUSE={tmp_path}/wh").splitlines()
    flags = f"--no-index --find-links {tmp_path}/wh"
    assert f"/nonexistent/venv/bin/python -m pip install --quiet {flags} --upgrade pip" in offline
    assert f"/nonexistent/venv/bin/python -m pip install --quiet {flags} -c constraints.txt -e '.'" in offline


@make
def test_wheelhouse_and_lock_commands(tmp_path):
    out = dry_run("wheelhouse", f"WHEELHOUSE={tmp_path}/wh", "VENV=/nonexistent/venv").splitlines()[-1]
    assert out == f"/nonexistent/venv/bin/python -m effcourse.wheelhouse --dest {tmp_path}/wh"
    other = dry_run(
        "wheelhouse", "WHEEL_PLATFORM=win_amd64 macosx_14_0_arm64", "PY=311", "VENV=/n/v"
    ).splitlines()[-1]
    assert other.endswith("--platform win_amd64 --platform macosx_14_0_arm64 --python-version 311")
    lock = dry_run("lock", "VENV=/n/v")
    assert "-m uv pip compile pyproject.toml --universal" in lock and "-o constraints.txt" in lock


# --- the wheelhouse for another platform: its own markers resolved ------------------------------


def test_platform_tags_map_to_uv_platforms():
    from effcourse import wheelhouse
    from effcourse.errors import EffcourseError

    assert wheelhouse.uv_platform("win_amd64") == "x86_64-pc-windows-msvc"
    assert wheelhouse.uv_platform("macosx_14_0_arm64") == "aarch64-apple-darwin"
    assert wheelhouse.uv_platform("macosx_12_0_x86_64") == "x86_64-apple-darwin"
    assert wheelhouse.uv_platform("manylinux_2_28_x86_64") == "x86_64-manylinux_2_28"
    with pytest.raises(EffcourseError, match="unknown platform tag"):
        wheelhouse.uv_platform("amiga_68k")


def _resolve_or_skip(tag):
    from effcourse import wheelhouse
    from effcourse.errors import EffcourseError

    try:
        return wheelhouse.requirements(tag, "311")
    except EffcourseError as err:
        if "uv is not installed" in str(err) and not os.environ.get("CI"):
            pytest.skip(f"{err} (CI has it)")
        if _unreachable(str(err)):
            pytest.skip(f"the package index cannot be reached from here (offline room?): {str(err)[-300:]}")
        raise


def test_windows_and_macos_wheelhouses_resolve_their_own_markers():
    """Resolved for win_amd64 on this Linux machine: the Windows-only packages are in the list."""
    windows = {r.split("==")[0].lower() for r in _resolve_or_skip("win_amd64")}
    mac = {r.split("==")[0].lower() for r in _resolve_or_skip("macosx_14_0_arm64")}
    assert {"pywinpty", "colorama"} <= windows and not {"pexpect", "ptyprocess"} & windows
    assert not {"pywinpty", "colorama"} & mac and {"appnope", "pexpect"} <= mac
    for both in (windows, mac):
        assert {"tensorflow", "tf-keras", "jupyterlab", "pip", "setuptools"} <= both
        assert "pytest" not in both  # the learner set alone unless --extra test


# --- command-line entry points: argparse everywhere ---------------------------------------------

ENTRY_POINTS = ["course", "student", "nbsource", "doctor", "prepare", "wheelhouse"]


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_points_print_usage_and_refuse_unknown_options(name, capsys, tmp_path, monkeypatch):
    import importlib

    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(f"effcourse.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--no-such-option"])
    assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing is written for --help or a bad option"


# --- POSIX-only code, run with the POSIX modules made unavailable -------------------------------


def _without_posix(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python where fcntl, termios, pwd, grp and resource cannot be imported."""
    prelude = (
        "import sys\nfor m in ('fcntl', 'termios', 'pwd', 'grp', 'resource'):\n    sys.modules[m] = None\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_results_log_works_without_fcntl(tmp_root):
    done = _without_posix(
        f"""
        import os
        os.environ["EFFCOURSE_ROOT"] = {str(tmp_root)!r}
        import warnings
        warnings.simplefilter("ignore")  # filelock says it falls back to a soft lock without fcntl
        from effcourse import results
        results.record(notebook="00_x", technique="t", model="m", variant="v", accuracy=0.5, profile="quick")
        results.record(notebook="00_x", technique="t", model="m", variant="w", accuracy=0.6, profile="quick")
        print(len(results.load("quick")))
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "2"


def test_multi_worker_stop_without_process_groups(monkeypatch):
    """As on Windows: no killpg, no os.kill(pid, 0) probe (there it would end the process)."""
    from effcourse.parallel import multi_worker

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(multi_worker, "_POSIX", False)
    monkeypatch.delattr(multi_worker.os, "killpg")
    real_kill = os.kill

    def kill(pid, sig):
        assert sig != 0, "os.kill(pid, 0) must not probe a process on Windows"
        real_kill(pid, sig)  # Popen.terminate on this machine

    monkeypatch.setattr(multi_worker.os, "kill", kill)
    probed = []
    monkeypatch.setattr(multi_worker, "_windows_alive", lambda pid: probed.append(pid) or True)
    assert multi_worker.alive(proc.pid) and probed == [proc.pid]
    multi_worker._stop([proc], grace=5.0)
    assert proc.returncode is not None


def test_quiet_filter_needs_no_posix_module():
    done = _without_posix(
        """
        import importlib.util as u, os
        spec = u.spec_from_file_location("q", os.path.join(os.environ["PYTHONPATH"], "effcourse", "quiet.py"))
        q = u.module_from_spec(spec); spec.loader.exec_module(q)
        assert q.install()
        os.write(2, b"I0000 00:00:1.5 1 port.cc:153] oneDNN custom operations are on.\\nkept\\n")
        q.uninstall()
        """
    )
    assert done.returncode == 0 and done.stderr == "kept\n", done.stderr
