"""Prompt tools in a real browser: the token counter follows typing, a LoRA card click adds its tag and the image's
infotext names the LoRA, a style saved from the page is applied and recorded."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from playwright.sync_api import expect
from safetensors.torch import save_file

from tests.fixtures.tiny_loras import kohya_lora, write_lora
from tests.fixtures.tiny_models import write_checkpoint


@pytest.fixture(scope="module")
def browser_models(tmp_path_factory) -> Path:
    """A tiny SD1 checkpoint, a LoRA for it with a preview picture, and an embedding."""
    root = tmp_path_factory.mktemp("prompt-models")
    write_checkpoint(root / "Stable-diffusion" / "tiny-sd1.safetensors", "SD1")
    write_lora(root / "Lora" / "styles" / "tiny-style.safetensors", kohya_lora("SD1", seed=3))
    Image.new("RGB", (64, 64), (200, 40, 40)).save(root / "Lora" / "styles" / "tiny-style.preview.png")
    (root / "embeddings").mkdir()
    save_file({"emb_params": torch.randn(2, 32)}, str(root / "embeddings" / "tiny-embed.safetensors"))
    return root


def addnet_hash(path: Path) -> str:
    """A1111's LoRA hash: sha256 of the bytes after the safetensors header, first 12 hex characters."""
    data = path.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[header:]).hexdigest()[:12]


def test_token_counter_follows_typing(open_page):
    studio = open_page()
    expect(studio.page.locator("#txt2img_token_counter .token-count")).to_have_text("0/75")
    studio.page.locator("#txt2img_prompt textarea").press_sequentially("a photo of a cat", delay=20)
    expect(studio.page.locator("#txt2img_token_counter .token-count")).to_have_text("5/75")
    studio.fill("txt2img_prompt", ", ".join(["red apple"] * 40))  # 2 tokens and a comma each: over one chunk
    expect(studio.page.locator("#txt2img_token_counter .token-count")).to_have_text(re.compile(r"^1\d\d/150$"))
    studio.fill("txt2img_neg_prompt", "blurry BREAK ugly")
    expect(studio.page.locator("#txt2img_negative_token_counter .token-count")).to_have_text("76/150")


def test_lora_card_adds_its_tag_and_the_infotext_names_it(open_page, browser_models):
    studio = open_page()
    studio.fill("txt2img_prompt", "a cat")
    studio.set_slider("txt2img_steps", 2)
    studio.set_slider("txt2img_width", 64)
    studio.set_slider("txt2img_height", 64)
    studio.page.locator("#txt2img_networks").get_by_text("LoRA and embeddings").click()
    cards = studio.page.locator("#txt2img_lora_cards")
    expect(cards.get_by_text("tiny-style")).to_be_visible()
    studio.fill("txt2img_networks_search", "nothing-matches")
    expect(cards.get_by_text("tiny-style")).to_have_count(0)
    studio.fill("txt2img_networks_search", "styles tiny")  # folder and name words
    cards.locator("img").first.click()
    prompt = studio.page.locator("#txt2img_prompt textarea")
    expect(prompt).to_have_value("a cat <lora:tiny-style:1>")
    infotext = studio.generate()
    lora = browser_models / "Lora" / "styles" / "tiny-style.safetensors"
    assert infotext.startswith("a cat <lora:tiny-style:1>\n")
    assert f'Lora hashes: "tiny-style: {addnet_hash(lora)}"' in infotext
    # The embedding tab inserts the embedding's name (the search filters both tabs: clear it first).
    studio.fill("txt2img_networks_search", "")
    studio.page.locator("#txt2img_networks").get_by_role("tab", name="Textual Inversion").click()
    studio.page.locator("#txt2img_embedding_cards img").first.click()
    expect(prompt).to_have_value("a cat <lora:tiny-style:1>, tiny-embed")
    assert studio.console_errors() == []


def test_style_saved_from_the_page_is_applied_and_recorded(open_page, app):
    studio = open_page()
    studio.set_slider("txt2img_steps", 2)
    studio.set_slider("txt2img_width", 64)
    studio.set_slider("txt2img_height", 64)
    studio.fill("txt2img_prompt", "{prompt}, film noir")
    studio.fill("txt2img_neg_prompt", "colourful")
    studio.page.locator("#txt2img_style_save_box").get_by_text("Save prompts as a style").click()
    studio.fill("txt2img_style_name", "noir")
    studio.click("txt2img_style_save")
    expect(studio.page.locator("#txt2img_style_message")).to_contain_text("Saved style")
    styles_file = app.work / "styles.csv"
    assert 'noir,"{prompt}, film noir",colourful' in styles_file.read_text(encoding="utf-8-sig")
    studio.fill("txt2img_prompt", "a dog")
    studio.fill("txt2img_neg_prompt", "")
    studio.add_choice("txt2img_styles", "noir")
    infotext = studio.generate()
    assert infotext.startswith("a dog, film noir\nNegative prompt: colourful\n"), infotext
    assert "Styles: noir" in infotext
    # Another tab's list learns of the new style with its refresh button.
    studio.page.get_by_role("tab", name="img2img").click()
    studio.click("img2img_styles_refresh")
    studio.add_choice("img2img_styles", "noir")
