"""The machinery of notebook 07 that a learner need not read; the techniques are its cells.

* ``plan``: ``device_plan`` chooses the devices (0 GPUs: logical CPUs; 1 GPU: logical GPUs;
  N GPUs: real replicas) and says why, ``apply_plan`` makes them, ``mirrored`` gives each
  ``MirroredStrategy`` its own collective keys, ``hardware_line`` says what ran.
* ``multi_worker``: the loopback launcher of ``python -m effcourse._mw_worker`` processes
  (one ``TF_CONFIG`` each, timeouts, clean-up on crash and hang, clear errors).
* ``pipeline``: GPipe run concurrently, one thread per real device (``run_gpipe_concurrent``,
  chosen by ``pipeline_mode``), and ``check_schedule``.
"""

from .multi_worker import WorkerError, alive, cluster_commands, launch_workers, run_multi_worker  # noqa: F401
from .multi_worker import worker_environments  # noqa: F401
from .pipeline import PipelineMode, check_schedule, pipeline_mode, run_gpipe_concurrent  # noqa: F401
from .plan import DevicePlan, DevicePlanError, apply_plan, device_plan, hardware_line, mirrored  # noqa: F401
