"""effcourse.parallel: the device plan, the multi-worker launcher (loopback ports, output,
clean-up on crash and hang), the concurrent GPipe runner and its schedule check; checks nb07.

Anything that needs several devices runs in a fresh subprocess: logical CPU devices can only be
made before TensorFlow initialises, and the test session has initialised it."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from effcourse import checks, env, parallel
from effcourse.checks.nb07 import _gpipe_reference
from effcourse.parallel import multi_worker


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


def _schedule(forward, backward):
    """Exercise 2's answer (the check's own reference), for lists or arrays."""
    return _gpipe_reference(np.asarray(forward, float), np.asarray(backward, float))


def _forward_only(forward, backward):
    """The typical mistake: the forward passes laid out, the backward passes forgotten."""
    return [t for t in _schedule(forward, backward) if t["phase"] == "F"]


# --- several devices, in a fresh process -----------------------------------------------------

MULTI_DEVICE = textwrap.dedent("""
    import json, numpy as np
    import effcourse
    from effcourse import parallel
    plan = parallel.device_plan(split=4, gpus=[], visible=None, driver_gpus=None)
    devices = parallel.apply_plan(plan)
    effcourse.setup(quiet=True)
    import tensorflow as tf
    keras = effcourse.keras
    ce = keras.losses.sparse_categorical_crossentropy
    out = {"devices": devices, "line": parallel.hardware_line(plan)}
    for n in (2, 4):  # two strategies over different counts, one process
        strategy = parallel.mirrored(devices[:n])
        one = strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("sum", tf.constant(1.0)))
        out[f"mirrored_{n}"] = [float(v) for v in strategy.experimental_local_results(one)]
    rng = np.random.default_rng(0)
    x = rng.random((64, 8), dtype=np.float32); y = rng.integers(0, 10, 64).astype(np.int32)

    def stages_of(k):
        stages = []
        for i in range(k):
            with tf.device(devices[i]):
                last = i == k - 1
                layer = keras.layers.Dense(10 if last else 16, activation=None if last else "relu")
                stages.append((devices[i], keras.Sequential([keras.layers.Input((16 if i else 8,)), layer])))
        return stages

    def forwards_of(stages):
        def forward_of(model, last):
            def forward(h, *loss_args):
                logits = model(h, training=True)
                return tf.reduce_sum(ce(loss_args[0], logits, from_logits=True)) / loss_args[1] if last else logits
            return tf.function(forward)
        return [forward_of(m, i == len(stages) - 1) for i, (_, m) in enumerate(stages)]

    for k in (2, 4):
        stages = stages_of(k)
        run = parallel.run_gpipe_concurrent(stages, forwards_of(stages), x, y, micro_batches=4, repeats=1)
        with tf.GradientTape() as tape:
            h = x
            for device, model in stages:
                with tf.device(device):
                    h = model(h, training=True)
            loss = tf.reduce_mean(ce(y, h, from_logits=True))
        full = tape.gradient(loss, [v for _, m in stages for v in m.trainable_variables])
        got = [g for gs in run["gradients"] for g in gs]
        out[f"k{k}"] = {"timeline": run["timeline"], "mode": run["mode"], "bubble": run["bubble"],
                        "diff": max(float(np.max(np.abs(a - b.numpy()))) for a, b in zip(got, full)),
                        "shape": list(run["forward_s"].shape), "makespan": run["makespan_s"],
                        "placed": [[v.device for v in m.variables] for _, m in stages]}
    try:
        parallel.run_gpipe_concurrent(stages, forwards_of(stages), x[:, :4], y, micro_batches=4, repeats=1)
    except RuntimeError as err:
        out["stage_failure"] = str(err)
    try:
        parallel.run_gpipe_concurrent(stages, forwards_of(stages), x[:63], y[:63], micro_batches=4)
    except ValueError as err:
        out["uneven"] = str(err)
    try:
        parallel.apply_plan(parallel.device_plan(split=2, gpus=[], visible=None, driver_gpus=None))
    except parallel.DevicePlanError as err:
        out["late"] = str(err)
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def multi_device():
    proc = subprocess.run(
        [sys.executable, "-c", MULTI_DEVICE],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, EFFCOURSE_PROFILE="quick"),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_plan_makes_logical_cpus_and_says_what_ran(multi_device):
    assert [d.rpartition("/device:")[2] for d in multi_device["devices"]] == [f"CPU:{i}" for i in range(4)]
    assert "4 logical CPU devices" in multi_device["line"] and "TensorFlow" in multi_device["line"]
    assert "Restart the kernel" in multi_device["late"]


