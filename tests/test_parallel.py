"""effcourse.parallel: equivalence of data-parallel gradients, the multi-worker launcher
(loopback ports, output, clean-up on crash and hang), GPipe schedule and bubble, checks nb07.

Anything that needs several devices runs in a fresh subprocess: logical CPU devices can
only be made before TensorFlow initialises, and the test session has initialised it."""

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


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: write your code here")


# --- several devices, in a fresh process -----------------------------------------------------

MULTI_DEVICE = textwrap.dedent("""
    import json, numpy as np
    import effcourse
    from effcourse import models, parallel
    effcourse.setup(logical_cpus=4, quiet=True)
    out = {}
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32); y = rng.integers(0, 10, 64)
    model = models.lenet_300_100()
    import tensorflow as tf
    keras = effcourse.keras
    one = models.clone(model, compile_like=False)  # one SGD step on one device, the reference
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, one(x), from_logits=True))
    keras.optimizers.SGD(0.1).apply_gradients(zip(tape.gradient(loss, one.trainable_variables), one.trainable_variables))
    for n in (2, 4):  # two strategies, different counts, one process
        strategy = parallel.mirrored(n)
        with strategy.scope():
            copy = models.clone(model, compile_like=False)
            opt = keras.optimizers.SGD(0.1)
        xb, yb = parallel.distribute_batch(strategy, x, y)
        shards = [int(v.shape[0]) for v in strategy.experimental_local_results(xb)]
        step_loss = float(parallel.train_step(strategy, copy, opt, 64)(xb, yb))
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(copy.get_weights(), one.get_weights()))
        out[f"grad_{n}"] = [diff, abs(step_loss - float(loss)), shards]
    try:
        parallel.distribute_batch(parallel.mirrored(2), x[:63], y[:63])
    except ValueError as err:
        out["indivisible"] = str(err)
    stages = parallel.split_sequential(model, [2, 3])
    out["placement"] = [[v.device for v in s.model.variables] for s in stages]
    logits, crossings = parallel.forward_across(stages, x)
    out["split_diff"] = float(np.max(np.abs(logits.numpy() - model(x).numpy())))
    out["crossings"] = [c["bytes_per_sample"] for c in crossings]
    mlp = parallel.balanced_mlp(2, width=32)
    pipe = parallel.split_sequential(mlp, [2])
    full = parallel.full_batch_gradients(pipe, x, y)
    run = parallel.run_gpipe(pipe, x, y, micro_batches=4, repeats=1)
    out["gpipe_diff"] = max(float(np.max(np.abs(a - b))) for ga, gb in zip(run["gradients"], full)
                            for a, b in zip(ga, gb))
    out["gpipe_tasks"] = len(run["timeline"])
    sweep = parallel.gpipe_sweep(x, y, [2], [1, 4], repeats=1)
    out["sweep"] = [[list(key), r["agreement"]["entries_off"], r["agreement"]["entries"], len(r["timeline"])]
                    for key, r in sweep.items()]
    out["sweep_table"] = list(parallel.gpipe_table(sweep).columns)
    four = parallel.split_sequential(parallel.balanced_mlp(4, width=32), [2, 3, 4])
    for name, stages_ in (("concurrent_2", pipe), ("concurrent_4", four)):
        live = parallel.run_gpipe_concurrent(stages_, x, y, micro_batches=4, repeats=1)
        solo = parallel.run_gpipe(stages_, x, y, micro_batches=4, repeats=1)
        out[name] = {
            "timeline": live["timeline"], "mode": live["mode"], "clock": live["clock"],
            "bubble": live["bubble"], "loss": [live["loss"], solo["loss"]],
            "grad_diff": max(float(np.max(np.abs(a - b))) for ga, gb in zip(live["gradients"], solo["gradients"])
                             for a, b in zip(ga, gb)),
            "full_diff": max(float(np.max(np.abs(a - b))) for ga, gb in
                             zip(live["gradients"], parallel.full_batch_gradients(stages_, x, y)) for a, b in zip(ga, gb)),
        }
    conc = parallel.gpipe_sweep(x, y, [2], [2], repeats=1, concurrent=True)
    out["concurrent_sweep"] = [conc[2, 2]["mode"], conc[2, 2]["agreement"]["entries_off"]]
    try:
        parallel.run_gpipe_concurrent(pipe, x[:, :14], y, micro_batches=4, repeats=1)  # wrong input shape
    except RuntimeError as err:
        out["stage_failure"] = str(err)
    wide = parallel.balanced_mlp(4, width=64)
    out["memory"] = {k: parallel.memory_per_device(wide, k, parallel.devices()) for k in (1, 2, 4)}
    out["memory_sgd"] = parallel.memory_per_device(wide, 2, parallel.devices(), optimizer="sgd")
    out["split_by_bytes"] = [parallel.split_by_bytes(wide, k) for k in (1, 2, 4)]
    out["expected_layer_bytes"] = [4 * layer.count_params() for layer in wide.layers]
    try:
        parallel.memory_per_device(wide, 5, parallel.devices())
    except parallel.DevicePlanError as err:
        out["memory_too_many"] = str(err)
    tiny = type("Tiny", (), dict(x_train=x, y_train=y, x_test=x[:32], y_test=y[:32]))
    swept = parallel.memory_sweep([8, 16], tiny, 1, (2, 4, 8), parallel.devices(), blocks=2, batch_size=32)
    out["memory_sweep"] = [{"width": r["width"], "params": r["params"], "largest": {str(k): b for k, b in r["largest"].items()},
                            "accuracy": r["accuracy"], "file_bytes": r["file_bytes"]} for r in swept]
    out["memory_frame"] = parallel.memory_frame(swept, 10**9).to_dict("list")
    rows = parallel.scaling(models.lenet_300_100, [1, 2], x, y, steps=1, repeats=1, warmup=1)
    out["scaling"] = [r["replicas"] for r in rows if r["samples_per_s"] > 0]
    ticks = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.125, 3.0, 3.375])  # chunk times: round 0 [1, 2], round 1 [2, 1]
    out["scaling_fake"] = parallel.scaling(models.lenet_300_100, [1, 2], x, y, steps=3, repeats=2, warmup=1,
                                           clock=lambda: next(ticks))
    try:
        effcourse.setup(logical_cpus=2, quiet=True)
    except RuntimeError as err:
        out["late_setup"] = str(err)
    try:
        parallel.devices(5)
    except ValueError as err:
        out["too_many"] = str(err)
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


def test_a_data_parallel_step_equals_the_single_device_step(multi_device):
    for n in (2, 4):
        diff, loss_diff, shards = multi_device[f"grad_{n}"]
        assert diff < 1e-6, f"{n} replicas: weights after one step differ by {diff}"
        assert loss_diff < 1e-5  # the replicas' losses add up to the global batch's mean loss
        assert shards == [64 // n] * n


def test_indivisible_global_batch_is_a_clear_error(multi_device):
    assert "63" in multi_device["indivisible"] and "multiple of 2" in multi_device["indivisible"]
    with pytest.raises(ValueError, match="multiple of 3"):
        parallel.per_replica_batch(256, 3)
    assert parallel.per_replica_batch(256, 4) == 64


def test_model_parallel_placement_and_output(multi_device):
    placement = multi_device["placement"]
    assert len(placement) == 3
    for k, devs in enumerate(placement):
        assert devs and all(d.endswith(f"CPU:{k}") for d in devs), devs
    assert multi_device["split_diff"] < 1e-5
    assert multi_device["crossings"] == [300 * 4, 100 * 4]


def test_gpipe_gradients_equal_full_batch(multi_device):
    assert multi_device["gpipe_diff"] < 1e-6
    assert multi_device["gpipe_tasks"] == 2 * 2 * 4  # K stages x M micro-batches x (F, B)


def test_scaling_runs_every_replica_count(multi_device):
    assert multi_device["scaling"] == [1, 2]


def test_scaling_uses_the_timing_core_and_its_clock(multi_device):
    one, two = multi_device["scaling_fake"]
    samples = 3 * 64  # steps x global batch per timed chunk
    # replica count 1 took 0.5 s then 0.375 s, count 2 took 0.25 s then 0.125 s (rotated order)
    assert one["samples_per_s"] == samples / 0.4375 and two["samples_per_s"] == samples / 0.1875
    assert one["samples_per_s_min"] == samples / 0.5 and one["samples_per_s_max"] == samples / 0.375
    assert two["samples_per_s_min"] == samples / 0.25 and two["samples_per_s_max"] == samples / 0.125
    assert one["speedup"] == 1.0 and two["speedup"] == pytest.approx(0.4375 / 0.1875, rel=1e-15)
    assert two["efficiency"] == pytest.approx(0.4375 / 0.1875 / 2, rel=1e-15)
    assert [r["per_replica_batch"] for r in (one, two)] == [64, 32]
    assert set(one) == {
        "replicas",
        "global_batch",
        "per_replica_batch",
        "samples_per_s",
        "samples_per_s_min",
        "samples_per_s_max",
        "speedup",
        "efficiency",
        "repeats",
        "steps",
    }
    assert (one["repeats"], one["steps"], one["global_batch"]) == (2, 3, 64)


def test_scaling_rows_arithmetic_with_a_fake_clock():
    from effcourse import timing

    # per round, the seconds each replica count's chunk takes; the clock advances by exactly that
    seconds = {1: [0.5, 0.75, 0.625], 2: [0.25, 0.5, 0.375], 4: [0.25, 0.125, 0.1875]}
    now, current = [0.0], {}

    def clock():
        return now[0]

    def task(n):
        def run():
            now[0] += seconds[n][current.setdefault(n, 0)]
            current[n] += 1

        return run

    comparison = timing.interleaved({n: task(n) for n in seconds}, rounds=3, warmup=0, clock=clock)
    assert comparison.orders == [[1, 2, 4], [2, 4, 1], [4, 1, 2]]
    rows = parallel.scaling_rows(comparison, [1, 2, 4], global_batch=256, steps=5)
    samples = 5 * 256
    medians = {1: 0.625, 2: 0.375, 4: 0.1875}
    for row, n in zip(rows, (1, 2, 4)):
        assert row["replicas"] == n and row["per_replica_batch"] == 256 // n
        assert row["samples_per_s"] == samples / medians[n]
        assert row["samples_per_s_min"] == samples / max(seconds[n])
        assert row["samples_per_s_max"] == samples / min(seconds[n])
        assert row["speedup"] == pytest.approx(medians[1] / medians[n], rel=1e-15)
        assert row["efficiency"] == pytest.approx(medians[1] / medians[n] / n, rel=1e-15)
        assert (row["repeats"], row["steps"], row["global_batch"]) == (3, 5, 256)
    assert rows[1]["efficiency"] == pytest.approx(0.625 / 0.375 / 2)  # 2 replicas: 1.67x, 83% efficient
    # efficiency is relative to the first count, not to 1 replica
    rows = parallel.scaling_rows(comparison, [2, 4], global_batch=256, steps=5)
    assert rows[0]["speedup"] == 1.0 and rows[1]["efficiency"] == pytest.approx(0.375 / 0.1875 / 2)


def test_gpipe_tables(multi_device):
    assert [key for key, *_ in multi_device["sweep"]] == [[2, 1], [2, 4]]
    for _, off, entries, tasks in multi_device["sweep"]:
        assert off <= 1e-3 * entries and entries == 2 * (784 * 784 + 784) + 784 * 10 + 10
        assert tasks in (2 * 2 * 1, 2 * 2 * 4)
    assert multi_device["sweep_table"][:2] == ["K stages", "M micro-batches"]
    assert "gradient entries off by > 0.000001" in multi_device["sweep_table"]


def test_decimals_never_uses_e_notation():
    assert parallel.decimals(3.1e-9) == "0.0000000031"
    assert parallel.decimals(0.0) == "0"
    assert parallel.decimals(float("nan")) == "" and parallel.decimals(None) == ""
    assert parallel.decimals(1234.5) == "1200"


def test_devices_after_initialisation_are_clear_errors(multi_device):
    assert "Restart the kernel" in multi_device["late_setup"]
    assert "logical_cpus=5" in multi_device["too_many"]


def test_setup_logical_cpus_rejects_non_integers():
    with pytest.raises(TypeError, match="int"):
        env._configure_devices(2.5)
    with pytest.raises(TypeError, match="int"):
        env._configure_devices(True)
    with pytest.raises(ValueError, match=">= 1"):
        env._configure_devices(-2)


# --- the launcher ------------------------------------------------------------------------------


def test_free_ports_bind_only_on_loopback(monkeypatch):
    bound = []
    real_bind = socket.socket.bind

    def spy(self, address):
        bound.append(address)
        return real_bind(self, address)

    monkeypatch.setattr(socket.socket, "bind", spy)
    ports = parallel.free_ports(3)
    assert len(set(ports)) == 3 and all(1024 <= p < 65536 for p in ports)
    assert bound == [("127.0.0.1", 0)] * 3
    for bad in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(ValueError, match="loopback"):
            parallel.free_ports(1, host=bad)


def test_tf_config_and_cluster_commands():
    cfg = parallel.tf_config(["127.0.0.1:1", "127.0.0.1:2"], 1)
    assert cfg == {
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 1},
    }
    with pytest.raises(ValueError):
        parallel.tf_config(["127.0.0.1:1"], 1)
    with pytest.raises(ValueError, match="host:port"):
        parallel.tf_config(["nohost"], 0)
    cmds = parallel.cluster_commands(["a:2222", "b:2222"], parallel.worker_args(steps=5))
    assert len(cmds) == 2 and all("-m effcourse._mw_worker" in c and "--steps 5" in c for c in cmds)
    assert '"index": 1' in cmds[1]


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
    run = parallel.launch_workers(3, ["ok"], timeout=60, command=["-c", WORKER], log_dir=tmp_path)
    assert [w.returncode for w in run.workers] == [0, 0, 0]
    assert [w.result["index"] for w in run.workers] == [0, 1, 2]
    cluster = run.workers[0].result["cluster"]
    assert cluster == run.cluster["worker"] and all(a.startswith("127.0.0.1:") for a in cluster)
    assert (tmp_path / "worker-2.out").exists()


def _children(runs):
    pids = []
    for r in runs:
        pids += [int(ln.split()[1]) for ln in r.stdout.splitlines() if ln.startswith("CHILD ")]
    return pids


def test_launcher_stops_everyone_when_a_worker_crashes(tmp_path):
    start = time.monotonic()
    with pytest.raises(parallel.WorkerError) as info:
        parallel.launch_workers(3, ["crash"], timeout=120, command=["-c", WORKER], log_dir=tmp_path)
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
        parallel.launch_workers(2, ["hang"], timeout=3, command=["-c", WORKER], log_dir=tmp_path)
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
        parallel.launch_workers(1, command=["-c", noisy], timeout=60, log_dir=tmp_path)
    message = str(info.value)
    assert "real trouble here" in message
    assert "cuInit" not in message and "cpu_feature_guard" not in message  # effcourse.quiet.is_noise lines
    assert parallel._last_step(tmp_path / "worker-0.out") == 3
    assert parallel._last_step(tmp_path / "missing.out") is None


def test_launcher_bad_input():
    with pytest.raises(ValueError):
        parallel.launch_workers(0)
    with pytest.raises(ValueError, match="timeout"):
        parallel.launch_workers(2, timeout=0)
    with pytest.raises(ValueError, match="multiple of 2"):
        parallel.run_multi_worker(2, global_batch=63)
    with pytest.raises(ValueError, match="Unknown model"):
        parallel.worker_args(model="resnet")


# --- schedule, bubble, bytes ----------------------------------------------------------------


@pytest.mark.parametrize("stages,micro", [(1, 4), (2, 1), (2, 8), (4, 4), (4, 16), (8, 3)])
def test_equal_stages_give_the_formula_exactly(stages, micro):
    fwd = np.full((stages, micro), 1.0)
    assert parallel.bubble(parallel.gpipe_timeline(fwd)) == pytest.approx(
        parallel.bubble_formula(stages, micro)
    )
    timeline = parallel.gpipe_timeline(fwd, 2 * fwd)
    assert parallel.bubble(timeline) == pytest.approx((stages - 1) / (micro + stages - 1))
    assert parallel.bubble_bottleneck(np.full(stages, 3.0), micro) == pytest.approx(
        parallel.bubble_formula(stages, micro)
    )
    assert len(timeline) == 2 * stages * micro


def test_timeline_respects_dependencies_and_one_task_per_device():
    rng = np.random.default_rng(3)
    fwd, bwd = rng.uniform(0.5, 2, (3, 5)), rng.uniform(0.5, 2, (3, 5))
    tl = parallel.gpipe_timeline(fwd, bwd)
    end = {(t["phase"], t["stage"], t["micro_batch"]): t["end"] for t in tl}
    for t in tl:
        k, m = t["stage"], t["micro_batch"]
        if t["phase"] == "F" and k:
            assert t["start"] >= end["F", k - 1, m]
        if t["phase"] == "B":
            assert t["start"] >= (end["F", k, m] if k == 2 else end["B", k + 1, m])
    for k in range(3):
        spans = sorted((t["start"], t["end"]) for t in tl if t["stage"] == k)
        assert all(a[1] <= b[0] + 1e-12 for a, b in zip(spans, spans[1:]))


def test_a_slow_stage_makes_a_bigger_bubble():
    fwd = np.ones((4, 8))
    fwd[2] *= 1.5
    measured = parallel.bubble(parallel.gpipe_timeline(fwd))
    assert measured > parallel.bubble_formula(4, 8)
    assert measured == pytest.approx(parallel.bubble_bottleneck(fwd.mean(axis=1), 8), abs=1e-9)


def test_bubble_formula_bad_input():
    with pytest.raises(ValueError):
        parallel.bubble_formula(0, 4)


def test_compare_gradients_counts_the_entries_that_differ():
    same = [np.zeros((2, 3)), [np.ones(4)]]
    moved = [np.zeros((2, 3)) + np.eye(2, 3) * 1e-3, [np.ones(4)]]
    r = parallel.compare_gradients(moved, same)
    assert r["entries"] == 10 and r["entries_off"] == 2 and r["max_abs_diff"] == pytest.approx(1e-3)
    assert parallel.compare_gradients(same, same)["entries_off"] == 0
    with pytest.raises(ValueError, match="shapes"):
        parallel.compare_gradients(same, [np.zeros((3, 2)), [np.ones(4)]])


def test_gpipe_timeline_bad_input():
    with pytest.raises(ValueError):
        parallel.gpipe_timeline([[1.0, 1.0], [1.0]])
    with pytest.raises(ValueError):
        parallel.gpipe_timeline([[1.0, 1.0]], [[1.0]])


def test_worker_reads_listening_addresses():
    from effcourse import _mw_worker

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        if os.path.exists("/proc/net/tcp"):
            assert _mw_worker._listening_addresses(port) == ["127.0.0.1"]


# --- notebook 07 checks: fail on the placeholder and on typical mistakes, pass on answers -------


def test_nb07_replica_loss():
    import tensorflow as tf

    checks.nb07.replica_loss(lambda losses, gb: tf.reduce_sum(losses) / gb)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb07.replica_loss(todo)
    with pytest.raises(checks.CheckFailed, match="GLOBAL batch"):
        checks.nb07.replica_loss(lambda losses, gb: np.mean(losses))


def test_nb07_gpipe_schedule():
    checks.nb07.gpipe_schedule(parallel.gpipe_timeline)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb07.gpipe_schedule(todo)
    with pytest.raises(checks.CheckFailed, match="2 \\* k|tasks, one forward"):
        checks.nb07.gpipe_schedule(lambda f, b: parallel.gpipe_timeline(f))  # forgets the backward pass

    def forward_order_backward(forward, backward):  # backwards in forward micro-batch order
        tasks = [t for t in parallel.gpipe_timeline(forward) if t["phase"] == "F"]
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


def test_nb07_checks_print_one_pass_line_each(capsys):
    import itertools
    import math

    import tensorflow as tf

    checks.nb07.replica_loss(lambda losses, gb: tf.reduce_sum(losses) / gb)
    checks.nb07.gpipe_schedule(parallel.gpipe_timeline)
    checks.nb07.micro_batches(lambda k, b: max(1, math.ceil((k - 1) * (1 - b) / b - 1e-9)))

    def best(costs, k):
        def worst(c):
            cuts = [0, *c, len(costs)]
            return max(sum(costs[a:b]) for a, b in zip(cuts, cuts[1:]))

        return list(min(itertools.combinations(range(1, len(costs)), k - 1), key=worst))

    checks.nb07.stage_split(best)
    checks.nb07.choose_width(_choose_width)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 5 and all(ln.startswith("PASS") for ln in lines), lines


def _choose_width(widths, budget_bytes, devices, tie=True, budget=True, limit=True):
    """Exercise 5's reference answer; the flags make the typical mistakes."""

    def fewest(w):
        fits = [
            k
            for k, b in w["largest"].items()
            if (k <= devices or not limit) and (b <= budget_bytes or not budget)
        ]
        return min(fits) if fits else None

    fitting = [w for w in widths if fewest(w) is not None]
    if not fitting:
        return None
    key = (
        (lambda w: (w["accuracy"], -fewest(w), -w["width"]))
        if tie
        else (lambda w: (w["accuracy"], w["width"]))
    )
    return max(fitting, key=key)["width"]


def test_nb07_choose_width():
    checks.nb07.choose_width(_choose_width)
    with pytest.raises(checks.CheckFailed, match="not written yet"):
        checks.nb07.choose_width(todo)
    with pytest.raises(checks.CheckFailed, match="not typed in"):  # the notebook's answer, hard-coded
        checks.nb07.choose_width(lambda widths, budget, devices: 1024)
    with pytest.raises(checks.CheckFailed, match="not typed in"):
        checks.nb07.choose_width(lambda widths, budget, devices: None)
    with pytest.raises(checks.CheckFailed, match="break the tie by the fewest devices"):
        checks.nb07.choose_width(lambda w, b, d: _choose_width(w, b, d, tie=False))
    with pytest.raises(checks.CheckFailed, match="does not fit"):  # the most accurate, budget ignored
        checks.nb07.choose_width(lambda w, b, d: _choose_width(w, b, d, budget=False))
    with pytest.raises(checks.CheckFailed, match="does not fit"):  # every split, devices ignored
        checks.nb07.choose_width(lambda w, b, d: _choose_width(w, b, d, limit=False))
    with pytest.raises(checks.CheckFailed, match="ONE width"):
        checks.nb07.choose_width(lambda w, b, d: [x["width"] for x in w])
    with pytest.raises(checks.CheckFailed, match="return None when nothing fits"):
        checks.nb07.choose_width(lambda w, b, d: _choose_width(w, b, d) or min(x["width"] for x in w))
    with pytest.raises(checks.CheckFailed, match="more accurate width fits"):  # the smallest that fits
        checks.nb07.choose_width(
            lambda w, b, d: min(
                (x["width"] for x in w if any(k <= d and v <= b for k, v in x["largest"].items())),
                default=None,
            )
        )


# --- device plans: 0, 1, 2, 8 GPUs, explicit requests, bad input (issue 16) -----------------------

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
        assert "split into 4 logical GPUs" in plan.reason and plan.real_devices == 1
    if n_gpus >= 2:
        assert plan.memory_growth and plan.physical_gpus == n_gpus and plan.real_devices == n_gpus
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


def _fake_gpipe_runs(stage_counts, micro_batches):
    runs = {}
    for k in stage_counts:
        for m in micro_batches:
            fwd = np.full((k, m), 1e-3)
            timeline = parallel.gpipe_timeline(fwd, 2 * fwd)
            runs[k, m] = {
                "micro_batch_size": 64 // m,
                "bubble": parallel.bubble(timeline),
                "bubble_formula": parallel.bubble_formula(k, m),
                "bubble_bottleneck": parallel.bubble_bottleneck([3e-3] * k, m),
                "stage_times_s": np.full(k, 3e-3),
                "sequential_s": 3e-3 * k * m,
                "makespan_s": max(t["end"] for t in timeline),
                "timeline": timeline,
                "agreement": {"entries_off": 0, "entries": 100, "atol": 1e-6},
            }
    return runs


@pytest.mark.parametrize("n_gpus", [0, 1, 2, 8])
def test_notebook07_tables_from_every_device_plan(n_gpus):
    """Notebook 07's data-building steps, run against each fake plan: no empty table, no KeyError."""
    from effcourse import timing

    plan = _plan(FAKE_MACHINES[n_gpus], split=4)
    sizes = parallel.demo_sizes(plan.count, (1, 2, 4), (2, 4), (1, 2, 4, 8), (4, 8))
    assert (
        sizes.scaling_replicas
        and sizes.pipe_stages
        and sizes.gantt in [(k, m) for k in sizes.pipe_stages for m in sizes.micro_batches]
    )
    assert max(sizes.scaling_replicas) <= plan.count and max(sizes.pipe_stages) <= plan.count
    tasks = {n: (lambda: None) for n in sizes.scaling_replicas}
    ticks = iter(np.arange(0, 100, 0.5))
    comparison = timing.interleaved(tasks, rounds=2, warmup=0, clock=lambda: float(next(ticks)))
    rows = [
        dict(model="lenet_300_100", **r)
        for r in parallel.scaling_rows(comparison, sizes.scaling_replicas, 256, 5)
    ]
    raw, shown = parallel.scaling_frame(rows)
    assert list(shown["replicas"]) == sizes.scaling_replicas and "throughput (samples/s)" in shown
    runs = _fake_gpipe_runs(sizes.pipe_stages, sizes.micro_batches)
    table = parallel.gpipe_table(runs)
    assert len(table) == len(sizes.pipe_stages) * len(sizes.micro_batches)
    assert list(table.groupby("K stages").groups) == sizes.pipe_stages
    assert runs[sizes.gantt]["timeline"]
    assert len(sizes.model_devices) == 3 and max(sizes.model_devices) < plan.count


def test_demo_sizes_on_one_device_and_empty_tables_keep_their_columns():
    one = parallel.demo_sizes(1, (1, 2, 4), (2, 4), (1, 8), (4, 8))
    assert one.gradient_replicas == [] and one.scaling_replicas == [1] and one.pipe_stages == [1]
    assert one.gantt == (1, 8) and any("no gradient check" in n for n in one.notes)
    assert parallel.demo_sizes(8, (1, 2, 4), (2, 4), (1, 8), (4, 8)).gantt == (4, 8)
    _, shown = parallel.scaling_frame([])
    assert "throughput (samples/s)" in shown.columns and shown.empty
    assert "K stages" in parallel.gpipe_table({}).columns
    with pytest.raises(ValueError):
        parallel.demo_sizes(0, (1,), (1,), (1,))


# --- worker environments (issue 16) ----------------------------------------------------------------


def test_worker_environments_for_0_1_4_gpus_and_2_workers():
    one = parallel.worker_environments(2, 1)  # fewer GPUs than workers: shared, memory growth, ring
    assert one.envs == [{"TF_FORCE_GPU_ALLOW_GROWTH": "true", "EFFCOURSE_MW_COMMUNICATION": "ring"}] * 2
    assert "share it" in one.reason
    four = parallel.worker_environments(2, 4)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in four.envs] == ["0,1", "2,3"] and "2 GPUs each" in four.reason
    three = parallel.worker_environments(2, 3)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in three.envs] == ["0", "1"] and "1 unused" in three.reason
    none = parallel.worker_environments(2, 0)
    assert none.envs == [{"CUDA_VISIBLE_DEVICES": ""}] * 2 and "CPU-only" in none.reason
    assert len(parallel.worker_environments(8, 2).envs) == 8  # more workers than GPUs: shared, stated
    for bad in ((0, 1), (2, -1), (2, 1.5), (True, 1)):
        with pytest.raises(ValueError):
            parallel.worker_environments(*bad)


