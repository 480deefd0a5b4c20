"""A1111's Extras (postprocessing): upscale a finished picture by a factor or to a size, with one or two
upscalers blended. The request and its PNG text; torch-free (the web process checks it, core.extras_run runs it)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from PIL import Image

from core.errors import UserError
from core.request import MAX_PROMPT_LENGTH, _coerce

MAX_EXTRAS_SIDE = 8192  # an upscaled picture may be larger than a generated one, but not without bound
MAX_EXTRAS_PIXELS = 8192 * 8192
MAX_EXTRAS_SCALE = 8.0  # A1111's "Resize" slider maximum
RESIZE_MODES = ("Scale by", "Scale to")


@dataclass(frozen=True)
class ExtrasRequest:
    """A1111's API field names and defaults (ExtrasBaseRequest)."""

    image: Image.Image | None = None
    resize_mode: int = 0  # 0: by upscaling_resize; 1: to upscaling_resize_w x upscaling_resize_h
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    source_parameters: str | None = None  # the picture's own infotext, kept in the result (read by the web process)

    def scale(self) -> float:
        """A1111's upscale_by: for "Scale to", the factor that covers the target (cropped after, if asked)."""
        if self.resize_mode == 1 and self.image is not None:
            return max(self.upscaling_resize_w / self.image.width, self.upscaling_resize_h / self.image.height)
        return self.upscaling_resize

    def output_size(self) -> tuple[int, int]:
        if self.resize_mode == 1 and self.upscaling_crop:
            return self.upscaling_resize_w, self.upscaling_resize_h
        return int(self.image.width * self.scale()), int(self.image.height * self.scale())

    def validated(self) -> ExtrasRequest:
        problems = []
        if self.image is None:
            problems.append("No image: upload the picture to upscale.")
        if self.resize_mode not in (0, 1):
            problems.append(f"Resize mode must be 0 ({RESIZE_MODES[0]}) or 1 ({RESIZE_MODES[1]}).")
        if not 0 < self.upscaling_resize <= MAX_EXTRAS_SCALE:
            problems.append(f"Resize must be over 0 and at most {MAX_EXTRAS_SCALE:g}, not {self.upscaling_resize}.")
        for label, side in (("Width", self.upscaling_resize_w), ("Height", self.upscaling_resize_h)):
            if not 1 <= side <= MAX_EXTRAS_SIDE:
                problems.append(f"{label} must be 1–{MAX_EXTRAS_SIDE}, not {side}.")
        if not 0 <= self.extras_upscaler_2_visibility <= 1:
            problems.append("Upscaler 2 visibility must be 0–1.")
        if not problems:
            width, height = self.output_size()
            if max(width, height) > MAX_EXTRAS_SIDE or width * height > MAX_EXTRAS_PIXELS or min(width, height) < 1:
                problems.append(
                    f"The result would be {width}x{height}; at most {MAX_EXTRAS_SIDE} px a side and "
                    f"{MAX_EXTRAS_PIXELS:,} pixels."
                )
        if self.source_parameters and len(self.source_parameters) > 3 * MAX_PROMPT_LENGTH:
            problems.append("The picture's parameters text is too long to keep.")
        if problems:
            raise UserError(" ".join(problems))
        return self

    def with_image(self, image: Image.Image) -> ExtrasRequest:
        """For this picture, keeping the parameters it carries (as A1111's Extras does)."""
        from core.image_info import image_parameters

        return replace(self, image=image, source_parameters=image_parameters(image))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExtrasRequest:
        """From A1111's API fields (unknown ones and None ignored), coerced as GenerationRequest's are."""
        known = {f.name: f for f in fields(cls) if f.name != "source_parameters"}  # read from the picture only
        kwargs = {key: _coerce(key, known[key].type, value, {}) for key, value in values.items()
                  if key in known and value is not None and value != ""}  # fmt: skip
        return cls(**kwargs)


def postprocessing_text(request: ExtrasRequest) -> str:
    """A1111's "postprocessing" PNG text: "Postprocess upscale by: 2, Postprocess upscaler: …"."""
    params: dict[str, object] = {}
    if request.resize_mode == 1:
        params["Postprocess upscale to"] = f"{request.upscaling_resize_w}x{request.upscaling_resize_h}"
        params["Postprocess crop to fit"] = request.upscaling_crop
    else:
        params["Postprocess upscale by"] = f"{request.upscaling_resize:g}"
    params["Postprocess upscaler"] = request.upscaler_1
    if request.upscaler_2 != "None" and request.extras_upscaler_2_visibility > 0:
        params["Postprocess upscaler 2"] = request.upscaler_2
        params["Postprocess upscaler 2 visibility"] = f"{request.extras_upscaler_2_visibility:g}"
    return ", ".join(f"{key}: {value}" for key, value in params.items())