def test_mirrored_strategies_of_different_sizes_live_in_one_process(multi_device):
    assert multi_device["mirrored_2"] == [2.0, 2.0]  # each replica got the sum over replicas
    assert multi_device["mirrored_4"] == [4.0] * 4


@pytest.mark.parametrize("k", [2, 4])
def test_concurrent_pipeline_keeps_the_schedule_and_the_gradients(multi_device, k):
    run = multi_device[f"k{k}"]
    assert run["mode"] == "concurrent" and run["shape"] == [k, 4]
    parallel.check_schedule(run["timeline"], k, 4)  # every dependency kept, one task per device
    assert run["diff"] < 1e-6  # summed micro-batch gradients == the full batch's
    assert 0 <= run["bubble"] < 1 and run["makespan"] > 0
    for i, placed in enumerate(run["placed"]):
        assert placed and all(d.endswith(f"CPU:{i}") for d in placed)


def test_a_failing_stage_stops_the_pipeline_with_its_name(multi_device):
    assert "pipeline stage 0" in multi_device["stage_failure"]
    assert "63" in multi_device["uneven"] and "4 equal micro-batches" in multi_device["uneven"]


def test_setup_logical_cpus_rejects_non_integers():
    with pytest.raises(TypeError, match="int"):
        env._configure_devices(2.5)
    with pytest.raises(TypeError, match="int"):
        env._configure_devices(True)
    with pytest.raises(ValueError, match=">= 1"):
        env._configure_devices(-2)


# --- the launcher ----------------------------------------------------------------------------


def test_free_ports_bind_only_on_loopback(monkeypatch):
    bound = []
    real_bind = socket.socket.bind

    def spy(self, address):
        bound.append(address)
        return real_bind(self, address)

    monkeypatch.setattr(socket.socket, "bind", spy)
    ports = multi_worker._free_ports(3)
    assert len(set(ports)) == 3 and all(1024 <= p < 65536 for p in ports)
    assert bound == [("127.0.0.1", 0)] * 3


def test_tf_config_and_cluster_commands():
    cfg = multi_worker._tf_config(["127.0.0.1:1", "127.0.0.1:2"], 1)
    assert cfg == {
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 1},
    }
    with pytest.raises(ValueError, match="host:port"):
        multi_worker._tf_config(["nohost"], 0)
    cmds = parallel.cluster_commands(["a:2222", "b:2222"], steps=5)
    assert len(cmds) == 2 and all("-m effcourse._mw_worker" in c and "--steps 5" in c for c in cmds)
    assert '"index": 1' in cmds[1] and "b:2222" in cmds[0]
    with pytest.raises(ValueError, match="host:port"):
        parallel.cluster_commands(["gpu1.lab"])


WORKER = textwrap.dedent("""
    import json, os, subprocess, sys, time
    cfg = json.loads(os.environ["TF_CONFIG"])
    i = cfg["task"]["index"]
    print("EFFCOURSE_RESULT " + json.dumps({"index": i, "cluster": cfg["cluster"]["worker"]}), flush=True)
    mode = sys.argv[1]
    if mode == "crash" and i == 1:
        time.sleep(0.5)
        raise ValueError("boom: worker 1 lost its data")
    if mode in ("crash", "hang"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print("CHILD", child.pid, flush=True)
        print(f"worker {i} waiting for its peers", file=sys.stderr, flush=True)
        time.sleep(600)
""")


