"""Procedural scenes of coloured shapes: vocabulary, layout, rendering, captions, the train/eval split, canny maps."""

from __future__ import annotations

import functools
import math
import random
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
# Saturated and far apart in RGB, so that a blurry generated colour still has one clear nearest name.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "orange": (255, 140, 0),
    "yellow": (250, 230, 20),
    "green": (30, 170, 40),
    "cyan": (20, 220, 230),
    "blue": (30, 60, 220),
    "purple": (140, 40, 190),
    "pink": (255, 120, 190),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
BACKGROUNDS = tuple(COLOURS)
# Object extent (the larger side of its box) in px on the reference 128 px canvas; medium is never named.
SIZES: dict[str, float] = {"small": 30.0, "medium": 44.0, "large": 58.0}
POSITIONS = ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right")
POSITION_PHRASES = {
    "top left": "at the top left", "top": "at the top", "top right": "at the top right",
    "left": "on the left", "centre": "in the centre", "right": "on the right",
    "bottom left": "at the bottom left", "bottom": "at the bottom", "bottom right": "at the bottom right",
}  # fmt: skip
CANVAS = 128  # the reference canvas: sizes, offsets and margins below are in its px and scale with `size`
MARGIN = 2.0  # an object's box stays this far inside the canvas
OBJECT_GAP = 6.0  # two objects' boxes stay this far apart, so their pixels never touch, even blurred
# Stripes across the diagonal, 20 px apart: 2.5 latent pixels per period at 1/8. Through the shipped VAE a 10 px
# period kept a stripe strength of 0.02 of the renders' 0.31, 16 px 0.08, 20 px 0.13 (24 px 0.17, but too few
# stripes on a small object). The object's colour covers 5/8 of each period so the median colour stays the object's.
STRIPE_PERIOD = 20.0
STRIPE_COLOUR_SHARE = 5 / 8
SUPERSAMPLE = 4  # drawn at 4x and box-filtered down: anti-aliased edges without ringing
STAR_INNER_RATIO = 0.45  # a little fatter than a regular pentagram (0.38), so that its arms survive blur


def position_cell(position: str) -> tuple[int, int]:
    """(column, row) of a position name in the 3x3 grid."""
    index = POSITIONS.index(position)
    return index % 3, index // 3


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    position: str
    offset: tuple[float, float] = (0.0, 0.0)  # jitter of its centre in reference px, (dx, dy)

    def __post_init__(self):
        for value, allowed in ((self.shape, SHAPES), (self.colour, COLOURS), (self.size, SIZES)):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {tuple(allowed)}")
        if self.position not in POSITIONS:
            raise ValueError(f"{self.position!r} is not one of {POSITIONS}")


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[SceneObject, ...]

    def __post_init__(self):
        if self.background not in COLOURS:
            raise ValueError(f"unknown background colour {self.background!r}")
        if not 1 <= len(self.objects) <= 2:
            raise ValueError("a scene holds one or two objects")
        colours = [self.background, *(obj.colour for obj in self.objects)]
        if len(set(colours)) != len(colours):
            raise ValueError("objects differ in colour from each other and from the background")
        if len({obj.position for obj in self.objects}) != len(self.objects):
            raise ValueError("two objects never share a position cell")


def shape_outline(shape: str) -> np.ndarray:
    """The shape as an (N, 2) polygon of extent 1 (its box's larger side), its area centroid at the origin, y down.
    A circle is a 96-gon: at 4x supersampling that is indistinguishable from a true circle."""
    if shape == "circle":
        angles = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1) * 0.5
    if shape == "square":
        return np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=float) * 0.45
    if shape == "triangle":  # points up; base 1, height 0.9; the centroid sits at a third of the height
        return np.array([(0.0, -0.6), (0.5, 0.3), (-0.5, 0.3)])
    if shape == "star":  # five points, one straight up; five-fold symmetry puts the centroid at the centre
        angles = -math.pi / 2 + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 0.5, 0.5 * STAR_INNER_RATIO)
        return np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    raise ValueError(f"unknown shape {shape!r}")


def object_polygon(obj: SceneObject, size: int = CANVAS) -> np.ndarray:
    """The object's polygon in canvas px: centroid at its cell's centre plus jitter, then moved inward just enough to
    keep its box inside the canvas (large objects in edge cells; their centroid still stays in the cell's third)."""
    column, row = position_cell(obj.position)
    points = shape_outline(obj.shape) * SIZES[obj.size]
    points = points + (np.array([2 * column + 1, 2 * row + 1]) * CANVAS / 6 + np.array(obj.offset))
    low, high = points.min(axis=0), points.max(axis=0)
    points = points + np.maximum(MARGIN - low, 0) - np.maximum(high - (CANVAS - MARGIN), 0)
    return points * (size / CANVAS)


