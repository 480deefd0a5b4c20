"""ControlNet units in a job: their control maps, their models as one MultiControlNetModel, their control modes.

The pipelines are diffusers' own ControlNet pipelines (core.jobs derives them from the loaded checkpoint). Every
job passes a MultiControlNetModel, even for one unit, whose nets are `UnitControlNet`s: diffusers applies weight
and start/end per net, and each net applies its unit's control mode, which diffusers only has for all nets at once
(`guess_mode`). sd-webui-controlnet's modes are:
- "My prompt is more important": soft injection, the 13 residuals scaled by 0.825^(12-i) (diffusers' guess-mode
  scales, logspace(-1, 0, 13), are the same numbers to 3 digits: 10^(-1/12) = 0.8254);
- "ControlNet is more important": soft injection, and the residuals only added to the conditional half of the
  classifier-free-guidance batch (the unconditional half gets none), which is diffusers' guess mode per unit.
Global-pooling ControlNets (shuffle) also skip the unconditional half, as there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ControlNetModel
from diffusers.configuration_utils import FrozenDict
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
from PIL import Image

from core.errors import UserError
from core.image_inputs import FILL, LATENT_NOISE, LATENT_NOTHING, PreparedImage, flatten, resize_image
from core.preprocessors import PREPROCESSORS, Annotators, detect_map, pixel_perfect_resolution
from core.request import ControlNetUnit, GenerationRequest

BALANCED, PROMPT_MORE_IMPORTANT, CONTROLNET_MORE_IMPORTANT = range(3)  # CONTROL_MODES indexes


@dataclass(frozen=True)
class Control:
    """One enabled unit, ready to run: its number, its settings, its control map and its loaded model."""

    index: int
    unit: ControlNetUnit
    map: Image.Image  # RGB at the processing size
    model: ControlNetModel


def run_preprocessor(
    unit: ControlNetUnit, image: Image.Image, width: int, height: int, annotators: Annotators
) -> Image.Image:
    """The unit's control map of `image` at width x height: its preprocessor at its resolution (or pixel-perfect,
    from the output size), then the unit's resize mode. What a job feeds the ControlNet, and the UI's preview."""
    if unit.module not in PREPROCESSORS:
        raise UserError(f"Unknown preprocessor {unit.module!r}; choose one of: {', '.join(PREPROCESSORS)}.")
    image = flatten(image)
    resolution = unit.processor_res
    if unit.pixel_perfect:
        resolution = pixel_perfect_resolution(image, width, height, unit.resize_mode)
    detected = detect_map(unit.module, image, resolution, unit.threshold_a, unit.threshold_b, annotators)
    return resize_image(unit.resize_mode, detected, width, height)


def control_map(
    request: GenerationRequest, unit: ControlNetUnit, prepared: PreparedImage | None, annotators: Annotators
) -> Image.Image:
    """The map a unit feeds the ControlNet in this job, at the size the pipeline works at."""
    width, height = prepared.size if prepared is not None else (request.width, request.height)
    return run_preprocessor(unit, unit_image(request, unit, prepared), width, height, annotators)


def unit_image(request: GenerationRequest, unit: ControlNetUnit, prepared: PreparedImage | None) -> Image.Image:
    """The unit's picture, or the tab's input image; for "Only masked" the same region of it as is inpainted
    (a unit's own picture is taken to show the whole input image, as sd-webui-controlnet does); for outpainting
    the input image in its place on the larger canvas."""
    use_input = unit.use_input_image or unit.image is None
    if use_input and prepared is not None and request.is_outpaint:
        return prepared.image
    image = flatten(request.init_image if use_input else unit.image)  # type: ignore[arg-type]
    if prepared is not None and prepared.crop is not None:
        if image.size != prepared.source.size:
            image = image.resize(prepared.source.size, Image.LANCZOS)
        image = image.crop(prepared.crop)
    return image


def controllable(request: GenerationRequest) -> tuple[GenerationRequest, str | None]:
    """The request as the ControlNet pipelines can run it, and a notice when that differs.

    diffusers' ControlNet inpaint pipelines take the init image only as pixels (no `masked_image_latents`), so
    "latent noise"/"latent nothing" run as "fill" there, whose pixels they start from anyway (core.image_inputs).
    """
    if not request.is_inpaint or request.inpainting_fill not in (LATENT_NOISE, LATENT_NOTHING):
        return request, None
    notice = "With ControlNet, masked content “latent noise” and “latent nothing” run as “fill”."
    return request.with_changes(inpainting_fill=FILL), notice


class UnitControlNet(torch.nn.Module):
    """One unit's ControlNet inside MultiControlNetModel, applying the unit's control mode (module docstring)."""

    def __init__(self, model: ControlNetModel, control_mode: int, guided: bool):
        super().__init__()
        self.model = model
        self.soft = control_mode != BALANCED
        # `guided`: classifier-free guidance runs, so the batch is [unconditional, conditional].
        self.conditional_only = guided and (control_mode == CONTROLNET_MORE_IMPORTANT or self.pooled)
        # Pipelines read `nets[0].config.global_pool_conditions` to turn on guess mode for every net; pooling is
        # done per net here instead.
        self.config = FrozenDict({**model.config, "global_pool_conditions": False})

    @property
    def pooled(self) -> bool:
        return bool(self.model.config.global_pool_conditions)

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale=1.0, **kwargs):
        kwargs.update(guess_mode=self.soft, return_dict=False)  # the model's guess mode: the soft scales only
        down, mid = self.model(sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale, **kwargs)
        if self.conditional_only:
            down, mid = [_conditional_only(d) for d in down], _conditional_only(mid)
        return down, mid


def _conditional_only(residual: torch.Tensor) -> torch.Tensor:
    half = residual.shape[0] // 2
    return torch.cat([torch.zeros_like(residual[:half]), residual[half:]])


def multi_controlnet(controls: list[Control], guided: bool) -> MultiControlNetModel:
    return MultiControlNetModel([UnitControlNet(c.model, c.unit.control_mode, guided) for c in controls])


def pipeline_arguments(controls: list[Control]) -> dict:
    """diffusers' per-net ControlNet arguments (the control images go under the pipeline's own name for them)."""
    return dict(
        controlnet_conditioning_scale=[c.unit.weight for c in controls],
        control_guidance_start=[c.unit.guidance_start for c in controls],
        control_guidance_end=[c.unit.guidance_end for c in controls],
    )
