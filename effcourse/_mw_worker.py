"""The multi-worker training script of notebook 07: ``python -m effcourse._mw_worker [options]``.

Every worker of a ``MultiWorkerMirroredStrategy`` job runs this same script; only its
``TF_CONFIG`` (the cluster's addresses and this worker's index) differs. Locally,
``effcourse.parallel.launch_workers`` starts the workers on 127.0.0.1; on a real cluster
you run it on each host with that host's ``TF_CONFIG`` (``parallel.cluster_commands``).

Each worker builds the same course model under the strategy, trains it with ``model.fit``
and SGD on the same global batches of MNIST (the strategy gives each worker its share of
each batch and all-reduces the gradients), then saves its final weights to
``$EFFCOURSE_WORKER_DIR/worker-<index>-weights.npz`` (the initial ones in
``worker-<index>-initial.npz``), prints ``EFFCOURSE_STEP <n>`` after each training step (the
launcher's progress bar reads it) and one result line,
``EFFCOURSE_RESULT {json}``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time


def _listening_addresses(port: int) -> list[str]:
    """Where this machine listens on ``port`` (Linux /proc/net; empty elsewhere)."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{name}") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            parts = row.split()
            local, state = parts[1], parts[3]
            hex_addr, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A = LISTEN
                continue
            if name == "tcp":
                raw = bytes.fromhex(hex_addr)[::-1]
                found.append(".".join(str(b) for b in raw))
            else:
                import ipaddress

                words = [bytes.fromhex(hex_addr[i : i + 8])[::-1] for i in range(0, 32, 8)]
                found.append(str(ipaddress.IPv6Address(b"".join(words))))
    return sorted(set(found))


def _communication(tf):
    """The all-reduce implementation: ``$EFFCOURSE_MW_COMMUNICATION`` (auto, ring or nccl; notebook 07).

    ``parallel.worker_environments`` sets ``ring`` when workers share a GPU (NCCL needs one
    GPU per process); otherwise TensorFlow chooses.
    """
    impl = tf.distribute.experimental.CommunicationImplementation
    name = os.environ.get("EFFCOURSE_MW_COMMUNICATION", "auto").strip().lower() or "auto"
    choices = {"auto": impl.AUTO, "ring": impl.RING, "nccl": impl.NCCL}
    if name not in choices:
        raise ValueError(f"EFFCOURSE_MW_COMMUNICATION={name!r}: choose auto, ring or nccl.")
    return tf.distribute.experimental.CommunicationOptions(implementation=choices[name])


def main(argv=None) -> int:
    """Run one worker: parse the options, train under the strategy, save weights, print the result (notebook 07)."""
    parser = argparse.ArgumentParser(description="One MultiWorkerMirroredStrategy worker (notebook 07).")
    parser.add_argument("--model", default="lenet_300_100")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--out", default=os.environ.get("EFFCOURSE_WORKER_DIR", "."))
    parser.add_argument(
        "--crash-worker", type=int, default=None, help="failure demo: this worker raises an error at start"
    )
    parser.add_argument(
        "--hang-worker", type=int, default=None, help="failure demo: this worker hangs (sleeps) at start"
    )
    args = parser.parse_args(argv)

    if "TF_CONFIG" not in os.environ:
        print(
            "TF_CONFIG is not set: start workers with effcourse.parallel.launch_workers, or on a "
            "cluster set TF_CONFIG on each host (effcourse.parallel.cluster_commands).",
            file=sys.stderr,
        )
        return 2
    config = json.loads(os.environ["TF_CONFIG"])
    index = int(config["task"]["index"])
    my_port = int(config["cluster"][config["task"]["type"]][index].rpartition(":")[2])
    if args.crash_worker == index:
        raise RuntimeError(f"worker {index}: simulated crash (--crash-worker {index})")
    if args.hang_worker == index:
        print(f"worker {index}: simulating a hang (--hang-worker {index})", file=sys.stderr, flush=True)
        time.sleep(10**6)

    import effcourse
    from effcourse import data, env, models, parallel

    effcourse.setup(seed=42, quiet=True)  # op determinism holds with the collective all-reduce
    import numpy as np
    import tensorflow as tf

    keras = effcourse.keras
    t0 = time.perf_counter()
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=_communication(tf))
    replicas = strategy.num_replicas_in_sync
    parallel.per_replica_batch(args.global_batch, replicas)
    mnist = data.load()
    n = args.steps * args.global_batch
    if n > len(mnist.x_train):
        raise ValueError(
            f"{args.steps} steps of {args.global_batch} need {n} images; the profile "
            f"has {len(mnist.x_train)}: lower --steps or --global-batch."
        )
    dataset = tf.data.Dataset.from_tensor_slices((mnist.x_train[:n], mnist.y_train[:n])).batch(
        args.global_batch
    )
    with strategy.scope():
        model = models.compile_classifier(
            models.build(args.model), optimizer=keras.optimizers.SGD(args.learning_rate)
        )
    step_ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step_ends.append(time.perf_counter())
            print(f"EFFCOURSE_STEP {len(step_ends)}", flush=True)  # the launcher's progress bar reads it

    initial = model.get_weights()
    history = model.fit(dataset, epochs=1, verbose=0, callbacks=[Clock()])
    timed = len(step_ends) - 1  # the first step includes tracing and the first collectives
    samples_per_s = timed * args.global_batch / (step_ends[-1] - step_ends[0]) if timed > 0 else float("nan")
    for name, weights in (("initial", initial), ("weights", model.get_weights())):
        buf = io.BytesIO()
        np.savez(buf, **{f"w{i}": w for i, w in enumerate(weights)})
        env.atomic_write_bytes(os.path.join(args.out, f"worker-{index}-{name}.npz"), buf.getvalue())
    result = {
        "worker": index,
        "replicas": replicas,
        "steps": len(step_ends),
        "global_batch": args.global_batch,
        "loss": float(history.history["loss"][-1]),
        "samples_per_s": samples_per_s,
        "seconds": time.perf_counter() - t0,
        "listening": _listening_addresses(my_port),
        "port": my_port,
        "keras": keras.__name__,
        "tensorflow": tf.__version__,
        "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    print("EFFCOURSE_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
