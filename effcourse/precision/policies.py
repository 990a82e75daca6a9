"""Keras mixed precision policies: set, rebuild under, and check (notebook 05).

``use_policy`` sets Keras' global dtype policy for a block and always restores the old one;
``with_policy`` rebuilds an existing model under a policy (same weights) with a float32
output layer; ``check_policy`` refuses a model whose layers do not follow the policy (a
policy set after the model was built) or whose logits are not float32. Keras here is
tf_keras (``effcourse.keras``).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..models import check_model

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
OUTPUT_LAYER = "float32_logits"  # the identity layer with_policy adds so that logits are float32


def get_policy(policy):
    """A Keras ``Policy`` from one of ``POLICIES`` (or a Policy); clear error otherwise.

    Introduced in notebook 05.
    """
    import tf_keras

    mp = tf_keras.mixed_precision
    if isinstance(policy, mp.Policy):
        policy = policy.name
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ValueError(
            f"Unknown dtype policy {policy!r}. This course uses {', '.join(POLICIES)}: "
            "'mixed_float16' computes in float16 and keeps float32 variables (GPUs with tensor "
            "cores), 'mixed_bfloat16' does the same with bfloat16 (TPUs, Ampere+ GPUs, CPUs "
            "with AVX512-BF16/AMX)."
        )
    return mp.Policy(policy)


def global_policy_name() -> str:
    """The name of Keras' current global dtype policy.

    Introduced in notebook 05.
    """
    import tf_keras

    return tf_keras.mixed_precision.global_policy().name


@contextlib.contextmanager
def use_policy(policy):
    """Set Keras' global dtype policy inside a ``with`` block, and restore the old one after.

    The old policy comes back even when the body raises, so a failed cell never leaves
    the rest of the notebook building float16 layers by surprise::

        with precision.use_policy("mixed_float16"):
            model = models.cnn()        # its layers compute in float16

    Introduced in notebook 05.
    """
    import tf_keras

    mp = tf_keras.mixed_precision
    new = get_policy(policy)
    old = mp.global_policy()
    mp.set_global_policy(new)
    try:
        yield new
    finally:
        mp.set_global_policy(old)


def _layer_policy_name(layer) -> str:
    pol = getattr(layer, "dtype_policy", None)
    return getattr(pol, "name", str(pol))


def _policy_layers(model):
    """Layers that compute (not the input layer, not our float32 output layer)."""
    import tf_keras

    return [
        layer
        for layer in model.layers
        if not isinstance(layer, tf_keras.layers.InputLayer) and layer.name != OUTPUT_LAYER
    ]


def layer_dtypes(model, sample=None):
    """Per layer: its policy, compute dtype, variable dtype and the dtype of its output.

    The output dtypes are measured by running ``sample`` (default: a batch of two zero
    images shaped like the model's input) through the model.

    Introduced in notebook 05.
    """
    import pandas as pd
    import tf_keras

    check_model(model, what="layer_dtypes")
    layers = [layer for layer in model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    probe = tf_keras.Model(model.inputs, [layer.output for layer in layers])
    if sample is None:
        sample = np.zeros((2,) + tuple(model.input_shape[1:]), dtype=np.float32)
    outputs = probe(sample, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    rows = []
    for layer, out in zip(layers, outputs):
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "policy": _layer_policy_name(layer),
                "compute dtype": layer.compute_dtype,
                "variable dtype": layer.variable_dtype if layer.weights else "-",
                "output dtype": out.dtype.name,
            }
        )
    return pd.DataFrame(rows)


def _model_policy(model) -> str | None:
    """The policy the model's computing layers were built under (None if they disagree)."""
    names = {_layer_policy_name(layer) for layer in _policy_layers(model)}
    return names.pop() if len(names) == 1 else None


def with_policy(model, policy, name: str | None = None):
    """A copy of ``model`` rebuilt under ``policy``, with the same weights; logits stay float32.

    A Keras layer reads the dtype policy once, when it is created, so a model built before
    ``set_global_policy`` keeps computing in float32. This rebuilds every layer from its
    config with ``dtype=policy`` and copies the weights. Under a mixed policy it appends
    an identity layer computing in float32 (``OUTPUT_LAYER``), so the logits, the loss and
    the loss scaling are float32; under ``float32`` that layer is dropped again (the result
    is what tfmot's quantization-aware training needs).

    Introduced in notebook 05.
    """
    import tf_keras

    check_model(model, what="with_policy")
    pol = get_policy(policy)
    if len(model.outputs) != 1:
        raise ValueError(
            f"with_policy handles single-output models; {model.name} has {len(model.outputs)} outputs."
        )
    source = model
    if model.layers[-1].name == OUTPUT_LAYER:  # drop our float32 identity layer first
        source = tf_keras.Model(model.inputs, model.layers[-1].input, name=model.name)

    def rebuild(layer):
        cfg = layer.get_config()
        cfg["dtype"] = pol.name
        return layer.__class__.from_config(cfg)

    with use_policy(pol):
        clone = tf_keras.models.clone_model(source, clone_function=rebuild)
        base_name = model.name
        for suffix in POLICIES:
            base_name = base_name.removesuffix(f"_{suffix}")
        new_name = name or (base_name if pol.name == "float32" else f"{base_name}_{pol.name}")
        if pol.name != "float32":
            out = tf_keras.layers.Activation("linear", dtype="float32", name=OUTPUT_LAYER)(clone.outputs[0])
            clone = tf_keras.Model(clone.inputs, out, name=new_name)
        else:
            clone._name = new_name
    clone.set_weights(source.get_weights())
    return clone


def check_policy(model, policy=None):
    """Raise a clear ValueError unless ``model`` computes under ``policy`` with float32 logits.

    ``policy`` defaults to the current global policy: that is the case of a policy set
    after the model was created, which silently trains in float32 without this check.

    Introduced in notebook 05.
    """
    import tf_keras

    check_model(model, what="check_policy")
    want = get_policy(policy if policy is not None else tf_keras.mixed_precision.global_policy())
    built = _model_policy(model)
    if built != want.name:
        where = "the global policy" if policy is None else "the policy you asked for"
        raise ValueError(
            f"Model {model.name!r} was created under the policy {built or 'of several kinds'!r}, "
            f"but {where} is {want.name!r}. A Keras layer reads the global policy once, when "
            "it is created: calling set_global_policy after building a model changes only "
            "layers created later, so this model would still compute in "
            f"{_policy_layers(model)[0].compute_dtype if _policy_layers(model) else 'float32'}. "
            f"Build it inside `with precision.use_policy({want.name!r}):`, or convert it "
            f"with `precision.with_policy(model, {want.name!r})` (same weights)."
        )
    out_dtype = tf_keras.backend.dtype(model.outputs[0]) if model.outputs else "float32"
    if want.name != "float32" and out_dtype != "float32":
        raise ValueError(
            f"Model {model.name!r} outputs {out_dtype} logits. Under {want.name!r} the last "
            "layer must produce float32: the loss (and its loss-scaled copy) would otherwise be "
            "computed and stored in the low-precision type. Add "
            "`keras.layers.Activation('linear', dtype='float32')` after the logits, or use "
            "`precision.with_policy`, which does."
        )
    return want
