"""The magnitude mask: keep the largest |w| of a kernel (notebook 02, where the learner writes it).

Notebook 02 runs its sensitivity scan on the learner's own mask; the package keeps this one
definition for notebook 08's one-shot pruning (``search.one_shot_prune``) and as the
reference of notebook 02's check.
"""

from __future__ import annotations

import numpy as np

from .kernels import _check_sparsity


def magnitude_mask(weights, sparsity: float) -> np.ndarray:
    """Boolean keep-mask that zeroes the ``sparsity`` fraction of smallest-magnitude entries (exact count).

    Introduced in notebook 02.
    """
    weights = np.asarray(weights)
    n_zero = int(round(_check_sparsity(sparsity) * weights.size))
    keep = np.ones(weights.size, dtype=bool)
    keep[np.argsort(np.abs(weights).ravel(), kind="stable")[:n_zero]] = False
    return keep.reshape(weights.shape)
