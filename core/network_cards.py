"""The LoRAs and embeddings in models/ as cards for a browser: the name the prompt uses, its folder, its preview."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.registry import ModelRegistry

# A1111's preview file names next to the model file, in the order it looks for them.
PREVIEW_SUFFIXES = (".png", ".preview.png", ".jpg", ".preview.jpg", ".jpeg", ".preview.jpeg", ".webp", ".preview.webp")
KINDS = ("lora", "embedding")


@dataclass(frozen=True)
class NetworkCard:
    kind: str  # "lora" or "embedding"
    name: str  # the file's stem: what the prompt names
    relative_name: str  # path under its models folder, for search and tooltips
    preview: Path | None

    @property
    def prompt_text(self) -> str:
        """What a click adds to the prompt: A1111's LoRA tag at weight 1, or the embedding's name."""
        return f"<lora:{self.name}:1>" if self.kind == "lora" else self.name

    def matches(self, search: str) -> bool:
        return all(word in self.relative_name.lower() for word in search.lower().split())


def network_cards(registry: ModelRegistry, kind: str, search: str = "") -> list[NetworkCard]:
    if kind not in KINDS:
        raise ValueError(f"cards are for {KINDS}, not {kind!r}")
    cards = []
    for entry in registry.list(kind):
        if entry.path.is_dir():
            continue
        stem = entry.path.name[: -len(entry.path.suffix)] if entry.path.suffix else entry.path.name
        card = NetworkCard(kind, stem, entry.name, _preview(entry.path.with_name(stem)))
        if card.matches(search):
            cards.append(card)
    return cards


def _preview(base: Path) -> Path | None:
    for suffix in PREVIEW_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.is_file():
            return candidate
    return None
