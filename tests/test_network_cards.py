"""The LoRA/embedding browser: cards from models/, previews beside the files, search, and the prompt toggle."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from core.network_cards import NetworkCard, network_cards
from core.registry import HashCache, ModelRegistry
from ui.network_browser import card_image, toggle_in_prompt


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    loras, embeddings = tmp_path / "Lora", tmp_path / "embeddings"
    (loras / "styles").mkdir(parents=True)
    embeddings.mkdir()
    for path in (loras / "detail.safetensors", loras / "styles" / "pastel.v2.safetensors", loras / "old.pt"):
        path.write_bytes(b"x")
    Image.new("RGB", (300, 200), (250, 10, 10)).save(loras / "styles" / "pastel.v2.preview.png")
    Image.new("RGB", (64, 64), (10, 250, 10)).save(loras / "detail.png")
    (embeddings / "easynegative.safetensors").write_bytes(b"x")
    (loras / "notes.txt").write_text("not a model")
    return ModelRegistry(tmp_path, HashCache(tmp_path / "cache.json"))


def test_cards_list_files_with_their_previews(registry):
    cards = {card.relative_name: card for card in network_cards(registry, "lora")}
    assert set(cards) == {"detail.safetensors", "old.pt", "styles/pastel.v2.safetensors"}
    pastel = cards["styles/pastel.v2.safetensors"]
    assert pastel.name == "pastel.v2"
    assert pastel.preview == Path(registry.folder("lora")) / "styles" / "pastel.v2.preview.png"
    assert cards["detail.safetensors"].preview.name == "detail.png"
    assert cards["old.pt"].preview is None
    assert pastel.prompt_text == "<lora:pastel.v2:1>"
    [embedding] = network_cards(registry, "embedding")
    assert embedding.prompt_text == "easynegative"


def test_search_matches_name_and_folder_words(registry):
    assert [c.name for c in network_cards(registry, "lora", "STYLES pas")] == ["pastel.v2"]
    assert network_cards(registry, "lora", "nothing") == []


def test_card_images_are_previews_or_placeholders(registry):
    cards = {card.name: card for card in network_cards(registry, "lora")}
    preview = card_image(cards["pastel.v2"])
    assert preview.size == (160, 160) and preview.getpixel((80, 80)) == (250, 10, 10)
    placeholder = card_image(cards["old"])
    assert placeholder.size == (160, 160) and placeholder.getpixel((2, 2)) != (250, 10, 10)


LORA = NetworkCard("lora", "pastel", "pastel.safetensors", None)
EMBEDDING = NetworkCard("embedding", "easyneg", "easyneg.pt", None)


@pytest.mark.parametrize(
    ("prompt", "card", "expected"),
    [
        ("a cat", LORA, "a cat <lora:pastel:1>"),
        ("", LORA, "<lora:pastel:1>"),
        ("a cat <lora:pastel:0.4>", LORA, "a cat"),  # a second click removes it, whatever its weight
        ("a <lora:pastel:1> cat", LORA, "a cat"),
        ("a <lora:pastel2:1>", LORA, "a <lora:pastel2:1> <lora:pastel:1>"),
        ("blurry", EMBEDDING, "blurry, easyneg"),
        ("blurry, easyneg", EMBEDDING, "blurry"),
        ("easyneg_v2", EMBEDDING, "easyneg_v2, easyneg"),  # another name that starts the same is left alone
    ],
)
def test_click_toggles_the_tag(prompt, card, expected):
    assert toggle_in_prompt(prompt, card) == expected