def test_launcher_gives_each_worker_its_environment(tmp_path):
    show = "import os; print('EFFCOURSE_RESULT ' + __import__('json').dumps({'cvd': os.environ.get('CUDA_VISIBLE_DEVICES')}))"
    run = parallel.launch_workers(2, command=["-c", show], timeout=60, log_dir=tmp_path, gpus=4)
    assert [w.result["cvd"] for w in run.workers] == ["0,1", "2,3"] and run.worker_plan.envs[0][
        "CUDA_VISIBLE_DEVICES"
    ] == "0,1"


def test_cluster_hosts_from_the_environment():
    assert parallel.cluster_hosts(environ={}) == ["host-a.example:2222", "host-b.example:2222"]
    hosts = parallel.cluster_hosts(environ={"EFFCOURSE_CLUSTER_HOSTS": "gpu1.lab, gpu2.lab:3000"})
    assert hosts == ["gpu1.lab:2222", "gpu2.lab:3000"]
    assert "gpu2.lab:3000" in parallel.cluster_commands(hosts)[1]


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


# --- the concurrent pipeline runner and which runner a plan gets (issue 16) ----------------------


def _dependencies_hold(timeline, n_stages, n_micro):
    """Written out independently of check_schedule: every ordering constraint of GPipe's schedule."""
    t = {(d["stage"], d["phase"], d["micro_batch"]): d for d in timeline}
    assert len(t) == len(timeline) == 2 * n_stages * n_micro
    for k in range(n_stages):
        for m in range(n_micro):
            f, b = t[k, "F", m], t[k, "B", m]
            assert f["start"] < f["end"] and b["start"] < b["end"]
            if k:  # stage k of micro-batch m after stage k-1 of m
                assert f["start"] >= t[k - 1, "F", m]["end"]
            if m:  # ... and after stage k of m-1
                assert f["start"] >= t[k, "F", m - 1]["end"]
            assert b["start"] >= (t[k + 1, "B", m] if k < n_stages - 1 else f)["end"]
            assert b["start"] >= t[k, "F", n_micro - 1]["end"]
            if m < n_micro - 1:
                assert b["start"] >= t[k, "B", m + 1]["end"]


