"""Dynamic networks: early exits on a backbone, exit rules, mean MACs, staged TFLite (notebook 06).

A *dynamic* network changes the computation it performs per input at inference time. The
canonical, measurable case is early exiting (BranchyNet, Teerapittayanon et al. 2016;
MSDNet, Huang et al. 2018): classifier heads ("exits") are attached part-way through a
backbone, and an input stops at the first exit that is sure enough of its answer.

* ``build_early_exit`` splits a chain-shaped Keras backbone after named layers and attaches
  an exit head at each split. It returns an ``EarlyExitNet``: the joint Keras model (one
  output per exit, for training) and one Keras model per *stage* (a backbone segment and
  its head), which are what runs at inference.
* ``train_joint`` trains all exits together on ``sum_k w_k * CE(y, exit_k)`` (batches from
  ``train_batches``, optionally with random shifts).
* ``confidence`` / ``entropy`` score an exit's logits; ``route`` sends each input to the
  first exit whose score passes the threshold; ``mean_macs`` charges each input the MACs of
  every stage and head it ran (counted by ``measure.macs``); ``sweep`` tabulates accuracy
  against mean MACs over thresholds.
* ``StagedTFLite`` converts each stage to its own .tflite model and runs them one after the
  other in LiteRT, a sample at a time, running the next stage only when the exit rule says
  so; ``compare_latency`` times it against the full network, interleaved.

The exit rules (threshold ``t`` in [0, 1]):

* ``confidence``: exit when ``max softmax > t``. ``t = 1`` never exits early; ``t = 0``
  always exits at the first exit (the maximum softmax is at least 1/C > 0).
* ``entropy``: exit when the entropy of the softmax, divided by ``log C`` so that it lies in
  [0, 1], is ``< t``. ``t = 0`` never exits early; ``t = 1`` exits every input whose head is
  not exactly uniform.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import convert, measure, progress
from .models import check_model

RULES = ("confidence", "entropy")
NEVER_EXIT = {"confidence": 1.0, "entropy": 0.0}  # thresholds at which no input exits early
ALWAYS_EXIT = {"confidence": 0.0}  # the threshold at which every input leaves at the first exit


# --- building -------------------------------------------------------------------------------

def _chain(model):
    """The layers of a single-path model in order (InputLayer excluded), or a ValueError."""
    import tf_keras

    check_model(model, what="build_early_exit")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("build_early_exit needs a backbone with one input and one output; got "
                         f"{len(model.inputs)} inputs and {len(model.outputs)} outputs.")
    layers = [layer for layer in model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    if not isinstance(model, tf_keras.Sequential):
        previous = model.inputs[0]
        for layer in layers:
            if len(layer._inbound_nodes) != 1 or layer.input is not previous:
                raise ValueError(
                    f"build_early_exit needs a backbone whose layers form one chain (each layer "
                    f"feeds the next); layer {layer.name!r} does not take the previous layer's "
                    "output. Split a Sequential model, or a Functional model without branches.")
            previous = layer.output
    return layers


def default_head(features_shape, num_classes: int, index: int, max_features: int = 1024,
                 hidden: int = 0):
    """A small exit head (notebook 06): max-pool until at most ``max_features`` values, flatten,
    an optional hidden Dense layer with ReLU, and a Dense layer giving ``num_classes`` logits.

    Returns the list of (unbuilt) layers, named ``exit<index>_...``.
    """
    import tf_keras

    shape = [int(d) for d in features_shape]
    layers = []
    if len(shape) == 3:
        h, w, c = shape
        pools = 0
        while h * w * c > max_features and min(h, w) >= 2:
            h, w, pools = h // 2, w // 2, pools + 1
        if pools:
            layers.append(tf_keras.layers.MaxPooling2D(2 ** pools, name=f"exit{index}_pool"))
    if len(shape) > 1:
        layers.append(tf_keras.layers.Flatten(name=f"exit{index}_flatten"))
    if hidden:
        layers.append(tf_keras.layers.Dense(hidden, activation="relu", name=f"exit{index}_hidden"))
    layers.append(tf_keras.layers.Dense(num_classes, name=f"exit{index}_logits"))
    return layers


def _head_layers(spec, features_shape, num_classes, index):
    import tf_keras

    if spec is None:
        return default_head(features_shape, num_classes, index)
    if isinstance(spec, tf_keras.Sequential):
        return list(spec.layers)
    if isinstance(spec, tf_keras.layers.Layer) and not isinstance(spec, tf_keras.Model):
        return [spec]
    if isinstance(spec, (list, tuple)) and all(isinstance(s, tf_keras.layers.Layer) for s in spec):
        return list(spec)
    if callable(spec) and not isinstance(spec, tf_keras.Model):
        return _head_layers(spec(features_shape, num_classes, index), features_shape, num_classes, index)
    raise TypeError(
        f"Exit head {index}: expected None (the default head), a keras.Sequential, a list of "
        "Keras layers, or a function (features_shape, num_classes, index) returning one of "
        f"those; got {type(spec).__name__}.")


@dataclass
class EarlyExitNet:
    """A backbone with exit heads (notebook 06): the joint model, its stages and their MACs.

    ``model`` maps an image to the logits of every exit, earliest first, the backbone's own
    output last (train it with ``train_joint``). ``stages[k]`` maps stage k's input (the image,
    or the features where stage k-1 stopped) to ``[features, logits]``; the last stage maps to
    logits. ``full`` is the backbone alone, without heads. All share the same layers.
    """

    model: object
    stages: list
    full: object
    split_after: tuple
    num_classes: int
    stage_macs: list = field(default_factory=list)

    @property
    def n_exits(self) -> int:
        return len(self.stages)

    @property
    def exit_names(self) -> list[str]:
        return [f"exit {k + 1} (after {name})" for k, name in enumerate(self.split_after)] + ["final"]

    @property
    def cumulative_macs(self) -> np.ndarray:
        """MACs spent by an input that leaves at exit k: every stage and head up to k."""
        return np.cumsum(self.stage_macs)

    def exit_logits(self, x, batch_size: int = 512) -> list[np.ndarray]:
        """The logits of every exit on ``x`` (earliest first), from the joint Keras model."""
        out = self.model.predict(x, batch_size=batch_size, verbose=0)
        return [np.asarray(o) for o in out]


def build_early_exit(backbone, split_after, heads=None, copy: bool = True, name: str | None = None):
    """Split a backbone after the named layers and attach an exit head at each split (notebook 06).

    ``split_after``: layer names in forward order (not the last layer). ``heads``: None for
    ``default_head`` everywhere, or one spec per split (see ``_head_layers``). Every head must
    give as many logits as the backbone. ``copy=True`` works on a clone with the same weights,
    so the backbone you pass is never changed. Returns an ``EarlyExitNet``.
    """
    import tf_keras

    from .models import clone

    if isinstance(split_after, str):
        split_after = [split_after]
    split_after = list(split_after)
    layers = _chain(backbone)
    names = [layer.name for layer in layers]
    if not split_after:
        raise ValueError(f"Give at least one layer to split after; candidates: {names[:-1]}.")
    for split in split_after:
        if split not in names:
            raise ValueError(f"The backbone has no layer {split!r}; its layers are {names}. "
                             "Pass names from that list to split_after.")
        if split == names[-1]:
            raise ValueError(f"Cannot split after {split!r}: it is the backbone's last layer, "
                             "nothing would be left for the next stage.")
    positions = [names.index(s) for s in split_after]
    if len(set(positions)) != len(positions) or positions != sorted(positions):
        raise ValueError(f"split_after must name distinct layers in forward order; got {split_after} "
                         f"(the backbone's order is {names}).")
    if heads is None:
        heads = [None] * len(split_after)
    elif not isinstance(heads, (list, tuple)) or len(heads) != len(split_after):
        raise ValueError(f"Give one head per split ({len(split_after)}), or heads=None for the "
                         "default head at every split.")
    if copy:
        backbone = clone(backbone, compile_like=False)
        layers = _chain(backbone)
    num_classes = int(backbone.output_shape[-1])
    input_shape = tuple(backbone.input_shape[1:])

    # Segments of the backbone: layers up to and including each split, then the rest.
    cuts = [p + 1 for p in positions]
    segments = [layers[a:b] for a, b in zip([0] + cuts, cuts + [len(layers)])]

    inp = tf_keras.Input(input_shape, name="image")
    x, outputs, head_layers, seg_inputs = inp, [], [], []
    for k, segment in enumerate(segments):
        seg_inputs.append(tuple(int(d) for d in x.shape[1:]))
        for layer in segment:
            x = layer(x)
        if k < len(split_after):
            hl = _head_layers(heads[k], x.shape[1:], num_classes, k + 1)
            h = x
            for layer in hl:
                h = layer(h)
            if len(h.shape) != 2 or int(h.shape[-1]) != num_classes:
                raise ValueError(
                    f"Exit head {k + 1} (after {split_after[k]!r}) gives outputs of shape "
                    f"{tuple(h.shape[1:])}, the backbone gives {num_classes} class logits. End every "
                    f"head in Dense({num_classes}) on flat features.")
            head_layers.append(hl)
            outputs.append(h)
    outputs.append(x)
    joint = tf_keras.Model(inp, outputs, name=name or f"{backbone.name}_early_exit")

    stages = []
    for k, segment in enumerate(segments):
        s_in = tf_keras.Input(seg_inputs[k], name=f"stage{k + 1}_input")
        x = s_in
        for layer in segment:
            x = layer(x)
        if k < len(split_after):
            h = x
            for layer in head_layers[k]:
                h = layer(h)
            stages.append(tf_keras.Model(s_in, [x, h], name=f"stage{k + 1}"))
        else:
            stages.append(tf_keras.Model(s_in, x, name=f"stage{k + 1}"))
    f_in = tf_keras.Input(input_shape, name="image")
    x = f_in
    for layer in layers:
        x = layer(x)
    full = tf_keras.Model(f_in, x, name=f"{backbone.name}_full")
    net = EarlyExitNet(joint, stages, full, tuple(split_after), num_classes)
    net.stage_macs = [measure.macs(s) for s in stages]
    return net


def train_batches(data, batch_size: int = 128, shift: float = 0.0, seed: int = 0, outputs: int = 1):
    """Shuffled training batches of a ``data.MNIST``, optionally shifted at random (notebook 06).

    ``shift`` > 0 moves each image by up to that fraction of its height and width (Keras
    ``RandomTranslation``, empty border), a fresh shift every epoch: cheap augmentation that
    helps small early-exit heads generalise to new writers. ``outputs`` > 1 repeats the label
    once per model output (for the joint early-exit model).
    """
    import tf_keras

    from . import data as _data

    if not 0 <= shift < 0.5:
        raise ValueError(f"shift is a fraction of the image size in [0, 0.5); got {shift}.")
    if outputs < 1:
        raise ValueError(f"outputs must be >= 1, got {outputs}")
    ds = _data.pipeline(data.x_train, data.y_train, batch_size, shuffle=True, seed=seed)
    if shift:
        move = tf_keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed)
        ds = ds.map(lambda x, y: (move(x, training=True), y))
    if outputs > 1:
        ds = ds.map(lambda x, y: (x, tuple(y for _ in range(outputs))))
    return ds


def train_joint(net: EarlyExitNet, data, epochs: int, loss_weights=None, learning_rate: float = 1e-3,
                batch_size: int = 128, shift: float = 0.0, seed: int = 0, verbose: int = 0):
    """Train every exit at once on sum_k w_k * CE(y, exit_k), Adam with cosine decay (notebook 06).

    ``data`` is a ``data.MNIST``; ``loss_weights`` one non-negative weight per exit, earliest
    first (default all 1); ``shift`` the random-shift augmentation of ``train_batches``.
    Returns the Keras History (per-exit losses and accuracies).
    """
    import tensorflow as tf
    import tf_keras

    from . import data as _data

    n = net.n_exits
    weights = [1.0] * n if loss_weights is None else [float(w) for w in loss_weights]
    if len(weights) != n or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) == 0:
        raise ValueError(f"loss_weights needs {n} finite, non-negative numbers (one per exit, "
                         f"earliest first), not all zero; got {loss_weights}.")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    steps = int(np.ceil(len(data.x_train) / batch_size)) * epochs
    schedule = tf_keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.01)
    net.model.compile(
        optimizer=tf_keras.optimizers.Adam(schedule),
        loss=[tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True) for _ in range(n)],
        loss_weights=weights, metrics=["accuracy"])
    tf.random.set_seed(seed)
    train_ds = train_batches(data, batch_size, shift=shift, seed=seed, outputs=n)
    val_ds = _data.pipeline(data.x_val, data.y_val, 512).map(lambda x, y: (x, tuple(y for _ in range(n))))
    return net.model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose,
                         callbacks=progress.with_bar([], f"joint training of {n} exits", verbose))


# --- exit rules and accounting ------------------------------------------------------------------

def _logits2d(logits, what="logits"):
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{what} must have shape (samples, classes) with at least 2 classes; "
                         f"got {arr.shape}.")
    return arr


def confidence(logits) -> np.ndarray:
    """The maximum softmax probability of each row of logits, computed stably (notebook 06)."""
    z = _logits2d(logits)
    z = z - z.max(axis=1, keepdims=True)
    return 1.0 / np.exp(z).sum(axis=1)


def entropy(logits) -> np.ndarray:
    """The entropy of softmax(logits) per row, divided by log(classes): 0 sure, 1 uniform (notebook 06)."""
    z = _logits2d(logits)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    h = -(np.exp(logp) * logp).sum(axis=1) / np.log(z.shape[1])
    return np.clip(h, 0.0, 1.0)


def check_threshold(threshold, rule: str = "confidence") -> float:
    """A valid exit threshold as a float, or a ValueError that says the valid range (notebook 06)."""
    if rule not in RULES:
        raise ValueError(f"Unknown exit rule {rule!r}; choose one of {RULES}.")
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.number)):
        raise ValueError(f"The {rule} threshold must be a number in [0, 1]; got {threshold!r}.")
    t = float(threshold)
    if not (0.0 <= t <= 1.0):
        never = NEVER_EXIT[rule]
        raise ValueError(
            f"The {rule} threshold must lie in [0, 1]; got {t}. "
            + ("Confidence is a probability: exit when max softmax > t (t = 1 never exits early, "
               "t = 0 always exits at the first exit)."
               if rule == "confidence" else
               "Entropy is divided by log(classes): exit when it is < t "
               f"(t = {never} never exits early, t = 1 exits nearly everything)."))
    return t


def exit_mask(logits, rule: str, threshold) -> np.ndarray:
    """True for the inputs whose exit logits pass the rule: confidence > t, or entropy < t (notebook 06)."""
    t = check_threshold(threshold, rule)
    if rule == "confidence":
        return confidence(logits) > t
    return entropy(logits) < t


def _check_exits(exit_logits):
    if not isinstance(exit_logits, (list, tuple)) or len(exit_logits) < 2:
        raise ValueError("Give the logits of every exit as a list, earliest first, the final exit "
                         f"last (at least 2); got {type(exit_logits).__name__}.")
    arrays = [_logits2d(z, f"exit {k + 1} logits") for k, z in enumerate(exit_logits)]
    classes = [a.shape[1] for a in arrays]
    if len(set(classes)) != 1:
        raise ValueError(f"The exits give different numbers of classes {classes}; every exit must "
                         "predict the same classes (end every head in Dense(num_classes)).")
    rows = [a.shape[0] for a in arrays]
    if len(set(rows)) != 1:
        raise ValueError(f"The exits' logits cover different numbers of samples {rows}; compute "
                         "all of them on the same inputs.")
    return arrays


def _thresholds(thresholds, rule, n_early):
    if isinstance(thresholds, (list, tuple, np.ndarray)):
        if len(thresholds) != n_early:
            raise ValueError(f"Give one threshold per early exit ({n_early}) or a single number; "
                             f"got {len(thresholds)}.")
        return [check_threshold(t, rule) for t in thresholds]
    return [check_threshold(thresholds, rule)] * n_early


def route(exit_logits, rule: str, thresholds) -> np.ndarray:
    """The exit each input leaves at (0 = first): the first early exit whose logits pass the rule,
    else the final exit (notebook 06). ``thresholds``: one number, or one per early exit."""
    arrays = _check_exits(exit_logits)
    ts = _thresholds(thresholds, rule, len(arrays) - 1)
    n = arrays[0].shape[0]
    exit_index = np.full(n, len(arrays) - 1, dtype=np.int64)
    open_ = np.ones(n, dtype=bool)
    for k, (z, t) in enumerate(zip(arrays[:-1], ts)):
        leave = open_ & exit_mask(z, rule, t)
        exit_index[leave] = k
        open_ &= ~leave
    return exit_index


def dynamic_predict(exit_logits, rule: str, thresholds):
    """Predicted class and exit index per input under an exit rule (notebook 06)."""
    arrays = _check_exits(exit_logits)
    exit_index = route(arrays, rule, thresholds)
    stacked = np.stack(arrays)  # (exits, samples, classes)
    chosen = stacked[exit_index, np.arange(stacked.shape[1])]
    return chosen.argmax(axis=1), exit_index


def mean_macs(exit_index, cumulative_macs) -> float:
    """Mean MACs per input: each input pays the cumulative MACs of the exit it left at (notebook 06).

    ``cumulative_macs[k]`` counts every stage and every head up to and including exit k (an
    input that goes on past an exit has paid for that exit's head too).
    """
    cum = np.asarray(cumulative_macs, dtype=np.float64)
    idx = np.asarray(exit_index)
    if idx.size == 0:
        raise ValueError("No inputs: mean MACs of an empty set is undefined.")
    if idx.min() < 0 or idx.max() >= len(cum):
        raise ValueError(f"Exit indices must lie in 0..{len(cum) - 1} (one cumulative MAC count per "
                         f"exit); got {idx.min()}..{idx.max()}.")
    return float(cum[idx].mean())


def exit_shares(exit_index, n_exits: int) -> np.ndarray:
    """The share of inputs leaving at each exit (sums to 1) (notebook 06)."""
    idx = np.asarray(exit_index)
    return np.bincount(idx, minlength=n_exits)[:n_exits] / max(len(idx), 1)


def sweep(exit_logits, labels, cumulative_macs, thresholds, rule: str = "confidence"):
    """Accuracy, mean MACs and exit shares for each threshold, as a DataFrame (notebook 06).

    The same threshold is used at every early exit. ``macs_reduction`` is the MACs of the
    full backbone path (the last cumulative count minus the early heads) over the mean.
    """
    import pandas as pd

    arrays = _check_exits(exit_logits)
    cum = np.asarray(cumulative_macs, dtype=np.float64)
    if len(cum) != len(arrays):
        raise ValueError(f"Give one cumulative MAC count per exit ({len(arrays)}); got {len(cum)}.")
    labels = np.asarray(labels)
    rows = []
    for t in thresholds:
        pred, idx = dynamic_predict(arrays, rule, t)
        row = {"threshold": float(t), "accuracy": float(np.mean(pred == labels)),
               "mean_macs": mean_macs(idx, cum)}
        for k, share in enumerate(exit_shares(idx, len(arrays))):
            row[f"share_exit{k + 1}" if k < len(arrays) - 1 else "share_final"] = float(share)
        rows.append(row)
    return pd.DataFrame(rows)


def operating_point(table, reference_accuracy: float, max_drop: float):
    """The sweep row with the fewest mean MACs whose accuracy is at most ``max_drop`` below the
    reference (fractions, e.g. 0.001 = 0.1 points) (notebook 06); ties go to the more accurate."""
    if not 0 <= max_drop < 1:
        raise ValueError(f"max_drop is a fraction of accuracy in [0, 1) (0.001 = 0.1 points); got {max_drop}.")
    ok = table[table["accuracy"] >= reference_accuracy - max_drop - 1e-12]
    if ok.empty:
        raise ValueError(f"No threshold keeps accuracy within {max_drop * 100:.2f} points of "
                         f"{reference_accuracy:.4f}; add thresholds closer to 'never exit'.")
    return ok.sort_values(["mean_macs", "accuracy"], ascending=[True, False]).iloc[0]


# --- staged execution in LiteRT ----------------------------------------------------------------

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


def deploy_stages(net: EarlyExitNet, rule: str = "confidence") -> list:
    """The stages as Keras models for deployment (notebook 06): an early stage maps its input to
    ``[features, logits, score]``, where ``score`` is the exit rule's confidence or entropy
    computed inside the model; the last stage maps to logits. Same layers, same weights."""
    import tf_keras

    if rule not in RULES:
        raise ValueError(f"Unknown exit rule {rule!r}; choose one of {RULES}.")
    out = []
    for k, stage in enumerate(net.stages):
        if k == net.n_exits - 1:
            out.append(stage)
            continue
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
    per sample; the next stage runs only if the exit rule says so (notebook 06).

    Each early stage's .tflite computes its features, its logits and the rule's score
    (``deploy_stages``); Python reads the score, compares it with the threshold, and either
    returns the class or copies the features into the next stage's input.
    """

    def __init__(self, net: EarlyExitNet, rule: str = "confidence", thresholds=0.9,
                 threads: int = 1, blobs=None):
        self.rule = rule
        self.thresholds = _thresholds(thresholds, rule, net.n_exits - 1)
        stages = deploy_stages(net, rule)
        self.blobs = list(blobs) if blobs is not None else [convert.to_tflite(s) for s in stages]
        if len(self.blobs) != net.n_exits:
            raise ValueError(f"Need one .tflite model per stage ({net.n_exits}); got {len(self.blobs)}.")
        self.runners = [convert.TFLiteModel(b, threads=threads) for b in self.blobs]
        self.input_shape = tuple(self.runners[0].input_details["shape"])
        self._plan = []
        for k, (stage, runner) in enumerate(zip(stages, self.runners)):
            i_in, outs = _match_outputs(stage, runner._interp)
            if k < net.n_exits - 1:
                if len(outs) != 3:
                    raise ValueError(f"Stage {k + 1}'s .tflite model should give features, logits and "
                                     f"the {rule} score; build its blob from deploy_stages(net, {rule!r}).")
                feat, logits, score = outs
            else:
                feat, logits, score = None, outs[0], None
            self._plan.append((runner._interp, i_in, feat, logits, score))

    @property
    def size_bytes(self) -> int:
        """gzip bytes of all stages' .tflite files together (what you would ship)."""
        return int(sum(measure.compressed_size(b) for b in self.blobs))

    def classify(self, sample):
        """(class, exit index) for one input of shape (1, H, W, C) (or (H, W, C)), float32."""
        x = sample if sample.shape == self.input_shape else np.asarray(
            sample, dtype=np.float32).reshape(self.input_shape)
        confident = self.rule == "confidence"
        last = len(self._plan) - 1
        for k, (interp, i_in, i_feat, i_logits, i_score) in enumerate(self._plan):
            interp.set_tensor(i_in, x)
            interp.invoke()
            if k == last:
                break
            score = interp.get_tensor(i_score)[0]
            if (score > self.thresholds[k]) if confident else (score < self.thresholds[k]):
                break
            x = interp.get_tensor(i_feat)
        return int(interp.get_tensor(i_logits)[0].argmax()), k

    def predict(self, x, desc: str = "staged LiteRT, one image at a time"):
        """Classes and exit indices for every input of ``x``, one sample at a time (with a progress bar)."""
        x = np.asarray(x, dtype=np.float32)
        out = [self.classify(x[i:i + 1]) for i in progress.bar(range(len(x)), desc=desc, unit="image",
                                                                mininterval=0.5)]
        return np.array([c for c, _ in out]), np.array([k for _, k in out])


class _SingleTFLite:
    """One .tflite model run a sample at a time the same way (set, invoke, read, argmax)."""

    def __init__(self, blob, threads: int = 1):
        self.runner = convert.TFLiteModel(blob, threads=threads)
        self._interp = self.runner._interp
        self._in = self.runner.input_details["index"]
        self._out = self.runner.output_details["index"]

    def classify(self, sample):
        interp = self._interp
        interp.set_tensor(self._in, sample)
        interp.invoke()
        return int(interp.get_tensor(self._out)[0].argmax()), 0


def compare_latency(staged: StagedTFLite, full_blob, x, repeats: int = 3, warmup: int = 50,
                    threads: int = 1, desc: str = "latency, early exit vs full") -> dict:
    """Per-sample latency of staged execution against the full network in LiteRT (notebook 06).

    Each pass times every sample of ``x`` with both, interleaved (A, B for even samples, B, A
    for odd ones) so that load from other processes hits both alike; a sample's latency is
    the median over ``repeats`` passes. Timed: setting the input, every stage run, reading the
    score, the comparison with the threshold, the copy of features to the next stage and the
    argmax (the full network: input, run, argmax). A progress bar (``desc``) counts the timed
    samples; it is updated between samples, outside the timed calls. Returns per-sample milliseconds
    (``dynamic_ms``, ``full_ms``), the exits taken, and mean / median / p90 of each.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    full = _SingleTFLite(full_blob, threads=threads)
    samples = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1, *staged.input_shape))
    n = len(samples)
    if n == 0:
        raise ValueError("compare_latency needs at least one sample.")
    for i in range(warmup):
        staged.classify(samples[i % n])
        full.classify(samples[i % n])
    times = np.empty((2, repeats, n))
    exits = np.empty(n, dtype=np.int64)
    clock = time.perf_counter
    shown = progress.bar(total=repeats * n, desc=desc, unit="image", mininterval=0.5)
    chunk = 250  # bar updates between samples, never inside a timed call
    for r in range(repeats):
        for i in range(n):
            if i % chunk == 0 and i:
                shown.update(chunk)
            s = samples[i]
            if i % 2 == 0:
                t0 = clock()
                _, exits[i] = staged.classify(s)
                t1 = clock()
                full.classify(s)
                t2 = clock()
                times[0, r, i], times[1, r, i] = t1 - t0, t2 - t1
            else:
                t0 = clock()
                full.classify(s)
                t1 = clock()
                _, exits[i] = staged.classify(s)
                t2 = clock()
                times[1, r, i], times[0, r, i] = t1 - t0, t2 - t1
        shown.update(n - (n - 1) // chunk * chunk)
    shown.close()
    per_sample = np.median(times, axis=1) * 1000.0
    dyn, ful = per_sample
    out = {"dynamic_ms": dyn, "full_ms": ful, "exits": exits, "repeats": repeats, "threads": threads}
    for name, arr in (("dynamic", dyn), ("full", ful)):
        out[f"{name}_mean_ms"] = float(arr.mean())
        out[f"{name}_median_ms"] = float(np.median(arr))
        out[f"{name}_p90_ms"] = float(np.percentile(arr, 90))
    out["speedup_mean"] = out["full_mean_ms"] / out["dynamic_mean_ms"]
    return out
