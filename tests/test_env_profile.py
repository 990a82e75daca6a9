import os
import subprocess
import sys

import pytest
import tensorflow as tf

import effcourse
from effcourse import env, profile


def test_keras_is_keras2():
    assert effcourse.keras.__name__.startswith("tf_keras")
    assert tf.keras.__name__.startswith("tf_keras")
    assert type(effcourse.keras.layers.Dense(2)).__module__.startswith("tf_keras")


def test_keras3_already_resolved_gives_clear_error():
    code = (
        "import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"
        "import tensorflow as tf; tf.keras.layers\n"
        "import effcourse\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"},
    )
    assert proc.returncode != 0
    assert "Keras3Error" in proc.stderr and "Restart the kernel" in proc.stderr


def test_setup_returns_profile_and_reports(capsys, monkeypatch):
    monkeypatch.setenv("EFFCOURSE_PROFILE", "quick")
    prof = effcourse.setup()
    out = capsys.readouterr().out
    assert prof.name == "quick"
    assert "quick" in out and tf.__version__ in out and "CPU" in out


def test_logical_devices_after_init_is_a_clear_error():
    tf.constant(1.0)  # devices are initialised now
    with pytest.raises(RuntimeError, match="Restart the kernel"):
        env._configure_devices(7)


def test_unknown_profile_lists_valid(monkeypatch):
    monkeypatch.setenv("EFFCOURSE_PROFILE", "medium")
    with pytest.raises(ValueError, match="full, quick"):
        profile.active()


def test_profiles_have_the_same_fields_and_quick_is_smaller():
    quick, full = profile.get("quick"), profile.get("full")
    assert quick.train_size < 55000 and full.train_size is None
    for name, epochs in quick.baseline_epochs.items():
        assert epochs <= full.baseline_epochs[name]
    for nb, keys in profile.NOTEBOOK_SETTINGS.items():
        for key, values in keys.items():
            assert set(values) == {"quick", "full"}, f"{nb}.{key} needs a quick and a full value"
    assert (
        quick.section("01_sgd_loss_formulation").lr_steps < full.section("01_sgd_loss_formulation").lr_steps
    )
    with pytest.raises(KeyError, match="NOTEBOOK_SETTINGS"):
        quick.section("99_nothing")


def test_atomic_write_leaves_no_temp(tmp_path):
    target = env.atomic_write_bytes(tmp_path / "a" / "f.bin", b"xyz")
    assert target.read_bytes() == b"xyz"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_profiles_table_holds_only_profiles_and_every_notebook_has_settings():
    from pathlib import Path

    assert all(isinstance(p, profile.Profile) for p in profile.PROFILES.values())
    root = Path(__file__).parent.parent
    for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        import nbformat

        source = "\n".join(c.source for c in nbformat.read(nb, as_version=4).cells)
        if f'section("{nb.stem}")' in source or "section(NB)" in source:
            assert nb.stem in profile.NOTEBOOK_SETTINGS, f"{nb.stem} reads settings nobody defined"


def test_hardware_module_is_the_one_place_that_reads_the_cpu():
    from effcourse import hardware

    text = "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx512_fp16 amx_bf16\n"
    assert hardware.cpu_name(text) == "Test CPU 9000"
    assert hardware.cpu_name("processor\t: 0\n")  # no model name: platform's answer, never empty
    assert hardware.cpu_flags(text) == {
        "avx512_bf16": False,
        "amx_bf16": True,
        "avx512_fp16": True,
        "amx_fp16": False,
    }
    assert env.hardware_report()["cpu"] == hardware.cpu_name()
    assert hardware.support(text, gpus=[])["cpu"] == "Test CPU 9000"


def test_atomic_write_waits_for_a_reader_on_windows(tmp_path, monkeypatch):
    """On Windows os.replace fails while another process has the file open: retried, then it lands."""
    real, calls = os.replace, []

    def busy_twice(src, dst):
        calls.append(dst)
        if len(calls) <= 2:
            raise PermissionError(13, "The process cannot access the file", str(dst))
        real(src, dst)

    monkeypatch.setattr(env.os, "replace", busy_twice)
    monkeypatch.setattr(env, "_WINDOWS", True)
    env.atomic_write_bytes(tmp_path / "log.csv", b"a,b\n")
    assert (tmp_path / "log.csv").read_bytes() == b"a,b\n" and len(calls) == 3
    monkeypatch.setattr(env, "_WINDOWS", False)  # on POSIX a PermissionError is a real error
    calls.clear()
    with pytest.raises(PermissionError):
        env.atomic_write_bytes(tmp_path / "other.csv", b"x")
    assert not list(tmp_path.glob(".other.csv.*.tmp"))


@pytest.mark.parametrize("name", sorted(profile.PROFILES))
def test_pruning_teacher_runs_repeat_a_run_section_4_makes(name):
    """02's section 4.1 reuses section 4's 12x labels-only run, so that run must exist."""
    cfg = profile.get(name).section("02_pruning")
    for model, (teacher, kind) in cfg.teacher_runs.items():
        assert 12 in cfg.compare_ratios[model], f"{name}: section 4 does not run {model} at 12x"
        assert kind in cfg.allocations[model], f"{name}: section 4 does not run {model} '{kind}'"
        assert teacher in profile.get(name).baseline_epochs, f"{name}: no baseline {teacher}"
