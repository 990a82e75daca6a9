"""effcourse.doctor: the report and exit status on this machine, with Keras 3 active, without data, with fake GPUs."""

import dataclasses

import pytest

from effcourse import doctor


@pytest.fixture(scope="module")
def healthy(mnist):  # mnist: the session's data check (a clear failure when the data is missing)
    return doctor.collect()  # this machine: the test session's data folder, no GPU


def _levels(findings, what):
    return [f.level for f in findings if f.what == what]


def test_healthy_machine_report_and_exit_status(healthy, capsys, monkeypatch):
    findings = doctor.diagnose(healthy)
    assert doctor.exit_status(findings) == 0
    for what in (
        "Python",
        "TensorFlow",
        "tf_keras",
        "tfmot",
        "LiteRT",
        "Keras 2 mode",
        "MNIST data",
        "CPU",
        "notebook 05",
        "notebook 07",
        "notebook 03",
    ):
        assert _levels(findings, what) and FAIL not in _levels(findings, what), what
    text = doctor.render(findings, healthy)
    assert "The course can run here." in text and "sha256 verified" in text and "replicas" in text
    monkeypatch.setattr(doctor, "collect", lambda **kw: healthy)
    assert doctor.main([]) == 0
    assert "effcourse doctor" in capsys.readouterr().out


FAIL = doctor.FAIL


def test_keras3_active_fails_with_its_fix(healthy, monkeypatch, capsys):
    facts = dict(healthy, keras_module="keras._tf_keras.keras", keras3_version="3.15.0")
    findings = doctor.diagnose(facts)
    bad = [f for f in findings if f.what == "Keras 2 mode"][0]
    assert bad.level == FAIL and "3.15.0" in bad.found and "TF_USE_LEGACY_KERAS=1" in bad.fix
    assert doctor.exit_status(findings) == 1
    monkeypatch.setattr(doctor, "collect", lambda **kw: facts)
    assert doctor.main([]) == 1
    assert "cannot run here" in capsys.readouterr().out


def test_missing_data_fails_with_the_data_modules_fixes(healthy, monkeypatch, tmp_path):
    monkeypatch.setenv("EFFCOURSE_DATA_DIR", str(tmp_path))  # no mnist.npz there
    facts = doctor.collect(tiny_model=False)
    findings = doctor.diagnose(facts)
    bad = [f for f in findings if f.what == "MNIST data"][0]
    assert bad.level == FAIL and "does not exist" in bad.found and "EFFCOURSE_DATA_DIR" in bad.fix
    assert doctor.exit_status(findings) == 1


def test_a_fresh_laptop_is_told_the_one_command_not_failed(healthy):
    """MNIST not downloaded yet but reachable: a warning naming `make prepare`, exit 0; unreachable: FAIL."""
    error = "MNIST not found at data/mnist.npz and downloads are off.\nProblem with the MNIST file."
    fresh = dict(healthy, data={"ok": False, "error": error, "missing": True, "reachable": True})
    findings = doctor.diagnose(fresh)
    found = [f for f in findings if f.what == "MNIST data"][0]
    assert (
        found.level == doctor.WARN
        and "make prepare" in found.fix
        and "python -m effcourse.prepare" in found.fix
    )
    assert doctor.exit_status(findings) == 0
    offline = dict(fresh, data=dict(fresh["data"], reachable=False))
    found = [f for f in doctor.diagnose(offline) if f.what == "MNIST data"][0]
    assert found.level == FAIL and "cannot be reached" in found.found and "EFFCOURSE_DATA_DIR" in found.fix


def test_doctor_command_line(healthy, monkeypatch, capsys):
    """--download asks collect() to download; --help prints usage; an unknown option is an error."""
    asked = {}
    monkeypatch.setattr(doctor, "collect", lambda **kw: asked.update(kw) or healthy)
    assert doctor.main(["--download"]) == 0 and asked == {"download": True}
    assert doctor.main(["--no-download"]) == 0 and asked == {"download": False}
    for argv, code in ((["--help"], 0), (["--bogus"], 2)):
        with pytest.raises(SystemExit) as exit_info:
            doctor.main(argv)
        assert exit_info.value.code == code
    assert "usage:" in capsys.readouterr().out


