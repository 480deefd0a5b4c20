"""img2img inputs as A1111 prepares them: resize modes, the mask, "Only masked" crops, outpaint canvas, compositing.

Semantics follow A1111's modules/images.py (resize_image), modules/masking.py and StableDiffusionProcessingImg2Img
(init, apply_overlay). The resize, crop-region and overlay steps use diffusers' VaeImageProcessor, whose
`resize(..., "crop"/"fill")`, `get_crop_region` and `apply_overlay` are ports of the same A1111 functions.
Pure PIL/numpy work: no model is needed here, so every step is testable on synthetic images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np
from diffusers.image_processor import VaeImageProcessor
from PIL import Image, ImageFilter, ImageOps
from scipy.ndimage import gaussian_filter1d

from core.errors import UserError
from core.request import GenerationRequest

# RESIZE_MODES by index → diffusers' resize_mode. "Just resize (latent upscale)" resizes the pixels like "Just
# resize" wherever pixels are needed (masks, compositing, strength 0); plain img2img upscales the latent instead.
_DIFFUSERS_RESIZE = ("default", "crop", "fill", "default")
LATENT_UPSCALE = 3
FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = range(4)  # MASKED_CONTENT indexes
# Masked content "fill": coarse-to-fine blur passes (radius, times composited), as A1111's masking.fill.
_FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))
EMPTY_MASK = "The mask is empty: nothing would change. Draw over the part to repaint."
FULL_MASK_INVERTED = (
    "The mask covers the whole image and Mask mode is “Inpaint not masked”: nothing would change. "
    "Leave some part unpainted, or choose “Inpaint masked”."
)


@dataclass(frozen=True)
class PreparedImage:
    """What the pipeline starts from, and how its output becomes the final image."""

    image: Image.Image  # RGB at the processing size: the pipeline's init image
    source: Image.Image  # the upload, flattened to RGB (latent upscale encodes it at its own size)
    mask: Image.Image | None = None  # L at the processing size, white = repaint, blurred (None: plain img2img)
    base: Image.Image | None = None  # what the result is composited over (the output's size)
    overlay: Image.Image | None = None  # L: how much of the generated pixels shows over `base`
    crop: tuple[int, int, int, int] | None = None  # "Only masked": where the processed crop goes in `base`
    notices: tuple[str, ...] = field(default=())

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


@functools.cache
def _processor() -> VaeImageProcessor:
    return VaeImageProcessor(resample="lanczos")  # A1111 resizes with Lanczos


def resize_image(resize_mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's images.resize_image: 0 stretch, 1 scale to cover and centre-crop, 2 scale to fit and fill the bands
    by stretching the edge rows/columns, 3 (latent upscale) stretches here. The image keeps its mode."""
    if image.size == (width, height):
        return image.copy()
    resized = _processor().resize(image, height, width, resize_mode=_DIFFUSERS_RESIZE[resize_mode])
    return resized if resized.mode == image.mode else resized.convert(image.mode)


def flatten(image: Image.Image) -> Image.Image:
    """RGB; transparent parts become white, as A1111's images.flatten with its default background."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def mask_levels(mask: Image.Image) -> Image.Image:
    """The mask as L: a transparent-background drawing's alpha channel (Gradio sketch layers), else its grey."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        return mask.getchannel("A")
    return mask.convert("L")


def threshold(mask: Image.Image) -> Image.Image:
    """Black and white at A1111's threshold (values above 128 are painted)."""
    return mask.point(lambda v: 255 if v > 128 else 0)


