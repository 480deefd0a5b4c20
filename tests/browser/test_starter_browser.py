"""The shipped shapes model in a real browser: what the prompt asks for is what the downloaded picture shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.starter import STARTER_CHECKPOINT, STARTER_LORA
from training.measure import measure, stripe_strength
from training.models import CHECKPOINT, LORA

pytestmark = pytest.mark.skipif(
    not (CHECKPOINT.exists() and LORA.exists()), reason="the shipped shapes model has not been trained yet (training/)"
)


@pytest.fixture(scope="module")
def browser_models(tmp_path_factory) -> Path:
    """A models folder holding only the shipped files (linked, not copied), as on a fresh install."""
    root = tmp_path_factory.mktemp("starter-models")
    for source, folder in ((CHECKPOINT, root / "Stable-diffusion" / "shapes"), (LORA, root / "Lora")):
        folder.mkdir(parents=True)
        (folder / source.name).symlink_to(source)
    return root


def test_the_picture_shows_what_the_prompt_says(open_page):
    studio = open_page()
    assert studio.chosen("checkpoint").startswith(STARTER_CHECKPOINT)
    studio.fill("txt2img_prompt", "a large red circle at the top left on a blue background")
    studio.set_slider("txt2img_width", 128)
    studio.set_slider("txt2img_height", 128)
    studio.fill("txt2img_seed", "3")
    studio.generate()
    [picture] = studio.gallery_images()
    found = measure(picture)
    assert (found.background, found.objects[0].colour, found.objects[0].position) == ("blue", "red", "top left")

    studio.fill("txt2img_prompt", f"a large red circle at the top left on a blue background <lora:{STARTER_LORA}:1>")
    studio.generate()
    [striped] = studio.gallery_images()
    assert stripe_strength(striped, measure(striped)) > 0.04 > stripe_strength(picture, found)