def test_launcher_collects_output_of_every_worker(tmp_path):
    run = parallel.launch_workers(3, ["-c", WORKER, "ok"], timeout=60, log_dir=tmp_path)
    assert [w.returncode for w in run.workers] == [0, 0, 0]
    assert [w.result["index"] for w in run.workers] == [0, 1, 2]
    cluster = run.workers[0].result["cluster"]
    assert cluster == run.addresses and all(a.startswith("127.0.0.1:") for a in cluster)
    assert (tmp_path / "worker-2.out").exists()


def _children(runs):
    pids = []
    for r in runs:
        pids += [int(ln.split()[1]) for ln in r.stdout.splitlines() if ln.startswith("CHILD ")]
    return pids


def test_launcher_stops_everyone_when_a_worker_crashes(tmp_path):
    start = time.monotonic()
    with pytest.raises(parallel.WorkerError) as info:
        parallel.launch_workers(3, ["-c", WORKER, "crash"], timeout=120, log_dir=tmp_path)
    assert time.monotonic() - start < 60  # did not wait for the sleeping workers
    message = str(info.value)
    assert "Worker 1 of 3 failed" in message and "boom: worker 1 lost its data" in message
    assert "Traceback" not in message and 'File "' not in message  # frames stay in the log
    runs = info.value.runs
    assert len(runs) == 3 and len(_children(runs)) == 2
    time.sleep(0.2)
    for pid in [r.pid for r in runs] + _children(runs):
        assert not parallel.alive(pid), f"process {pid} survived"


def test_launcher_timeout_stops_hung_workers(tmp_path):
    with pytest.raises(parallel.WorkerError, match="Timed out after 3 s") as info:
        parallel.launch_workers(2, ["-c", WORKER, "hang"], timeout=3, log_dir=tmp_path)
    assert "waiting for its peers" in str(info.value)  # each worker's stderr is shown
    time.sleep(0.2)
    for pid in [r.pid for r in info.value.runs] + _children(info.value.runs):
        assert not parallel.alive(pid)


def test_worker_error_hides_native_log_lines_and_step_lines_are_read(tmp_path):
    noisy = (
        "import sys; print('EFFCOURSE_STEP 3', flush=True); "
        "print('I0000 00:00:1712345678.123456   42 cpu_feature_guard.cc:210] This TensorFlow binary', file=sys.stderr); "
        "print('E0000 00:00:1712345678.123456   42 cuda_executor.cc:1228] failed call to cuInit: UNKNOWN', file=sys.stderr); "
        "print('real trouble here', file=sys.stderr); sys.exit(3)"
    )
    with pytest.raises(parallel.WorkerError) as info:
        parallel.launch_workers(1, ["-c", noisy], timeout=60, log_dir=tmp_path)
    message = str(info.value)
    assert "real trouble here" in message
    assert "cuInit" not in message and "cpu_feature_guard" not in message  # effcourse.quiet.is_noise lines
    assert multi_worker._last_step(multi_worker._read(tmp_path / "worker-0.out")) == "worker 0 at step 3"
    assert multi_worker._last_step(multi_worker._read(tmp_path / "missing.out")) == "starting"


def test_launcher_bad_input():
    with pytest.raises(ValueError):
        parallel.launch_workers(0)
    with pytest.raises(ValueError, match="timeout"):
        parallel.launch_workers(2, timeout=0)


def test_worker_reads_listening_addresses():
    from effcourse import _mw_worker

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        if os.path.exists("/proc/net/tcp"):
            assert _mw_worker._listening_addresses(port) == ["127.0.0.1"]


