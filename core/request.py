"""GenerationRequest: every parameter of one generation job, typed, defaulted and validated."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from PIL import Image

from core.errors import UserError
from core.untrusted_images import MAX_UPLOAD_BYTES, open_image, size_problem

MAX_SIDE = 4096  # pixels; beyond this a single image would not fit in memory on consumer GPUs
MAX_PIXELS = 2048 * 2048 * 2  # total area limit for one image
MAX_STEPS = 150  # A1111's slider maximum
MAX_BATCH_SIZE = 16
MAX_BATCH_COUNT = 100
MAX_CLIP_SKIP = 12
MAX_PROMPT_LENGTH = 20_000  # characters; A1111's longest real prompts are a few thousand
MAX_NAME_LENGTH = 1_000  # a model, sampler or style name
MAX_MASK_BLUR = 64  # A1111's slider maximum
MAX_PADDING = 256  # A1111's "Only masked padding, pixels" slider maximum
# A1111's hires choices for "the same as the first pass".
SAME_SAMPLER, SAME_SCHEDULER, SAME_CHECKPOINT = "Use same sampler", "Use same scheduler", "Use same checkpoint"
MAX_HR_SCALE = 4.0  # A1111's "Upscale by" slider maximum
PREVIEW_METHODS = ("Approximate", "TAESD", "Full VAE", "None")  # live previews (core.previews makes them)

# A1111's labels, in the order of its radio buttons: the request holds the index, as A1111's API does.
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
MASK_MODES = ("Inpaint masked", "Inpaint not masked")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
INPAINT_AREAS = ("Whole picture", "Only masked")
_CHOICES = {
    "resize_mode": ("Resize mode", RESIZE_MODES),
    "inpainting_mask_invert": ("Mask mode", MASK_MODES),
    "inpainting_fill": ("Masked content", MASKED_CONTENT),
}

# ControlNet, as sd-webui-controlnet: its labels (written in the infotext) and its API's indexes.
MAX_CONTROLNET_UNITS = 3  # the UI may show fewer; a request never holds more
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
CONTROL_RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")  # same resizes as RESIZE_MODES 0-2
MAX_CONTROL_WEIGHT = 2.0  # sd-webui-controlnet's slider maximum
MIN_PROCESSOR_RES, MAX_PROCESSOR_RES = 64, 2048
_UNIT_CHOICES = {
    "resize_mode": ("Resize Mode", CONTROL_RESIZE_MODES),
    "control_mode": ("Control Mode", CONTROL_MODES),
}


@dataclass(frozen=True)
class ControlNetUnit:
    """One ControlNet unit, with sd-webui-controlnet's API field names and defaults.

    Thresholds of -1 mean the preprocessor's own defaults (e.g. 100/200 for canny), as in that API. Without an
    image, img2img and inpainting use the tab's input image, as sd-webui-controlnet does; `use_input_image` asks
    for it even when the unit holds an image.
    """

    enabled: bool = True
    image: Image.Image | None = None  # the picture to preprocess (or, with module "none", the control map itself)
    module: str = "none"  # preprocessor name (core.preprocessors.PREPROCESSORS)
    model: str = "None"  # a name from models/ControlNet
    weight: float = 1.0
    resize_mode: int = 1  # index into CONTROL_RESIZE_MODES
    processor_res: int = 512
    threshold_a: float = -1.0
    threshold_b: float = -1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: int = 0  # index into CONTROL_MODES
    use_input_image: bool = False

    @property
    def is_inert(self) -> bool:
        """Weight 0, or a guidance window with no step in it: the unit cannot change a pixel, so it is not run."""
        return self.weight == 0 or self.guidance_start >= min(1.0, self.guidance_end)

    def problems(self, index: int, has_input_image: bool) -> list[str]:
        """What is wrong with this unit, each message naming it as the UI does ("ControlNet Unit 0")."""
        from core.preprocessors import PREPROCESSORS  # torch-free, imported late like the samplers

        name = f"ControlNet Unit {index}"
        problems = []
        if self.image is None and not has_input_image:
            problems.append(f"{name} is enabled but has no control image: upload one (or disable the unit).")
        elif self.use_input_image and not has_input_image:
            problems.append(f"{name} uses the input image, but there is none: upload one or untick the option.")
        elif self.image is not None and (problem := size_problem(f"{name}'s image", *self.image.size)):
            problems.append(problem)
        if self.module not in PREPROCESSORS:
            problems.append(f"{name}: unknown preprocessor {self.module!r}; choose one of: {', '.join(PREPROCESSORS)}.")
        if self.model in ("", "None"):
            problems.append(f"{name}: choose a ControlNet model (models/ControlNet).")
        if not 0 <= self.weight <= MAX_CONTROL_WEIGHT:
            problems.append(f"{name}: Control Weight must be 0–{MAX_CONTROL_WEIGHT:g}, not {self.weight}.")
        if not 0 <= self.guidance_start <= self.guidance_end <= 1:
            problems.append(
                f"{name}: Starting and Ending Control Step must be 0–1 with the start not after the end, "
                f"not {self.guidance_start}–{self.guidance_end}."
            )
        if not self.pixel_perfect and not MIN_PROCESSOR_RES <= self.processor_res <= MAX_PROCESSOR_RES:
            problems.append(f"{name}: Preprocessor Resolution must be {MIN_PROCESSOR_RES}–{MAX_PROCESSOR_RES}.")
        for key, (label, choices) in _UNIT_CHOICES.items():
            if not 0 <= getattr(self, key) < len(choices):
                problems.append(f"{name}: {label} must be one of: {', '.join(choices)} (0–{len(choices) - 1}).")
        return problems

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | ControlNetUnit) -> ControlNetUnit:
        """From sd-webui-controlnet's API dict (also its older `input_image`, and `image` as {"image": …})."""
        if isinstance(values, ControlNetUnit):
            return values
        values = dict(values)
        image = values.get("image", values.get("input_image"))
        values["image"] = image.get("image") if isinstance(image, Mapping) else image
        known = {f.name: f for f in fields(cls)}
        kwargs = {
            key: _coerce(key, known[key].type, value, _UNIT_CHOICES)
            for key, value in values.items()
            if key in known and value is not None
        }
        return cls(**kwargs)


