"""Runs an Extras request in the worker, as A1111's postprocessing_upscale does: each upscaler brings the picture
to the scale (a model upscaler runs until it reaches it, then Lanczos to the exact size; "None"/"Lanczos" and
"Nearest" are plain resizes), upscaler 2 is blended in at its visibility, and "Scale to" crops to fit."""

from __future__ import annotations

from PIL import Image

from core.extras import ExtrasRequest
from core.hires_pass import PIXEL_FILTERS, center_crop
from core.upscalers import UpscalerCache

MAX_MODEL_PASSES = 3  # A1111's Upscaler.upscale: a ×4 model twice reaches ×16, never more than three passes


def run_extras(request: ExtrasRequest, upscalers: UpscalerCache) -> Image.Image:
    image = request.image.convert("RGB")
    scale = request.scale()
    target = (int(image.width * scale), int(image.height * scale))
    result = _upscaled(image, request.upscaler_1, target, upscalers)
    if request.upscaler_2 != "None" and request.extras_upscaler_2_visibility > 0:
        second = _upscaled(image, request.upscaler_2, target, upscalers)
        result = Image.blend(result, second, request.extras_upscaler_2_visibility)
    if request.resize_mode == 1 and request.upscaling_crop:
        result = center_crop(result, request.upscaling_resize_w, request.upscaling_resize_h)
    return result


def _upscaled(image: Image.Image, name: str, target: tuple[int, int], upscalers: UpscalerCache) -> Image.Image:
    if name in PIXEL_FILTERS:
        return image.resize(target, PIXEL_FILTERS[name])
    model = upscalers.get(name)  # a UserError naming the choices when there is no such file
    for _ in range(MAX_MODEL_PASSES):
        if image.width >= target[0] and image.height >= target[1]:
            break
        image = upscalers.upscale(model, image)
    return image.resize(target, Image.LANCZOS) if image.size != target else image