def test_check_schedule_rejects_broken_timelines():
    good = _schedule(np.ones((3, 4)), 2 * np.ones((3, 4)))
    parallel.check_schedule(good, 3, 4)
    # stage 0 is slow, so stage 1 has slack: moving one of its starts earlier breaks only a dependency
    slow_first = _schedule(np.array([[2] * 4, [1] * 4, [1] * 4]), 2 * np.ones((3, 4)))
    early = [dict(t) for t in slow_first]
    task = next(t for t in early if (t["stage"], t["phase"], t["micro_batch"]) == (1, "F", 2))
    task["start"] -= 0.5  # stage 1 starts micro-batch 2 before stage 0 handed it on
    with pytest.raises(ValueError, match="F of micro-batch 2 on stage 1 started"):
        parallel.check_schedule(early, 3, 4)
    with pytest.raises(ValueError, match="each of the 24"):
        parallel.check_schedule(good[:-1], 3, 4)
    overlap = [dict(t) for t in good]
    overlap.append(dict(overlap[0]))
    with pytest.raises(ValueError):
        parallel.check_schedule(overlap, 3, 4)


@pytest.mark.parametrize(
    "n_gpus, kwargs, concurrent",
    [
        (0, {}, False),
        (1, {}, False),
        (2, {}, True),
        (8, {}, True),
        (8, {"kind": "cpu"}, False),
        (8, {"requested": 1}, False),
        (0, {"requested": 1}, False),
    ],
)
def test_pipeline_mode_for_each_device_plan(n_gpus, kwargs, concurrent):
    mode = parallel.pipeline_mode(_plan(FAKE_MACHINES[n_gpus], **kwargs))
    assert mode.concurrent is concurrent and mode.name == ("concurrent" if concurrent else "simulated")
    if concurrent:
        assert "real GPUs" in mode.reason and "wall-clock" in mode.reason
    else:
        assert "simulation" in mode.reason


# --- notebook 07 checks: fail on the placeholder and on typical mistakes, pass on answers -------


def test_nb07_replica_loss():
    import tensorflow as tf

    checks.nb07.replica_loss(lambda losses, gb: tf.reduce_sum(losses) / gb)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb07.replica_loss(todo)
    with pytest.raises(checks.CheckFailed, match="GLOBAL batch"):
        checks.nb07.replica_loss(lambda losses, gb: np.mean(losses))


def test_nb07_gpipe_schedule():
    checks.nb07.gpipe_schedule(_schedule)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb07.gpipe_schedule(todo)
    with pytest.raises(checks.CheckFailed, match="2 \\* k|tasks, one forward"):
        checks.nb07.gpipe_schedule(lambda f, b: _forward_only(f, b))  # forgets the backward pass

    def forward_order_backward(forward, backward):  # backwards in forward micro-batch order
        tasks = _forward_only(forward, backward)
        free = [max(t["end"] for t in tasks if t["stage"] == k) for k in range(len(forward))]
        done = {}
        for m in range(len(forward[0])):
            for k in reversed(range(len(forward))):
                start = max(free[k], done.get((k + 1, m), 0.0))
                done[k, m] = free[k] = start + backward[k][m]
                tasks.append({"stage": k, "phase": "B", "micro_batch": m, "start": start, "end": free[k]})
        return tasks

    with pytest.raises(checks.CheckFailed, match="backward"):
        checks.nb07.gpipe_schedule(forward_order_backward)


def test_nb07_replica_loss_in_a_tf_function():
    import tensorflow as tf

    checks.nb07.replica_loss(lambda losses, gb: tf.reduce_sum(losses) / gb)
    with pytest.raises(checks.CheckFailed, match="tf.function"):
        checks.nb07.replica_loss(lambda losses, gb: np.sum(losses) / gb)


def test_nb07_micro_batches():
    import math

    checks.nb07.micro_batches(lambda k, b: max(1, math.ceil((k - 1) * (1 - b) / b - 1e-9)))
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb07.micro_batches(todo)
    with pytest.raises(checks.CheckFailed, match="off by one"):
        checks.nb07.micro_batches(lambda k, b: int((k - 1) * (1 - b) / b))


