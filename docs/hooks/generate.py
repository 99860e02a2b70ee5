"""mkdocs hook: generate the encoders table from the registry and the zoo pages from zoo/."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from mkdocs.structure.files import File

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]


def encoders_page() -> str:
    import keras_dynunet as kd

    lines = [
        "# Encoders",
        "",
        "Generated from the registry when the site is built (`keras-dynunet encoders` prints the",
        "same). Parameters are those of the headless encoder up to its deepest tap.",
        "",
        "| name | family | parameters | taps (key: stride / channels) | preprocessing "
        "| pretrained |",
        "|---|---|---:|---|---|---|",
    ]
    for name in kd.list_encoders():
        spec = kd.get_encoder_spec(name)
        params = kd.get_encoder(name).count_params()
        taps = ", ".join(f"{t.key}: {t.stride} / {t.channels}" for t in spec.taps)
        sources = ", ".join(f"{k} ({v.split('/')[-1]})" for k, v in spec.weight_sources.items())
        lines.append(
            f"| `{name}` | {spec.family} | {params / 1e6:.1f} M | {taps} | "
            f"{spec.preprocessing} | {sources or '-'} |"
        )
    return "\n".join(lines) + "\n"


def zoo_pages() -> dict[str, str]:
    pages = {}
    index = ["# Model zoo", "", "One card per checkpoint, generated from `zoo/*.yaml`.", ""]
    index += ["| name | status | dataset | repository |", "|---|---|---|---|"]
    for path in sorted((ROOT / "zoo").glob("*.yaml")):
        card = yaml.safe_load(path.read_text())
        name = card["name"]
        index.append(
            f"| [{name}]({name}.md) | {card.get('status', '')} | {card.get('dataset', '')} | "
            f"`{card.get('repo_id', '')}` |"
        )
        body = [f"# {name}", "", f"Status: **{card.get('status', '')}**", ""]
        body += ["```yaml", yaml.safe_dump(card, sort_keys=False).strip(), "```", ""]
        pages[f"zoo/{name}.md"] = "\n".join(body)
    pages["zoo/index.md"] = "\n".join(index) + "\n"
    return pages


def on_files(files, config):
    files.append(File.generated(config, "encoders.md", content=encoders_page()))
    for uri, content in zoo_pages().items():
        files.append(File.generated(config, uri, content=content))
    return files