def test_the_offer_to_download_only_at_a_terminal_when_missing(monkeypatch, tmp_path):
    from effcourse import data

    monkeypatch.delenv("EFFCOURSE_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "data_dir", lambda: tmp_path)  # no mnist.npz here
    monkeypatch.setattr(doctor, "can_reach", lambda url, timeout=3.0: True)

    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(doctor.sys, "stdin", Tty())
    assert doctor._offer_download(ask=lambda prompt: "") is True  # Enter: yes
    assert doctor._offer_download(ask=lambda prompt: "n") is False
    monkeypatch.setattr(doctor, "can_reach", lambda url, timeout=3.0: False)
    assert doctor._offer_download(ask=lambda prompt: "y") is False  # no network: not offered


def test_missing_package_and_old_python_fail(healthy):
    facts = dict(
        healthy, versions=dict(healthy["versions"], tfmot=None), python="3.13.0", python_tuple=(3, 13)
    )
    findings = doctor.diagnose(facts)
    assert _levels(findings, "tfmot") == [FAIL] and _levels(findings, "Python") == [FAIL]
    no_tf = dict(healthy, versions=dict(healthy["versions"], TensorFlow=None))
    assert doctor.exit_status(doctor.diagnose(no_tf)) == 1


def test_fake_gpu_lists(healthy):
    from effcourse import hardware

    gpus = [
        {
            "device": f"/physical_device:GPU:{i}",
            "name": "NVIDIA A100",
            "compute_capability": (8, 0),
            "memory_mb": 40960,
        }
        for i in range(2)
    ]
    facts = dict(
        healthy,
        gpus=gpus,
        build={"cuda_build": True, "cuda": "12.5.1", "cudnn": "9"},
        support=hardware.support(None, gpus=gpus),
    )
    findings = doctor.diagnose(facts)
    gpu_lines = [f.found for f in findings if f.what == "GPU"]
    assert (
        len(gpu_lines) == 2
        and "compute capability 8.0, 40,960 MB" in gpu_lines[0]
        and "CUDA 12.5.1" in gpu_lines[0]
    )
    nb = {f.what: f.found for f in findings}
    assert "tensor cores" in nb["notebook 05"] and "2 real GPUs" in nb["notebook 07"]
    assert nb["notebook 07"].endswith("Pipelines run concurrent.")
    one_old = [dict(gpus[0], name="Tesla P100", compute_capability=(6, 0), memory_mb=16384)]
    findings = doctor.diagnose(dict(facts, gpus=one_old, support=hardware.support(None, gpus=one_old)))
    assert any(f.level == doctor.WARN and "no tensor cores" in f.found for f in findings)
    assert "split into 4 logical GPUs" in {f.what: f.found for f in findings}["notebook 07"]
    assert {f.what: f.found for f in findings}["notebook 07"].endswith("Pipelines run simulated.")
    assert doctor.exit_status(findings) == 0  # a warning does not stop the course
    hidden = doctor.diagnose(dict(healthy, gpus=[], cuda_visible_devices="", driver_gpus=1))
    assert any("CUDA_VISIBLE_DEVICES" in f.found and f.level == doctor.WARN for f in hidden)
    no_cuda = doctor.diagnose(dict(healthy, gpus=[], cuda_visible_devices=None, driver_gpus=2))
    assert any("nvidia-smi lists 2 GPU(s)" in f.found and ".[gpu]" in f.fix for f in no_cuda)


def test_findings_are_plain_data():
    f = doctor.Finding(doctor.OK, "x", "y")
    assert dataclasses.asdict(f) == {"level": "ok", "what": "x", "found": "y", "fix": ""}