def test_nb07_stage_split():
    import itertools

    def best(costs, k):
        def worst(c):
            cuts = [0, *c, len(costs)]
            return max(sum(costs[a:b]) for a, b in zip(cuts, cuts[1:]))

        return list(min(itertools.combinations(range(1, len(costs)), k - 1), key=worst))

    def equal_layers(costs, k):  # the typical mistake: the same number of layers per stage
        step = len(costs) / k
        return [round(step * i) for i in range(1, k)]

    checks.nb07.stage_split(best)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb07.stage_split(todo)
    with pytest.raises(checks.CheckFailed, match="slowest stage"):
        checks.nb07.stage_split(equal_layers)


def _best_split(costs, k):
    import itertools

    def worst(c):
        cuts = [0, *c, len(costs)]
        return max(sum(costs[a:b]) for a, b in zip(cuts, cuts[1:]))

    return list(min(itertools.combinations(range(1, len(costs)), k - 1), key=worst))


WIDEST = {"width": 1024, "params": 3_962_890, "largest": {1: 12 * 3_962_890 + 8, 4: 12 * 803_840 + 8}}


def _reference_prediction():
    parameters = 784 * 1024 + 1024 + 3 * (1024 * 1024 + 1024) + 10 * 1024 + 10
    return (0.9 * 12 * parameters / 2**20, 1.1 * 12 * parameters / 2**20)


def test_nb07_stage_split_with_one_stage_and_a_free_layer():
    assert _best_split([3, 1, 2], 1) == []

    def no_empty_case(costs, k):  # a split that cannot give k = 1 its empty list
        return [1] if k == 1 else _best_split(costs, k)

    with pytest.raises(checks.CheckFailed, match="return 0 boundaries"):
        checks.nb07.stage_split(no_empty_case)


def test_nb07_memory_prediction():
    measured = WIDEST["largest"][1] / 2**20
    checks.nb07.memory_prediction(_reference_prediction(), WIDEST)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb07.memory_prediction(..., WIDEST)
    with pytest.raises(checks.CheckFailed, match="single value"):  # a tie
        checks.nb07.memory_prediction((measured, measured), WIDEST)
    with pytest.raises(checks.CheckFailed, match="factor"):  # too wide to miss
        checks.nb07.memory_prediction((1, 1000), WIDEST)
    with pytest.raises(checks.CheckFailed, match="copied"):  # the measurement typed in
        checks.nb07.memory_prediction((measured, 1.2 * measured), WIDEST)
    weights = 4 * WIDEST["params"] / 2**20
    with pytest.raises(checks.CheckFailed, match="weights alone"):  # Adam forgotten
        checks.nb07.memory_prediction((0.9 * weights, 1.1 * weights), WIDEST)
    with pytest.raises(checks.CheckFailed, match="four copies"):  # gradients counted as variables
        checks.nb07.memory_prediction((3.8 * weights, 4.2 * weights), WIDEST)
    with pytest.raises(checks.CheckFailed, match="below your whole range"):
        checks.nb07.memory_prediction((2 * measured, 2.5 * measured), WIDEST)


def test_nb07_checks_print_one_pass_line_each(capsys):
    import math

    import tensorflow as tf

    checks.nb07.replica_loss(lambda losses, gb: tf.reduce_sum(losses) / gb)
    checks.nb07.gpipe_schedule(_schedule)
    checks.nb07.micro_batches(lambda k, b: max(1, math.ceil((k - 1) * (1 - b) / b - 1e-9)))
    checks.nb07.stage_split(_best_split)
    checks.nb07.memory_prediction(_reference_prediction(), WIDEST)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 5 and all(ln.startswith("PASS") for ln in lines), lines


# --- device plans: 0, 1, 2, 8 GPUs, explicit requests, bad input -------------------------------

GPU_12G = {"name": "RTX 3060", "memory_mb": 12288}
FAKE_MACHINES = {
    0: [],
    1: [GPU_12G],
    2: [{"name": "A100", "memory_mb": 40960}] * 2,
    8: [{"name": "H100", "memory_mb": 81920}] * 8,
}


