"""Hires fix, as A1111 defines it: the second pass's size, upscalers, checks and infotext fields. Torch-free (the web
process validates requests and writes nothing else); core.hires_pass runs the pass in the worker."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.request import GenerationRequest

# A1111's latent upscale modes (shared.latent_upscale_modes): name → (torch interpolation, antialias).
LATENT_UPSCALERS = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# A1111's built-in pixel upscalers (Pillow resizes; "None" is A1111's plain resize to the size, Lanczos).
PIXEL_UPSCALERS = ("None", "Lanczos", "Nearest")
HIRES_UPSCALERS = (*LATENT_UPSCALERS, *PIXEL_UPSCALERS)


@dataclass(frozen=True)
class HiresSize:
    """The second pass's size (multiples of 8), and the crop A1111 makes when both target sides are given."""

    width: int
    height: int
    crop: tuple[int, int] | None = None  # final (width, height) cut from the centre, or None


def hires_size(request: GenerationRequest) -> HiresSize:
    """A1111's calculate_target_resolution: the size times hr_scale, or "Resize width/height to" (one side 0: the
    other follows the aspect; both: cover the target, then crop to it). Floored to the VAE's multiple of 8."""
    width, height = request.width, request.height
    x, y = request.hr_resize_x, request.hr_resize_y
    crop = None
    if x == 0 and y == 0:
        to_x, to_y = int(width * request.hr_scale), int(height * request.hr_scale)
    elif y == 0:
        to_x, to_y = x, x * height // width
    elif x == 0:
        to_x, to_y = y * width // height, y
    else:
        if width / height < x / y:
            to_x, to_y = x, x * height // width
        else:
            to_x, to_y = y * width // height, y
        crop = (x // 8 * 8, y // 8 * 8)
    return HiresSize(max(8, to_x // 8 * 8), max(8, to_y // 8 * 8), crop)


def hires_steps(request: GenerationRequest) -> int:
    return request.hr_second_pass_steps or request.steps


def hires_problems(request: GenerationRequest) -> list[str]:
    from core.errors import UserError
    from core.request import MAX_HR_SCALE, MAX_PIXELS, MAX_SIDE, MAX_STEPS, SAME_SAMPLER
    from core.samplers import SAMPLERS, SCHEDULE_TYPES, check_choice

    problems = []
    if not request.hr_upscaler.strip():  # other names: the built-ins, or a model the worker finds in models/
        problems.append(f"Choose a hires upscaler: {', '.join(HIRES_UPSCALERS)} or a model upscaler.")
    if not 1 <= request.hr_scale <= MAX_HR_SCALE:
        problems.append(f"Hires upscale by must be 1–{MAX_HR_SCALE:g}, not {request.hr_scale}.")
    for label, side in (("Resize width to", request.hr_resize_x), ("Resize height to", request.hr_resize_y)):
        if not 0 <= side <= MAX_SIDE:
            problems.append(f"Hires {label} must be 0 (use the scale) to {MAX_SIDE}, not {side}.")
    if not 0 <= request.hr_second_pass_steps <= MAX_STEPS:
        problems.append(f"Hires steps must be 0 (as many as the first pass) to {MAX_STEPS}.")
    if not problems:
        size = hires_size(request)
        if max(size.width, size.height) > MAX_SIDE or size.width * size.height > MAX_PIXELS:
            problems.append(
                f"Hires fix makes {size.width}x{size.height}; the largest is {MAX_SIDE} px a side and "
                f"{MAX_PIXELS:,} pixels."
            )
    sampler, scheduler = hires_sampler(request)
    if sampler not in SAMPLERS:
        problems.append(f"Unknown hires sampler {sampler!r}; choose one of: {SAME_SAMPLER}, {', '.join(SAMPLERS)}.")
    elif scheduler not in SCHEDULE_TYPES:
        problems.append(f"Unknown hires schedule type {scheduler!r}; choose one of: {', '.join(SCHEDULE_TYPES)}.")
    else:
        try:
            check_choice(sampler, scheduler)
        except UserError as exc:
            problems.append(f"Hires fix: {exc}")
    return problems


def hires_sampler(request: GenerationRequest) -> tuple[str, str]:
    """The second pass's sampler and schedule type ("Use same …" resolved)."""
    from core.request import SAME_SAMPLER, SAME_SCHEDULER

    sampler = request.sampler_name if request.hr_sampler_name == SAME_SAMPLER else request.hr_sampler_name
    scheduler = request.scheduler if request.hr_scheduler == SAME_SCHEDULER else request.hr_scheduler
    return sampler, scheduler


def hires_params(request: GenerationRequest) -> dict[str, object]:
    """The infotext fields in A1111's order: Denoising strength (it keeps its own place), then what differs from
    the first pass, then the size, the steps when not 0, and the upscaler."""
    from core.request import SAME_CHECKPOINT
    from core.samplers import schedule_type_label

    if not request.uses_hires:
        return {}
    sampler, scheduler = hires_sampler(request)
    params: dict[str, object] = {"Denoising strength": request.denoising_strength}
    if request.hr_checkpoint_name != SAME_CHECKPOINT:
        params["Hires checkpoint"] = None  # its place; the engine writes "name [hash]" there, as A1111
    if sampler != request.sampler_name:
        params["Hires sampler"] = sampler
    if request.hr_prompt and request.hr_prompt != request.prompt:
        params["Hires prompt"] = request.hr_prompt
    if request.hr_negative_prompt and request.hr_negative_prompt != request.negative_prompt:
        params["Hires negative prompt"] = request.hr_negative_prompt
    first, second = (
        schedule_type_label(*pair) for pair in ((request.sampler_name, request.scheduler), (sampler, scheduler))
    )
    if second != first:
        params["Hires schedule type"] = second
    if request.hr_resize_x == 0 and request.hr_resize_y == 0:
        params["Hires upscale"] = request.hr_scale
    else:
        params["Hires resize"] = f"{request.hr_resize_x}x{request.hr_resize_y}"
    if request.hr_second_pass_steps:
        params["Hires steps"] = request.hr_second_pass_steps
    params["Hires upscaler"] = request.hr_upscaler
    return params


def hires_fields(params: dict[str, str]) -> dict[str, object]:
    """GenerationRequest fields of an infotext's Hires keys (for "paste" and PNG Info)."""
    if not any(key.startswith("Hires ") for key in params):
        return {}
    fields: dict[str, object] = {"enable_hr": True}
    if "Hires upscale" in params:
        fields["hr_scale"] = params["Hires upscale"]
    if "x" in params.get("Hires resize", ""):
        fields["hr_resize_x"], fields["hr_resize_y"] = params["Hires resize"].split("x", 1)
    names = {"Hires steps": "hr_second_pass_steps", "Hires upscaler": "hr_upscaler", "Hires sampler": "hr_sampler_name",
             "Hires schedule type": "hr_scheduler", "Hires prompt": "hr_prompt",
             "Hires negative prompt": "hr_negative_prompt"}  # fmt: skip
    fields.update({name: params[key] for key, name in names.items() if key in params})
    if "Hires checkpoint" in params:  # "name [hash]": the registry finds it by its name
        fields["hr_checkpoint_name"] = re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", params["Hires checkpoint"])
    return fields
