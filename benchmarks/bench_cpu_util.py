"""CPU utilisation of TensorFlow-backend ``model.fit`` under different settings.

Investigates "TensorFlow training was seen using about one core of two in some fit calls".
Each configuration runs in a fresh subprocess (``KERAS_BACKEND=tensorflow``): a resnet34
U-Net (2 sigmoid classes) is compiled, warmed up with one ``fit`` epoch, then a timed
``fit`` of ``--steps`` steps measures wall time, process CPU time (``getrusage`` user+sys)
and their ratio (cores busy), plus the per-thread CPU split from ``/proc/self/task``.

Finding (see ``keras_dynunet/stall_free_inputs.py``): the lost core is not lost in
training. ``fit`` ends, both cores idle, until tf.data's autotuning thread wakes
(10 ms x 2^k periods), because Keras' iterator destructor waits for it. ``--fit keras``
runs Keras' own ``Model.fit`` (the stall), ``--fit stall-free`` this library's models'
``fit`` (autotuning off); ``tail_s`` is the time ``fit`` spends after ``on_train_end``.

Axes: ``fit`` keras/stall-free; ``jit_compile`` on/off; default threading vs
``--threads`` intra-op threads (``tf.config.threading``); input as numpy arrays, a
``tf.data.Dataset``, or ``SegmentationDataset`` (a ``keras.utils.PyDataset``) with
``workers=1`` or ``2``.

Run from the repository root: ``python benchmarks/bench_cpu_util.py [--quick]``.
Writes ``benchmarks/results/cpu_util.json`` atomically.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "cpu_util.json"
INPUTS = ("numpy", "tf.data", "pydataset-w1", "pydataset-w2")


def task_stats() -> dict[str, list[str]]:
    """``{"tid:name": fields}`` of this process's threads; ``fields`` are the
    ``/proc/self/task/*/stat`` fields after the command name (state is ``fields[0]``)."""
    out = {}
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue  # the thread exited
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        out[f"{task}:{name}"] = stat[stat.rindex(")") + 2 :].split()
    return out


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process (utime + stime)."""
    tick = os.sysconf("SC_CLK_TCK")
    return {key: (int(f[11]) + int(f[12])) / tick for key, f in task_stats().items()}


def runqueue_wait() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/schedstat") as handle:
                total += int(handle.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def sample_threads(stop, samples: list, period: float = 0.01) -> None:
    """Until ``stop`` is set, record {thread: (state, last CPU)} every ``period`` seconds."""
    while not stop.is_set():
        # (state, processor the thread last ran on)
        samples.append({key: (f[0], int(f[36])) for key, f in task_stats().items()})
        time.sleep(period)


def placement(samples: list, threads: list[str]) -> dict:
    """How the two busiest threads were placed: same CPU, both running, one running."""
    both = [s for s in samples if threads[0] in s and threads[1] in s]
    if not both:
        return {}
    running = [[s[t][0] == "R" for t in threads] for s in both]
    return {
        "same_cpu": sum(s[threads[0]][1] == s[threads[1]][1] for s in both) / len(both),
        "both_running": sum(all(r) for r in running) / len(both),
        "one_running": sum(sum(r) == 1 for r in running) / len(both),
        "samples": len(both),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(spec: dict) -> dict:
    import tensorflow as tf

    if spec["threads"]:
        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
    import keras

    import keras_dynunet as kd
    from keras_dynunet.instances import synthetic_dataset

    size, batch, steps = spec["size"], spec["batch"], spec["steps"]
    images, labels = synthetic_dataset(8, (2 * size, 2 * size), seed=0)
    kwargs = {"workers": 2} if spec["input"] == "pydataset-w2" else {}
    ds = kd.SegmentationDataset(
        list(images),
        list(labels),
        batch_size=batch,
        crop_size=(size, size),
        augment=kd.Augmentation(),
        steps_per_epoch=steps,
        **kwargs,
    )
    x = keras.ops.convert_to_numpy(keras.ops.concatenate([ds[i][0] for i in range(steps)]))
    y = keras.ops.convert_to_numpy(keras.ops.concatenate([ds[i][1] for i in range(steps)]))
    if spec["input"] == "numpy":
        fit_args = {"x": x, "y": y, "batch_size": batch}
    elif spec["input"] == "tf.data":
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).prefetch(2)
        fit_args = {"x": data}
    else:
        fit_args = {"x": ds}
    model = kd.build_unet("resnet34", classes=2)
    model.compile(
        optimizer="adam",
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        jit_compile=spec["jit_compile"],
    )
    fit = keras.Model.fit if spec["fit"] == "keras" else type(model).fit
    fit(model, **fit_args, epochs=1, verbose=0)  # compile + warm-up
    import threading

    ended = []

    class TrainEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            ended.append(time.perf_counter())

    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=sample_threads, args=(stop, samples), daemon=True)
    wait0 = runqueue_wait()
    threads0, cpu0, start = thread_cpu(), cpu_seconds(), time.perf_counter()
    sampler.start()
    fit(model, **fit_args, epochs=1, verbose=0, callbacks=[TrainEnd()])
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    cpu = cpu_seconds() - cpu0
    wait = runqueue_wait() - wait0
    threads1 = thread_cpu()
    busy_by_thread = sorted(((threads1[k] - threads0.get(k, 0.0)) / wall, k) for k in threads1)[
        ::-1
    ]
    busy = [b for b, _ in busy_by_thread]
    top_two = [k for _, k in busy_by_thread[:2]]
    return {
        **spec,
        "tf_threads": [
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        ],
        "wall_s": wall,
        "cpu_s": cpu,
        "cores_busy": cpu / wall,
        "cores_waiting_for_cpu": wait / wall,
        "img_s": steps * batch / wall,
        "tail_s": start + wall - ended[0],
        "top_thread_busy": [round(b, 2) for b in busy[:4]],
        "threads_over_10pct": sum(b > 0.1 for b in busy),
        "top_two_threads": top_two,
        "top_two_placement": placement(samples, top_two),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128x128 crops, 4 steps")
    parser.add_argument(
        "--fit",
        choices=("both", "keras", "stall-free"),
        default="both",
        help="Keras' own Model.fit, this library's stall-free fit, or both",
    )
    parser.add_argument("--threads", type=int, default=2, help="explicit intra-op threads")
    parser.add_argument("--inputs", default=",".join(INPUTS), help="comma list of inputs")
    parser.add_argument(
        "--jit", choices=("both", "on", "off"), default="both", help="jit_compile settings"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="fresh processes per configuration (default 1)"
    )
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        write_json_atomic(args.json, worker(json.loads(args.worker)))
        return 0

    size, steps = (128, 4) if args.quick else (256, 6)
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    rows = []
    header = (
        f"{'fit':<11}{'jit':<6}{'threads':<9}{'input':<14}{'img/s':>7}{'tail s':>7}"
        f"{'cores busy':>11}"
        f"{'runq wait':>10}  top threads"
    )
    print(header)
    jits = {"both": (True, False), "on": (True,), "off": (False,)}[args.jit]
    fits = ("keras", "stall-free") if args.fit == "both" else (args.fit,)
    for fit, jit, threads, inp, _ in itertools.product(
        fits, jits, sorted({0, args.threads}), args.inputs.split(","), range(args.repeat)
    ):
        spec = {
            "fit": fit,
            "jit_compile": jit,
            "threads": threads,
            "input": inp,
            "size": size,
            "batch": 8,
            "steps": steps,
        }
        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        res = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec), "--json", path],
            env=env,
            capture_output=True,
            text=True,
            cwd=str(ROOT),
        )
        if res.returncode:
            row = {**spec, "error": res.stderr[-800:]}
            print(
                f"{fit:<11}{jit!s:<6}{threads or 'default'!s:<9}{inp:<14}"
                f" ERROR {res.stderr[-300:]}"
            )
        else:
            with open(path) as handle:
                row = json.load(handle)
            print(
                f"{fit:<11}{jit!s:<6}{threads or 'default'!s:<9}{inp:<14}{row['img_s']:>7.2f}"
                f"{row['tail_s']:>7.2f}"
                f"{row['cores_busy']:>11.2f}{row['cores_waiting_for_cpu']:>10.2f}"
                f"  {row['top_thread_busy']}"
                f"  {dict((k, round(v, 2)) for k, v in row['top_two_placement'].items())}",
                flush=True,
            )
        os.unlink(path)
        rows.append(row)
    with open("/proc/loadavg") as handle:
        load = handle.read().strip()
    write_json_atomic(args.json, {"size": size, "steps": steps, "loadavg": load, "rows": rows})
    print(f"load {load}; wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
