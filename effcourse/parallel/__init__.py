"""Data, multi-worker, model and pipeline parallelism on ``tf.distribute`` (notebook 07).

Thin, honest wrappers over TensorFlow's own distribution engine, one module per part of
the notebook; every public name is re-exported here (``from effcourse import parallel;
parallel.devices()``):

* ``plan``: ``device_plan`` chooses the devices (0 GPUs: logical CPUs; 1 GPU: logical
  GPUs; N GPUs: real replicas) and says why, ``apply_plan`` makes them, ``demo_sizes``
  fits the notebook's sweeps to the device count.
* ``local_devices``: ``devices()`` (real GPUs, else the logical CPUs made by
  ``effcourse.setup(logical_cpus=N)``), ``hardware``, ``hardware_line``.
* ``data_parallel``: ``MirroredStrategy`` (``mirrored``), ``train_step``,
  ``distribute_batch`` and ``scaling`` (samples/s per replica count, on
  ``effcourse.timing.interleaved``); the gradient check is a cell of notebook 07.
* ``multi_worker``: the local launcher (loopback ports, one ``TF_CONFIG`` per worker,
  output collection, clean-up on crash and hang) and ``run_multi_worker``, which runs
  ``python -m effcourse._mw_worker`` in each worker.
* ``model_parallel``: ``split_sequential`` places consecutive layers on different devices.
* ``pipeline``: GPipe's schedule (``run_gpipe``, ``gpipe_timeline``, ``bubble``) measured
  task by task, or run for real with one thread per device (``run_gpipe_concurrent``) where
  ``pipeline_mode`` says the devices are real; notebook 07 draws the Gantt chart.
* ``memory``: which models one device can hold: ``memory_sweep`` trains widths of the
  balanced MLP and measures the bytes of the variables placed on each device under K-way
  splitting (``memory_per_device``), against a stated per-device budget (``device_budget``).
"""

from __future__ import annotations

from .data_parallel import (
    _KEY_STRIDE,
    _per_example_loss,
    decimals,  # noqa: F401
    distribute_batch,
    mirrored,
    per_replica_batch,
    replica_gradients,
    scaling,
    scaling_frame,
    scaling_rows,
    train_step,
)
from .local_devices import devices, hardware, hardware_line  # noqa: F401
from .plan import (
    DemoSizes,
    DevicePlan,
    DevicePlanError,
    apply_plan,
    demo_sizes,  # noqa: F401
    device_plan,
)
from .model_parallel import Stage, balanced_mlp, forward_across, split_sequential  # noqa: F401
from .multi_worker import (
    LOOPBACK,
    RESULT_PREFIX,
    STEP_PREFIX,
    WORKER_MODULE,
    MultiWorkerRun,  # noqa: F401
    WorkerError,
    WorkerRun,
    _last_step,
    _launch_once,
    _read,
    _stop,
    _tail,
    alive,
    cluster_commands,
    cluster_hosts,
    free_ports,
    launch_workers,
    run_multi_worker,
    WorkerPlan,
    tf_config,
    worker_args,
    worker_environments,
)
from .pipeline import (
    PipelineMode,
    _sync,
    bubble,
    bubble_bottleneck,
    bubble_formula,
    check_schedule,
    compare_gradients,  # noqa: F401
    full_batch_gradients,
    gpipe_sweep,
    gpipe_table,
    gpipe_timeline,
    pipeline_mode,
    run_gpipe,
    run_gpipe_concurrent,
)
from .memory import (
    DeviceBudget,
    device_budget,
    memory_frame,  # noqa: F401
    memory_per_device,
    memory_sweep,
    placement_frame,
    split_by_bytes,
    variable_bytes,
)