@dataclass(frozen=True)
class GenerationRequest:
    """Inputs of one job, named as A1111 names them (its API uses the same field names)."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: tuple[str, ...] = ()  # names from styles.csv, applied to both prompts in this order
    checkpoint: str = ""  # a name from the models registry, e.g. "sd15/dreamshaper.safetensors"
    vae: str = "Automatic"  # "Automatic", "None", or a name from models/VAE
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"  # A1111's "Schedule type"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int = -1
    batch_size: int = 1
    n_iter: int = 1  # A1111's "Batch count"
    clip_skip: int = 1
    preview_method: str = "Approximate"  # "Full VAE", "Approximate" or "None"
    preview_every_n_steps: int = 2
    step_cache: int = 0  # the UNet's deep blocks run every N-th call (core.step_cache); 0: every call
    # img2img: set init_image. Inpainting: set mask too (white = repaint), or extend the canvas with outpaint_*.
    init_image: Image.Image | None = None  # A1111's API takes a list, init_images; one image is enough here
    mask: Image.Image | None = None
    denoising_strength: float = 0.75
    resize_mode: int = 0  # index into RESIZE_MODES
    mask_blur: int = 4
    inpainting_mask_invert: int = 0  # index into MASK_MODES
    inpainting_fill: int = 1  # index into MASKED_CONTENT
    inpaint_full_res: bool = False  # A1111's "Inpaint area": False = Whole picture, True = Only masked
    inpaint_full_res_padding: int = 32
    outpaint_left: int = 0  # pixels added to the canvas on each side (ours; A1111 outpaints with scripts)
    outpaint_right: int = 0
    outpaint_top: int = 0
    outpaint_bottom: int = 0
    controlnet_units: tuple[ControlNetUnit, ...] = ()
    # Hires fix (txt2img): a second, img2img pass at a larger size, with A1111's fields and defaults (core.hires).
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_resize_x: int = 0  # 0 and 0: the size times hr_scale
    hr_resize_y: int = 0
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = 0  # 0: as many as the first pass
    hr_sampler_name: str = SAME_SAMPLER
    hr_scheduler: str = SAME_SCHEDULER
    hr_prompt: str = ""  # "": the prompt
    hr_negative_prompt: str = ""
    hr_checkpoint_name: str = SAME_CHECKPOINT  # or a name from the models registry

    @property
    def enabled_units(self) -> list[tuple[int, ControlNetUnit]]:
        """(index, unit) of the enabled ControlNet units; the index is the unit's number in the UI and infotext."""
        return [(i, unit) for i, unit in enumerate(self.controlnet_units) if unit.enabled]

    @property
    def outpaint(self) -> tuple[int, int, int, int]:
        """Pixels added (left, right, top, bottom), each rounded up to a multiple of 8 so the canvas stays one."""
        sides = (self.outpaint_left, self.outpaint_right, self.outpaint_top, self.outpaint_bottom)
        return tuple(-(-max(0, side) // 8) * 8 for side in sides)  # type: ignore[return-value]

    @property
    def is_outpaint(self) -> bool:
        return any(self.outpaint)

    @property
    def is_inpaint(self) -> bool:
        """Inpainting (and outpainting, which is inpainting of a larger canvas) rather than plain img2img."""
        return self.init_image is not None and (self.mask is not None or self.is_outpaint)

    @property
    def mode(self) -> str:
        """A1111's name for the tab and the outputs folder: inpainting is saved with img2img."""
        return "txt2img" if self.init_image is None else "img2img"

    def validated(self) -> GenerationRequest:
        """Return self when every value is usable, else raise UserError saying what to change."""
        problems = self._text_problems()
        if problems:  # nothing else is looked at in a request that is already too long to read
            raise UserError(" ".join(problems))
        problems = self._generation_problems() + self._image_problems() + self._controlnet_problems()
        problems += self._hires_problems()
        if not self.checkpoint:
            problems.append("No checkpoint chosen.")
        if problems:
            raise UserError(" ".join(problems))
        return self

    def _text_problems(self) -> list[str]:
        problems = []
        texts = [("The prompt", self.prompt), ("The negative prompt", self.negative_prompt)]
        texts += [("The hires prompt", self.hr_prompt), ("The hires negative prompt", self.hr_negative_prompt)]
        for label, text in texts:
            if len(text) > MAX_PROMPT_LENGTH:
                problems.append(f"{label} is {len(text):,} characters; at most {MAX_PROMPT_LENGTH:,} are accepted.")
        names = [("checkpoint", self.checkpoint), ("VAE", self.vae), ("sampler", self.sampler_name)]
        names += [("schedule type", self.scheduler), *(("style", style) for style in self.styles)]
        names += [("ControlNet model", unit.model) for unit in self.controlnet_units]
        names += [("preprocessor", unit.module) for unit in self.controlnet_units]
        names += [("hires upscaler", self.hr_upscaler), ("hires sampler", self.hr_sampler_name)]
        names += [("hires schedule type", self.hr_scheduler), ("hires checkpoint", self.hr_checkpoint_name)]
        for label, name in names:
            if len(name) > MAX_NAME_LENGTH:
                problems.append(f"The {label} name is {len(name):,} characters long; no such name exists.")
        if any("\0" in text for text in (*(text for _, text in texts), *(name for _, name in names))):
            problems.append("The request holds a NUL character, which no prompt or name may contain.")
        return problems

    def _generation_problems(self) -> list[str]:
        from core.samplers import SAMPLERS, SCHEDULE_TYPES, check_choice
        from core.step_cache import MAX_STEP_CACHE

        problems = []
        for name, value in (("Width", self.width), ("Height", self.height)):
            if value % 8:
                problems.append(f"{name} {value} is not a multiple of 8.")
            if not 64 <= value <= MAX_SIDE:
                problems.append(f"{name} {value} is outside 64–{MAX_SIDE} px.")
        if self.width * self.height > MAX_PIXELS:
            problems.append(f"{self.width}x{self.height} is too large (at most {MAX_PIXELS:,} pixels).")
        if not 1 <= self.steps <= MAX_STEPS:
            problems.append(f"Sampling steps must be 1–{MAX_STEPS}, not {self.steps}.")
        if not 0 <= self.cfg_scale <= 100:
            problems.append(f"CFG scale must be 0–100, not {self.cfg_scale}.")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            problems.append(f"Batch size must be 1–{MAX_BATCH_SIZE}, not {self.batch_size}.")
        if not 1 <= self.n_iter <= MAX_BATCH_COUNT:
            problems.append(f"Batch count must be 1–{MAX_BATCH_COUNT}, not {self.n_iter}.")
        if not 1 <= self.clip_skip <= MAX_CLIP_SKIP:
            problems.append(f"Clip skip must be 1–{MAX_CLIP_SKIP}, not {self.clip_skip}.")
        if not -1 <= self.seed < 2**32:
            problems.append(f"Seed must be -1 (random) or 0–{2**32 - 1}, not {self.seed}.")
        if self.sampler_name not in SAMPLERS:
            problems.append(f"Unknown sampler {self.sampler_name!r}; choose one of: {', '.join(SAMPLERS)}.")
        if self.scheduler not in SCHEDULE_TYPES:
            problems.append(f"Unknown schedule type {self.scheduler!r}; choose one of: {', '.join(SCHEDULE_TYPES)}.")
        if self.sampler_name in SAMPLERS and self.scheduler in SCHEDULE_TYPES:
            try:
                check_choice(self.sampler_name, self.scheduler)
            except UserError as exc:
                problems.append(str(exc))
        if self.preview_method not in PREVIEW_METHODS:
            problems.append(f"Unknown preview method {self.preview_method!r}.")
        if self.preview_every_n_steps < 1:
            problems.append("Preview interval must be at least 1 step.")
        if not 0 <= self.step_cache <= MAX_STEP_CACHE:
            problems.append(f"Step cache must be 0 (off) to {MAX_STEP_CACHE}, not {self.step_cache}.")
        return problems

    def _image_problems(self) -> list[str]:
        problems = []
        if self.init_image is None and (self.mask is not None or self.is_outpaint):
            what = "inpaint" if self.mask is not None else "outpaint"
            problems.append(f"No image: upload the picture to {what} (the mask alone is not enough).")
        for what, image in (("image", self.init_image), ("mask", self.mask)):
            if image is not None and (problem := size_problem(what, *image.size)):
                problems.append(problem)
        if not 0 <= self.denoising_strength <= 1:
            problems.append(f"Denoising strength must be 0–1, not {self.denoising_strength}.")
        for name, (label, choices) in _CHOICES.items():
            if not 0 <= getattr(self, name) < len(choices):
                problems.append(f"{label} must be one of: {', '.join(choices)} (0–{len(choices) - 1}).")
        if not 0 <= self.mask_blur <= MAX_MASK_BLUR:
            problems.append(f"Mask blur must be 0–{MAX_MASK_BLUR}, not {self.mask_blur}.")
        if not 0 <= self.inpaint_full_res_padding <= MAX_PADDING:
            problems.append(f"Only masked padding must be 0–{MAX_PADDING} px, not {self.inpaint_full_res_padding}.")
        sides = (self.outpaint_left, self.outpaint_right, self.outpaint_top, self.outpaint_bottom)
        if any(side < 0 for side in sides):
            problems.append("Outpainting adds pixels: each side must be 0 or more.")
        elif self.is_outpaint:
            left, right, top, bottom = self.outpaint
            width, height = self.width + left + right, self.height + top + bottom
            if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
                problems.append(
                    f"Outpainting makes the canvas {width}x{height}; the largest is {MAX_SIDE} px a side "
                    f"and {MAX_PIXELS:,} pixels."
                )
        return problems

    def _hires_problems(self) -> list[str]:
        if not self.uses_hires:
            return []
        from core.hires import hires_problems  # torch-free, imported late like the samplers

        return hires_problems(self)

    @property
    def uses_hires(self) -> bool:
        """Hires fix applies to txt2img only (A1111's img2img has no second pass)."""
        return self.enable_hr and self.init_image is None

    def _controlnet_problems(self) -> list[str]:
        if len(self.controlnet_units) > MAX_CONTROLNET_UNITS:
            return [f"At most {MAX_CONTROLNET_UNITS} ControlNet units, not {len(self.controlnet_units)}."]
        has_input = self.init_image is not None
        return [problem for i, unit in self.enabled_units for problem in unit.problems(i, has_input)]

    def with_changes(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # images are deep-copied PIL images

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GenerationRequest:
        """Build from a dict (API payload, UI values), ignoring unknown keys and None, coercing types.

        Images may be PIL images, numpy arrays or base64 text (A1111's API, with or without a data: prefix);
        A1111's `init_images` list is read as its first image. Choice fields take an index or A1111's label.
        ControlNet units are dicts of sd-webui-controlnet's API (or ControlNetUnit), under `controlnet_units` or,
        as that API sends them, `alwayson_scripts.controlnet.args`.
        """
        values = dict(values)
        if values.get("init_image") is None and values.get("init_images"):
            values["init_image"] = values["init_images"][0]
        if values.get("controlnet_units") is None:
            scripts = values.get("alwayson_scripts") or {}
            values["controlnet_units"] = (scripts.get("controlnet") or scripts.get("ControlNet") or {}).get("args")
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key == "controlnet_units" and value is not None:
                kwargs[key] = tuple(ControlNetUnit.from_dict(unit) for unit in value)
            elif key in known and value is not None:
                kwargs[key] = _coerce(key, known[key].type, value)
        return cls(**kwargs)


def _coerce(key: str, kind: str, value: Any, choices: Mapping[str, tuple[str, tuple[str, ...]]] = _CHOICES) -> Any:
    if key in choices and isinstance(value, str):
        labels = [label.lower() for label in choices[key][1]]
        if value.lower() in labels:  # A1111 and sd-webui-controlnet capitalise their labels differently
            return labels.index(value.lower())
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            return _to_bool(value)
        if "Image" in kind:
            return to_image(value, key)
        if kind.startswith("tuple[str"):
            return (value,) if isinstance(value, str) else tuple(str(item) for item in value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{key} must be a number, not {value!r}.") from exc


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value in INPAINT_AREAS:
            return value == INPAINT_AREAS[1]
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def to_image(value: Any, name: str = "image") -> Image.Image:
    """A PIL image from what a UI or an API client sends: a PIL image, an array, or base64 text. Base64 is
    bounded before it is decoded, and the image's size is checked from its header before its pixels are."""
    if isinstance(value, Image.Image):
        return value
    if hasattr(value, "__array_interface__"):
        return Image.fromarray(value)
    if isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        if len(text) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
            raise UserError(f"{name} is over {MAX_UPLOAD_BYTES // 2**20} MB; scale it down first.")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UserError(f"{name} is not an image (expected a PNG/JPEG, base64-encoded).") from exc
        return open_image(data, name)
    raise UserError(f"{name} is not an image: got {type(value).__name__}.")
