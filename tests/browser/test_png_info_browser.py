"""The PNG Info tab in a real browser: drop an image, read its parameters (PNG text or JPEG EXIF), Send to txt2img
fills prompt, seed, size, sampler and the Hires fix fields; an image without parameters says so."""

from __future__ import annotations

import re

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import expect

INFOTEXT = (
    "a lighthouse at dusk\nNegative prompt: fog\nSteps: 7, Sampler: Euler a, Schedule type: Automatic, CFG scale: 5, "
    "Seed: 4242, Size: 96x64, Model: tiny-sd1, Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 3, "
    "Hires upscaler: Latent (bicubic)"
)


def test_png_info_reads_the_parameters_and_sends_them_to_txt2img(open_page, tmp_path):
    png = tmp_path / "with-parameters.png"
    info = PngInfo()
    info.add_text("parameters", INFOTEXT)
    Image.new("RGB", (96, 64), (10, 20, 30)).save(png, pnginfo=info)
    studio = open_page()
    page = studio.page
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(png))
    expect(page.locator("#pnginfo_parameters textarea")).to_have_value(INFOTEXT)
    expect(page.locator("#pnginfo_table")).to_contain_text("Hires upscaler")

    studio.click("pnginfo_send_to_txt2img")
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a lighthouse at dusk")
    assert studio.text("txt2img_neg_prompt") == "fog"
    expect(page.locator("#txt2img_seed input")).to_have_value("4242")
    assert studio.slider("txt2img_width") == 96 and studio.slider("txt2img_steps") == 7
    assert studio.chosen("txt2img_sampler") == "Euler a"
    assert page.locator("#txt2img_enable_hr input[type=checkbox]").is_checked()
    assert studio.slider("txt2img_hr_scale") == 1.5 and studio.slider("txt2img_hires_steps") == 3
    assert studio.slider("txt2img_denoising") == 0.45 and studio.chosen("txt2img_hr_upscaler") == "Latent (bicubic)"

    page.get_by_role("tab", name="PNG Info").click()
    studio.click("pnginfo_send_to_extras")
    expect(page.locator("#extras_image img")).to_be_visible()  # the Extras tab opens with the picture


def test_an_image_without_parameters_says_so(open_page, tmp_path):
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (32, 32), (200, 0, 0)).save(plain)
    studio = open_page()
    studio.page.get_by_role("tab", name="PNG Info").click()
    studio.page.locator("#pnginfo_image input[type=file]").set_input_files(str(plain))
    expect(studio.page.locator("#pnginfo_parameters textarea")).to_have_value(
        "This image holds no generation parameters (no PNG 'parameters' text, no EXIF comment)."
    )


def test_send_to_controlnet_fills_the_units_the_infotext_names(open_page, tmp_path):
    unit = ("Module: canny, Model: tiny-sd1-canny [0123456789], Weight: 0.8, Resize Mode: Just Resize, "
            "Processor Res: 256, Threshold A: 100, Threshold B: 200, Guidance Start: 0.1, Guidance End: 0.9, "
            "Pixel Perfect: False, Control Mode: My prompt is more important")  # fmt: skip
    png = tmp_path / "controlled.png"
    info = PngInfo()
    info.add_text("parameters", f'a box\nSteps: 4, Sampler: Euler, Seed: 5, Size: 64x64, ControlNet 0: "{unit}"')
    Image.new("RGB", (64, 64)).save(png, pnginfo=info)
    studio = open_page()
    page = studio.page
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(png))
    expect(page.locator("#pnginfo_parameters textarea")).to_have_value(re.compile("ControlNet 0"))
    studio.click("pnginfo_send_to_controlnet")
    expect(page.locator("#controlnet_prompt textarea")).to_have_value("a box")
    assert page.locator("#controlnet_controlnet_0_enabled input[type=checkbox]").is_checked()
    assert studio.chosen("controlnet_controlnet_0_module") == "canny"
    assert studio.chosen("controlnet_controlnet_0_model") == "tiny-sd1-canny.safetensors"
    assert studio.slider("controlnet_controlnet_0_weight") == 0.8
    assert studio.slider("controlnet_controlnet_0_end") == 0.9
    mode = page.locator("#controlnet_controlnet_0_mode input[value='My prompt is more important']")
    expect(mode).to_be_checked()
