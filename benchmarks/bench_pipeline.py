"""Images/s delivered by ``SegmentationDataset`` vs the U-Net training throughput.

The dataset draws 256x256 crops (batch 8) from synthetic 512x512 nuclei images with the default
:class:`keras_dynunet.Augmentation` (flips, rot90, intensity) and U-Net weight maps, i.e. the
work done per batch in a ``model.fit`` on instance-segmentation data. Dataset construction
(targets and weight maps, computed once per full image) is timed separately.

The training throughput of the resnet34 U-Net at 256x256 batch 8 is read from
``benchmarks/results/throughput.json`` (``bench_throughput.py``; best Keras runner) or, when
absent, measured here on the current Keras backend. The ratio pipeline/training should be
>= 5 so that data loading never starves training.

Run from the repository root: ``python benchmarks/bench_pipeline.py [--quick]``.
Writes ``benchmarks/results/pipeline.json`` atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from bench_common import write_json_atomic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from keras_dynunet import Augmentation, SegmentationDataset
from keras_dynunet.instances import synthetic_dataset

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "pipeline.json"
THROUGHPUT = HERE / "results" / "throughput.json"


def training_throughput(path: Path, batch: int) -> tuple[float, str]:
    """Best measured resnet34 256xbatch train images/s of a keras-dynunet runner."""
    if path.exists():
        data = json.loads(path.read_text())
        best = None
        for res in data.get("results", []):
            references = ("smp", "smp-malloc", "sm-keras")
            if res.get("model") != "resnet34" or res.get("runner") in references:
                continue
            for row in res.get("rows", []):
                matches = row["size"] == 256 and row["batch"] == batch
                if matches and (best is None or row["train_img_s"] > best[0]):
                    best = (row["train_img_s"], f"{path.name}: {res['runner']}")
        if best:
            return best
    import keras

    import keras_dynunet as kd

    model = kd.build_unet("resnet34", classes=1)
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((batch, 256, 256, 3), "f")
    y = (rng.random((batch, 256, 256, 1)) > 0.5).astype("f")
    model.train_on_batch(x, y)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times)), f"measured here ({keras.backend.backend()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches (20)")
    parser.add_argument("--images", type=int, default=16, help="synthetic 512x512 images")
    parser.add_argument("--batches", type=int, default=100, help="batches to time")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    batches = 20 if args.quick else args.batches

    images, labels = synthetic_dataset(args.images, (512, 512), seed=0)
    start = time.perf_counter()
    ds = SegmentationDataset(
        list(images),
        list(labels),
        batch_size=args.batch_size,
        crop_size=(args.crop, args.crop),
        weight_map=True,
        augment=Augmentation(),
        steps_per_epoch=batches,
        seed=0,
    )
    build_s = time.perf_counter() - start
    ds[0]  # warm-up
    cpu0, start = time.process_time(), time.perf_counter()
    for i in range(len(ds)):
        x, y = ds[i]
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    pipeline = batches * args.batch_size / wall
    train, source = training_throughput(THROUGHPUT, args.batch_size)
    with open("/proc/loadavg") as handle:
        load = handle.read().strip()
    payload = {
        "images": args.images,
        "image_size": 512,
        "crop": args.crop,
        "batch_size": args.batch_size,
        "batches": batches,
        "x_shape": list(x.shape),
        "y_shape": list(y.shape),
        "dataset_build_s": build_s,
        "dataset_build_s_per_image": build_s / args.images,
        "pipeline_img_s": pipeline,
        "pipeline_ms_per_batch": 1000 * wall / batches,
        "pipeline_cpu_utilisation": cpu / wall,
        "train_img_s": train,
        "train_source": source,
        "ratio": pipeline / train,
        "goal_ratio": 5.0,
        "loadavg": load,
    }
    print(f"dataset build ({args.images} x 512x512, targets + weight maps): {build_s:.2f} s")
    print(
        f"pipeline: {pipeline:.1f} img/s ({1000 * wall / batches:.1f} ms/batch of "
        f"{args.batch_size}x{args.crop}x{args.crop}, 1 worker, CPU {cpu / wall:.2f} cores)"
    )
    print(f"train resnet34 256x{args.batch_size}: {train:.2f} img/s ({source})")
    verdict = "OK" if payload["ratio"] >= 5 else "BELOW GOAL"
    print(f"ratio pipeline/train: {payload['ratio']:.1f}x (goal >= 5x: {verdict})  load {load}")
    write_json_atomic(args.json, payload)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
