"""What every pruning module reads: the kernel of a layer, the prunable layers, the sparsity check (notebook 02)."""

from __future__ import annotations

from ..models import check_model


def _tfmot_sparsity():
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras


def _check_sparsity(value, what: str = "sparsity") -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise ValueError(
            f"{what} must be in [0, 1) (the fraction of weights set to zero), got {value}. "
            "Use e.g. 0.9 to keep 10% of the weights; 1.0 would remove all."
        )
    return value


def _kernel_of(layer):
    """The kernel variable of a Dense/Conv layer (through a tfmot wrapper), or None."""
    inner = getattr(layer, "layer", layer)
    kernel = getattr(inner, "kernel", None)
    return kernel if kernel is not None else getattr(inner, "depthwise_kernel", None)


def prunable_layers(model) -> list[str]:
    """Names of the layers whose kernel magnitude pruning acts on (Dense, Conv*), in order.

    Introduced in notebook 02.
    """
    check_model(model, what="prune.prunable_layers")
    return [layer.name for layer in model.layers if _kernel_of(layer) is not None]