@pytest.mark.parametrize("name, n_stages", [("concurrent_2", 2), ("concurrent_4", 4)])
def test_concurrent_pipeline_keeps_the_schedule_and_the_results(multi_device, name, n_stages):
    run = multi_device[name]
    assert run["mode"] == "concurrent" and run["clock"] == "wall"
    _dependencies_hold(run["timeline"], n_stages, 4)
    parallel.check_schedule(run["timeline"], n_stages, 4)
    assert run["grad_diff"] <= 1e-7  # the same sums, in the same order, as the task-by-task run
    assert run["full_diff"] < 1e-6
    assert run["loss"][0] == pytest.approx(run["loss"][1], rel=1e-6)
    assert 0 <= run["bubble"] < 1


def test_concurrent_sweep_and_a_failing_stage(multi_device):
    assert multi_device["concurrent_sweep"] == ["concurrent", 0]
    assert "pipeline stage 0" in multi_device["stage_failure"]  # raised, not a hang


def test_check_schedule_rejects_broken_timelines():
    good = parallel.gpipe_timeline(np.ones((3, 4)), 2 * np.ones((3, 4)))
    parallel.check_schedule(good, 3, 4)
    _dependencies_hold(good, 3, 4)
    # stage 0 is slow, so stage 1 has slack: moving one of its starts earlier breaks only a dependency
    slow_first = parallel.gpipe_timeline([[2] * 4, [1] * 4, [1] * 4], 2 * np.ones((3, 4)))
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


