"""The shipped shapes model family does what its prompts say, through the engine as a user runs it: colour and
position obeyed, img2img keeps the layout, inpainting recolours the masked object only, ControlNet places the
object on its edges, the LoRA stripes it. Checked with pixel measurements (training/measure.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.request import ControlNetUnit, GenerationRequest
from core.starter import STARTER_CHECKPOINT, STARTER_CONTROLNET, STARTER_LORA, STARTER_RESOLUTION
from tests.conftest import make_engine
from training.measure import measure, score, stripe_strength
from training.models import MODELS
from training.scenes import Scene, SceneObject, evaluation_prompts, object_box, render

SAMPLING = dict(sampler_name="DPM++ 2M", scheduler="Karras", steps=20, cfg_scale=6.0, preview_method="None")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_engine(MODELS, tmp_path_factory.mktemp("outputs"), tmp_path_factory.mktemp("cache"), capacity=1)


def generate(engine, prompt: str, seed: int, **extra) -> Image.Image:
    request = GenerationRequest(
        prompt=prompt,
        checkpoint=STARTER_CHECKPOINT,
        width=STARTER_RESOLUTION,
        height=STARTER_RESOLUTION,
        seed=seed,
        **SAMPLING,
        **extra,
    )
    return engine.generate(request).images[0].image


def test_prompts_colour_and_position_are_obeyed(engine):
    """Prompts never seen in training (the evaluation split): most must come out right, as training/evaluate.py
    measures over 120 of them."""
    prompts = evaluation_prompts(8, seed=2024)
    results = [score(measure(generate(engine, p.prompt, seed)), p.scene) for seed, p in enumerate(prompts)]
    for key in ("colour", "background", "position"):
        right = sum(r[key] for r in results)
        assert right >= 7, f"{key}: {right}/8 right: {[(p.prompt, r) for p, r in zip(prompts, results, strict=True)]}"


def test_img2img_at_low_strength_keeps_the_layout(engine):
    scene = Scene("white", (SceneObject("square", "blue", "large", "left"),))
    source = render(scene)
    result = generate(
        engine, "a large blue square on the left on a white background", 3, init_image=source, denoising_strength=0.3
    )
    assert score(measure(result), scene) == {"colour": True, "background": True, "position": True, "shape": True}
    assert np.abs(np.asarray(result, float) - np.asarray(source, float)).mean() < 20


def test_inpainting_recolours_the_masked_object_and_keeps_the_rest(engine):
    before = Scene(
        "blue", (SceneObject("circle", "red", "large", "left"), SceneObject("square", "yellow", "small", "right"))
    )
    source = render(before)
    mask = Image.new("L", source.size, 0)
    x0, y0, x1, y1 = object_box(before.objects[0])
    ImageDraw.Draw(mask).rectangle((x0 - 6, y0 - 6, x1 + 6, y1 + 6), fill=255)
    prompt = "a large green circle on the left, a small yellow square on the right, on a blue background"
    result = generate(engine, prompt, 5, init_image=source, mask=mask, mask_blur=0, denoising_strength=1.0)
    after = Scene("blue", (SceneObject("circle", "green", "large", "left"), before.objects[1]))
    assert score(measure(result, expected_objects=2), after)["colour"], "the masked object did not turn green"
    outside = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(result)[outside], np.asarray(source)[outside])


def test_controlnet_puts_the_object_where_the_edges_are(engine):
    target = Scene("black", (SceneObject("triangle", "yellow", "large", "top right"),))
    unit = ControlNetUnit(image=render(target), module="canny", model=STARTER_CONTROLNET, pixel_perfect=True)
    prompt = "a large yellow triangle on a black background"  # no position: only the edges say where
    placed = [measure(generate(engine, prompt, seed, controlnet_units=(unit,))) for seed in range(3)]
    assert [m.objects[0].position if m.objects else None for m in placed] == ["top right"] * 3


def test_the_lora_stripes_objects_and_weight_0_does_not(engine):
    prompt = "a large orange square in the centre on a cyan background"
    plain = generate(engine, f"{prompt} <lora:{STARTER_LORA}:0>", 7)
    striped = generate(engine, f"{prompt} <lora:{STARTER_LORA}:1>", 7)
    assert plain.tobytes() == generate(engine, prompt, 7).tobytes()  # weight 0 is no LoRA
    assert stripe_strength(striped, measure(striped)) > 0.04 > stripe_strength(plain, measure(plain))
