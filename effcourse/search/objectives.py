"""The objectives notebook 08 searches with, built from the course's own helpers.

``compression_objective``: per-layer magnitude pruning (notebook 02), sparsity-preserving
clustering with per-layer cluster counts (notebook 04), then one of PCQAT + full int8
(notebook 04's collaborative QAT), post-training int8, dynamic-range or float16
conversion (notebook 03); measured as a file: gzip bytes and validation accuracy.

``channel_objective``: per-layer channel widths (notebook 02's ``prune.channel_prune``),
fine-tuning, a conversion mode, and the single-sample LiteRT latency measured inside the
trial on this machine (``measure.latency`` on ``effcourse.timing``): the search is
hardware-aware because it times the hardware it runs on. Its fine-tuning may distil from
the dense model (a ``distill`` parameter of the space), a tool a hand-chosen point can be
given too, so that the comparison is made under the same recipe.

Both choose on the validation split and never look at the test set; both report the
validation accuracy after each fine-tuning epoch, so the study's pruner can stop a trial
that cannot reach the accuracy budget.
"""

from __future__ import annotations

from ..errors import EffcourseError
from . import space as _space

_QUANTIZATION = ("pcqat_int8", "ptq_int8", "dynamic", "float16", "float32")


class LatencyBudgetError(EffcourseError, ValueError):
    """A latency budget below what LiteRT can run on this machine (the floor, and what to do).

    Introduced in notebook 08.
    """


def latency_floor_ms(runs: int = 200, warmup: int = 20, threads: int = 1) -> float:
    """Median single-sample latency (ms) of the smallest model LiteRT can run here: the invoke overhead.

    A model that does one multiply-add per pixel (Flatten, Dense(1)) on a 28 x 28 input; no
    model can be timed faster than this on this machine.

    Introduced in notebook 08.
    """
    import tf_keras

    from .. import convert, measure

    tiny = tf_keras.Sequential(
        [tf_keras.layers.Input((28, 28, 1)), tf_keras.layers.Flatten(), tf_keras.layers.Dense(1)]
    )
    return measure.latency(convert.to_tflite(tiny), runs=runs, warmup=warmup, threads=threads)["latency_ms"]


def check_latency_budget(budget_ms: float, floor_ms: float) -> float:
    """``budget_ms`` if it is above ``floor_ms`` (``latency_floor_ms``); else a ``LatencyBudgetError``.

    Introduced in notebook 08.
    """
    if not isinstance(budget_ms, (int, float)) or not budget_ms > 0:
        raise LatencyBudgetError(
            f"The latency budget must be a positive number of milliseconds, got {budget_ms!r}."
        )
    if budget_ms <= floor_ms:
        raise LatencyBudgetError(
            f"A latency budget of {budget_ms * 1000:.1f} µs is below what this machine can measure: the "
            f"smallest possible model (one Dense unit) already takes {floor_ms * 1000:.1f} µs per "
            f"single-sample LiteRT invoke here. Set a budget above {floor_ms * 1000:.1f} µs."
        )
    return float(budget_ms)


