"""The Extras tab in a real browser: upload a picture, upscale it by 2 with Lanczos, download the result and check
its size and PNG text (the source's parameters kept, A1111's postprocessing text added)."""

from __future__ import annotations

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import expect


def test_extras_upscales_and_keeps_the_parameters(open_page, app, tmp_path):
    source = tmp_path / "source.png"
    info = PngInfo()
    info.add_text("parameters", "a harbour\nSteps: 5, Sampler: Euler, Seed: 9, Size: 48x32")
    Image.new("RGB", (48, 32), (90, 120, 200)).save(source, pnginfo=info)
    studio = open_page()
    page = studio.page
    page.get_by_role("tab", name="Extras").click()
    page.locator("#extras_image input[type=file]").set_input_files(str(source))
    expect(page.locator("#extras_image img")).to_be_visible()
    studio.choose("extras_upscaler_1", "Lanczos")
    studio.click("extras_generate")
    expect(page.locator("#extras_gallery img").first).to_be_visible(timeout=60_000)
    [result] = studio.gallery_images("extras")
    assert result.size == (96, 64)
    assert result.info["parameters"] == "a harbour\nSteps: 5, Sampler: Euler, Seed: 9, Size: 48x32"
    assert result.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    expect(page.locator("#extras_info")).to_contain_text("Postprocess upscaler: Lanczos")
    saved = list(app.outputs.rglob("extras-images/*/*.png"))
    assert len(saved) == 1 and Image.open(saved[0]).size == (96, 64)


def test_a_folder_on_the_server_from_a_browser_on_its_machine(open_page, tmp_path):
    studio = open_page()
    page = studio.page
    page.get_by_role("tab", name="Extras").click()
    folder = tmp_path / "batch"
    folder.mkdir()
    for name, size in (("a.png", (16, 16)), ("b.jpg", (24, 8))):
        Image.new("RGB", size, (1, 2, 3)).save(folder / name)
    page.get_by_role("tab", name="Batch from Directory").click()
    studio.fill("extras_batch_input_dir", str(folder))
    studio.click("extras_generate")
    expect(page.locator("#extras_gallery")).to_contain_text("48×16", timeout=60_000)
    assert sorted(image.size for image in studio.gallery_images("extras")) == [(32, 32), (48, 16)]
