"""The shipped shapes model in a real browser: what the prompt asks for is what the downloaded picture shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.starter import STARTER_CHECKPOINT, STARTER_CONTROLNET, STARTER_LORA
from training.measure import measure, stripe_strength
from training.models import CHECKPOINT, CONTROLNET, LORA, MODELS
from training.scenes import Scene, SceneObject, render

SHIPPED = (CHECKPOINT, CONTROLNET, LORA)
UNIT = "controlnet_controlnet_0"


@pytest.fixture(scope="module")
def browser_models(tmp_path_factory) -> Path:
    """A models folder holding only the shipped files (linked, not copied), as on a fresh install."""
    root = tmp_path_factory.mktemp("starter-models")
    for source in SHIPPED:
        folder = root / source.parent.relative_to(MODELS)
        folder.mkdir(parents=True, exist_ok=True)
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


def test_the_lora_tag_stripes_the_object(open_page):
    studio = open_page()
    studio.set_slider("txt2img_width", 128)
    studio.set_slider("txt2img_height", 128)
    studio.fill("txt2img_seed", "3")
    pictures = []
    for weight in (0, 1):
        studio.fill(
            "txt2img_prompt", f"a large red circle at the top left on a blue background <lora:{STARTER_LORA}:{weight}>"
        )
        studio.generate()
        pictures.extend(studio.gallery_images())
    plain, striped = pictures
    assert stripe_strength(striped, measure(striped)) > 0.04 > stripe_strength(plain, measure(plain))


def test_controlnet_tab_puts_the_object_on_the_uploaded_edges(open_page, tmp_path):
    target = Scene("black", (SceneObject("triangle", "yellow", "large", "top right"),))
    render(target).save(tmp_path / "control.png")
    studio = open_page()
    studio.page.get_by_role("tab", name="ControlNet", exact=True).click()
    studio.page.locator(f"#{UNIT}_image input[type=file]").set_input_files(str(tmp_path / "control.png"))
    studio.choose(f"{UNIT}_module", "canny")
    studio.choose(f"{UNIT}_model", STARTER_CONTROLNET)
    studio.set_slider("controlnet_width", 128)
    studio.set_slider("controlnet_height", 128)
    studio.fill("controlnet_prompt", "a large yellow triangle on a black background")  # the edges say where
    studio.fill("controlnet_seed", "1")
    studio.generate("controlnet")
    [picture] = studio.gallery_images("controlnet")
    found = measure(picture)
    assert [(o.colour, o.position) for o in found.objects] == [("yellow", "top right")]
