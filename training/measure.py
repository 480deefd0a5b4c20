"""What a picture of a scene shows, from its pixels alone: background, objects' colour, position and shape, stripes,
and how well its edges follow a control map."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from training.scenes import CANVAS, COLOURS, POSITIONS, Scene, SceneObject, canny_map, shape_mask, shape_outline

PALETTE_NAMES = tuple(COLOURS)
PALETTE = np.array([COLOURS[name] for name in PALETTE_NAMES], dtype=np.float32)
BORDER = 5  # px of the reference canvas whose median colour is the background
# RGB distances from the background beyond which a pixel may belong to an object: the first that finds as many
# objects as expected wins; the stricter one cuts the faint bridge that blur can lay between two close objects.
OBJECT_DISTANCES = (40.0, 80.0)
CORE_DEPTH = 4.0  # reference px from a region's edge beyond which a blurred object shows its true colour
# A step across the diagonal stripes of about half their period (STRIPE_PERIOD 20 px, i.e. 28 px along x + y).
STRIPE_STEP = 7
MIN_OBJECT_AREA = 80  # reference px; smaller components are specks (the smallest star is about 250)
HARMONIC_SHAPES = {3: "triangle", 4: "square", 5: "star"}  # the shapes with corners, by their rotational symmetry
CIRCLE_SCORE = 0.3  # a round blob scores < 0.05 on every harmonic; a blurred small star still scores > 0.5


def nearest_colour(rgb) -> str:
    """The palette name nearest (RGB distance) to a colour."""
    return PALETTE_NAMES[int(np.argmin(np.linalg.norm(PALETTE - np.asarray(rgb, dtype=np.float32), axis=1)))]


@dataclass(frozen=True)
class MeasuredObject:
    colour: str
    rgb: tuple[float, float, float]
    shape: str
    shape_scores: dict[str, float]  # see classify_shape; `shape` has the highest
    position: str
    centroid: tuple[float, float]  # (x, y) px, weighted by presence (see _presence); it decides `position`
    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1) px, x1/y1 exclusive
    area: int  # px
    mask: np.ndarray = field(repr=False, compare=False)  # bool, the whole picture's size


@dataclass(frozen=True)
class Measurement:
    background: str
    background_rgb: tuple[float, float, float]
    objects: tuple[MeasuredObject, ...]  # largest first


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _morph(mask: np.ndarray, operation: int, radius: int) -> np.ndarray:
    if radius < 1:
        return mask
    # Outside the picture is empty: OpenCV's default border would let a closing stick an object to the edge.
    result = cv2.morphologyEx(mask.astype(np.uint8), operation, _disk(radius), borderType=cv2.BORDER_CONSTANT,
                              borderValue=0)  # fmt: skip
    return result.astype(bool)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _background(pixels: np.ndarray, scale: float) -> np.ndarray:
    band = max(1, round(BORDER * scale))
    border = np.concatenate([pixels[:band].reshape(-1, 3), pixels[-band:].reshape(-1, 3),
                             pixels[:, :band].reshape(-1, 3), pixels[:, -band:].reshape(-1, 3)])  # fmt: skip
    return np.median(border, axis=0)


def _components(far: np.ndarray, scale: float) -> list[np.ndarray]:
    far = _morph(_morph(far, cv2.MORPH_OPEN, 1), cv2.MORPH_CLOSE, 1)  # noise specks out, hairline gaps closed
    count, labels, stats, _ = cv2.connectedComponentsWithStats(far.astype(np.uint8), connectivity=8)
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
    return [labels == i for i in order if stats[i, cv2.CC_STAT_AREA] >= MIN_OBJECT_AREA * scale**2]


def _candidates(pixels: np.ndarray, background: np.ndarray, expected: int, scale: float) -> list[np.ndarray]:
    """Masks of the connected regions far from the background colour, specks dropped, largest first."""
    distance = np.linalg.norm(pixels - background, axis=2)
    first = _components(distance > OBJECT_DISTANCES[0], scale)
    for threshold in OBJECT_DISTANCES[1:]:
        if len(first) >= expected:
            break
        stricter = _components(distance > threshold, scale)
        if len(stricter) > len(first):
            return stricter
    return first


def _object_colour(pixels: np.ndarray, region: np.ndarray, scale: float) -> np.ndarray:
    """The median colour of the region away from its edge (CORE_DEPTH px, or its deeper half when it is thinner):
    in a blurred small object only the middle keeps the true colour; a large striped one keeps many stripes."""
    depth = cv2.distanceTransform(np.pad(region, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return np.median(pixels[depth >= min(0.5 * depth.max(), CORE_DEPTH * scale)], axis=0)


def _presence(pixels: np.ndarray, colour: np.ndarray, background: np.ndarray) -> np.ndarray:
    """How much of the object's colour (0 background .. 1 object) each pixel holds, along the line between the two:
    a blurred object's presence map is its sharp mask blurred, which is what the blur-proof measures below rely on."""
    axis = colour - background
    return np.clip((pixels - background) @ axis / max(float(axis @ axis), 1e-6), 0.0, 1.0)


