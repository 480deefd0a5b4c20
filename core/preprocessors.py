"""ControlNet preprocessors (annotators) by sd-webui-controlnet's names, their weights read from models/annotators.

The models come from controlnet-aux; their weights are the files of lllyasviel/Annotators, which controlnet-aux's
`from_pretrained(folder)` reads by name from a local folder. A missing file is reported (which file, where), never
downloaded. Detectors are built once and kept. Importing this module is cheap: numpy, PIL; the rest lazily.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.errors import UserError

log = logging.getLogger(__name__)

ANNOTATORS_SOURCE = "https://huggingface.co/lllyasviel/Annotators"


@dataclass(frozen=True)
class Slider:
    """A preprocessor option carried in the unit's threshold_a / threshold_b, with sd-webui-controlnet's label."""

    label: str
    default: float
    minimum: float
    maximum: float
    step: float = 1.0


@dataclass(frozen=True)
class Preprocessor:
    """How to turn a picture into a control map. `files`: annotator weights needed under models/annotators."""

    name: str
    run: Callable[..., np.ndarray]  # (rgb uint8 HxWx3, resolution, a, b, detector, **options) -> HxW(x3) uint8
    files: tuple[str, ...] = ()
    load: Callable[[Path], Any] | None = None  # builds the controlnet-aux detector from the annotators folder
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the detector call
    threshold_a: Slider | None = None
    threshold_b: Slider | None = None
    uses_resolution: bool = True

    def thresholds(self, a: float, b: float) -> tuple[float | None, float | None]:
        """The unit's values, -1 (unset) replaced by the defaults; None where this preprocessor has no such slider."""
        return _value(self.threshold_a, a), _value(self.threshold_b, b)


def _value(slider: Slider | None, value: float) -> float | None:
    if slider is None:
        return None
    return slider.default if value == -1 else value


# --- preprocessors without weights --------------------------------------------------------------------------


def _none(image: np.ndarray, resolution: int, a, b, detector, **options) -> np.ndarray:
    return image


def _invert(image: np.ndarray, resolution: int, a, b, detector, **options) -> np.ndarray:
    return 255 - image  # sd-webui-controlnet's "invert (from white bg & black line)"


@functools.cache
def _aux():
    """controlnet-aux, imported when first needed (it imports timm and more); its optional parts warn on import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import controlnet_aux
        import controlnet_aux.util
    return controlnet_aux


def _canny(image: np.ndarray, resolution: int, a, b, detector, **options) -> np.ndarray:
    return _aux().CannyDetector()(image, int(a), int(b), detect_resolution=resolution, image_resolution=resolution)


def _tile_resample(image: np.ndarray, resolution: int, a, b, detector, **options) -> np.ndarray:
    import cv2

    if a < 1.1:  # sd-webui-controlnet leaves the picture as it is below a rate of 1.1
        return image
    height, width = int(image.shape[0] / a), int(image.shape[1] / a)
    return cv2.resize(image, (max(1, width), max(1, height)), interpolation=cv2.INTER_AREA)


def _shuffle(image: np.ndarray, resolution: int, a, b, detector, **options) -> np.ndarray:
    """controlnet-aux's content shuffle (a random smooth warp), with its own seeded generator: the same picture
    gives the same map, and numpy's global random state is left alone."""
    import cv2

    image = _aux().util.resize_image(image, resolution)
    height, width = image.shape[:2]
    rng = np.random.default_rng(0)
    flow = np.stack([_noise_disk(rng, height, width) * (width - 1), _noise_disk(rng, height, width) * (height - 1)], -1)
    return cv2.remap(image, flow.astype(np.float32), None, cv2.INTER_LINEAR)


