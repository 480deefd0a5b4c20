"""Every output panel shows the whole picture: a small result (128×96) fitted inside the panel, not cropped, with
its size written under it, and scaled up without blur; a tall one fitted too."""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZES = ((128, 96), (64, 256))


def shown(studio, tab: str) -> dict:
    """The gallery's main image as laid out: its box, the panel's box, and its computed fit and rendering."""
    return studio.page.evaluate(
        """(tab) => {
          const panel = document.querySelector(`#${tab}_gallery`);
          const imgs = [...panel.querySelectorAll('img')];
          const img = imgs.sort((a, b) => b.clientWidth * b.clientHeight - a.clientWidth * a.clientHeight)[0];
          const r = img.getBoundingClientRect(), p = panel.getBoundingClientRect(), s = getComputedStyle(img);
          return { img: [r.left, r.top, r.right, r.bottom], panel: [p.left, p.top, p.right, p.bottom],
                   fit: s.objectFit, rendering: s.imageRendering, natural: [img.naturalWidth, img.naturalHeight],
                   box: [img.clientWidth, img.clientHeight], text: panel.innerText };
        }""",
        tab,
    )


def test_small_and_tall_results_are_shown_whole_with_their_size(open_page, tmp_path):
    studio = open_page()
    page = studio.page
    page.get_by_role("tab", name="img2img").click()
    for width, height in SIZES:
        source = tmp_path / f"{width}x{height}.png"
        Image.fromarray((np.random.default_rng(1).random((height, width, 3)) * 255).astype(np.uint8)).save(source)
        page.locator("#img2img_image input[type=file]").set_input_files(str(source))
        page.wait_for_function(
            "w => document.querySelector('#img2img_width input[type=number]').value === String(w)", arg=width
        )
        studio.set_slider("img2img_steps", 2)
        studio.set_slider("img2img_denoising_strength", 0.3)
        studio.generate("img2img")
        layout = shown(studio, "img2img")
        left, top, right, bottom = layout["img"]
        p_left, p_top, p_right, p_bottom = layout["panel"]
        assert layout["natural"] == [width, height]
        assert left >= p_left - 1 and top >= p_top - 1 and right <= p_right + 1 and bottom <= p_bottom + 1
        assert layout["fit"] == "contain"  # the whole picture inside its box, never cropped
        assert f"{width}×{height}" in layout["text"]
        if layout["box"][0] > width:  # scaled up: crisp pixels, not a blur
            assert layout["rendering"] == "pixelated"
