"""Sizes follow the model in a real browser: choosing an SDXL checkpoint moves txt2img to 1024×1024, back to SD1
to 512×512, a size the user set stays, and a size far from the checkpoint's own gets a hint."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.app_server import running_app
from tests.fixtures.tiny_models import write_checkpoint


@pytest.fixture(scope="module")
def app(tmp_path_factory):  # this module's own models: an SD1 and an SDXL checkpoint
    root = tmp_path_factory.mktemp("size-models")
    write_checkpoint(root / "Stable-diffusion" / "tiny-sd1.safetensors", "SD1")
    write_checkpoint(root / "Stable-diffusion" / "tiny-sdxl.safetensors", "SDXL")
    with running_app(root, tmp_path_factory.mktemp("size-app")) as running:
        yield running


def test_the_size_follows_the_checkpoint_until_the_user_changes_it(open_page):
    studio = open_page()
    page = studio.page
    width = page.locator("#txt2img_width input[type=number]")
    expect(width).to_have_value("512")
    studio.choose("checkpoint", "tiny-sdxl.safetensors")
    expect(width).to_have_value("1024")
    assert studio.slider("txt2img_height") == 1024
    studio.choose("checkpoint", "tiny-sd1.safetensors")
    expect(width).to_have_value("512")
    studio.set_slider("txt2img_width", 768)  # the user's own size: kept from now on
    studio.choose("checkpoint", "tiny-sdxl.safetensors")
    expect(page.locator("#txt2img_size_hint")).to_contain_text("SDXL draws best near 1024×1024")
    assert studio.slider("txt2img_width") == 768 and studio.slider("txt2img_height") == 512