def blur_mask(mask: Image.Image, radius: int) -> Image.Image:
    """A1111's mask blur: a Gaussian of sigma `radius` over 2*int(2.5*radius+0.5)+1 taps (cv2's kernel size),
    mirrored at the edges (cv2's default border), along x then y."""
    if radius <= 0:
        return mask.copy()
    values = np.asarray(mask, dtype=np.float32)
    for axis in (1, 0):
        values = gaussian_filter1d(values, radius, axis=axis, mode="mirror", truncate=2.5)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Masked content "fill": the masked area painted with the surrounding colours, blurred (A1111's masking.fill).

    The known pixels, premultiplied by "not masked", are blurred at decreasing radii and laid over each other, so
    far from the edge the colour is a wide average and near it the neighbours'; the last pass restores the known
    pixels exactly.
    """
    known = image.convert("RGB")
    known.putalpha(ImageOps.invert(mask.convert("L")))
    premultiplied = known.convert("RGBa")
    result = Image.new("RGBA", image.size)
    for radius, times in _FILL_PASSES:
        layer = premultiplied.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(times):
            result.alpha_composite(layer)
    return result.convert("RGB")


def user_mask(request: GenerationRequest, size: tuple[int, int], notices: list[str]) -> Image.Image | None:
    """The request's mask as black and white at the image's size, inverted for "Inpaint not masked"."""
    if request.mask is None:
        return None
    levels = mask_levels(request.mask)
    if levels.size != size:
        notices.append(
            f"The mask is {levels.width}x{levels.height} but the image is {size[0]}x{size[1]}: "
            "the mask was stretched to the image's size."
        )
        levels = levels.resize(size, Image.BILINEAR)
    mask = threshold(levels)
    if request.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    if mask.getbbox() is None and not request.is_outpaint:
        raise UserError(FULL_MASK_INVERTED if request.inpainting_mask_invert else EMPTY_MASK)
    return mask


def prepare_image(request: GenerationRequest) -> PreparedImage:
    """The init image (and mask) at the processing size, and what `finish_image` needs to build the output.

    Outpainting always works on the whole canvas ("Only masked" would crop around a border that surrounds the
    picture, i.e. nearly everything).
    """
    if request.init_image is None:
        raise UserError("No image: upload the picture to start from.")
    source = flatten(request.init_image)
    notices: list[str] = []
    mask = user_mask(request, source.size, notices)
    if request.is_outpaint:
        prepared = _outpaint(request, source, mask)
    elif mask is None:
        image = resize_image(request.resize_mode, source, request.width, request.height)
        prepared = PreparedImage(image, source)
    elif request.inpaint_full_res:
        prepared = _only_masked(request, source, blur_mask(mask, request.mask_blur))
    else:
        prepared = _whole_picture(request, source, blur_mask(mask, request.mask_blur))
    return replace(prepared, notices=tuple(notices))


def _whole_picture(request: GenerationRequest, source: Image.Image, blurred: Image.Image) -> PreparedImage:
    """Image and blurred mask resized alike; the result shows over the resized image through twice the mask
    (clipped), as A1111's mask_for_overlay: solid where the mask is at least half, untouched where it is 0."""
    base = resize_image(request.resize_mode, source, request.width, request.height)
    mask = resize_image(request.resize_mode, blurred, request.width, request.height)
    overlay = mask.point(lambda v: min(255, 2 * v))
    return PreparedImage(_masked_content(request, base, mask), source, mask, base, overlay)


def _only_masked(request: GenerationRequest, source: Image.Image, blurred: Image.Image) -> PreparedImage:
    """The mask's bounding box plus padding, grown to width:height and clamped to the image, is inpainted at
    width x height and pasted back at the upload's own size (A1111's "Inpaint area: Only masked")."""
    crop = crop_region(blurred, request.width, request.height, request.inpaint_full_res_padding)
    mask = resize_image(2, blurred.crop(crop), request.width, request.height)
    image = resize_image(2, source.crop(crop), request.width, request.height)
    return PreparedImage(_masked_content(request, image, mask), source, mask, source, blurred, crop)


def crop_region(mask: Image.Image, width: int, height: int, padding: int) -> tuple[int, int, int, int]:
    """A1111's get_crop_region + expand_crop_region: where "Only masked" crops (x1, y1, x2, y2)."""
    return tuple(int(v) for v in _processor().get_crop_region(mask, width, height, pad=padding))  # type: ignore


def _outpaint(request: GenerationRequest, source: Image.Image, mask: Image.Image | None) -> PreparedImage:
    """The image resized to width x height, centred on a canvas larger by the outpaint sides; the new border
    (reaching mask_blur px into the picture so the seam blends) is repainted over edge colours ("fill")."""
    left, right, top, bottom = request.outpaint
    width, height = request.width, request.height
    picture = resize_image(request.resize_mode, source, width, height)
    size = (width + left + right, height + top + bottom)
    canvas = Image.new("RGB", size)
    canvas.paste(picture, (left, top))
    border = Image.new("L", size, 255)
    border.paste(0, (left, top, left + width, top + height))
    canvas = fill_masked(canvas, border)
    overlap = request.mask_blur
    repaint = Image.new("L", size, 255)
    keep = (
        left + (overlap if left else 0),
        top + (overlap if top else 0),
        left + width - (overlap if right else 0),
        top + height - (overlap if bottom else 0),
    )
    repaint.paste(0, keep)
    if mask is not None:  # the user's own mask still applies inside the picture
        drawn = threshold(resize_image(request.resize_mode, mask, width, height))
        repaint.paste(255, (left, top), drawn)
    blurred = blur_mask(repaint, request.mask_blur)
    overlay = blurred.point(lambda v: min(255, 2 * v))
    return PreparedImage(_masked_content(request, canvas, blurred), source, blurred, canvas, overlay)


def _masked_content(request: GenerationRequest, image: Image.Image, mask: Image.Image) -> Image.Image:
    # Every choice but "original" starts from the filled pixels, as in A1111; "latent noise" and "latent nothing"
    # then replace the masked latents too (core.jobs).
    return image if request.inpainting_fill == ORIGINAL else fill_masked(image, mask)


def finish_image(prepared: PreparedImage, generated: Image.Image) -> Image.Image:
    """The output: for inpainting, the generated pixels over the original through the overlay mask (pasted back
    into place for "Only masked"), so pixels outside the blurred mask are the input's, exactly."""
    if prepared.overlay is None or prepared.base is None:
        return generated
    return _processor().apply_overlay(prepared.overlay, prepared.base, generated, prepared.crop)


def unchanged_image(prepared: PreparedImage) -> Image.Image:
    """Denoising strength 0: the prepared input as the result, without running the model."""
    return finish_image(prepared, prepared.image)