def _object_mask(presence: np.ndarray, region: np.ndarray, scale: float) -> np.ndarray:
    """The object's outline where it is half present, where a blurred edge really is (the loose first threshold
    swells a blurred object); the loose region's eroded core is kept too, which fills the gaps that a stripe shade
    close to the background would leave."""
    radius = max(1, round(2 * scale))
    core, near = _morph(region, cv2.MORPH_ERODE, radius), _morph(region, cv2.MORPH_DILATE, radius)
    return _largest_component(((presence > 0.5) | core) & near)


@functools.cache
def _reference_harmonics() -> dict[str, float]:
    """Each cornered shape's own harmonic, drawn large and sharp with render's code: what 1.0 means below."""
    references = {}
    for order, shape in HARMONIC_SHAPES.items():
        span = np.ptp(shape_outline(shape), axis=0)
        width, height = np.round(256 * span / span.max()).astype(int)
        references[shape] = _harmonics(shape_mask(shape, width, height))[0][order]
    return references


def _harmonics(presence: np.ndarray) -> tuple[dict[int, float], tuple[float, float]]:
    """Magnitudes of the complex moments sum(presence * (z - centroid)**k) for k = 3, 4, 5, scaled by the area so
    that size does not matter, and the centroid. Blurring with any round kernel leaves these moments exactly as they
    were (the kernel's own moments of those orders are zero), so a blurry triangle keeps its triangle-ness."""
    ys, xs = np.nonzero(presence)
    weights = presence[ys, xs].astype(np.float64)
    total = weights.sum()
    centroid = (float(weights @ xs / total) + 0.5, float(weights @ ys / total) + 0.5)
    z = (xs + 0.5 - centroid[0]) + 1j * (ys + 0.5 - centroid[1])
    magnitudes = {order: float(abs(weights @ z**order) / total ** (1 + order / 2)) for order in HARMONIC_SHAPES}
    return magnitudes, centroid


def classify_shape(presence: np.ndarray) -> tuple[str, dict[str, float]]:
    """The shape of one object from its presence map (0..1, zero away from it), and every shape's score: triangle,
    square and star by how strong their 3-, 4- or 5-fold harmonic is next to that of a sharp drawing of the shape;
    circle by a fixed score, so it wins when no corner pattern reaches CIRCLE_SCORE."""
    return _classify(_harmonics(presence)[0])


def _classify(magnitudes: dict[int, float]) -> tuple[str, dict[str, float]]:
    references = _reference_harmonics()
    scores = {"circle": CIRCLE_SCORE}
    scores |= {shape: magnitudes[order] / references[shape] for order, shape in HARMONIC_SHAPES.items()}
    return max(scores, key=scores.get), scores


def _position(centroid: tuple[float, float], width: int, height: int) -> str:
    column = min(2, max(0, int(3 * centroid[0] / width)))
    row = min(2, max(0, int(3 * centroid[1] / height)))
    return POSITIONS[3 * row + column]


def _measure_object(pixels: np.ndarray, region: np.ndarray, others: np.ndarray, background: np.ndarray, scale: float):
    """One object from its loose region; `others` are the other objects' regions, kept out of its window."""
    colour = _object_colour(pixels, region, scale)
    presence = _presence(pixels, colour, background)
    window = _morph(region, cv2.MORPH_DILATE, max(1, round(4 * scale))) & ~others
    # The eroded region counts as wholly present: stripes of a shade near the background would punch holes in it.
    presence = np.where(_morph(region, cv2.MORPH_ERODE, max(1, round(2 * scale))), 1.0, np.where(window, presence, 0.0))
    magnitudes, centroid = _harmonics(presence)
    shape, scores = _classify(magnitudes)
    mask = _object_mask(presence, region, scale)
    ys, xs = np.nonzero(mask)
    return MeasuredObject(
        colour=nearest_colour(colour), rgb=tuple(float(v) for v in colour), shape=shape, shape_scores=scores,
        position=_position(centroid, mask.shape[1], mask.shape[0]), centroid=centroid,
        bbox=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), area=int(mask.sum()), mask=mask,
    )  # fmt: skip


