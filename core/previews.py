"""Live step previews: what the scheduler predicts the final image to be, shown cheaply (latent→RGB) or fully (VAE)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from diffusers import DiffusionPipeline
from PIL import Image

from core.families import Family

Previewer = Callable[[torch.Tensor], list[Image.Image]]


class DenoisedTracker:
    """Remembers the scheduler's latest prediction of the clean latents (x0), so previews show the picture, not noise.

    diffusers' pipelines hand only the noisy latents to `callback_on_step_end`; the x0 estimate lives in the
    scheduler's step output (`pred_original_sample`) or, for the multistep DPM/UniPC solvers, in `model_outputs`.
    Wrapping the instance's `step` is the smallest hook that reaches it without copying the pipeline's loop.
    """

    def __init__(self, scheduler):
        self.latest: torch.Tensor | None = None
        original_step = scheduler.step

        # wraps() keeps step's signature visible: pipelines pass `generator` only to a step that declares it.
        @functools.wraps(original_step)
        def step(*args, **kwargs):
            output = original_step(*args, **kwargs)
            self.latest = _x0_of(scheduler, output)
            return output

        scheduler.step = step

    def denoised(self, latents: torch.Tensor) -> torch.Tensor:
        return self.latest if self.latest is not None and self.latest.shape == latents.shape else latents


def _x0_of(scheduler, output) -> torch.Tensor | None:
    x0 = getattr(output, "pred_original_sample", None)
    if x0 is None and isinstance(output, tuple) and len(output) > 1:
        x0 = output[1]
    if x0 is None and getattr(scheduler.config, "algorithm_type", "dpmsolver++") in ("dpmsolver++", "sde-dpmsolver++"):
        outputs = getattr(scheduler, "model_outputs", None)
        if outputs and outputs[-1] is not None:
            x0 = outputs[-1]  # these solvers store their data (x0) predictions here
    if x0 is None and getattr(scheduler.config, "predict_x0", False):
        outputs = getattr(scheduler, "model_outputs", None)
        x0 = outputs[-1] if outputs else None
    return x0


def approximate_previewer(family: Family) -> Previewer:
    """Latent channels mixed straight to RGB with per-family factors: free, at 1/8 resolution. Sent at that size
    (a 64x64 JPEG for 512x512 is a few hundred bytes to encode, send and decode at every step); the page scales it
    up to the preview's box (ui.app_ui's CSS)."""
    factors = torch.tensor(family.latent_rgb_factors, dtype=torch.float32)
    bias = torch.tensor(family.latent_rgb_bias, dtype=torch.float32)

    def preview(latents: torch.Tensor) -> list[Image.Image]:
        rgb = torch.einsum("bchw,cr->bhwr", latents.float().cpu(), factors) + bias
        pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        return [Image.fromarray(p) for p in pixels]

    return preview


def vae_previewer(pipeline: DiffusionPipeline) -> Previewer:
    """A full VAE decode of the prediction: exactly what the result would look like now, at a VAE pass per preview."""
    vae = pipeline.vae

    @torch.no_grad()
    def preview(latents: torch.Tensor) -> list[Image.Image]:
        decoded = vae.decode(latents.to(vae.device, vae.dtype) / vae.config.scaling_factor).sample
        return pipeline.image_processor.postprocess(decoded.float(), output_type="pil")

    return preview


def taesd_previewer(decoder, pipeline: DiffusionPipeline) -> Previewer:
    """TAESD's tiny decoder (core.taesd): close to the VAE's picture at full size, for a few milliseconds."""

    @torch.no_grad()
    def preview(latents: torch.Tensor) -> list[Image.Image]:
        decoded = decoder.decode(latents.to(decoder.device, decoder.dtype)).sample
        return pipeline.image_processor.postprocess(decoded.float(), output_type="pil")

    return preview


def make_previewer(method: str, pipeline: DiffusionPipeline, family: Family, taesd=None) -> Previewer | None:
    """`taesd`: the family's TAESD decoder for the "TAESD" method (None: the approximation instead)."""
    if method == "Approximate" or (method == "TAESD" and taesd is None):
        return approximate_previewer(family)
    if method == "TAESD":
        return taesd_previewer(taesd, pipeline)
    if method == "Full VAE" and pipeline.vae is not None:
        vae = pipeline.vae
        if vae.config.get("force_upcast") and vae.dtype == torch.float16:
            # This VAE overflows in fp16 and the pipeline upcasts only for the final decode; a preview is not
            # worth an fp32 copy of the VAE, so it falls back to the approximation.
            return approximate_previewer(family)
        return vae_previewer(pipeline)
    return None
