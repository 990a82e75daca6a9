"""Staged execution in LiteRT: each stage its own .tflite model, the next run only when needed (notebook 06).

Notebook 06 builds the early-exit network and its stages in plain Keras (one model per stage:
an early stage maps its input to ``[features, logits]``, the last to logits). ``StagedTFLite``
adds the exit rule's score to each early stage, converts each stage to its own .tflite model
and runs them one after the other in LiteRT, a sample at a time, running the next stage only
when the exit rule says so; ``compare_latency`` times it against the full network image by
image, interleaved in blocks of images, and returns a ``LatencyComparison``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import convert, measure, progress

RULES = ("confidence", "entropy")


def _thresholds(thresholds, rule, n_early):
    """One threshold in [0, 1] per early exit (a single number is used at every exit)."""
    if rule not in RULES:
        raise ValueError(f"Unknown exit rule {rule!r}; choose one of {RULES}.")
    ts = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds] * n_early
    if len(ts) != n_early:
        raise ValueError(f"Give one threshold per early exit ({n_early}) or a single number; got {len(ts)}.")
    for t in ts:
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, float, np.number)) or not 0 <= t <= 1:
            raise ValueError(
                f"The {rule} threshold must be a number in [0, 1]; got {t!r}. Confidence: leave when "
                "max softmax > t; entropy (divided by log(classes)): leave when it is < t."
            )
    return [float(t) for t in ts]


def _score_layer(rule: str, name: str):
    """A Keras layer computing the exit rule's score from logits, so it runs inside the .tflite."""
    import tensorflow as tf
    import tf_keras

    if rule == "confidence":
        return tf_keras.layers.Lambda(lambda z: tf.reduce_max(tf.nn.softmax(z), axis=-1), name=name)

    def normalised_entropy(z):
        logp = tf.nn.log_softmax(z)
        return -tf.reduce_sum(tf.exp(logp) * logp, axis=-1) / tf.math.log(tf.cast(tf.shape(z)[-1], z.dtype))

    return tf_keras.layers.Lambda(normalised_entropy, name=name)


def _deploy_stages(stages, rule: str = "confidence") -> list:
    """Each early stage with the exit rule's score as a third output, computed inside the model."""
    import tf_keras

    if rule not in RULES:
        raise ValueError(f"Unknown exit rule {rule!r}; choose one of {RULES}.")
    out = []
    for k, stage in enumerate(stages):
        if k == len(stages) - 1:
            out.append(stage)
            continue
        if len(stage.outputs) != 2:
            raise ValueError(
                f"Early stage {k + 1} ({stage.name}) must map its input to [features, logits]; it has "
                f"{len(stage.outputs)} output(s). Only the last stage gives logits alone."
            )
        features, logits = stage.outputs
        score = _score_layer(rule, f"stage{k + 1}_{rule}")(logits)
        out.append(tf_keras.Model(stage.inputs, [features, logits, score], name=f"stage{k + 1}_{rule}"))
    return out


def _match_outputs(model, interp):
    """Indices of the .tflite outputs that match the Keras model's outputs, in Keras order
    (found by running both on one probe input: the converter may reorder outputs)."""
    det_in = interp.get_input_details()[0]
    probe = np.random.default_rng(0).random((1, *model.input_shape[1:])).astype(np.float32)
    interp.set_tensor(det_in["index"], probe)
    interp.invoke()
    wanted = model(probe, training=False)
    wanted = [np.asarray(w) for w in (wanted if isinstance(wanted, (list, tuple)) else [wanted])]
    found = []
    for w in wanted:
        best = None
        for d in interp.get_output_details():
            got = interp.get_tensor(d["index"])
            if got.shape == w.shape and d["index"] not in found:
                err = float(np.max(np.abs(got - w)))
                if best is None or err < best[0]:
                    best = (err, d["index"])
        if best is None or best[0] > 1e-3 * (1 + float(np.max(np.abs(w)))):
            raise RuntimeError(f"Could not match the outputs of {model.name}'s .tflite model to Keras.")
        found.append(best[1])
    return det_in["index"], found


