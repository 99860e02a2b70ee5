"""Zoo cards: every card in zoo/ follows the schema; invalid cards are rejected clearly."""

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

import keras_dynunet as kd
from keras_dynunet.cli import main
from keras_dynunet.zoo import CardError, list_cards, load_card, validate_card, zoo_dirs

ROOT = Path(__file__).resolve().parent.parent
CARD_FILES = sorted((ROOT / "zoo").glob("*.yaml"))


def test_the_repository_ships_the_expected_cards():
    assert ROOT / "zoo" in zoo_dirs()
    assert {p.stem for p in CARD_FILES} >= {"ternaus-vgg11-carvana", "efficientnet-lite0-imagenet"}
    assert set(list_cards()) >= {p.stem for p in CARD_FILES}


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda p: p.stem)
def test_every_card_follows_the_schema(path):
    card = yaml.safe_load(path.read_text())
    validate_card(card, name=path.stem)
    assert load_card(path.stem) == card
    if card["status"] in ("recipe", "upstream"):
        assert all(m["value"] is None for m in card["metrics"])
    # A training script that does not exist yet must be admitted in the notes.
    script = card["training"]["script"]
    if "/" in script and not (ROOT / script).exists():
        assert script in card.get("notes", "") and "does not exist yet" in card["notes"]


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda p: p.stem)
def test_measured_numbers_name_a_runnable_test(path):
    card = yaml.safe_load(path.read_text())
    for metric in card["metrics"]:
        if metric["value"] is None:
            continue
        args = shlex.split(metric["command"])
        files = [a for a in args if a.startswith("tests/")]
        assert files, f"{metric['name']}: the command must run a test in this repository"
        test_file = ROOT / files[0]
        keyword = args[args.index("-k") + 1]
        assert re.search(rf"def test_\w*{re.escape(keyword)}", test_file.read_text())


def test_packaged_lite0_card_states_the_measured_probabilities():
    card = load_card("efficientnet-lite0-imagenet")
    assert card["status"] == "packaged" and card["repo_id"] is None
    assert [m["value"] for m in card["metrics"]] == [0.790, 0.906]
    assert "285" in card["metrics"][0]["name"] and "967" in card["metrics"][1]["name"]


def _card():
    return copy.deepcopy(load_card("ternaus-vgg11-carvana"))


def _with(**changes):
    card = _card()
    for key, value in changes.items():
        if value is ...:
            del card[key]
        else:
            card[key] = value
    return card


_PUBLISHED = {"status": "published", "repo_id": "acme/model", "revision": "a" * 40}


@pytest.mark.parametrize(
    ("card", "message"),
    [
        (_with(metrics=...), r"missing required key\(s\) \['metrics'\]"),
        (_with(licence="mit"), r"unknown key 'licence' \(did you mean 'license'\?\)"),
        (
            _with(status="draft"),
            r"status must be one of \['published', 'recipe', 'packaged', 'embedded', 'upstream'\]",
        ),
        (
            _with(metrics=[{"name": "IoU", "value": 0.9, "how_measured": "x", "command": "y"}]),
            r"metrics\[0\]\.value must be null for a 'recipe' card \(got 0\.9\)",
        ),
        (
            _with(**_PUBLISHED),  # published with the recipe's null metrics
            r"metrics\[0\]\.value must be the measured number for a 'published' card",
        ),
        (_with(**{**_PUBLISHED, "revision": "main"}), "revision must be the full 40-hex commit"),
        (_with(revision="a" * 40), "revision must be null for a 'recipe' card"),
        (_with(repo_id="not a repo"), "repo_id must be 'org/name' or null"),
        (
            _with(architecture={"model_class": "os>system", "encoder": "x", "decoder": {}}),
            "architecture.model_class must be one of",
        ),
        (_with(preprocessing="zscore"), "preprocessing must be one of"),
        (_with(input_size=[1280]), r"input_size must be \[height, width\]"),
        (
            _with(metrics=[{"name": "IoU", "value": None, "command": "y"}]),
            r"metrics\[0\] is missing 'how_measured'",
        ),
        (_with(training={"arguments": {}}), "training.script must be a non-empty string"),
        (_with(dataset="carvana"), "dataset must be a mapping with a non-empty 'name'"),
        (_with(status="packaged"), r"a 'packaged' card needs package: \{name, version\}"),
        (_with(name="Other Name"), "name must be lowercase"),
    ],
)
def test_invalid_cards_are_rejected_with_the_key_named(card, message):
    with pytest.raises(CardError, match=message):
        validate_card(card, name="ternaus-vgg11-carvana" if card.get("name") else None)


def test_every_problem_is_reported_at_once_and_names_must_match_files():
    with pytest.raises(CardError) as info:
        validate_card(_with(status="draft", license="", preprocessing="x"))
    assert str(info.value).count(";") >= 2
    with pytest.raises(CardError, match="must equal the file name 'other'"):
        validate_card(_card(), name="other")
    with pytest.raises(CardError, match="must be a YAML mapping"):
        validate_card(["not", "a", "mapping"])


def test_unknown_and_broken_cards(tmp_path, monkeypatch):
    with pytest.raises(CardError, match=r"No zoo card 'ternaus-vgg11-carvan'.*Did you mean"):
        load_card("ternaus-vgg11-carvan")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    monkeypatch.setenv("KERAS_DYNUNET_ZOO", str(tmp_path))
    with pytest.raises(CardError, match="is not valid YAML"):
        load_card("broken")


def test_cli_zoo_list_and_show(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ternaus-vgg11-carvana\s+recipe\s+keras_dynunet>TernausUNet11", out)
    assert re.search(r"efficientnet-lite0-imagenet\s+packaged", out)
    assert main(["zoo", "show", "efficientnet-lite0-imagenet"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == load_card("efficientnet-lite0-imagenet")
    assert main(["zoo", "show", "nope"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No zoo card 'nope'")


@pytest.mark.parametrize("command", ["pull", "push", "zoo"])
def test_cli_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: keras-dynunet " + command in capsys.readouterr().out


def test_every_imagenet_encoder_family_has_a_card():
    cards = [load_card(name) for name in list_cards()]
    weight_cards = [c for c in cards if c["status"] in ("upstream", "packaged")]
    for encoder in kd.list_encoders():
        if "imagenet" not in kd.get_encoder_spec(encoder).weight_sources:
            continue
        assert any(
            encoder == c["architecture"]["encoder"] or encoder in c.get("description", "")
            for c in weight_cards
        ), f"no zoo card describes the ImageNet weights of {encoder!r}"
