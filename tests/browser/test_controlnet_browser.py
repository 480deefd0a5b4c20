"""The ControlNet tab in a real browser: upload a control image, preview the canny map, generate with it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from playwright.sync_api import expect

UNIT = "controlnet_controlnet_0"


def test_upload_preview_the_canny_map_and_generate_with_it(open_page, tmp_path):
    picture = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(picture).rectangle((32, 32, 96, 96), fill="black")
    picture.save(tmp_path / "square.png")

    studio = open_page()
    studio.page.get_by_role("tab", name="ControlNet", exact=True).click()
    studio.page.locator(f"#{UNIT}_image input[type=file]").set_input_files(str(tmp_path / "square.png"))
    expect(studio.page.locator(f"#{UNIT}_enabled input")).to_be_checked()  # a new image enables the unit
    studio.choose(f"{UNIT}_module", "canny")
    expect(studio.page.locator(f"#{UNIT}_threshold_a")).to_be_visible()
    studio.click(f"{UNIT}_preview")
    preview = studio.page.locator(f"#{UNIT}_map img")
    expect(preview).to_be_visible(timeout=30_000)
    response = studio.page.request.get(preview.get_attribute("src"))
    edges = np.asarray(Image.open(io.BytesIO(response.body())).convert("L"))
    assert edges.max() == 255 and edges.mean() < 40, "a canny map: white edges of the square on black"

    studio.choose(f"{UNIT}_model", "tiny-sd1-canny.safetensors")
    studio.set_slider("controlnet_steps", 4)
    studio.set_slider("controlnet_width", 64)
    studio.set_slider("controlnet_height", 64)
    studio.fill("controlnet_prompt", "a square")
    infotext = studio.generate("controlnet")
    assert 'ControlNet 0: "Module: canny, Model: tiny-sd1-canny' in infotext
    [image] = studio.gallery_images("controlnet")
    assert image.size == (64, 64)