class StagedTFLite:
    """Each stage with its exit head as its own .tflite model in LiteRT, run one after the other
    per sample; the next stage runs only if the exit rule says so.

    ``stages``: Keras models, earliest first; an early stage maps its input to ``[features,
    logits]``, the last stage to logits. Each early stage's .tflite computes its features, its
    logits and the rule's score; Python reads the score, compares it with the threshold
    (``confidence > t`` or ``entropy < t``), and either returns the class or copies the
    features into the next stage's input.

    Introduced in notebook 06.
    """

    def __init__(self, stages, rule: str = "confidence", thresholds=0.9, threads: int = 1):
        stages = list(stages)
        if len(stages) < 2:
            raise ValueError(f"Give the stages as a list of at least 2 Keras models; got {len(stages)}.")
        self.rule = rule
        self.thresholds = _thresholds(thresholds, rule, len(stages) - 1)
        stages = _deploy_stages(stages, rule)
        self.blobs = [convert.to_tflite(s) for s in stages]
        self.runners = [convert.TFLiteModel(b, threads=threads) for b in self.blobs]
        self.input_shape = tuple(self.runners[0].input_details["shape"])
        self._plan = []
        for k, (stage, runner) in enumerate(zip(stages, self.runners)):
            i_in, outs = _match_outputs(stage, runner.interpreter)
            if k < len(stages) - 1:
                feat, logits, score = outs
            else:
                feat, logits, score = None, outs[0], None
            self._plan.append((runner.interpreter, i_in, feat, logits, score))

    @property
    def size_bytes(self) -> int:
        """gzip bytes of all stages' .tflite files together (what you would ship)."""
        return int(sum(measure.compressed_size(b) for b in self.blobs))

    def classify(self, sample):
        """(class, exit index) for one input of shape (1, H, W, C) (or (H, W, C)), float32."""
        x = (
            sample
            if sample.shape == self.input_shape
            else np.asarray(sample, dtype=np.float32).reshape(self.input_shape)
        )
        confident = self.rule == "confidence"
        last = len(self._plan) - 1
        for k, (interp, i_in, i_feat, i_logits, i_score) in enumerate(self._plan):
            interp.set_tensor(i_in, x)
            interp.invoke()
            if k < last:
                score = interp.get_tensor(i_score)[0]
                leave = (score > self.thresholds[k]) if confident else (score < self.thresholds[k])
            if k == last or leave:
                return int(interp.get_tensor(i_logits)[0].argmax()), k
            x = interp.get_tensor(i_feat)

    def predict(self, x, desc: str = "staged LiteRT, one image at a time"):
        """Classes and exit indices for every input of ``x``, one sample at a time (with a progress bar)."""
        x = np.asarray(x, dtype=np.float32)
        out = [
            self.classify(x[i : i + 1])
            for i in progress.bar(range(len(x)), desc=desc, unit="image", mininterval=0.5)
        ]
        return np.array([c for c, _ in out]), np.array([k for _, k in out])


class _SingleTFLite:
    """One .tflite model run a sample at a time the same way (set, invoke, read, argmax)."""

    def __init__(self, blob, threads: int = 1):
        self.runner = convert.TFLiteModel(blob, threads=threads)
        self._interp = self.runner.interpreter
        self._in = self.runner.input_details["index"]
        self._out = self.runner.output_details["index"]

    def classify(self, sample):
        interp = self._interp
        interp.set_tensor(self._in, sample)
        interp.invoke()
        return int(interp.get_tensor(self._out)[0].argmax()), 0