def object_box(obj: SceneObject, size: int = CANVAS) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the object in canvas px."""
    points = object_polygon(obj, size)
    return (*points.min(axis=0), *points.max(axis=0))


def _polygon_mask(points: np.ndarray, width: int, height: int) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in points], fill=255)
    return mask


def shape_mask(shape: str, width: int, height: int) -> np.ndarray:
    """A width x height float mask (0..1) of the shape stretched to fill exactly that box, anti-aliased like render's:
    the template that measure compares a found object with."""
    outline = shape_outline(shape)
    low, span = outline.min(axis=0), np.ptp(outline, axis=0)
    points = (outline - low) / span * np.array([width, height]) * SUPERSAMPLE
    mask = _polygon_mask(points, width * SUPERSAMPLE, height * SUPERSAMPLE)
    return np.asarray(mask.resize((width, height), Image.Resampling.BOX), dtype=np.float32) / 255.0


def stripe_shade(colour: str) -> tuple[int, int, int]:
    """The second stripe colour: the object's colour mixed half with white when dark, with black when light."""
    rgb = np.array(COLOURS[colour], dtype=float)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    target = 255.0 if luminance < 128 else 0.0
    return tuple(int(round(v)) for v in (rgb + target) / 2)


@functools.cache
def _stripes(big: int) -> Image.Image:
    """Where the object's own colour goes (255) in the striped style, over a whole canvas of that size."""
    period = STRIPE_PERIOD * math.sqrt(2) * big / CANVAS  # along x + y, which runs across the diagonal stripes
    diagonal = np.add.outer(np.arange(big), np.arange(big)) % period
    return Image.fromarray(np.where(diagonal < period * STRIPE_COLOUR_SHARE, 255, 0).astype(np.uint8), "L")


def _fill(obj: SceneObject, big: int, style: str) -> Image.Image:
    colour = Image.new("RGB", (big, big), COLOURS[obj.colour])
    if style == "plain":
        return colour
    if style != "striped":
        raise ValueError(f"unknown style {style!r}; use 'plain' or 'striped'")
    return Image.composite(colour, Image.new("RGB", (big, big), stripe_shade(obj.colour)), _stripes(big))


def render(scene: Scene, size: int = CANVAS, style: str = "plain") -> Image.Image:
    """The scene as a size x size RGB picture: flat background, flat (or striped) anti-aliased objects."""
    big = size * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), COLOURS[scene.background])
    for obj in scene.objects:
        mask = _polygon_mask(object_polygon(obj, big), big, big)
        canvas.paste(_fill(obj, big, style), (0, 0), mask)
    return canvas.resize((size, size), Image.Resampling.BOX)


