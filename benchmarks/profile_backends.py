"""Where the time of a U-Net step goes on the PyTorch and JAX backends (the profiles behind
``benchmarks/README.md``'s performance notes).

``torch``: the Keras-on-PyTorch resnet34 U-Net (256x256, batch 8) profiled with
``torch.profiler``, once with keras_dynunet's no-copy conv/pool layers and once with the same
model converted back to plain Keras layers; prints total op time and the time in
``aten::copy_`` (layout copies) for inference and a train step.

``jax``: one train step traced with ``jax.profiler`` (perfetto trace), op time grouped by
XLA fusion kind (``ynn_fusion`` = convolutions through YNNPACK, ``transpose_copy_fusion`` =
layout transposes), with each fusion's ``op_name`` from the optimized HLO to split forward,
input-gradient and filter-gradient convolutions.

Run from the repository root::

    python benchmarks/profile_backends.py torch
    python benchmarks/profile_backends.py jax

Writes ``benchmarks/results/profile_<backend>.json`` atomically. Each backend runs in its
own subprocess (``KERAS_BACKEND`` must be set before keras is imported).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def _data(np):
    rng = np.random.default_rng(0)
    x = rng.random((8, 256, 256, 3), "float32")
    return x, (x[..., :1] > 0.5).astype("float32")


def _model(keras, kd, plain: bool):
    model = kd.build_unet("resnet34", classes=1, input_shape=(None, None, 3))
    if plain:  # the same model with the Keras layers (what Keras alone would run)
        from keras_dynunet.layers.no_copy import NO_COPY_LAYERS

        back = {fast: slow for slow, fast in NO_COPY_LAYERS.items()}

        def clone(layer):
            return back.get(type(layer), type(layer)).from_config(layer.get_config())

        encoder = model.encoder  # the nested functional model of the encoder's taps
        plain_encoder = keras.models.clone_model(encoder, clone_function=clone)
        assert not any(type(layer) in back for layer in plain_encoder.layers)
        model = keras.models.clone_model(
            keras.Model(model.inputs, model.outputs),
            clone_function=lambda layer: plain_encoder if layer is encoder else clone(layer),
        )
        assert not any(type(layer) in back for layer in model.layers)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return model


def profile_torch() -> dict:
    import keras
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    import keras_dynunet as kd

    torch.set_num_threads(2)
    x, y = _data(np)
    out = {}
    for variant in ("no-copy layers", "plain Keras layers"):
        model = _model(keras, kd, plain=variant.startswith("plain"))
        steps = {
            "infer": lambda m=model: m.predict_on_batch(x),
            "train": lambda m=model: m.train_on_batch(x, y),
        }
        for name, step in steps.items():
            step()
            step()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events) / 1e3
            copy = sum(e.self_cpu_time_total for e in events if e.key == "aten::copy_") / 1e3
            out[f"{variant} / {name}"] = {"total_ms": total, "copy_ms": copy}
    return out


def profile_jax() -> dict:
    import jax
    import keras
    import numpy as np

    import keras_dynunet as kd

    x, y = _data(np)
    model = _model(keras, kd, plain=False)
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    trace_dir = tempfile.mkdtemp(prefix="jax-trace-")
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        model.train_on_batch(x, y)
    trace_file = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)[0]
    with gzip.open(trace_file) as handle:
        trace = json.load(handle)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    durations = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and "dur" in event and not event["name"].startswith("$"):
            durations[event["name"]] += event["dur"] / 1e3
    hlo_files = sorted(
        glob.glob(f"{os.environ['XLA_DUMP']}/*jit_train_step.cpu_after_optimizations.txt")
    )
    op_names = {}
    hlo = Path(hlo_files[-1]).read_text() if hlo_files else ""
    for line in hlo.splitlines():
        match = re.match(r"\s*(?:ROOT )?%([a-z_-]+(?:\.\d+)?) = ", line)
        if match:
            name = re.search(r'op_name="([^"]+)"', line)
            op_names[match.group(1)] = name.group(1) if name else ""
    groups = collections.Counter()
    for name, ms in durations.items():
        if name not in op_names:
            continue
        kind = name.split(".")[0]
        if kind == "ynn_fusion":
            op = op_names[name]
            if not op:
                role = "filter-gradient conv"  # XLA leaves these without an op_name
            elif "conv" not in op:
                role = "other (pool/upsample/reduce)"
            elif "transpose(" in op:
                role = "input-gradient conv"
            else:
                role = "forward conv"
            kind = f"ynn_fusion: {role}"
        groups[kind] += ms
    step = sum(groups.values())
    return {"step_ops_ms": step, "by_kind_ms": dict(groups.most_common(12))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=("torch", "jax"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out_path = RESULTS / f"profile_{args.backend}.json"
    if args.worker:
        result = profile_torch() if args.backend == "torch" else profile_jax()
        write_json_atomic(out_path, {"backend": args.backend, "threads": 2, **result})
        return 0
    dump = tempfile.mkdtemp(prefix="xla-dump-")
    env = dict(
        os.environ,
        KERAS_BACKEND=args.backend,
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="3",
        XLA_DUMP=dump,
        XLA_FLAGS=f"--xla_dump_to={dump} --xla_dump_hlo_as_text",
        PYTHONPATH=str(ROOT),
    )
    subprocess.run(
        [sys.executable, __file__, args.backend, "--worker"], env=env, check=True, cwd=ROOT
    )
    result = json.loads(out_path.read_text())
    for key, value in result.items():
        if isinstance(value, dict):
            print(key)
            for name, ms in value.items():
                print(f"  {name:<45} {ms}")
        else:
            print(f"{key}: {value}")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