@dataclass
class LatencyComparison:
    """Per-sample latency of the early-exit network against the full one (``compare_latency``, notebook 06).

    ``dynamic_ms`` and ``full_ms``: each sample's median over the repeats, in milliseconds;
    ``exits``: the exit each sample left at (0 = first). The summaries (``dynamic_mean_ms``,
    ``full_p90_ms``, ``speedup_mean``, ..) are computed from those arrays.

    Introduced in notebook 06.
    """

    dynamic_ms: np.ndarray
    full_ms: np.ndarray
    exits: np.ndarray
    repeats: int
    threads: int

    dynamic_mean_ms = property(lambda self: float(np.mean(self.dynamic_ms)))
    dynamic_median_ms = property(lambda self: float(np.median(self.dynamic_ms)))
    dynamic_p90_ms = property(lambda self: float(np.percentile(self.dynamic_ms, 90)))
    full_mean_ms = property(lambda self: float(np.mean(self.full_ms)))
    full_median_ms = property(lambda self: float(np.median(self.full_ms)))
    full_p90_ms = property(lambda self: float(np.percentile(self.full_ms, 90)))

    @property
    def speedup_mean(self) -> float:
        """The full network's mean latency over the early-exit network's (above 1: early exit is faster)."""
        return self.full_mean_ms / self.dynamic_mean_ms

    def table(self, unit: str = "µs", names=("early exit (staged LiteRT)", "full network (LiteRT)")):
        """A DataFrame: mean, median and p90 per-sample latency (in ``unit``: s, ms, µs), one row per model."""
        import pandas as pd

        scale = {"s": 1e-3, "ms": 1.0, "µs": 1e3, "us": 1e3}[unit]
        rows = [
            [self.dynamic_mean_ms, self.dynamic_median_ms, self.dynamic_p90_ms],
            [self.full_mean_ms, self.full_median_ms, self.full_p90_ms],
        ]
        return scale * pd.DataFrame(
            rows, index=list(names), columns=[f"mean ({unit})", f"median ({unit})", f"p90 ({unit})"]
        )


def compare_latency(
    staged: StagedTFLite,
    full_blob,
    x,
    repeats: int = 3,
    warmup: int = 50,
    threads: int = 1,
    desc: str = "latency, early exit vs full",
    clock: Callable[[], float] = time.perf_counter,
    block: int = 50,
) -> LatencyComparison:
    """Per-sample latency of staged execution against the full network in LiteRT.

    The samples of ``x`` are taken in blocks of ``block`` consecutive images. In each of the
    ``repeats`` passes, each block runs through one model image by image, then through the
    other, and the order alternates from block to block and from pass to pass, so that load
    from other processes hits both alike (interleaved, as ``timing.interleaved`` does, at the
    scale of a block: a few milliseconds). Each image is timed on its own; its latency is its
    median over the passes.

    Why blocks and not strict alternation image by image (``block=1``): a deployed model
    serves its own stream of inputs, its weights and buffers warm in the CPU's caches. Running
    the other model between every two images evicts them, and a small first stage pays for
    the refill more than the full network does: on this course's LeNet-5, alternating image by
    image added about 15 µs to a 25 µs first stage. Notebook 06 shows both.

    Timed: setting the input, every stage run, reading the score, the comparison with the
    threshold, the copy of features to the next stage and the argmax (the full network:
    input, run, argmax). ``warmup`` untimed runs of each come first. A progress bar (``desc``)
    counts the timed passes over the samples; it is updated between blocks, never inside a
    timed call. Returns a ``LatencyComparison`` (per-sample milliseconds, the exits taken,
    mean / median / p90 of each, the speed-up of the mean).

    Introduced in notebook 06.
    """
    for what, value in (("repeats", repeats), ("block", block)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{what} must be a whole number >= 1, got {value!r}")
    full = _SingleTFLite(full_blob, threads=threads)
    samples = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1, *staged.input_shape))
    n = len(samples)
    if n == 0:
        raise ValueError("compare_latency needs at least one sample.")
    for i in range(warmup):
        staged.classify(samples[i % n])
        full.classify(samples[i % n])
    times = np.empty((2, n, repeats))
    exits = np.empty(n, dtype=np.int64)
    runners = (staged.classify, full.classify)
    shown = progress.bar(total=n * repeats, desc=desc, unit="image", mininterval=0.5)
    for r in range(repeats):
        for b, start in enumerate(range(0, n, block)):
            stop = min(start + block, n)
            for which in (0, 1) if (b + r) % 2 == 0 else (1, 0):
                run, out = runners[which], times[which]
                for i in range(start, stop):
                    s = samples[i]
                    t0 = clock()
                    taken = run(s)[1]
                    out[i, r] = clock() - t0
                    if which == 0:
                        exits[i] = taken
            shown.update(stop - start)
    shown.close()
    dyn, ful = np.median(times, axis=2) * 1000.0
    return LatencyComparison(dynamic_ms=dyn, full_ms=ful, exits=exits, repeats=repeats, threads=threads)