def canny_map(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """White edges on black, RGB: cv2.Canny on the RGB picture with the canny preprocessor's default thresholds.
    Like controlnet-aux's CannyDetector (our preprocessor) it runs on all three channels, not on grey: a red object
    on a green background has almost no grey contrast but a strong edge here."""
    edges = cv2.Canny(np.asarray(image.convert("RGB")), low, high)
    return Image.fromarray(np.repeat(edges[..., None], 3, axis=2), "RGB")


# --- captions ---------------------------------------------------------------------------------------------------

ONE_OBJECT_TEMPLATES = (
    "{obj} {pos} on {bg} background",
    "{obj} {pos}, {bg_bare} background",
    "{obj} on {bg} background, {pos}",
    "{bg} background with {obj} {pos}",
)
# Rule: a caption leaves a position out only for a one-object scene whose object is in the centre.
CENTRE_TEMPLATES = ("{obj} on {bg} background", "{obj}, {bg_bare} background", "{bg} background with {obj}")
TWO_OBJECT_TEMPLATES = (
    "{obj} {pos}, {obj2} {pos2}, on {bg} background",
    "{obj} {pos} and {obj2} {pos2} on {bg} background",
    "{bg} background with {obj} {pos} and {obj2} {pos2}",
)
UNSPOKEN_CENTRE_SHARE = 0.4  # how often a centred single object's caption leaves "in the centre" out


def _with_article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _object_words(obj: SceneObject) -> str:
    size_word = "" if obj.size == "medium" else obj.size + " "
    return _with_article(f"{size_word}{obj.colour} {obj.shape}")


def caption(scene: Scene, rng: random.Random, name_positions: bool = False) -> str:
    """A short English caption naming every object's colour and shape, and the background; positions too, except
    that a centred single object's "in the centre" is sometimes left out (never another position; never when
    `name_positions`)."""
    first = scene.objects[0]
    words = {"obj": _object_words(first), "pos": POSITION_PHRASES[first.position],
             "bg": _with_article(scene.background), "bg_bare": scene.background}  # fmt: skip
    if len(scene.objects) == 2:
        second = scene.objects[1]
        words |= {"obj2": _object_words(second), "pos2": POSITION_PHRASES[second.position]}
        template = rng.choice(TWO_OBJECT_TEMPLATES)
    elif first.position == "centre" and not name_positions and rng.random() < UNSPOKEN_CENTRE_SHARE:
        template = rng.choice(CENTRE_TEMPLATES)
    else:
        template = rng.choice(ONE_OBJECT_TEMPLATES)
    text = template.format(**words)
    return text[0].lower() + text[1:]


# Longest first, so that "at the top left" is not read as "at the top".
_PLACE_PHRASE = re.compile("|".join(re.escape(POSITION_PHRASES[p]) for p in sorted(POSITIONS, key=len, reverse=True)))
_PLACE_OF_PHRASE = {phrase: place for place, phrase in POSITION_PHRASES.items()}


def first_place(text: str) -> str:
    """The place a caption gives its first object: its first position phrase, or the centre when it names none (the
    only place a caption leaves out). The inverse of `caption` for the first object."""
    found = _PLACE_PHRASE.search(text)
    return _PLACE_OF_PHRASE[found.group()] if found else "centre"


def without_places(text: str) -> str:
    """The caption with every position phrase taken out ("a red circle at the top on a blue background" → "a red
    circle on a blue background"): what a ControlNet user types when the control image says where things go."""
    return re.sub(" +", " ", _PLACE_PHRASE.sub("", text)).replace(" ,", ",").strip(" ,")


_SHAPE_WORD = re.compile(r"\b(" + "|".join(SHAPES) + r")\b")


def first_shape(text: str) -> str:
    """The shape a caption gives its first object: its first shape word (every caption names every object's shape)."""
    return _SHAPE_WORD.search(text).group()


# --- the train / eval split -------------------------------------------------------------------------------------


def is_eval_combination(shape: str, colour: str, position: str, background: str) -> bool:
    """Whether one object (shape, colour, position) on a background is held out of training: a stable hash of the
    four names, so the split never changes between runs or machines. About a tenth of the 3240 combinations."""
    return zlib.crc32("|".join((shape, colour, position, background)).encode()) % 10 == 0


def split_of(scene: Scene) -> str:
    """'eval' when any object with the background is a held-out combination, else 'train'."""
    held_out = any(is_eval_combination(o.shape, o.colour, o.position, scene.background) for o in scene.objects)
    return "eval" if held_out else "train"


def _jitter(rng: random.Random, size: str) -> tuple[float, float]:
    # Small objects may wander a few px inside their third; larger ones already fill it.
    reach = max(2.0, min(6.0, (CANVAS / 3 - SIZES[size]) / 2))
    return round(rng.uniform(-reach, reach), 1), round(rng.uniform(-reach, reach), 1)


def _apart(first: SceneObject, second: SceneObject) -> bool:
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = object_box(first), object_box(second)
    gap = OBJECT_GAP
    return ax1 + gap <= bx0 or bx1 + gap <= ax0 or ay1 + gap <= by0 or by1 + gap <= ay0


def _draw_scene(rng: random.Random, object_count: int) -> Scene | None:
    colours = rng.sample(list(COLOURS), object_count + 1)
    positions = rng.sample(POSITIONS, object_count)
    objects = []
    for colour, position in zip(colours[1:], positions, strict=True):
        size = rng.choice(list(SIZES))
        objects.append(SceneObject(rng.choice(SHAPES), colour, size, position, _jitter(rng, size)))
    if object_count == 2 and not _apart(*objects):
        return None
    return Scene(colours[0], tuple(objects))


def random_scene(rng: random.Random, two_objects_fraction: float = 0.3, split: str = "train") -> Scene:
    """A random scene of the given split, by rejection: redrawn until it belongs to the split and, with two objects,
    until their boxes keep OBJECT_GAP apart (so objects in neighbouring cells tend to be small)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split is 'train' or 'eval', not {split!r}")
    object_count = 2 if rng.random() < two_objects_fraction else 1
    while True:
        scene = _draw_scene(rng, object_count)
        if scene is not None and split_of(scene) == split:
            return scene


@dataclass(frozen=True)
class EvalPrompt:
    prompt: str
    scene: Scene  # one object, centred in its cell (no jitter); its size is what the prompt says


def evaluation_prompts(count: int = 120, seed: int = 1234) -> list[EvalPrompt]:
    """`count` unique prompts from held-out combinations, one object each, its position and background named."""
    combinations = [
        (shape, colour, position, background)
        for shape in SHAPES for colour in COLOURS for position in POSITIONS for background in BACKGROUNDS
        if colour != background and is_eval_combination(shape, colour, position, background)
    ]  # fmt: skip
    if count > len(combinations):
        raise ValueError(f"only {len(combinations)} held-out combinations exist")
    rng = random.Random(seed)
    prompts = []
    for shape, colour, position, background in rng.sample(combinations, count):
        scene = Scene(background, (SceneObject(shape, colour, rng.choice(list(SIZES)), position),))
        prompts.append(EvalPrompt(caption(scene, rng, name_positions=True), scene))
    return prompts


def dataset(
    count: int, seed: int, style: str = "plain", size: int = CANVAS, two_objects_fraction: float = 0.3
) -> Iterator[tuple[Image.Image, str, Scene]]:
    """(picture, caption, scene) for `count` training scenes, the same for the same seed; the same seed with another
    style gives the same scenes and captions, only the objects' fill differs."""
    rng = random.Random(seed)
    for _ in range(count):
        scene = random_scene(rng, two_objects_fraction, "train")
        yield render(scene, size, style), caption(scene, rng), scene