def _plan(gpus, **kwargs):
    kwargs.setdefault("visible", None)
    kwargs.setdefault("driver_gpus", None)
    return parallel.device_plan(gpus=gpus, cpus=2, **kwargs)


@pytest.mark.parametrize(
    "n_gpus, kind, count, logical",
    [(0, "cpu", 4, True), (1, "gpu", 4, True), (2, "gpu", 2, False), (8, "gpu", 8, False)],
)
def test_device_plan_for_0_1_2_8_gpus(n_gpus, kind, count, logical):
    plan = _plan(FAKE_MACHINES[n_gpus], split=4)
    assert (plan.kind, plan.count, plan.logical) == (kind, count, logical)
    assert plan.devices == tuple(f"/device:{kind.upper()}:{i}" for i in range(count))
    assert plan.reason and plan.describe().startswith(plan.reason)
    if n_gpus == 1:
        assert plan.memory_limit_mb == parallel.plan.LOGICAL_GPU_MB and plan.physical_gpus == 1
        assert "split into 4 logical GPUs" in plan.reason
    if n_gpus >= 2:
        assert not plan.logical and plan.physical_gpus == n_gpus
        assert "real GPUs" in plan.reason
    if n_gpus == 0:
        assert "logical CPU" in plan.reason and "2 physical cores" in plan.reason and not plan.warnings


def test_device_plan_explicit_requests_honoured_or_refused():
    assert _plan(FAKE_MACHINES[8], requested=4).count == 4
    assert "4 of the 8 GPUs left unused" in _plan(FAKE_MACHINES[8], requested=4).warnings[0]
    assert _plan(FAKE_MACHINES[1], requested=1).logical is False
    assert _plan(FAKE_MACHINES[1], requested=8).count == 8  # 8 x 1 GB in 12 GB
    assert _plan(FAKE_MACHINES[0], requested=8).count == 8
    cpu = _plan(FAKE_MACHINES[2], kind="cpu", split=3)
    assert cpu.kind == "cpu" and cpu.count == 3 and "2 GPU(s) left unused" in cpu.reason
    with pytest.raises(parallel.DevicePlanError, match="has 2 GPUs. Ask for at most 2"):
        _plan(FAKE_MACHINES[2], requested=3)
    with pytest.raises(parallel.DevicePlanError, match="at most 9"):  # more logical GPUs than memory allows
        _plan(FAKE_MACHINES[1], requested=12)
    with pytest.raises(parallel.DevicePlanError, match="kind='gpu'"):
        _plan([], kind="gpu")
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(parallel.DevicePlanError, match="positive whole number"):
            _plan([], requested=bad)
    with pytest.raises(ValueError, match="kind must be"):  # DevicePlanError is a ValueError
        _plan([], kind="tpu")


def test_device_plan_fallbacks_are_stated():
    small = _plan([{"name": "tiny", "memory_mb": 1500}], split=4)  # < 2 logical GPUs fit: CPUs
    assert small.kind == "cpu" and "too small to split" in small.reason and "1,500 MB" in small.warnings[0]
    some = _plan([{"name": "mid", "memory_mb": 4096}], split=8)  # 3 fit, not 8
    assert some.kind == "gpu" and some.count == 3 and "only 3 logical GPUs" in some.warnings[0]
    unknown = _plan([{"name": "x"}], split=4)
    assert unknown.count == 4 and "memory size is unknown" in unknown.warnings[0]
    hidden = _plan([], visible="", driver_gpus=2)  # CUDA_VISIBLE_DEVICES set to nothing
    assert (
        hidden.kind == "cpu"
        and len(hidden.warnings) == 1
        and "CUDA_VISIBLE_DEVICES is set to ''" in hidden.warnings[0]
    )
    no_cuda = _plan([], visible=None, driver_gpus=1)  # the driver sees a GPU TensorFlow cannot initialise
    assert (
        "nvidia-smi lists 1 GPU(s) but TensorFlow cannot use them" in no_cuda.warnings[0]
        and ".[gpu]" in no_cuda.warnings[0]
    )


