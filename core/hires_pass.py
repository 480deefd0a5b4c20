"""Hires fix's second pass in the worker: the first pass's latents upscaled (in latent space, or decoded and resized
in pixels), then img2img at the new size through the checkpoint's own img2img pipeline (and its ControlNet twin)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline
from PIL import Image

from core.conditioning import JobPrompts
from core.controlnet import Control
from core.errors import UserError
from core.hires import HIRES_UPSCALERS, LATENT_UPSCALERS, HiresSize, hires_sampler, hires_size, hires_steps
from core.jobs import Job, _strength, derived_pipeline, with_controlnet
from core.loader import LoadedCheckpoint
from core.memory_policy import MemoryPlan
from core.model_cache import ActiveModel
from core.request import GenerationRequest
from core.upscalers import UpscalerCache

PIXEL_FILTERS = {"None": Image.LANCZOS, "Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}


def second_pass_request(request: GenerationRequest) -> GenerationRequest:
    """The second pass as a request of its own: the hires sampler, steps, prompts and size (what the batch loop,
    the prompt encoder and the memory plan read)."""
    size = hires_size(request)
    sampler, scheduler = hires_sampler(request)
    return request.with_changes(
        prompt=request.hr_prompt or request.prompt,
        negative_prompt=request.hr_negative_prompt or request.negative_prompt,
        sampler_name=sampler,
        scheduler=scheduler,
        steps=hires_steps(request),
        width=size.width,
        height=size.height,
        enable_hr=False,
    )


@dataclass
class HiresSetup:
    """What the second pass runs with, decided once per job."""

    active: ActiveModel  # its checkpoint: the job's own, unless Hires checkpoint names another
    upscaler: Callable[[Image.Image], Image.Image] | None  # a model upscaler, or None for the built-in ones
    controls: list[Control]  # the ControlNet units that fit its checkpoint
    other_checkpoint: bool = False
    plan: MemoryPlan | None = None
    prompts: JobPrompts | None = None

    @property
    def infotext(self) -> dict[str, str]:
        """A1111's "Hires checkpoint: name [hash]" where the second pass ran another checkpoint (hires_params
        holds its place in the order)."""
        if not self.other_checkpoint:
            return {}
        if self.active.model_hash is None:
            return {"Hires checkpoint": self.active.entry.stem}
        return {"Hires checkpoint": f"{self.active.entry.stem} [{self.active.model_hash}]"}

    def placeholder_job(self) -> Job:
        """The second pass's pipeline as a job, for placing it on the device before its inputs exist."""
        return Job(derived_pipeline(self.active.loaded, "img2img"), lambda seeds: {})


def model_upscaler(request: GenerationRequest, upscalers: UpscalerCache) -> Callable[[Image.Image], Image.Image] | None:
    """The model upscaler the request names, as a function of a picture (loaded before the first pass, so a wrong
    name costs no sampling), or None for the built-in ones."""
    name = request.hr_upscaler
    if name in HIRES_UPSCALERS:
        return None
    if name not in upscalers.names():
        choices = ", ".join([*HIRES_UPSCALERS, *upscalers.names()])
        raise UserError(f"Unknown hires upscaler {name!r}; choose one of: {choices}.")
    loaded = upscalers.get(name)
    return lambda picture: upscalers.upscale(loaded, picture)


def upscaled_input(
    pipe: DiffusionPipeline,
    latents: torch.Tensor,
    request: GenerationRequest,
    model: Callable[[Image.Image], Image.Image] | None,
    as_pictures: bool = False,
) -> object:
    """What the img2img pass starts from: latents interpolated as A1111's latent modes do, or the decoded pictures
    upscaled in pixels (by the model, then resized to the size; or resized with Pillow: Lanczos, Nearest).
    `as_pictures`: always pictures (an inpainting checkpoint's pipeline takes an image and a mask, not latents)."""
    size = hires_size(request)
    if request.hr_upscaler in LATENT_UPSCALERS:
        mode, antialias = LATENT_UPSCALERS[request.hr_upscaler]
        factor = pipe.vae_scale_factor
        target = (size.height // factor, size.width // factor)
        upscaled = torch.nn.functional.interpolate(latents.float(), size=target, mode=mode, antialias=antialias)
        upscaled = upscaled.to(latents.dtype)
        return decode(pipe, upscaled) if as_pictures else upscaled
    pictures = decode(pipe, latents)
    if model is not None:
        pictures = [model(picture) for picture in pictures]
    resample = PIXEL_FILTERS.get(request.hr_upscaler, Image.LANCZOS)
    return [picture.resize((size.width, size.height), resample) for picture in pictures]


def second_pass_job(
    loaded: LoadedCheckpoint, controls: list[Control], start: object, request: GenerationRequest, guided: bool
) -> Job:
    """The img2img job of the second pass, with the ControlNet units' maps resized to its size (A1111's
    sd-webui-controlnet applies them to both passes by default)."""
    second = second_pass_request(request)
    pipe = derived_pipeline(loaded, "img2img")  # an inpainting checkpoint's own pipeline is the inpaint one
    strength = _strength(second.steps, request.denoising_strength)
    size = (second.width, second.height)
    inputs = {"image": start, "strength": strength}
    if loaded.is_inpainting:  # as A1111's img2img with such a checkpoint: the whole picture masked
        inputs.update(mask_image=Image.new("L", size, 255), width=size[0], height=size[1])
    job = Job(pipe, lambda seeds: inputs)
    resized = [dataclasses.replace(c, map=c.map.resize(size, Image.LANCZOS)) for c in controls]
    return with_controlnet(job, loaded, resized, guided=guided)


def cropped(images: list[Image.Image], size: HiresSize) -> list[Image.Image]:
    """Both target sides given: the centre of the covering picture, as A1111 truncates it."""
    if size.crop is None:
        return images
    return [center_crop(image, *size.crop) for image in images]


def center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """The centre width x height of a picture that covers that size (Hires fix's and Extras' "crop to fit")."""
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def decode(pipe: DiffusionPipeline, latents: torch.Tensor) -> list[Image.Image]:
    """Pictures of (scaled) latents through the pipeline's VAE, upcast where that VAE needs fp32, as diffusers'
    pipelines decode them."""
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and vae.config.get("force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        with torch.inference_mode():
            pixels = vae.decode(latents.to(vae.device, vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    finally:
        if upcast:
            vae.to(torch.float16)
    return pipe.image_processor.postprocess(pixels, output_type="pil")
