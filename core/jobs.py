"""What one pipeline call needs for txt2img, img2img or inpainting: the pipeline, its task inputs, the final touch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import (
    DiffusionPipeline,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image

from core.controlnet import Control, multi_controlnet, pipeline_arguments
from core.families import SDXL
from core.image_inputs import (
    LATENT_NOISE,
    LATENT_NOTHING,
    LATENT_UPSCALE,
    PreparedImage,
    finish_image,
    unchanged_image,
)
from core.loader import LoadedCheckpoint
from core.request import GenerationRequest

_DERIVED = {
    ("img2img", False): StableDiffusionImg2ImgPipeline,
    ("inpaint", False): StableDiffusionInpaintPipeline,
    ("img2img", True): StableDiffusionXLImg2ImgPipeline,
    ("inpaint", True): StableDiffusionXLInpaintPipeline,
}
# Each task's pipeline → its ControlNet twin, and the name that twin gives the control images.
_WITH_CONTROLNET = {
    StableDiffusionPipeline: (StableDiffusionControlNetPipeline, "image"),
    StableDiffusionImg2ImgPipeline: (StableDiffusionControlNetImg2ImgPipeline, "control_image"),
    StableDiffusionInpaintPipeline: (StableDiffusionControlNetInpaintPipeline, "control_image"),
    StableDiffusionXLPipeline: (StableDiffusionXLControlNetPipeline, "image"),
    StableDiffusionXLImg2ImgPipeline: (StableDiffusionXLControlNetImg2ImgPipeline, "control_image"),
    StableDiffusionXLInpaintPipeline: (StableDiffusionXLControlNetInpaintPipeline, "control_image"),
}


@dataclass(frozen=True)
class Job:
    """The engine's batch loop is the same for every task; this is what differs."""

    pipeline: DiffusionPipeline
    inputs: Callable[[list[int]], dict]  # the task's pipeline arguments for a batch of these seeds
    finish: Callable[[Image.Image], Image.Image] = lambda image: image
    unchanged: Image.Image | None = None  # denoising strength 0: the result, without running the model
    release: Callable[[], None] = lambda: None  # after the job: let go of what only this job needed


def make_job(request: GenerationRequest, loaded: LoadedCheckpoint, prepared: PreparedImage | None) -> Job:
    if prepared is None:
        return Job(loaded.pipeline, lambda seeds: _txt2img_inputs(request, loaded))
    if request.denoising_strength == 0:
        return Job(loaded.pipeline, lambda seeds: {}, unchanged=unchanged_image(prepared))
    strength = _strength(request.steps, request.denoising_strength)
    if prepared.mask is None and not loaded.is_inpainting:
        pipe = derived_pipeline(loaded, "img2img")
        return Job(pipe, lambda seeds: {"image": _img2img_image(pipe, request, prepared), "strength": strength})
    # 9-channel inpainting checkpoints do plain img2img as A1111 does: the whole image masked, so the model sees
    # no unmasked context and starts from the image noised to the strength (A1111's inpainting_mask_weight 1).
    pipe = derived_pipeline(loaded, "inpaint")

    def inputs(seeds: list[int]) -> dict:
        return {**_inpaint_inputs(pipe, request, prepared, seeds), "strength": strength}

    return Job(pipe, inputs, finish=lambda image: finish_image(prepared, image))


def _strength(steps: int, strength: float) -> float:
    """diffusers runs int(steps * strength) steps, as A1111 does; where that is 0, A1111 still runs the last step
    of the schedule, and so does a strength just over 1/steps."""
    return strength if int(steps * strength) >= 1 else min(1.0, (1 + 1e-6) / steps)


def derived_pipeline(loaded: LoadedCheckpoint, task: str) -> DiffusionPipeline:
    """The img2img or inpaint pipeline over the loaded checkpoint's own modules (nothing is loaded or copied).

    An inpainting checkpoint's pipeline is already the inpaint one.
    """
    if loaded.is_inpainting:
        return loaded.pipeline
    return _derive(loaded, task, _DERIVED[(task, loaded.family is SDXL)])


def _derive(loaded: LoadedCheckpoint, key: str, cls: type[DiffusionPipeline], **extra) -> DiffusionPipeline:
    """A pipeline of class `cls` over the loaded checkpoint's modules, plus `extra` ones. Built once per checkpoint
    and kept under `key`; its modules are re-pointed at each use, as the loaded pipeline's VAE changes with the
    job's VAE choice."""
    base = loaded.pipeline
    pipe = loaded.derived.get(key)
    if pipe is None:
        modules, options = cls._get_signature_keys(cls)
        kwargs = {name: module for name, module in base.components.items() if name in modules}
        kwargs.update({name: base.config[name] for name in options if name in base.config})
        kwargs.update({name: False for name in ("requires_safety_checker", "add_watermarker") if name in options})
        pipe = loaded.derived[key] = cls(**kwargs, **extra)
        pipe.set_progress_bar_config(disable=True)
    for name, module in [*base.components.items(), *extra.items()]:
        if getattr(pipe, name, None) is not module:
            setattr(pipe, name, module)
    return pipe


