"""The multi-worker training script of notebook 07: ``python -m effcourse._mw_worker [options]``.

Every worker of a ``MultiWorkerMirroredStrategy`` job runs this script; only its
``TF_CONFIG`` (the cluster's addresses and this worker's index) differs. Locally
``effcourse.parallel.launch_workers`` starts the workers on 127.0.0.1; on a cluster each host
runs it with its own ``TF_CONFIG`` (``parallel.cluster_commands``). Each worker trains the same
course model with ``model.fit`` and SGD on the same global batches of MNIST, saves its initial
and final weights to ``$EFFCOURSE_WORKER_DIR/worker-<index>-{initial,weights}.npz``, prints
``EFFCOURSE_STEP <n>`` after each step (the launcher's progress bar) and one result line,
``EFFCOURSE_RESULT {json}``.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import os
import sys
import time


def _listening_addresses(port: int) -> list[str]:
    """Where this machine listens on ``port`` (Linux /proc/net; empty elsewhere)."""
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{name}") as fh:
                rows = [row.split() for row in fh.read().splitlines()[1:]]
        except OSError:
            continue
        for row in rows:
            hex_addr, hex_port = row[1].split(":")
            if row[3] == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                words = [bytes.fromhex(hex_addr[i : i + 8])[::-1] for i in range(0, len(hex_addr), 8)]
                found.add(str(ipaddress.ip_address(b"".join(words))))
    return sorted(found)


def _communication(tf):
    """The all-reduce: ``$EFFCOURSE_MW_COMMUNICATION`` (auto, ring or nccl); ``ring`` when workers share a GPU."""
    impl = tf.distribute.experimental.CommunicationImplementation
    name = os.environ.get("EFFCOURSE_MW_COMMUNICATION", "auto").strip().lower() or "auto"
    choices = {"auto": impl.AUTO, "ring": impl.RING, "nccl": impl.NCCL}
    if name not in choices:
        raise ValueError(f"EFFCOURSE_MW_COMMUNICATION={name!r}: choose auto, ring or nccl.")
    return tf.distribute.experimental.CommunicationOptions(implementation=choices[name])


def main(argv=None) -> int:
    """Run one worker: train under the strategy, save the weights, print the result (notebook 07)."""
    parser = argparse.ArgumentParser(description="One MultiWorkerMirroredStrategy worker (notebook 07).")
    parser.add_argument("--model", default="lenet_300_100")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--out", default=os.environ.get("EFFCOURSE_WORKER_DIR", "."))
    parser.add_argument("--crash-worker", type=int, help="failure demo: this worker raises an error at start")
    args = parser.parse_args(argv)
    if "TF_CONFIG" not in os.environ:
        print(
            "TF_CONFIG is not set: start workers with effcourse.parallel.launch_workers, or on a cluster "
            "set TF_CONFIG on each host (effcourse.parallel.cluster_commands).",
            file=sys.stderr,
        )
        return 2
    config = json.loads(os.environ["TF_CONFIG"])
    index = int(config["task"]["index"])
    port = int(config["cluster"]["worker"][index].rpartition(":")[2])
    if args.crash_worker == index:
        raise RuntimeError(f"worker {index}: simulated crash (--crash-worker {index})")

    import effcourse
    from effcourse import data, env, models

    effcourse.setup(seed=42, quiet=True)  # op determinism holds with the collective all-reduce
    import numpy as np
    import tensorflow as tf

    keras = effcourse.keras
    t0 = time.perf_counter()
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=_communication(tf))
    replicas = strategy.num_replicas_in_sync
    mnist, n = data.load(), args.steps * args.global_batch
    if args.global_batch % replicas or n > len(mnist.x_train):
        raise ValueError(
            f"--global-batch {args.global_batch} must split evenly over {replicas} replicas, and "
            f"--steps x --global-batch ({n}) fit in the {len(mnist.x_train)} training images."
        )
    x, y = mnist.x_train[:n], mnist.y_train[:n]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.global_batch)
    with strategy.scope():
        net = models.build(args.model)
        model = models.compile_classifier(net, optimizer=keras.optimizers.SGD(args.learning_rate))
    step_ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step_ends.append(time.perf_counter())
            print(f"EFFCOURSE_STEP {len(step_ends)}", flush=True)

    initial = model.get_weights()
    history = model.fit(dataset, epochs=1, verbose=0, callbacks=[Clock()])
    timed = len(step_ends) - 1  # the first step includes tracing and the first collectives
    for name, weights in (("initial", initial), ("weights", model.get_weights())):
        buf = io.BytesIO()
        np.savez(buf, **{f"w{i}": w for i, w in enumerate(weights)})
        env.atomic_write_bytes(os.path.join(args.out, f"worker-{index}-{name}.npz"), buf.getvalue())
    result = {
        "worker": index,
        "replicas": replicas,
        "steps": len(step_ends),
        "global_batch": args.global_batch,
    }
    result.update(loss=float(history.history["loss"][-1]), seconds=time.perf_counter() - t0, port=port)
    result.update(listening=_listening_addresses(port), keras=keras.__name__, tf_config=config)
    span = step_ends[-1] - step_ends[0]
    result["samples_per_s"] = timed * args.global_batch / span if timed > 0 else None
    print("EFFCOURSE_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