def measure(image: Image.Image, expected_objects: int = 1) -> Measurement:
    """The background (median colour of a border band) and the `expected_objects` largest objects (or fewer when
    fewer stand out): regions far from the background colour, each with its colour, position cell and shape."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    scale = min(pixels.shape[:2]) / CANVAS
    background = _background(pixels, scale)
    regions = _candidates(pixels, background, expected_objects, scale)
    kept = regions[:expected_objects]
    objects = [
        _measure_object(pixels, region, np.any([r for r in regions if r is not region], axis=0), background, scale)
        for region in kept
    ]
    objects.sort(key=lambda obj: -obj.area)
    return Measurement(nearest_colour(background), tuple(float(v) for v in background), tuple(objects))


def _match(found: list[MeasuredObject], wanted: SceneObject) -> MeasuredObject | None:
    """The found object of the wanted colour; failing that, the largest one left."""
    for obj in found:
        if obj.colour == wanted.colour:
            return obj
    return found[0] if found else None


def score(measurement: Measurement, expected: Scene) -> dict[str, bool]:
    """Whether the picture shows the expected background and, for every expected object, its colour, position cell
    and shape. Found objects are paired with expected ones by colour first, then by size (largest left)."""
    found = list(measurement.objects)
    results = {"colour": True, "background": measurement.background == expected.background, "position": True,
               "shape": True}  # fmt: skip
    for wanted in expected.objects:
        obj = _match(found, wanted)
        if obj is None:
            results.update(colour=False, position=False, shape=False)
            continue
        found.remove(obj)
        results["colour"] &= obj.colour == wanted.colour
        results["position"] &= obj.position == wanted.position
        results["shape"] &= obj.shape == wanted.shape
    return results


def _diagonal_changes(grey: np.ndarray, inside: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Luminance changes over `step` px down-right (across the style's stripes) and down-left (along them), from
    each pixel whose two partners are inside too; None when fewer than 9 such pixels."""
    height, width = grey.shape
    here = np.s_[: height - step, step : width - step]
    across, along = np.s_[step:, 2 * step :], np.s_[step:, : width - 2 * step]
    valid = inside[here] & inside[across] & inside[along]
    if valid.sum() < 9:
        return None
    return (grey[across] - grey[here])[valid], (grey[along] - grey[here])[valid]


def stripe_strength(image: Image.Image, measurement: Measurement) -> float:
    """How strongly the objects are striped the way our style is: the RMS luminance change (0..1) over a few px
    across the diagonal stripes, less that along them, inside each object; averaged over the objects. A flat fill
    gives 0, and so, mostly, does a blurred edge: our shapes are symmetric, so their edges change as much one way as
    the other."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    scale = min(grey.shape) / CANVAS
    step = max(1, round(STRIPE_STEP * scale))
    strengths = []
    for obj in measurement.objects:
        # A small thin star has few pixels to spare: then the whole mask, then shorter steps (still across).
        masks = (_morph(obj.mask, cv2.MORPH_ERODE, 1), obj.mask)
        tries = [(mask, s) for s in range(step, step // 2, -1) for mask in masks]
        changes = next(filter(None, (_diagonal_changes(grey, mask, s) for mask, s in tries)), None)
        if changes is not None:
            across, along = changes
            strengths.append(float(np.sqrt(max(np.mean(across**2) - np.mean(along**2), 0.0))))
    return float(np.mean(strengths)) if strengths else 0.0


def edge_iou(image: Image.Image, control_edges: Image.Image, dilate: int = 2) -> float:
    """IoU of the picture's canny edges (the canny preprocessor's thresholds) with a control edge map, both thickened
    by `dilate` px so that an edge one or two px off still counts."""
    ours = np.asarray(canny_map(image).convert("L")) > 127
    control = control_edges.convert("L")
    if control.size != image.size:
        control = control.resize(image.size, Image.Resampling.NEAREST)
    theirs = np.asarray(control) > 127
    ours, theirs = _morph(ours, cv2.MORPH_DILATE, dilate), _morph(theirs, cv2.MORPH_DILATE, dilate)
    union = (ours | theirs).sum()
    return float((ours & theirs).sum() / union) if union else 1.0
