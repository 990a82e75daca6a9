"""Progress bars and the native-log filter: what a learner sees around long and noisy cells."""

import os
import subprocess
import sys

import numpy as np

import effcourse
from effcourse import checks, progress, quiet

keras = effcourse.keras


def test_keras_bar_counts_every_batch_of_every_epoch(monkeypatch):
    monkeypatch.setenv("EFFCOURSE_PROGRESS", "1")
    made = []

    class FakeBar:
        def __init__(self, total=None, **kw):
            self.total, self.n, self.closed, self.postfix = total, 0, False, None
            made.append(self)

        def update(self, k):
            self.n += k

        def set_postfix(self, d, refresh=True):
            self.postfix = d

        def close(self):
            self.closed = True

    monkeypatch.setattr(progress, "bar", lambda **kw: FakeBar(**kw))
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.zeros((50, 3), "float32"), np.zeros(50, "int64")
    model.fit(x, y, batch_size=10, epochs=3, verbose=0, callbacks=progress.with_bar([], "t"))
    (b,) = made
    assert b.total == 15 and b.n == 15 and b.closed
    assert b.postfix["epoch"] == "3/3" and "loss" in b.postfix


def test_training_bars_inside_transient_do_not_stay(monkeypatch):
    monkeypatch.setenv("EFFCOURSE_PROGRESS", "1")
    leaves = []
    monkeypatch.setattr(progress, "bar", lambda **kw: leaves.append(kw["leave"]) or _Quiet())
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.zeros((20, 3), "float32"), np.zeros(20, "int64")
    fit = lambda: model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=progress.with_bar([], "t"))  # noqa: E731
    fit()
    with progress.transient():
        fit()
        with progress.transient():
            fit()
        fit()
    fit()
    assert leaves == [True, False, False, False, True]


class _Quiet:
    def update(self, k):
        pass

    def set_postfix(self, d, refresh=True):
        pass

    def close(self):
        pass


def test_with_bar_only_when_keras_is_silent_and_bars_are_on(monkeypatch):
    monkeypatch.setenv("EFFCOURSE_PROGRESS", "1")
    assert len(progress.with_bar([], "t", verbose=0)) == 1
    assert progress.with_bar([], "t", verbose=2) == []
    existing = progress.KerasBar("x")
    assert progress.with_bar([existing], "t") == [existing]
    monkeypatch.setenv("EFFCOURSE_PROGRESS", "0")
    assert progress.with_bar([], "t") == []
    assert list(progress.bar([1, 2, 3])) == [1, 2, 3]


def test_noise_patterns_hide_tensorflow_lines_and_keep_real_ones():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796172297.582719    2103 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1796172297.583264    2103 cudart_stub.cc:31] Could not find cuda drivers",
        "E0000 00:00:1796172301.156595    2103 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
        "E0000 00:00:1.2 77 meta_optimizer.cc:9] NodeDef mentions attribute use_unbounded_threadpool",
        "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    ]
    real = [
        "E0000 00:00:1796172301.156595    2103 bfc_allocator.cc:52] OOM when allocating tensor",
        "Traceback (most recent call last):",
        "UserWarning: your learning rate is negative",
        "PASS: ok",
    ]
    assert all(quiet.is_noise(line) for line in noise)
    assert not any(quiet.is_noise(line) for line in real)


DT_HALF = (
    "E0000 00:00:1796172301.156595    2103 util.cc:131] oneDNN supports DT_HALF only on platforms "
    "with AVX-512. Falling back to the default Eigen-based implementation if present."
)


def test_native_lines_are_judged_by_their_absl_form_and_message():
    """A fallback TensorFlow announces is hidden whatever its source; an unknown error shows, explained."""
    assert quiet.is_noise(DT_HALF) and quiet.explanation(DT_HALF) is None
    unknown_info = "W0000 00:00:1.5 9 some_new_file.cc:7] a notice no one listed"
    assert quiet.is_noise(unknown_info)  # info and warning lines: hidden by their form alone
    error = "E0000 00:00:1.5 9 bfc_allocator.cc:52] OOM when allocating tensor"
    fatal = "F0000 00:00:1.5 9 tensor_shape.cc:12] Check failed: new_num_elements"
    assert not quiet.is_noise(error) and not quiet.is_noise(fatal)
    note = quiet.explanation(error)
    assert "bfc_allocator.cc:52" in note and "not by your code" in note and "EFFCOURSE_NATIVE_LOGS=1" in note
    assert quiet.explanation("an ordinary line") is None
    assert not quiet.is_noise("E0000 is how my own table starts")  # not absl's form


def test_filter_on_a_real_descriptor_in_a_child_process():
    """C-level writes to fd 2 pass through the filter: noise hidden, other lines kept in order."""
    code = (
        f"import os, sys; sys.path.insert(0, {os.path.dirname(os.path.dirname(quiet.__file__))!r})\n"
        "import importlib.util as u\n"
        f"spec = u.spec_from_file_location('q', {quiet.__file__!r}); q = u.module_from_spec(spec); spec.loader.exec_module(q)\n"
        "q.install()\n"
        "os.write(2, b'I0000 00:00:1.5 1 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "os.write(2, b'real line one\\n')\n"
        "os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\nreal line two\\n')\n"
        "os.write(2, b'" + DT_HALF + "\\n')\n"
        "os.write(2, b'E0000 00:00:1.5 9 bfc_allocator.cc:52] OOM when allocating tensor\\n')\n"
        "os.write(2, b'\\r 50%|#####     | progress without newline')\n"
    )
    env = dict(os.environ)
    env.pop("EFFCOURSE_NATIVE_LOGS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.split(b"\n")
    assert lines[:3] == [
        b"real line one",
        b"real line two",
        b"E0000 00:00:1.5 9 bfc_allocator.cc:52] OOM when allocating tensor",
    ]
    assert lines[3].startswith(b"(effcourse: the line above") and b"DT_HALF" not in out.stderr
    assert lines[4:] == [b"\r 50%|#####     | progress without newline"]


def test_failed_check_renders_as_its_hint_alone_and_pass_prints_only_pass(capsys):
    def answer():
        raise NotImplementedError

    try:
        checks.call(answer, name="my_fn")
    except checks.CheckFailed as err:
        rendered = err._render_traceback_()
        assert err.__suppress_context__
    assert len(rendered) == 1 and "my_fn is not written yet" in rendered[0]
    assert "Traceback" not in rendered[0]
    assert checks.close(1.0, 1.0, "x") is None
    assert capsys.readouterr().out.startswith("PASS: x matches")


def test_notebook_noise_hook_sees_stderr_only():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "root_conftest", Path(__file__).parent.parent / "conftest.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    outs = [
        {"output_type": "stream", "name": "stdout", "text": "CPU: oneDNN is used\n"},
        {
            "output_type": "stream",
            "name": "stderr",
            "text": "E0000 00:00:1.1 7 cuda_platform.cc:52] failed call to cuInit\nmy own warning\n",
        },
    ]
    assert mod.noisy_stderr(outs) == ["E0000 00:00:1.1 7 cuda_platform.cc:52] failed call to cuInit"]
    assert mod.noisy_stderr([]) == []