def _accuracy_callback(reporter, offset: int = 0):
    """A Keras callback reporting validation accuracy per epoch; stops training when the pruner says so."""
    import tf_keras

    class Report(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            acc = (logs or {}).get("val_accuracy")
            if acc is not None and reporter.should_stop(acc, offset + epoch):
                self.model.stop_training = True

    return Report()


def _prune_reporting(
    model,
    data,
    per_layer: dict,
    epochs: int,
    reporter,
    batch_size: int = 128,
    initial_sparsity=None,
    recipe=None,
    **options,
):
    """``prune.prune_and_finetune`` with the validation accuracy reported to ``reporter`` after each epoch.

    The same recipe as notebook 02 (per-layer sparsities ramped over the first half of the
    steps, Adam/AdamW on the cosine schedule); ``initial_sparsity`` ({layer: s}) starts a
    layer's ramp at the sparsity its kernel already holds (a model pruned before);
    ``recipe`` (``compression_objective``'s, holding a teacher) makes the fine-tuning
    distil from that teacher, as ``prune.prune_and_finetune(teacher=...)`` does. Returns
    the stripped model, or raises ``optuna.TrialPruned`` when the pruner stopped the trial.

    Introduced in notebook 08.
    """
    from .. import distill, env, models, prune, train
    from ..prune import training as _training

    learning_rate = options.pop("learning_rate", 1e-3)
    weight_decay = options.pop("weight_decay", 0.0)
    seed = options.pop("seed", 0)
    if options:
        raise TypeError(f"_prune_reporting: unknown options {sorted(options)}.")
    total, end, frequency = _training._plan_steps(len(data.x_train), epochs, batch_size)
    env.seed_everything(seed)
    wrapped = prune.wrap(
        model,
        0.0,
        begin_step=0,
        end_step=end,
        per_layer=per_layer,
        frequency=frequency,
        initial_sparsity=initial_sparsity,
    )
    recipe = recipe if recipe is not None else distill.Recipe(data)
    fit_on = recipe.compile(
        wrapped, train.finetune_optimizer(learning_rate, len(data.x_train), batch_size, epochs, weight_decay)
    )
    train.fit(
        wrapped,
        fit_on,
        epochs=epochs,
        batch_size=batch_size,
        callbacks=prune.callbacks() + [_accuracy_callback(reporter)],
        seed=seed,
        desc=f"trial {reporter.number}: prune {model.name}"
        + (" (distilled)" if recipe.teacher is not None else ""),
    )
    reporter.stop_if_pruned()
    return models.compile_classifier(prune.strip(wrapped))


def held_sparsity(model) -> dict:
    """{layer: fraction of exactly-zero kernel weights} of the model's prunable layers (what a start model holds).

    Introduced in notebook 08.
    """
    from .. import prune

    names = set(prune.prunable_layers(model))
    return {k: v for k, v in prune.kernel_sparsity(model).items() if k in names}


def one_shot_prune(model, per_layer: dict):
    """A copy of ``model`` with each named layer's smallest weights set to zero (``per_layer`` sparsities), no training.

    Introduced in notebook 08.
    """
    from .. import models
    from ..prune.kernels import _kernel_of
    from ..prune.sensitivity import magnitude_mask

    work = models.compile_classifier(models.clone(model, compile_like=False))
    for name, s in per_layer.items():
        kernel = _kernel_of(work.get_layer(name))
        kernel.assign(kernel.numpy() * magnitude_mask(kernel.numpy(), s))
    return work


def compression_objective(
    base_model,
    data,
    tune_data=None,
    representative=None,
    batch_size: int = 128,
    start=None,
    teacher=None,
    temperature: float = 4.0,
    alpha: float = 0.5,
    **options,
):
    """``evaluate(config, reporter)`` for ``search.run``: prune per layer, cluster per layer, quantize, measure.

    A configuration holds ``sparsity.<layer>`` (fraction of the layer's weights set to
    zero), ``clusters.<layer>`` (shared values per kernel, 0: not clustered), ``prune_epochs``
    (fine-tuning length while pruning, on ``data``), ``quantization`` (one of
    ``pcqat_int8`` = notebook 04's sparsity- and cluster-preserving QAT for
    ``qat_epochs`` (default 1) then full int8; ``ptq_int8`` = int8 after training;
    ``dynamic``, ``float16``, ``float32`` = those conversions). Clustering (density-based
    centroids around a zero centroid, ``cluster_epochs`` of centroid fine-tuning, default 0)
    and QAT use ``tune_data`` (default ``data``). ``options`` go to the pruning
    (``learning_rate``, ``weight_decay``). Returns a dict: ``accuracy`` (the .tflite file on
    the validation split), ``size_bytes`` (gzip), ``raw_bytes``, ``artifact``.

    ``start`` (a model already pruned, e.g. by the hand-tuned plan; ``base_model`` is then
    only its architecture's reference) makes the search continue from it, as iterative
    pruning does: each layer's ramp starts at the sparsity ``start`` holds and rises to the
    trial's (a trial may not ask for less), over ``prune_epochs`` further epochs; with 0
    epochs the extra weights are removed at once and clustering and QAT do the fine-tuning,
    and a configuration asking for exactly ``start``'s sparsities does no pruning at all.
    The cheap trials this gives are the point: most of the pruning is paid once. After
    clustering, the Keras model's validation accuracy is reported to the pruner (step
    ``prune_epochs``), so a hopeless trial stops before QAT and conversion.

    ``teacher`` (e.g. a larger trained model) makes every trial's pruning fine-tuning
    distil from it (``distill.with_soft_targets`` at ``temperature`` with weight ``alpha``,
    packed once for all trials), a choice for the whole study, as the start model's is;
    clustering and QAT stay on the labels.

    Introduced in notebook 08.
    """
    from .. import cluster, convert, distill, measure, prune
    from ..validate import mnist_like

    mnist_like(data, "compression_objective")
    tune = tune_data if tune_data is not None else data
    rep = representative if representative is not None else data.x_train[:200]
    qat_epochs = options.pop("qat_epochs", 1)
    cluster_epochs = options.pop("cluster_epochs", 0)
    layers = prune.prunable_layers(base_model)
    held = held_sparsity(start) if start is not None else {}
    recipe = distill.Recipe(data, teacher, temperature, alpha)

    def evaluate(config, reporter):
        sparsity = _space.per_layer(config, "sparsity")
        clusters = {k: int(v) for k, v in _space.per_layer(config, "clusters").items() if v}
        _space.check_layers(config, "sparsity", layers)
        _space.check_layers(config, "clusters", layers)
        mode = config.get("quantization", "pcqat_int8")
        if mode not in _QUANTIZATION:
            raise _space.SpaceError(f"quantization must be one of {_QUANTIZATION}, got {mode!r}.")
        epochs = int(config.get("prune_epochs", 1))
        if start is None:
            model = _prune_reporting(
                base_model,
                data,
                sparsity,
                epochs,
                reporter,
                batch_size=batch_size,
                recipe=recipe,
                **dict(options),
            )
        else:
            below = {k: (s, held.get(k, 0.0)) for k, s in sparsity.items() if s < held.get(k, 0.0) - 1e-3}
            if below:
                raise _space.SpaceError(
                    f"The start model already holds more zeros than the trial asks for in {below} "
                    "(trial, held); a search that continues from a pruned model can only prune further: "
                    "give those layers ranges starting at the held sparsity."
                )
            more = {k: s for k, s in sparsity.items() if s > held.get(k, 0.0) + 1e-3}
            if not more:
                model = start
            elif epochs == 0:
                model = one_shot_prune(start, more)
            else:
                model = _prune_reporting(
                    start,
                    data,
                    sparsity,
                    epochs,
                    reporter,
                    batch_size=batch_size,
                    initial_sparsity={k: held.get(k, 0.0) for k in sparsity},
                    recipe=recipe,
                    **dict(options),
                )
        if clusters:
            model = cluster.cluster_and_finetune(
                model,
                tune,
                0,
                cluster_epochs,
                batch_size=batch_size,
                init="density",
                preserve_sparsity=True,
                per_layer=clusters,
            )
        reporter.report(measure.accuracy(model, data.x_val, data.y_val), epochs)
        if mode == "pcqat_int8":
            q = cluster.collaborative_qat(
                model, tune, qat_epochs, preserve="both" if clusters else "sparsity", batch_size=batch_size
            )
            blob = convert.to_tflite(q, "int8", representative=rep)
        else:
            blob = convert.to_tflite(model, "int8" if mode == "ptq_int8" else mode, representative=rep)
        return {
            "accuracy": measure.accuracy(blob, data.x_val, data.y_val),
            "size_bytes": measure.compressed_size(blob),
            "raw_bytes": len(blob),
            "artifact": blob,
        }

    return evaluate


def channel_objective(
    base_model,
    data,
    profile,
    representative=None,
    batch_size: int = 128,
    rounds: int = 1,
    skip_over_ms: float | None = None,
    teacher=None,
    temperature: float = 4.0,
    alpha: float = 0.5,
    **options,
):
    """``evaluate(config, reporter)`` for ``search.run``: channel widths, fine-tuning, a mode, latency measured here.

    A configuration holds ``keep.<layer>`` (fraction of the layer's channels or units kept,
    notebook 02's ``prune.channel_prune``), ``epochs`` (fine-tuning on ``data``), ``mode``
    (a ``convert.to_tflite`` mode) and optionally ``distill`` (True: the fine-tuning also
    learns ``teacher``'s soft targets, ``distill.with_soft_targets`` at ``temperature`` with
    weight ``alpha``, as ``prune.finetune(teacher=...)`` does; the teacher's logits are
    computed once for all trials). Returns ``accuracy`` (the .tflite file on the validation
    split), ``latency_ms`` (median single-sample LiteRT latency, ``profile``'s runs, warm-up
    and threads, ``rounds`` rounds), ``latency_p90_ms``, ``size_bytes``, ``macs``, ``trained`` (1: fine-tuned), ``artifact``.
    ``options`` go to the optimizer (``learning_rate``, ``weight_decay``, as ``prune.finetune``).

    ``skip_over_ms`` (e.g. the latency budget): the narrowed model is converted and timed
    *before* fine-tuning (its graph, hence its latency, does not depend on the weights); a
    configuration slower than that is not fine-tuned at all and returns the untrained
    model's metrics (``trained`` 0): it misses the latency budget whatever training would
    do, so its time goes to the next trial. A measured hardware budget as an early stop.

    Introduced in notebook 08.
    """
    from .. import convert, distill, env, measure, models, prune, train
    from ..validate import mnist_like

    mnist_like(data, "channel_objective")
    rep = representative if representative is not None else data.x_train[:200]
    layers = list(prune.channel_norms(base_model))
    recipe = distill.Recipe(
        data, teacher, temperature, alpha
    )  # the teacher's soft targets, packed on first use

    def evaluate(config, reporter):
        keep = _space.per_layer(config, "keep")
        _space.check_layers(config, "keep", layers)
        distilled = bool(config.get("distill", False))
        if distilled and teacher is None:
            raise _space.SpaceError(
                "A configuration asks for distillation (distill=True) but channel_objective was built "
                "without a teacher: pass teacher=<the dense model> or leave distill out of the space."
            )
        narrow = prune.channel_prune(base_model, keep)
        mode = config.get("mode", "float32")
        timing = dict(
            runs=profile.latency_runs,
            warmup=profile.latency_warmup,
            threads=profile.latency_threads,
            rounds=rounds,
        )
        if skip_over_ms is not None:
            blob = convert.to_tflite(narrow, mode, representative=rep)
            lat = measure.latency(blob, data.x_val[:1], **timing)
            if lat["latency_ms"] > skip_over_ms:
                return _channel_metrics(narrow, blob, lat, data, trained=0)
        epochs = int(config.get("epochs", 1))
        seed = options.get("seed", 0)
        env.seed_everything(seed)
        copy = models.clone(narrow, compile_like=False)
        optimizer = train.finetune_optimizer(
            options.get("learning_rate", 1e-3),
            len(data.x_train),
            batch_size,
            epochs,
            options.get("weight_decay", 0.0),
        )
        train.fit(
            copy,
            recipe.compile(copy, optimizer, distilled),
            epochs=epochs,
            batch_size=batch_size,
            callbacks=[_accuracy_callback(reporter)],
            seed=seed,
            desc=f"trial {reporter.number}: fine-tune {narrow.name}" + (" (distilled)" if distilled else ""),
        )
        reporter.stop_if_pruned()
        blob = convert.to_tflite(copy, mode, representative=rep)
        return _channel_metrics(copy, blob, measure.latency(blob, data.x_val[:1], **timing), data, trained=1)

    return evaluate


def _channel_metrics(model, blob, lat, data, trained: int) -> dict:
    from .. import measure

    return {
        "accuracy": measure.accuracy(blob, data.x_val, data.y_val),
        "latency_ms": lat["latency_ms"],
        "latency_p90_ms": lat["latency_p90_ms"],
        "size_bytes": measure.compressed_size(blob),
        "macs": measure.macs(model),
        "trained": trained,
        "artifact": blob,
    }