def _noise_disk(rng: np.random.Generator, height: int, width: int, scale: int = 256) -> np.ndarray:
    import cv2

    noise = rng.uniform(size=(height // scale + 2, width // scale + 2))
    noise = cv2.resize(noise, (width + 2 * scale, height + 2 * scale), interpolation=cv2.INTER_CUBIC)
    noise = noise[scale : scale + height, scale : scale + width]
    noise -= noise.min()
    return noise / max(noise.max(), 1e-12)


# --- preprocessors with weights (controlnet-aux detectors) --------------------------------------------------


def _detect(image: np.ndarray, resolution: int, a, b, detector, **options) -> np.ndarray:
    """A controlnet-aux detector's call: all take the picture, both resolutions and an output type."""
    return detector(image, detect_resolution=resolution, image_resolution=resolution, output_type="np", **options)


def _mlsd(image: np.ndarray, resolution: int, a, b, detector, **options) -> np.ndarray:
    return _detect(image, resolution, a, b, detector, thr_v=a, thr_d=b, **options)


def _loader(class_name: str, **kwargs) -> Callable[[Path], Any]:
    def load(folder: Path):
        return getattr(_aux(), class_name).from_pretrained(str(folder), **kwargs)

    return load


_HED = ("ControlNetHED.pth",), _loader("HEDdetector")
_PIDI = ("table5_pidinet.pth",), _loader("PidiNetDetector")
_POSE = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"), _loader("OpenposeDetector")
_LINEART = ("sk_model.pth", "sk_model2.pth"), _loader("LineartDetector")


def _pose(name: str, body: bool, hand: bool, face: bool) -> Preprocessor:
    return Preprocessor(name, _detect, *_POSE, dict(include_body=body, include_hand=hand, include_face=face))


def _table() -> dict[str, Preprocessor]:
    canny = (Slider("Canny Low Threshold", 100, 1, 255), Slider("Canny High Threshold", 200, 1, 255))
    mlsd = (
        Slider("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01),
        Slider("MLSD Distance Threshold", 0.1, 0.01, 20, 0.01),
    )
    entries = [
        Preprocessor("none", _none, uses_resolution=False),
        Preprocessor("invert", _invert, uses_resolution=False),
        Preprocessor("canny", _canny, threshold_a=canny[0], threshold_b=canny[1]),
        Preprocessor("depth_midas", _detect, ("dpt_hybrid-midas-501f0c75.pt",), _loader("MidasDetector")),
        Preprocessor("depth_zoe", _detect, ("ZoeD_M12_N.pt",), _loader("ZoeDetector")),
        _pose("openpose", body=True, hand=False, face=False),
        _pose("openpose_face", body=True, hand=False, face=True),
        _pose("openpose_faceonly", body=False, hand=False, face=True),
        _pose("openpose_hand", body=True, hand=True, face=False),
        _pose("openpose_full", body=True, hand=True, face=True),
        Preprocessor("lineart_realistic", _detect, *_LINEART, dict(coarse=False)),
        Preprocessor("lineart_coarse", _detect, *_LINEART, dict(coarse=True)),
        Preprocessor("lineart_anime", _detect, ("netG.pth",), _loader("LineartAnimeDetector")),
        Preprocessor("softedge_hed", _detect, *_HED, dict(scribble=False)),
        Preprocessor("softedge_hedsafe", _detect, *_HED, dict(scribble=False, safe=True)),
        Preprocessor("softedge_pidinet", _detect, *_PIDI, dict(scribble=False)),
        Preprocessor("softedge_pidisafe", _detect, *_PIDI, dict(scribble=False, safe=True)),
        Preprocessor("scribble_hed", _detect, *_HED, dict(scribble=True)),
        Preprocessor("scribble_pidinet", _detect, *_PIDI, dict(scribble=True)),
        Preprocessor(
            "mlsd",
            _mlsd,
            ("mlsd_large_512_fp32.pth",),
            _loader("MLSDdetector"),
            threshold_a=mlsd[0],
            threshold_b=mlsd[1],
        ),
        Preprocessor("normal_bae", _detect, ("scannet.pt",), _loader("NormalBaeDetector")),
        Preprocessor("shuffle", _shuffle),
        Preprocessor("tile_resample", _tile_resample, threshold_a=Slider("Down Sampling Rate", 1, 1, 8, 0.01)),
    ]
    return {p.name: p for p in entries}


PREPROCESSORS: dict[str, Preprocessor] = _table()


class Annotators:
    """The detectors of models/annotators, each built once when first used and kept; never downloaded."""

    def __init__(self, folder: Path, device: str = "cpu"):
        self.folder = Path(folder)
        self.device = device
        self._detectors: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def detector(self, preprocessor: Preprocessor) -> Any:
        if preprocessor.load is None:
            return None
        missing = [name for name in preprocessor.files if not (self.folder / name).is_file()]
        if missing:
            where = " and ".join(str(self.folder / name) for name in missing)
            raise UserError(
                f"The preprocessor {preprocessor.name!r} needs {where}, which is missing. Download "
                f"{', '.join(missing)} from {ANNOTATORS_SOURCE} and put it in {self.folder}."
            )
        with self._lock:
            key = preprocessor.files
            if key not in self._detectors:
                self._detectors[key] = self._build(preprocessor)
            return self._detectors[key]

    def _build(self, preprocessor: Preprocessor) -> Any:
        try:
            detector = preprocessor.load(self.folder)
        except Exception as exc:  # controlnet-aux raises whatever its model code meets in a bad file
            files = ", ".join(str(self.folder / name) for name in preprocessor.files)
            raise UserError(
                f"The preprocessor {preprocessor.name!r} could not load {files}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''} — download it again from "
                f"{ANNOTATORS_SOURCE}."
            ) from exc
        log.info("Loaded annotator %s", preprocessor.name)
        return detector.to(self.device) if hasattr(detector, "to") else detector


def pixel_perfect_resolution(image: Image.Image, width: int, height: int, resize_mode: int) -> int:
    """sd-webui-controlnet's pixel-perfect preprocessor resolution: the picture's short side once resized to the
    output as the resize mode resizes it (to cover the output, or for "Resize and Fill" to fit inside it)."""
    scales = (height / image.height, width / image.width)
    scale = min(scales) if resize_mode == 2 else max(scales)
    return int(np.round(scale * min(image.width, image.height)))


def detect_map(
    module: str, image: Image.Image, resolution: int, threshold_a: float, threshold_b: float, annotators: Annotators
) -> Image.Image:
    """The control map of `image` (RGB) by the named preprocessor, at about `resolution` on the short side."""
    preprocessor = PREPROCESSORS[module]
    detector = annotators.detector(preprocessor)
    a, b = preprocessor.thresholds(threshold_a, threshold_b)
    result = preprocessor.run(np.asarray(image.convert("RGB")), resolution, a, b, detector, **preprocessor.options)
    result = np.asarray(result)
    if result.dtype != np.uint8:
        result = np.clip(result, 0, 255).astype(np.uint8)
    return Image.fromarray(result).convert("RGB")