# --- memory per device, the budget and section 7's tables and chart (issue 16) -------------------


def test_memory_per_device_is_measured_from_the_placed_variables(multi_device):
    layer = multi_device["expected_layer_bytes"]  # flatten, block0..block3, logits
    assert multi_device["split_by_bytes"] == [[], [2], [2, 3, 4]]
    for k, want in (
        ("1", [sum(layer)]),
        ("2", [layer[1], sum(layer[2:])]),
        ("4", [layer[1], layer[2], layer[3], layer[4] + layer[5]]),
    ):
        rows = multi_device["memory"][k]
        assert [r["device"] for r in rows] == [f"/device:CPU:{i}" for i in range(int(k))]
        assert [r["weights_bytes"] for r in rows] == want
        # Adam: two moments per weight, and its step counter (int64) on each stage's device
        assert [r["optimizer_bytes"] for r in rows] == [2 * w + 8 for w in want]
        assert all(r["bytes"] == r["weights_bytes"] + r["optimizer_bytes"] for r in rows)
        assert all(r["allocator_bytes"] is None for r in rows)  # CPUs share one allocator
    sgd = multi_device["memory_sgd"]  # tf_keras' SGD: a momentum buffer per weight, measured as it is made
    assert [r["weights_bytes"] for r in sgd] == [layer[1], sum(layer[2:])]
    assert [r["optimizer_bytes"] for r in sgd] == [w + 8 for w in (layer[1], sum(layer[2:]))]
    assert multi_device["memory"]["4"][0]["layers"] == ["flatten", "block0"]
    assert "needs 5 devices" in multi_device["memory_too_many"]


