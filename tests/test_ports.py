"""Safe PyTorch checkpoint reading and the real EfficientNet-Lite0 ImageNet weights."""

import io
import pickle
import zipfile

import numpy as np
import pytest
import skimage.data
import skimage.transform

import keras_dynunet as kd
from keras_dynunet.encoders.efficientnet_lite import build_efficientnet_lite0
from keras_dynunet.ports import UnsafeCheckpointError, read_torch_checkpoint
from keras_dynunet.ports.efficientnet_lite import load_lite0_imagenet


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("KERAS_DYNUNET_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize(
    ("image", "label", "prob"), [("chelsea", 285, 0.790), ("coffee", 967, 0.906)]
)
def test_lite0_imagenet_classifies_real_photos(image, label, prob):
    model = build_efficientnet_lite0((224, 224, 3), include_top=True)
    load_lite0_imagenet(model)
    pixels = getattr(skimage.data, image)()
    x = skimage.transform.resize(pixels, (224, 224), preserve_range=True, anti_aliasing=True)
    x = ((x.astype("float32") - 127.0) / 128.0)[None]
    p = _softmax(model.predict(x, verbose=0)[0])
    assert int(p.argmax()) == label
    # 0.7904 / 0.9055 measured here; the numpy reference forward pass gave about 0.79 / 0.91.
    assert abs(float(p.max()) - prob) < 2e-3


def test_get_encoder_with_imagenet_weights_loads_the_same_tensors():
    encoder = kd.get_encoder("efficientnet-lite0", weights="imagenet")
    full = build_efficientnet_lite0((224, 224, 3), include_top=True)
    load_lite0_imagenet(full)
    for name in ("conv_stem", "blocks_7_bn1", "blocks_15_project_conv"):
        for a, b in zip(encoder.get_layer(name).weights, full.get_layer(name).weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    model = kd.build_unet("efficientnet-lite0", encoder_weights="imagenet", classes=1)
    np.testing.assert_array_equal(
        model.encoder.get_layer("conv_stem").kernel.numpy(),
        full.get_layer("conv_stem").kernel.numpy(),
    )


class _Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_reader_refuses_code_and_reports_corruption(tmp_path):
    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": _Evil()}))
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.print"):
        read_torch_checkpoint(evil)
    legacy = tmp_path / "legacy.pth"
    buffer = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {}):
        pickle.dump(obj, buffer, protocol=2)
    pickle.dump(_Evil(), buffer, protocol=2)
    legacy.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeCheckpointError):
        read_torch_checkpoint(legacy)
    from keras_dynunet.ports.efficientnet_lite import package_checkpoint

    truncated = tmp_path / "truncated.pth"
    with open(package_checkpoint(), "rb") as source:
        truncated.write_bytes(source.read(500_000))
    with pytest.raises(ValueError, match="truncated"):
        read_torch_checkpoint(truncated)
    with pytest.raises(FileNotFoundError):
        read_torch_checkpoint(tmp_path / "missing.pth")


def test_reader_matches_torch_on_a_zip_checkpoint(tmp_path):
    import torch

    state = {
        "a.weight": torch.arange(12.0).reshape(3, 4).t(),
        "b.bias": torch.tensor([1, 2], dtype=torch.int64),
    }
    path = tmp_path / "z.pth"
    torch.save(state, path)
    loaded = read_torch_checkpoint(path)
    np.testing.assert_array_equal(loaded["a.weight"], state["a.weight"].numpy())
    np.testing.assert_array_equal(loaded["b.bias"], [1, 2])
    legacy = tmp_path / "l.pth"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(
        read_torch_checkpoint(legacy)["a.weight"], state["a.weight"].numpy()
    )
