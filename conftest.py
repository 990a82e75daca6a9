"""Checks on every notebook cell that nbval runs: no native or library log noise on stderr.

A learner must not meet TensorFlow's, absl's, CUDA's, oneDNN's, the TFLite converter's or
LiteRT's own log lines, nor Python warnings raised inside those libraries (effcourse.quiet
hides them). This hook fails the cell whose stderr shows any; it is deliberately broader
than the filter, so a new kind of noise shows up here first. Warnings about the course's
own code, and errors, still reach the learner and are not matched.
"""

import re

import pytest

NOISE_SOURCES = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:"  # absl-format native log lines
    r"|absl::InitializeLog|oneDNN|cudart|cuInit|cuda drivers|CUDA error|XNNPACK|TensorFlow Lite"
    r"|fully_quantize|inference_type"
    r"|site-packages[/\\](?:tensorflow|tf_keras|keras|tensorflow_model_optimization|absl|ai_edge_litert)[/\\]",
    re.M,
)


def noisy_stderr(outputs) -> list[str]:
    """The stderr lines of a cell's outputs that come from those libraries' logs."""
    lines = []
    for out in outputs or []:
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            text = out.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            lines += [ln for ln in text.splitlines() if NOISE_SOURCES.search(ln)]
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    noise = noisy_stderr(getattr(item, "test_outputs", None))
    if noise:
        raise AssertionError(
            f"{item.name}: library log lines reached the learner's output on stderr "
            "(hide them in effcourse/quiet.py, or fix their cause):\n" + "\n".join(noise[:10])
        )
    return result
