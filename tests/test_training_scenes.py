"""The procedural scenes data set (renders, captions, train/eval split, canny maps) and the pixel measurements."""

from __future__ import annotations

import inspect
import random
import re

import numpy as np
import pytest
from PIL import Image, ImageFilter

from core.preprocessors import PREPROCESSORS, Annotators, detect_map
from core.tokenizers import clip_tokenizer
from training.measure import edge_iou, measure, score, stripe_strength
from training.scenes import (
    COLOURS,
    POSITION_PHRASES,
    SHAPES,
    Scene,
    SceneObject,
    canny_map,
    caption,
    dataset,
    evaluation_prompts,
    first_place,
    first_shape,
    is_eval_combination,
    random_scene,
    render,
    split_of,
    without_places,
)

KEYS = ("colour", "background", "position", "shape")


def degrade(image: Image.Image, seed: int) -> Image.Image:
    """Roughly what a VAE and an imperfect model do to a picture: blur, lost resolution, a little noise."""
    blurred = image.filter(ImageFilter.GaussianBlur(2)).resize((64, 64), Image.Resampling.BILINEAR)
    blurred = blurred.resize(image.size, Image.Resampling.BILINEAR)
    noise = np.random.default_rng(seed).normal(0, 4, (*image.size[::-1], 3))
    return Image.fromarray(np.clip(np.asarray(blurred, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def scenes(count: int, seed: int, two_objects_fraction: float = 0.4) -> list[Scene]:
    rng = random.Random(seed)
    return [random_scene(rng, two_objects_fraction) for _ in range(count)]


def test_dataset_is_the_same_for_the_same_seed():
    first, again, other = list(dataset(6, seed=5)), list(dataset(6, seed=5)), list(dataset(6, seed=6))
    assert [(i.tobytes(), c, s) for i, c, s in first] == [(i.tobytes(), c, s) for i, c, s in again]
    assert [c for _, c, _ in first] != [c for _, c, _ in other]
    striped = list(dataset(6, seed=5, style="striped"))
    assert [(c, s) for _, c, s in striped] == [(c, s) for _, c, s in first]  # same scenes, other fill
    assert all(a.tobytes() != b.tobytes() for (a, _, _), (b, _, _) in zip(first, striped, strict=True))
    image, _, _ = first[0]
    assert image.mode == "RGB" and image.size == (128, 128)
    assert render(first[0][2], size=256).size == (256, 256)


def test_captions_name_every_colour_shape_and_background():
    rng = random.Random(0)
    for scene in scenes(400, seed=1):
        text = caption(scene, rng)
        assert f"{scene.background} background" in text, text
        for obj in scene.objects:
            size_word = "" if obj.size == "medium" else obj.size + " "
            assert re.search(rf"\ban? {size_word}{obj.colour} {obj.shape}\b", text), (text, obj)
            # The one rule for left-out positions: only a lone object in the centre goes unnamed.
            if POSITION_PHRASES[obj.position] not in text:
                assert obj.position == "centre" and len(scene.objects) == 1, text
        assert not re.search(r"\ba orange\b", text), text


def test_first_place_and_shape_read_the_first_objects_back_from_its_caption():
    # What the base trainer's auxiliary caption heads are taught, read from the captions' text as tokenized and decoded.
    rng = random.Random(3)
    tokenizer = clip_tokenizer()
    for scene in scenes(400, seed=4):
        text = tokenizer.decode(tokenizer(caption(scene, rng)).input_ids, skip_special_tokens=True)
        assert first_place(text) == scene.objects[0].position, text
        assert first_shape(text) == scene.objects[0].shape, text
    assert first_place("a red circle on a blue background") == "centre"
    assert first_shape("a white background with a big red star at the top and a circle") == "star"


def test_captions_without_places_keep_every_colour_shape_and_background():
    # What the ControlNet trainer mostly shows: the edges, not the words, say where things are.
    rng = random.Random(5)
    for scene in scenes(400, seed=6):
        text = without_places(caption(scene, rng))
        assert not any(phrase in text for phrase in POSITION_PHRASES.values()), text
        assert f"{scene.background} background" in text, text
        for obj in scene.objects:
            size_word = "" if obj.size == "medium" else obj.size + " "
            assert re.search(rf"\ban? {size_word}{obj.colour} {obj.shape}\b", text), (text, obj)
        assert "  " not in text and " ," not in text and text == text.strip(" ,"), text
    assert without_places("a red star on a blue background, at the top left") == "a red star on a blue background"


def test_training_never_shows_an_eval_combination():
    held_out = [
        (shape, colour, position, background)
        for shape in SHAPES for colour in COLOURS for position in POSITION_PHRASES for background in COLOURS
        if colour != background and is_eval_combination(shape, colour, position, background)
    ]  # fmt: skip
    assert 0.07 < len(held_out) / (4 * 10 * 9 * 9) < 0.13
    rng = random.Random(2)
    for _ in range(1000):
        scene = random_scene(rng)
        assert not any(is_eval_combination(o.shape, o.colour, o.position, scene.background) for o in scene.objects)
    assert all(split_of(random_scene(rng, split="eval")) == "eval" for _ in range(50))
    for _, _, scene in dataset(200, seed=3):
        assert split_of(scene) == "train"


def test_evaluation_prompts_are_unique_held_out_and_fixed():
    prompts = evaluation_prompts()
    assert len(prompts) == 120 and len({p.prompt for p in prompts}) == 120
    assert [p.prompt for p in prompts] == [p.prompt for p in evaluation_prompts(120, 1234)]
    assert [p.prompt for p in prompts] != [p.prompt for p in evaluation_prompts(120, 99)]
    for entry in prompts:
        (obj,) = entry.scene.objects
        assert split_of(entry.scene) == "eval"
        assert POSITION_PHRASES[obj.position] in entry.prompt, entry.prompt
        assert f"{entry.scene.background} background" in entry.prompt and f"{obj.colour} {obj.shape}" in entry.prompt


def accuracy(pairs: list[tuple[Image.Image, Scene]]) -> dict[str, float]:
    hits = {key: 0 for key in KEYS}
    for image, scene in pairs:
        for key, ok in score(measure(image, len(scene.objects)), scene).items():
            hits[key] += ok
    return {key: hits[key] / len(pairs) for key in KEYS}


def test_measurements_read_renders_and_degraded_renders():
    drawn = scenes(300, seed=11)
    clean = [(render(scene), scene) for scene in drawn]
    on_renders = accuracy(clean)
    on_degraded = accuracy([(degrade(image, i), scene) for i, (image, scene) in enumerate(clean)])
    report = f"renders {on_renders}, degraded {on_degraded}"
    assert sum(len(s.objects) == 2 for s in drawn) > 80, report
    assert all(on_renders[key] == 1.0 for key in KEYS), report
    assert all(on_degraded[key] >= 0.97 for key in KEYS), report


def test_measure_reports_what_it_found():
    objects = (SceneObject("triangle", "yellow", "large", "top left"), SceneObject("star", "red", "small", "bottom"))
    scene = Scene("blue", objects)
    found = measure(render(scene), expected_objects=2)
    assert found.background == "blue"
    assert [(o.colour, o.shape, o.position) for o in found.objects] == [
        ("yellow", "triangle", "top left"), ("red", "star", "bottom")
    ]  # fmt: skip
    assert found.objects[0].area > found.objects[1].area
    x0, y0, x1, y1 = found.objects[0].bbox
    assert x1 - x0 == pytest.approx(58, abs=2) and y1 - y0 == pytest.approx(52, abs=2)
    wrong = Scene("blue", (SceneObject("square", "yellow", "large", "centre"),))
    assert score(found, wrong) == {"colour": True, "background": True, "position": False, "shape": False}
    empty = measure(Image.new("RGB", (128, 128), COLOURS["green"]))
    assert empty.background == "green" and empty.objects == ()
    assert score(empty, wrong) == {"colour": False, "background": False, "position": False, "shape": False}


def test_stripe_strength_separates_the_striped_style():
    plain, striped, plain_blurred, striped_blurred = [], [], [], []
    for i, scene in enumerate(scenes(100, seed=21, two_objects_fraction=0.3)):
        for style, clean, blurred in (("plain", plain, plain_blurred), ("striped", striped, striped_blurred)):
            image = render(scene, style=style)
            clean.append(stripe_strength(image, measure(image, len(scene.objects))))
            image = degrade(image, i)
            blurred.append(stripe_strength(image, measure(image, len(scene.objects))))
    report = f"plain max {max(plain):.4f}, striped min {min(striped):.4f}; degraded means {np.mean(plain_blurred):.4f}"
    report += f" vs {np.mean(striped_blurred):.4f}"
    assert min(striped) > 3 * max(plain) and min(striped) > 0.1, report
    assert np.mean(striped_blurred) > 5 * np.mean(plain_blurred), report


def test_canny_map_is_the_canny_preprocessors_map(tmp_path):
    defaults = inspect.signature(canny_map).parameters
    assert (defaults["low"].default, defaults["high"].default) == PREPROCESSORS["canny"].thresholds(-1, -1)
    image = render(Scene("green", (SceneObject("square", "red", "large", "centre"),)))  # red on green: little grey
    ours = canny_map(image)
    assert ours.mode == "RGB" and np.asarray(ours).max() == 255
    theirs = detect_map("canny", image, 128, 100, 200, Annotators(tmp_path))
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_edge_iou_compares_edge_maps():
    first = render(Scene("white", (SceneObject("circle", "blue", "medium", "top left"),)))
    second = render(Scene("black", (SceneObject("star", "yellow", "medium", "bottom right"),)))
    assert edge_iou(first, canny_map(first)) == pytest.approx(1.0)
    assert edge_iou(first, canny_map(first).resize((256, 256), Image.Resampling.NEAREST)) > 0.9
    assert edge_iou(first, canny_map(second)) < 0.05
    centred = render(Scene("white", (SceneObject("circle", "blue", "medium", "centre"),)))
    shifted = render(Scene("white", (SceneObject("circle", "blue", "medium", "centre", offset=(2.0, 0.0)),)))
    assert 0.4 < edge_iou(shifted, canny_map(centred)) < 0.9