def test_nvidia_smi_parsing():
    from effcourse import hardware

    text = "NVIDIA A100-SXM4-40GB, 40960\nNVIDIA GeForce RTX 3060, 12288\n"
    assert hardware.nvidia_smi_gpus(run=lambda args: text) == [
        {"name": "NVIDIA A100-SXM4-40GB", "memory_mb": 40960},
        {"name": "NVIDIA GeForce RTX 3060", "memory_mb": 12288},
    ]
    assert hardware.nvidia_smi_gpus(run=lambda args: None) is None


def test_worker_communication_option(monkeypatch):
    import tensorflow as tf

    from effcourse import _mw_worker

    monkeypatch.setenv("EFFCOURSE_MW_COMMUNICATION", "ring")
    assert (
        _mw_worker._communication(tf).implementation
        == tf.distribute.experimental.CommunicationImplementation.RING
    )
    monkeypatch.setenv("EFFCOURSE_MW_COMMUNICATION", "bogus")
    with pytest.raises(ValueError, match="choose auto, ring or nccl"):
        _mw_worker._communication(tf)


def test_one_cpu_device_asked_for_is_not_called_logical():
    plan = _plan([], requested=1)
    assert plan.count == 1 and not plan.logical and "nothing to replicate over" in plan.reason


def test_apply_plan_refuses_what_tensorflow_cannot_do(monkeypatch):
    import tensorflow as tf

    two = _plan(FAKE_MACHINES[2])
    with pytest.raises(parallel.DevicePlanError, match="TensorFlow sees 0"):  # no GPU here
        parallel.apply_plan(two)
    fake = [
        tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU"),
        tf.config.PhysicalDevice("/physical_device:GPU:1", "GPU"),
    ]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: fake)

    def too_late(*args):
        raise RuntimeError("Visible devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config, "set_visible_devices", too_late)
    with pytest.raises(parallel.DevicePlanError, match="Restart the kernel"):
        parallel.apply_plan(two)
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda *args: None)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda *args: None)

    def cuda_fails(kind=None):
        raise tf.errors.InternalError(None, None, "CUDA_ERROR_NO_DEVICE")

    monkeypatch.setattr(tf.config, "list_logical_devices", cuda_fails)
    with pytest.raises(parallel.DevicePlanError, match="could not initialise the GPU"):
        parallel.apply_plan(two)


def test_worker_environments_for_0_1_4_gpus_and_2_workers():
    envs, reason = multi_worker.worker_environments(2, 1)  # fewer GPUs than workers: shared, ring
    assert envs == [{"TF_FORCE_GPU_ALLOW_GROWTH": "true", "EFFCOURSE_MW_COMMUNICATION": "ring"}] * 2
    assert "share them" in reason
    envs, reason = multi_worker.worker_environments(2, 4)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0,1", "2,3"] and "2 each" in reason
    envs, reason = multi_worker.worker_environments(2, 3)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1"] and "1 unused" in reason
    envs, reason = multi_worker.worker_environments(2, 0)
    assert envs == [{"CUDA_VISIBLE_DEVICES": ""}] * 2 and "CPU-only" in reason
    for bad in ((0, 1), (2, -1), (2, 1.5), (True, 1)):
        with pytest.raises(ValueError):
            multi_worker.worker_environments(*bad)


def test_launcher_gives_each_worker_its_environment(tmp_path):
    show = "import os; print('EFFCOURSE_RESULT ' + __import__('json').dumps({'cvd': os.environ.get('CUDA_VISIBLE_DEVICES')}))"
    run = parallel.launch_workers(2, ["-c", show], timeout=60, log_dir=tmp_path, gpus=4)
    assert [w.result["cvd"] for w in run.workers] == ["0,1", "2,3"] and "2 each" in run.environments
