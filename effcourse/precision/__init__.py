"""Mixed precision's measurement infrastructure (notebook 05); the technique is in the notebook.

Notebook 05 sets Keras' policies, rebuilds models under them, scales the loss and trains
the seeds in its own cells. What stays here is what a learner need not read:

* ``measurement``: ``train_side_by_side`` trains several models on the same batches in
  interleaved, timed chunks; ``time_ops`` times the CNN's heaviest operations, forward and
  backward, per dtype (both on ``effcourse.timing.interleaved``).
* ``parity``: ``parity_table``, the parity test against float32's seed-to-seed spread
  (pandas only: ``effcourse.report`` reads it for notebook 08's targets).
"""

from .measurement import SideBySide, time_ops, train_side_by_side
from .parity import PARITY_K, parity_table

__all__ = ["PARITY_K", "SideBySide", "parity_table", "time_ops", "train_side_by_side"]