def with_controlnet(job: Job, loaded: LoadedCheckpoint, controls: list[Control], guided: bool) -> Job:
    """The same job through the task's ControlNet pipeline, with the units' maps and settings."""
    if not controls or job.unchanged is not None:
        return job
    cls, image_key = _WITH_CONTROLNET[type(job.pipeline)]
    pipe = _derive(loaded, f"controlnet:{cls.__name__}", cls, controlnet=multi_controlnet(controls, guided))
    arguments = {image_key: [c.map for c in controls], **pipeline_arguments(controls)}

    def inputs(seeds: list[int]) -> dict:
        return {**job.inputs(seeds), **arguments}

    def release() -> None:  # the derived pipeline stays; the ControlNets may be evicted from the model cache
        pipe.controlnet = None

    return Job(pipe, inputs, job.finish, release=release)


def _txt2img_inputs(request: GenerationRequest, loaded: LoadedCheckpoint) -> dict:
    inputs = dict(width=request.width, height=request.height)
    if loaded.is_inpainting:
        # A1111's txt2img with inpainting models: everything masked, over a neutral grey image.
        inputs.update(
            image=Image.new("RGB", (request.width, request.height), (127, 127, 127)),
            mask_image=Image.new("L", (request.width, request.height), 255),
            strength=1.0,
        )
    return inputs


def _img2img_image(pipe: DiffusionPipeline, request: GenerationRequest, prepared: PreparedImage):
    """The init image, or for "Just resize (latent upscale)" its latents, encoded at the upload's own size (a
    multiple of the VAE factor) and resized bilinearly to the target, as A1111 does."""
    if request.resize_mode != LATENT_UPSCALE or prepared.source.size == prepared.size:
        return prepared.image
    factor = pipe.vae_scale_factor
    width, height = (max(factor, side // factor * factor) for side in prepared.source.size)
    latents = encode(pipe, pipe.image_processor.preprocess(prepared.source.resize((width, height), Image.LANCZOS)))
    target = (prepared.size[1] // factor, prepared.size[0] // factor)
    return torch.nn.functional.interpolate(latents, size=target, mode="bilinear")


def _inpaint_inputs(pipe: DiffusionPipeline, request: GenerationRequest, prepared: PreparedImage, seeds) -> dict:
    width, height = prepared.size
    mask = prepared.mask if prepared.mask is not None else Image.new("L", prepared.size, 255)
    inputs = dict(image=prepared.image, mask_image=mask, width=width, height=height)
    if prepared.mask is None or request.inpainting_fill not in (LATENT_NOISE, LATENT_NOTHING):
        return inputs
    # diffusers has no option for A1111's "latent noise"/"latent nothing": it takes the init latents instead of
    # the image, so the masked part of those is replaced here; the pipeline then noises them to the strength.
    pixels = pipe.image_processor.preprocess(prepared.image, height=height, width=width)
    condition = pipe.mask_processor.preprocess(mask, height=height, width=width)  # 0/1, as the pipeline sees it
    latents = encode(pipe, pixels)
    latent_mask = torch.nn.functional.interpolate(condition, size=latents.shape[-2:]).to(latents)
    if request.inpainting_fill == LATENT_NOISE:
        # The seed's own noise, as A1111 fills with create_random_tensors of the image seeds.
        content = torch.cat([_noise(latents.shape[1:], seed) for seed in seeds]).to(latents)
    else:
        content = torch.zeros_like(latents)
    inputs["image"] = latents * (1 - latent_mask) + content * latent_mask
    # With latents as the image the pipeline cannot mask the pixels itself: 9-channel UNets get the masked image
    # encoded here; 4-channel ones ignore it, but SD1's pipeline needs a tensor of the latents' shape.
    if pipe.unet.config.in_channels == 9:
        inputs["masked_image_latents"] = encode(pipe, pixels * (condition < 0.5))
    else:
        inputs["masked_image_latents"] = latents
    return inputs


def _noise(shape, seed: int) -> torch.Tensor:
    return torch.randn((1, *shape), generator=torch.Generator("cpu").manual_seed(seed))


def encode(pipe: DiffusionPipeline, pixels: torch.Tensor) -> torch.Tensor:
    """VAE latents (scaled) of a [-1, 1] image batch; the distribution's mean, so every seed starts from the same."""
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and vae.config.get("force_upcast", False)
    if upcast:  # this VAE overflows in fp16; diffusers' pipelines upcast it for encoding the same way
        vae.to(torch.float32)
    try:
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
    finally:
        if upcast:
            vae.to(torch.float16)
    return latents * vae.config.scaling_factor
