"""Side-by-side throughput of keras-dynunet and segmentation_models_pytorch (and qubvel's Keras
``segmentation-models`` 1.0.1) on CPU.

For every (runner, model, shape) this measures, in a fresh subprocess per (runner, model):

* inference images/s (``model.predict_on_batch`` after warm-up; SMP: ``model(x)`` under
  ``torch.inference_mode``),
* train-step images/s (``model.train_on_batch`` after warm-up, Adam + BCE on logits; SMP:
  the equivalent hand-written step),
* analytic GFLOPs per image (forward; ``2*k*k*Cin/groups*Cout*Hout*Wout`` summed over
  convolutions and dense layers; transposed convolutions use the input size) and the achieved
  GFLOP/s (training counted as 3x forward),
* model build time, parameter count and peak RSS (``ru_maxrss``) of the subprocess.

Runners: ``tensorflow-xla`` / ``tensorflow`` (Keras ``compile(jit_compile=True/False)``),
``jax``, ``torch`` (Keras backends), ``smp`` (PyTorch: SMP's ``Unet``, and for ``ternaus-vgg11``
the ``ternausnet`` package's ``UNet11``), ``smp-malloc`` (the same, with the glibc malloc
settings that ``import keras_dynunet`` applies on the PyTorch backend,
:mod:`keras_dynunet.cpu_allocator`: the like-for-like reference for the ``torch`` runner)
and ``sm-keras`` (qubvel's Keras
``segmentation-models``, needs ``pip install segmentation-models==1.0.1``). A float32 matmul
peak (numpy and torch, 2048x2048) and the ``import keras_dynunet`` time are measured in the
same run.

The machine's speed drifts during a long run, so runners are
measured model by model (every runner on one model, then the next model), and
``--rounds N`` repeats the whole sweep N times, reversing the runner order every other round;
each cell then reports its fastest round (the round least slowed by interference, the same
rule for every runner), and the JSON keeps every round.

Run from the repository root::

    python benchmarks/bench_throughput.py --quick
    python benchmarks/bench_throughput.py --rounds 2 --budget 20
    python benchmarks/bench_throughput.py --backends tensorflow,jax --models resnet34

Results are printed as a table and written atomically to
``benchmarks/results/throughput.json``. Benchmarks never assert wall-clock limits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import KERAS_RUNNER_SETTINGS, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "throughput.json"
MODELS = ("resnet34", "efficientnet-b0", "ternaus-vgg11")
SHAPES = ((256, 8), (512, 2))  # (image size, batch)
KERAS_RUNNERS = tuple(KERAS_RUNNER_SETTINGS)
SMP_RUNNERS = ("smp", "smp-malloc")
ALL_RUNNERS = (*KERAS_RUNNERS, *SMP_RUNNERS, "sm-keras")
SMP_NAMES = {"resnet34": "resnet34", "efficientnet-b0": "efficientnet-b0", "ternaus-vgg11": None}
SM_KERAS_NAMES = {"resnet34": "resnet34", "efficientnet-b0": "efficientnetb0"}


def thread_env(threads: int, backend: str | None = None) -> dict[str, str]:
    """Environment that pins every runtime to ``threads`` compute threads."""
    env = dict(os.environ)
    n = str(threads)
    env.update(
        OMP_NUM_THREADS=n,
        MKL_NUM_THREADS=n,
        OPENBLAS_NUM_THREADS=n,
        TF_NUM_INTRAOP_THREADS=n,
        TF_CPP_MIN_LOG_LEVEL="3",
        # No thread-count flag exists for XLA:CPU (it uses every core, 2 here). A bare
        # "intra_op_parallelism_threads=2" token, as earlier versions of this script had,
        # silently made XLA ignore every later flag.
        XLA_FLAGS="--xla_cpu_multi_thread_eigen=true",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    if backend:
        env["KERAS_BACKEND"] = backend
    env["SM_FRAMEWORK"] = "tf.keras"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


# ----------------------------------------------------------------------------- FLOP counting


def keras_conv_flops(model) -> float:
    """Forward FLOPs of one batch element, from the layer shapes of a fixed-size Keras model."""
    import keras
    import numpy as np

    total = 0.0
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
            continue
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) and not (
            isinstance(layer, (keras.layers.Dense, keras.layers.Conv2DTranspose))
        ):
            continue
        for node in layer._inbound_nodes:
            out = node.outputs[0].shape
            inp = node.input_tensors[0].shape
            kernel = tuple(layer.kernel.shape)
            if isinstance(layer, keras.layers.Conv2DTranspose):
                kh, kw, cout, cin = kernel  # Keras stores (kh, kw, out, in)
                total += 2.0 * kh * kw * cin * cout * inp[1] * inp[2]
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                kh, kw, cin, mult = kernel
                total += 2.0 * kh * kw * cin * mult * out[1] * out[2]
            elif isinstance(layer, keras.layers.Conv2D):
                kh, kw, cin_g, cout = kernel
                total += 2.0 * kh * kw * cin_g * cout * out[1] * out[2]
            else:  # Dense
                cin, cout = kernel
                total += 2.0 * cin * cout * float(np.prod(out[1:-1] or (1,)))
    return total


def torch_conv_flops(model, size: int) -> float:
    import torch

    total = [0.0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.ConvTranspose2d):
            cin, cout_g, kh, kw = module.weight.shape
            h, w = inputs[0].shape[-2:]
            total[0] += 2.0 * kh * kw * cin * cout_g * module.groups * h * w
        elif isinstance(module, torch.nn.Conv2d):
            cout, cin_g, kh, kw = module.weight.shape
            total[0] += 2.0 * kh * kw * cin_g * cout * output.shape[-2] * output.shape[-1]
        else:
            total[0] += 2.0 * module.in_features * module.out_features * output[0, ..., 0].numel()

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))
    ]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total[0]


# ----------------------------------------------------------------------------- timing


def timed(fn, warmup: int, repeat: int, budget: float) -> dict:
    """Median/best of up to ``repeat`` calls, stopping once ``budget`` seconds are spent."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeat and (not times or sum(times) < budget):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    repeat = len(times)
    times.sort()
    return {"median_s": times[len(times) // 2], "best_s": times[0], "repeat": repeat}


def _cpu_allocator():
    """``keras_dynunet.cpu_allocator`` loaded from its file, without importing keras_dynunet
    (which would import Keras and a backend into the SMP process)."""
    import importlib.util

    path = ROOT / "keras_dynunet" / "cpu_allocator.py"
    spec = importlib.util.spec_from_file_location("_bench_cpu_allocator", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(spec: dict) -> dict:
    """Measure one (runner, model) in this process; returns a result dict."""
    runner, name, threads = spec["runner"], spec["model"], spec["threads"]
    warmup, repeat = spec["warmup"], (spec["repeat"], spec["budget"])
    import numpy as np

    rows = []
    out: dict = {"runner": runner, "model": name, "rows": rows}
    if runner in SMP_RUNNERS:
        if runner == "smp-malloc":
            out["malloc"] = _cpu_allocator().tune_cpu_allocator()
        import torch

        torch.set_num_threads(threads)
        import segmentation_models_pytorch as smp

        out["torch_threads"] = torch.get_num_threads()
        start = time.perf_counter()
        if name == "ternaus-vgg11":  # the PyTorch reference of our TernausUNet11
            import ternausnet.models

            model = ternausnet.models.UNet11(pretrained=False)
        else:
            model = smp.Unet(SMP_NAMES[name], encoder_weights=None, classes=1)
        # bfloat16 autocast is PyTorch's mixed precision (float32 weights, bf16 compute)
        autocast = torch.autocast(
            "cpu", dtype=torch.bfloat16, enabled=spec["precision"] != "float32"
        )
        out["build_s"] = time.perf_counter() - start
        out["params"] = sum(p.numel() for p in model.parameters())
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for size, batch in spec["shapes"]:
            x = torch.from_numpy(np.random.default_rng(0).random((batch, 3, size, size), "f"))
            y = (torch.rand(batch, 1, size, size) > 0.5).float()
            flops = torch_conv_flops(model, size)

            def infer(x=x):
                model.eval()
                with torch.inference_mode(), autocast:
                    model(x)

            def train(x=x, y=y):
                model.train()
                opt.zero_grad(set_to_none=True)
                with autocast:
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
                loss.backward()
                opt.step()

            rows.append(measure(size, batch, flops, infer, train, warmup, repeat))
    else:
        if runner.startswith("tensorflow") or runner == "sm-keras":
            import tensorflow as tf  # before keras: set threading before any op runs

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            out["tf_threads"] = [
                tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads(),
            ]
        import keras

        if keras.backend.backend() == "torch":
            import torch

            torch.set_num_threads(threads)
            out["torch_threads"] = torch.get_num_threads()
        out["keras_backend"] = keras.backend.backend()
        # every layer built from here on (ours, sm-keras') uses this policy
        keras.config.set_dtype_policy(spec["precision"])

        def build(input_shape=(None, None, 3)):
            if runner == "sm-keras":
                import segmentation_models as sm

                shape = (None, None, 3) if input_shape[0] is None else input_shape
                return sm.Unet(
                    SM_KERAS_NAMES[name], encoder_weights=None, classes=1, input_shape=shape
                )
            import keras_dynunet as kd

            if name.startswith("ternaus"):
                return kd.build_model(name, input_shape=input_shape)
            return kd.build_unet(name, classes=1, input_shape=input_shape)

        start = time.perf_counter()
        model = build()
        out["build_s"] = time.perf_counter() - start
        out["params"] = model.count_params()
        out["xla_flags"] = os.environ.get("XLA_FLAGS", "")  # incl. keras_dynunet's JAX tuning
        if runner != "sm-keras":  # what import keras_dynunet set (PyTorch backend only)
            from keras_dynunet.cpu_allocator import apply_cpu_allocator_tuning

            out["malloc"] = apply_cpu_allocator_tuning(keras.backend.backend())
        jit = KERAS_RUNNER_SETTINGS.get(runner, (None, "auto"))[1]  # sm-keras: "auto"
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        out["jit_compile"] = jit
        for size, batch in spec["shapes"]:
            flops = keras_conv_flops(build((size, size, 3)))
            rng = np.random.default_rng(0)
            x = rng.random((batch, size, size, 3), "f")
            y = (rng.random((batch, size, size, 1)) > 0.5).astype("f")
            rows.append(
                measure(
                    size,
                    batch,
                    flops,
                    lambda x=x: model.predict_on_batch(x),
                    lambda x=x, y=y: model.train_on_batch(x, y),
                    warmup,
                    repeat,
                )
            )
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def measure(size, batch, flops, infer, train, warmup, repeat) -> dict:
    row = {"size": size, "batch": batch, "gflops_per_image": flops / 1e9}
    start = time.perf_counter()
    infer()
    row["first_infer_s"] = time.perf_counter() - start
    inf = timed(infer, max(warmup - 1, 0), *repeat)
    start = time.perf_counter()
    train()
    row["first_train_s"] = time.perf_counter() - start
    trn = timed(train, max(warmup - 1, 0), *repeat)
    row["infer_img_s"] = batch / inf["median_s"]
    row["train_img_s"] = batch / trn["median_s"]
    row["infer_gflop_s"] = row["infer_img_s"] * flops / 1e9
    row["train_gflop_s"] = row["train_img_s"] * 3 * flops / 1e9
    row["infer_times"], row["train_times"] = inf, trn
    return row


def matmul_peak(threads: int) -> dict:
    """float32 2048x2048 matmul GFLOP/s (numpy and torch), in a pinned subprocess."""
    code = f"""
import json, time, numpy as np
n = 2048
a = np.random.default_rng(0).random((n, n), dtype=np.float32)
b = a.copy()
def best(f, r=7):
    f(); ts = []
    for _ in range(r):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return 2 * n**3 / min(ts) / 1e9
out = {{"numpy_gflop_s": best(lambda: a @ b)}}
try:
    import torch
    torch.set_num_threads({threads})
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    out["torch_gflop_s"] = best(lambda: ta @ tb)
except ImportError:
    pass
print(json.dumps(out))
"""
    res = subprocess.run(
        [sys.executable, "-c", code],
        env=thread_env(threads),
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    tf_code = f"""
import json, time, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({threads})
a = tf.random.uniform((2048, 2048))
def best(r=7):
    tf.linalg.matmul(a, a).numpy(); ts = []
    for _ in range(r):
        t = time.perf_counter(); tf.linalg.matmul(a, a).numpy(); ts.append(time.perf_counter() - t)
    return 2 * 2048**3 / min(ts) / 1e9
print(json.dumps({{"tensorflow_gflop_s": best()}}))
"""
    res = subprocess.run(
        [sys.executable, "-c", tf_code], env=thread_env(threads), capture_output=True, text=True
    )
    if res.returncode == 0:
        out.update(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def import_time(threads: int) -> dict:
    code = (
        "import time, sys; t = time.perf_counter(); import keras_dynunet; "
        "import json; print(json.dumps({'import_s': time.perf_counter() - t, "
        "'torch': 'torch' in sys.modules, 'keras_hub': 'keras_hub' in sys.modules, "
        "'jax': 'jax' in sys.modules, 'tensorflow': 'tensorflow' in sys.modules}))"
    )
    out = {}
    for backend in ("tensorflow", "jax", "torch"):
        res = subprocess.run(
            [sys.executable, "-c", code],
            env=thread_env(threads, backend),
            capture_output=True,
            text=True,
            cwd=str(ROOT),
        )
        try:
            out[backend] = json.loads(res.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            out[backend] = {"error": res.stderr[-500:]}
    return out


def run_worker(spec: dict, timeout: float) -> dict:
    backend = {"smp": None, "sm-keras": "tensorflow"}.get(spec["runner"])
    if spec["runner"] in KERAS_RUNNER_SETTINGS:
        backend = KERAS_RUNNER_SETTINGS[spec["runner"]][0]
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    start = time.perf_counter()
    try:
        res = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec), "--json", path],
            env=thread_env(spec["threads"], backend),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(ROOT),
        )
        if res.returncode:
            lines = [ln for ln in res.stderr.splitlines() if ln[:5] not in ("I0000", "W0000")]
            return {**spec, "error": f"exit {res.returncode}: " + "\n".join(lines)[-1500:]}
        with open(path) as handle:
            result = json.load(handle)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timeout after {timeout:.0f} s"}
    finally:
        os.unlink(path)
    result["subprocess_wall_s"] = time.perf_counter() - start
    return result


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "keras",
        "tensorflow",
        "jax",
        "torch",
        "segmentation_models_pytorch",
        "segmentation-models",
        "numpy",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def machine() -> dict:
    model = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) / 1024**2
    return {"cpu": model, "cores": os.cpu_count(), "ram_gb": round(mem, 1)}


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return handle.read().strip()
    except OSError:
        return "n/a"


def print_table(results: list[dict], peak: dict) -> None:
    peak_gf = max(peak.values()) if peak else float("nan")
    header = (
        f"{'runner':<15}{'model':<16}{'params':>11}{'size':>5}{'bs':>3}{'GFLOP/img':>10}"
        f"{'infer img/s':>12}{'train img/s':>12}{'train GF/s':>11}{'%peak':>6}"
        f"{'build s':>8}{'RSS MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for res in results:
        if "error" in res:
            print(f"{res['runner']:<15}{res['model']:<16} ERROR: {res['error'].splitlines()[-1]}")
            continue
        for row in res["rows"]:
            print(
                f"{res['runner']:<15}{res['model']:<16}{res['params']:>11,}{row['size']:>5}"
                f"{row['batch']:>3}{row['gflops_per_image']:>10.1f}{row['infer_img_s']:>12.2f}"
                f"{row['train_img_s']:>12.2f}{row['train_gflop_s']:>11.1f}"
                f"{100 * row['train_gflop_s'] / peak_gf:>5.0f}%"
                f"{res['build_s']:>8.1f}{res['max_rss_mb']:>8.0f}"
                + _rounds_note(row)
            )


def _rounds_note(row: dict) -> str:
    """``"  rounds 2.15/2.30"``: every round's train images/s, where there was more than one."""
    figures = row.get("rounds_train_img_s", [])
    return "  rounds " + "/".join(f"{v:.2f}" for v in figures) if len(figures) > 1 else ""


def sweep(runners: list[str], models: list[str], rounds: int) -> list[tuple[int, str, str]]:
    """(round, runner, model) in measuring order: model by model, the runner order reversed
    every other round, so no runner is always measured first or last.

    >>> sweep(["jax", "smp"], ["resnet34", "vgg"], 2)  # doctest: +NORMALIZE_WHITESPACE
    [(0, 'jax', 'resnet34'), (0, 'smp', 'resnet34'), (0, 'jax', 'vgg'), (0, 'smp', 'vgg'),
     (1, 'smp', 'resnet34'), (1, 'jax', 'resnet34'), (1, 'smp', 'vgg'), (1, 'jax', 'vgg')]
    """
    order = []
    for round_ in range(rounds):
        ordered = runners if round_ % 2 == 0 else runners[::-1]
        order += [(round_, runner, model) for model in models for runner in ordered]
    return order


def fastest_rounds(measured: list[dict]) -> list[dict]:
    """One result per (runner, model): per shape, the round with the most inference and
    the round with the most training images/s (``rounds_infer_img_s`` / ``rounds_train_img_s``
    keep every round's figure); errors only where no round succeeded.

    >>> a = {"runner": "jax", "model": "m", "round": 0, "rows": [
    ...     {"size": 256, "infer_img_s": 2.0, "train_img_s": 1.0}]}
    >>> b = {"runner": "jax", "model": "m", "round": 1, "rows": [
    ...     {"size": 256, "infer_img_s": 1.5, "train_img_s": 1.2}]}
    >>> row = fastest_rounds([a, b])[0]["rows"][0]
    >>> row["infer_img_s"], row["train_img_s"], row["rounds_train_img_s"]
    (2.0, 1.2, [1.0, 1.2])
    """
    grouped: dict[tuple[str, str], list[dict]] = {}
    for res in measured:
        grouped.setdefault((res["runner"], res["model"]), []).append(res)
    out = []
    for results in grouped.values():
        ok = [res for res in results if "error" not in res]
        if not ok:
            out.append(results[-1])
            continue
        merged = {**ok[0], "rounds": len(ok), "rows": []}
        if all("max_rss_mb" in res for res in ok):
            merged["max_rss_mb"] = max(res["max_rss_mb"] for res in ok)
        for i, row in enumerate(ok[0]["rows"]):
            rows = [res["rows"][i] for res in ok]
            new = dict(row)
            for kind in ("infer", "train"):
                fastest = max(rows, key=lambda r, k=kind: r[f"{k}_img_s"])
                new[f"rounds_{kind}_img_s"] = [r[f"{kind}_img_s"] for r in rows]
                for key in (f"{kind}_img_s", f"{kind}_gflop_s", f"{kind}_times"):
                    if key in fastest:
                        new[key] = fastest[key]
            merged["rows"].append(new)
        out.append(merged)
    return out


def ratios(results: list[dict]) -> list[dict]:
    """keras-dynunet runners vs SMP and vs qubvel's Keras segmentation-models."""
    index = {}
    for res in results:
        for row in res.get("rows", []):
            index[(res["runner"], res["model"], row["size"])] = row
    out = []
    for (runner, model, size), row in sorted(index.items()):
        if runner not in KERAS_RUNNERS:
            continue
        for ref in (*SMP_RUNNERS, "sm-keras"):
            other = index.get((ref, model, size))
            if other:
                out.append(
                    {
                        "runner": runner,
                        "model": model,
                        "size": size,
                        "vs": ref,
                        "infer_ratio": row["infer_img_s"] / other["infer_img_s"],
                        "train_ratio": row["train_img_s"] / other["train_img_s"],
                    }
                )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        default=",".join(ALL_RUNNERS),
        help=f"comma list of runners: {', '.join(ALL_RUNNERS)}; 'tensorflow' alone in the "
        "list also adds 'tensorflow-xla' (jit_compile on and off)",
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma list of models")
    parser.add_argument("--threads", type=int, default=2, help="compute threads (default 2)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 warm-up call, at most 3 timed calls within 8 s per measurement, and only "
        "256x8 unless --sizes is given",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions (default 5)")
    parser.add_argument(
        "--budget", type=float, help="stop repeating after this many seconds (default 8/60)"
    )
    parser.add_argument("--sizes", help="SIZExBATCH list (default 256x8,512x2)")
    parser.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "mixed_bfloat16"),
        help="float32, or mixed_bfloat16: Keras runners build under that dtype policy "
        "(keras_dynunet's precision= option), the PyTorch runner under "
        "torch.autocast('cpu', bfloat16)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole sweep this many times (runner order reversed every other "
        "round) and report each cell's fastest round (default 1)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="per-subprocess timeout, s")
    parser.add_argument("--json", type=Path, default=RESULTS, help="output JSON path")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        write_json_atomic(args.json, worker(json.loads(args.worker)))
        return 0

    # "runner:modelA+modelB" restricts a runner to some models
    runners, only = [], {}
    for item in (r.strip() for r in args.backends.split(",")):
        if not item:
            continue
        runner, _, names = item.partition(":")
        runners.append(runner)
        if names:
            only[runner] = names.split("+")
    if "tensorflow" in runners and "tensorflow-xla" not in runners:
        runners.insert(runners.index("tensorflow"), "tensorflow-xla")
    unknown = set(runners) - set(ALL_RUNNERS)
    if unknown:
        parser.error(f"unknown runners {sorted(unknown)}; choose from {ALL_RUNNERS}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sizes = args.sizes or ("256x8" if args.quick else "256x8,512x2")
    shapes = [tuple(int(v) for v in s.split("x")) for s in sizes.split(",")]
    warmup, repeat = (1, 3) if args.quick else (2, args.repeat)
    budget = args.budget or (8.0 if args.quick else 60.0)

    started = time.time()
    payload: dict = {
        "machine": machine(),
        "versions": versions(),
        "threads": args.threads,
        "loadavg_start": loadavg(),
        "warmup": warmup,
        "repeat": repeat,
        "budget_s": budget,
        "shapes": shapes,
        "precision": args.precision,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
    }
    payload["matmul_peak"] = matmul_peak(args.threads)
    print(f"machine: {payload['machine']}  load: {payload['loadavg_start']}")
    print(f"precision: {args.precision}")
    print(f"matmul peak (float32 2048^2, {args.threads} threads): {payload['matmul_peak']}")
    payload["import"] = import_time(args.threads)
    print(f"import keras_dynunet: {payload['import']}")
    payload["rounds"] = args.rounds
    measured = []
    for round_, runner, model in sweep(runners, models, args.rounds):
        if runner in SMP_RUNNERS and model not in SMP_NAMES:
            continue
        if runner == "sm-keras" and model not in SM_KERAS_NAMES:
            continue
        if runner in only and model not in only[runner]:
            continue
        spec = {
            "runner": runner,
            "model": model,
            "threads": args.threads,
            "warmup": warmup,
            "repeat": repeat,
            "budget": budget,
            "shapes": shapes,
            "precision": args.precision,
        }
        res = {**run_worker(spec, args.timeout), "round": round_}
        measured.append(res)
        write_json_atomic(args.json, {**payload, "measured": measured, "partial": True})
        status = res.get("error", "").splitlines()[-1:] or [f"{res['subprocess_wall_s']:.0f} s"]
        line = f"  round {round_ + 1} {runner:<15}{model:<16}{status[0]}  load {loadavg()}"
        print(line, flush=True)
    results = fastest_rounds(measured)
    results.sort(key=lambda res: (runners.index(res["runner"]), models.index(res["model"])))
    payload["measured"] = measured
    payload["results"] = results
    payload["ratios"] = ratios(results)
    payload["loadavg_end"] = loadavg()
    payload["wall_s"] = time.time() - started
    print()
    print_table(results, payload["matmul_peak"])
    print()
    print("ratios (images/s of keras-dynunet runner / reference):")
    for r in payload["ratios"]:
        print(
            f"  {r['runner']:<15}{r['model']:<16}{r['size']:>4}  vs {r['vs']:<11}"
            f"infer {r['infer_ratio']:.2f}x  train {r['train_ratio']:.2f}x"
        )
    write_json_atomic(args.json, payload)
    print(f"\nwrote {args.json}  (load at end: {payload['loadavg_end']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