def test_memory_sweep_trains_and_fits_splits_to_the_devices(multi_device):
    swept = multi_device["memory_sweep"]
    assert [r["width"] for r in swept] == [8, 16]
    for r in swept:
        assert list(r["largest"]) == [
            "1",
            "2",
        ]  # K=4: 2 blocks give 3 weighted layers; K=8: 4 devices
        assert r["largest"]["2"] < r["largest"]["1"] and 0 <= r["accuracy"] <= 1 and r["file_bytes"] > 0
    assert swept[0]["params"] == 784 * 8 + 8 + 8 * 8 + 8 + 8 * 10 + 10
    frame = multi_device["memory_frame"]
    assert frame["fewest devices that fit"] == ["1", "1"] and "K=2 (MB)" in frame


def test_split_by_bytes_bad_input():
    mlp = parallel.balanced_mlp(2, width=8)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive whole number"):
            parallel.split_by_bytes(mlp, bad)
    with pytest.raises(ValueError, match="4 stages need 4 layers with weights"):
        parallel.split_by_bytes(mlp, 4)


def test_allocator_reading_on_gpus_only():
    from effcourse.parallel import memory

    calls = []

    def fake(name):
        calls.append(name)
        return {"current": 4096, "peak": 8192}

    assert memory._allocated("/device:GPU:1", fake) == 4096 and calls == ["GPU:1"]
    assert memory._allocated("/device:CPU:0", fake) is None and calls == ["GPU:1"]

    def broken(name):
        raise ValueError("no such device")

    assert memory._allocated("/device:GPU:0", broken) is None


@pytest.mark.parametrize("n_gpus", [0, 1, 2, 8])
def test_device_budget_for_each_plan(n_gpus):
    plan = _plan(FAKE_MACHINES[n_gpus], split=4)
    budget = parallel.device_budget(plan, 13)
    assert budget.bytes == 13 * 2**20 and budget.mb == 13
    if n_gpus == 0:
        assert budget.device_mb is None and "no memory of their own" in budget.reason
    elif n_gpus == 1:
        assert budget.device_mb == parallel.plan.LOGICAL_GPU_MB and "logical GPU" in budget.reason
    else:
        assert budget.device_mb == FAKE_MACHINES[n_gpus][0]["memory_mb"] == plan.device_memory_mb
    tight = parallel.device_budget(plan, 10**6)  # more than any device has: the device's own memory
    if n_gpus:
        assert tight.bytes == tight.device_mb * 2**20 and "less than a stated budget" in tight.reason
    unknown = parallel.device_budget(_plan([{"name": "x"}, {"name": "y"}]), 13)
    assert unknown.device_mb is None and "unknown" in unknown.reason
    for bad in (0, -1, "13", None, True):
        with pytest.raises(ValueError, match="positive number"):
            parallel.device_budget(plan, bad)


def _fake_memory_rows(splits, widths=(64, 512, 1024)):
    rows = []
    for w in widths:
        params = 784 * w + 3 * w * w + 10 * w
        rows.append(
            {
                "width": w,
                "blocks": 4,
                "params": params,
                "accuracy": 0.9 + w / 1e5,
                "file_bytes": 4 * params,
                "largest": {k: 12 * params // k for k in splits},
                "per_device": {
                    k: [
                        {
                            "device": f"/device:GPU:{i}",
                            "layers": [f"block{i}"],
                            "weights_bytes": 4 * params // k,
                            "optimizer_bytes": 8 * params // k,
                            "bytes": 12 * params // k,
                            "allocator_bytes": None,
                        }
                        for i in range(k)
                    ]
                    for k in splits
                },
            }
        )
    return rows


@pytest.mark.parametrize("n_gpus", [0, 1, 2, 8])
def test_notebook07_section7_tables_from_every_device_plan(n_gpus):
    plan = _plan(FAKE_MACHINES[n_gpus], split=4)
    sizes = parallel.demo_sizes(plan.count, (1, 2, 4), (2, 4), (1, 2, 4, 8), (4, 8), memory_splits=(2, 4))
    assert sizes.memory_splits[0] == 1 and max(sizes.memory_splits) <= plan.count
    budget = parallel.device_budget(plan, 13)
    rows = _fake_memory_rows(sizes.memory_splits)
    frame = parallel.memory_frame(rows, budget.bytes)
    assert list(frame["width"]) == [64, 512, 1024]
    assert [c for c in frame.columns if c.startswith("K=")] == [f"K={k} (MB)" for k in sizes.memory_splits]
    assert frame["fewest devices that fit"].iloc[0] == "1"
    widest = rows[-1]["per_device"][max(sizes.memory_splits)]
    placed = parallel.placement_frame(widest)
    assert len(placed) == max(sizes.memory_splits) and placed["total (MB)"].sum() > 0
    runs = _fake_gpipe_runs(sizes.pipe_stages, sizes.micro_batches)
    assert len(runs[sizes.gantt]["timeline"]) == 2 * sizes.gantt[0] * sizes.gantt[1]


def test_section7_on_one_device_and_with_no_rows():
    one = parallel.demo_sizes(1, (1, 2), (2,), (1, 2), memory_splits=(2, 4))
    assert one.memory_splits == [1] and any("memory splits K=[2, 4] left out" in n for n in one.notes)
    frame = parallel.memory_frame(_fake_memory_rows([1]), 13 * 2**20)
    assert list(frame["fewest devices that fit"]) == ["1", "more than 1", "more than 1"]
    empty = parallel.memory_frame([], 1)
    assert empty.empty and "fewest devices that fit" in empty.columns
    assert parallel.placement_frame([]).columns[0] == "device"


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
