"""A1111 API bodies → GenerationRequest (the same request object the UI's tabs build), and finished jobs → A1111's
response shapes. Everything an A1111 client may send is read here, once: sampler_index, combined sampler names,
override_settings, the options' defaults, sd-webui-controlnet's units with their old aliases."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any

from api.schemas import Img2ImgRequest, Txt2ImgRequest, _Processing
from core.errors import UserError
from core.events import Result
from core.infotext import parse_infotext, request_fields
from core.registry import ModelRegistry
from core.request import SAME_CHECKPOINT, GenerationRequest, to_image
from core.samplers import SCHEDULE_TYPES, split_legacy_sampler_name
from core.settings import Settings
from core.step_cache import STEP_CACHE_PRESETS
from core.wire import png_with_text

# A1111's scheduler names (modules/sd_schedulers.py) next to their labels: its API takes either.
SCHEDULER_NAMES = {label: label.lower().replace(" ", "_") for label in SCHEDULE_TYPES}
# sd-webui-controlnet's resize modes, including the names its older versions (and their clients) send.
CONTROL_RESIZE_ALIASES = {
    "inner fit (scale to fit)": "Crop and Resize",
    "scale to fit (inner fit)": "Crop and Resize",
    "outer fit (shrink to fit)": "Resize and Fill",
    "envelope (outer fit)": "Resize and Fill",
    "resize": "Just Resize",
    "inner_fit": "Crop and Resize",
    "outer_fit": "Resize and Fill",
}


def refuse_unsupported(body: _Processing) -> None:
    """What A1111 would do but this studio cannot yet: refused by name, never silently ignored."""
    unsupported = []
    if body.script_name:
        unsupported.append(f"script_name {body.script_name!r} (no scripts are installed)")
    if body.restore_faces:
        unsupported.append("restore_faces")
    if body.tiling:
        unsupported.append("tiling")
    if body.subseed_strength:
        unsupported.append("subseed_strength (variation seeds)")
    if body.refiner_checkpoint and body.refiner_checkpoint != "None":
        unsupported.append("refiner_checkpoint")
    if unsupported:
        raise UserError(f"Not available in this studio: {', '.join(unsupported)}. Leave them out of the request.")


def build_request(
    body: Txt2ImgRequest | Img2ImgRequest, settings: Settings, registry: ModelRegistry, default_checkpoint: str
) -> GenerationRequest:
    refuse_unsupported(body)
    given = body.model_fields_set
    values: dict[str, Any] = {}
    if body.infotext:
        values.update(request_fields(body.infotext))
    explicit = {name: getattr(body, name) for name in given if name in _DIRECT_FIELDS}
    values.update({key: value for key, value in explicit.items() if value is not None})
    for name in _DIRECT_FIELDS:  # A1111's defaults for what neither the body nor its infotext set
        if name not in values and name in type(body).model_fields and getattr(body, name) is not None:
            values[name] = getattr(body, name)
    options = {**settings.api_options, **(body.override_settings or {})}
    values.update(_sampler(body, values))
    values["checkpoint"] = checkpoint_name(
        registry, options.get("sd_model_checkpoint") or settings.default_checkpoint or default_checkpoint
    )
    values["vae"] = vae_name(registry, options.get("sd_vae", "Automatic"))
    if "clip_skip" not in values or "CLIP_stop_at_last_layers" in (body.override_settings or {}):
        values["clip_skip"] = options.get("CLIP_stop_at_last_layers", 1)
    values.update(
        preview_method=settings.preview_method,
        preview_every_n_steps=settings.preview_every_n_steps,
        step_cache=values.get("step_cache", STEP_CACHE_PRESETS[settings.step_cache]),
    )
    if isinstance(body, Img2ImgRequest):
        values.update(_img2img_fields(body))
    elif body.enable_hr:
        values.update(_hires_fields(body))
        if body.hr_checkpoint_name not in (None, "", SAME_CHECKPOINT):
            values["hr_checkpoint_name"] = checkpoint_name(registry, body.hr_checkpoint_name)
    values["controlnet_units"] = controlnet_units(body.alwayson_scripts, registry)
    return GenerationRequest.from_dict(values)


_DIRECT_FIELDS = (
    "prompt", "negative_prompt", "styles", "seed", "batch_size", "n_iter", "steps", "cfg_scale", "width", "height",
    "resize_mode", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding", "inpainting_mask_invert",
)  # fmt: skip


def _sampler(body: _Processing, values: dict) -> dict[str, str]:
    """sampler_name (or the older sampler_index) and scheduler; "DPM++ 2M Karras" is split as A1111 1.9+ does."""
    given = body.model_fields_set
    if "sampler_name" in given or "sampler_index" in given or "sampler_name" not in values:
        name = body.sampler_name or body.sampler_index
        scheduler = body.scheduler or values.get("scheduler") or "Automatic"
    else:  # from the infotext
        name, scheduler = values["sampler_name"], body.scheduler or values.get("scheduler") or "Automatic"
    labels = {name: label for label, name in SCHEDULER_NAMES.items()}
    scheduler = labels.get(scheduler.lower(), scheduler)  # "karras" or "Karras"
    if scheduler == "Automatic":
        name, scheduler = split_legacy_sampler_name(name)
    return {"sampler_name": name, "scheduler": scheduler}


def _hires_fields(body: Txt2ImgRequest) -> dict[str, Any]:
    """A1111's hires fields; None means "the same as the first pass" (or A1111's default upscaler)."""
    labels = {name: label for label, name in SCHEDULER_NAMES.items()}
    values: dict[str, Any] = {
        "enable_hr": True,
        "denoising_strength": 0.75 if body.denoising_strength is None else body.denoising_strength,
        "hr_scale": body.hr_scale,
        "hr_resize_x": body.hr_resize_x,
        "hr_resize_y": body.hr_resize_y,
        "hr_upscaler": body.hr_upscaler or "Latent",
        "hr_second_pass_steps": body.hr_second_pass_steps,
        "hr_prompt": body.hr_prompt,
        "hr_negative_prompt": body.hr_negative_prompt,
    }
    if body.hr_sampler_name:
        values["hr_sampler_name"] = body.hr_sampler_name
    if body.hr_scheduler:
        values["hr_scheduler"] = labels.get(body.hr_scheduler.lower(), body.hr_scheduler)
    return values


def _img2img_fields(body: Img2ImgRequest) -> dict[str, Any]:
    values: dict[str, Any] = {"denoising_strength": body.denoising_strength}
    if body.init_images:
        values["init_image"] = to_image(body.init_images[0], "init_images[0]")
    if body.mask:
        values["mask"] = to_image(body.mask, "mask")
    # A1111: mask_blur sets both directions; the x and y blurs are separate otherwise (ours is one radius).
    values["mask_blur"] = body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x, body.mask_blur_y)
    return values


def checkpoint_name(registry: ModelRegistry, wanted: str) -> str:
    """A1111's checkpoint title "name [hash]", its name, or its file stem → our registry name."""
    wanted = str(wanted).strip()
    for candidate in (wanted, wanted.rsplit(" [", 1)[0]):
        try:
            return registry.find("checkpoint", candidate).name
        except UserError:
            continue
    titles = [registry.title(entry) for entry in registry.list("checkpoint")]
    raise UserError(f"No checkpoint {wanted!r}; choose one of: {', '.join(titles) or '(none in models/)'}.")


def vae_name(registry: ModelRegistry, wanted: str) -> str:
    if wanted in ("Automatic", "None", "", None):
        return wanted or "Automatic"
    try:
        return registry.find("vae", str(wanted)).name
    except UserError:
        names = ["Automatic", "None", *(entry.name for entry in registry.list("vae"))]
        raise UserError(f"No VAE {wanted!r}; choose one of: {', '.join(names)}.") from None


def controlnet_units(scripts: Mapping[str, Any], registry: ModelRegistry) -> tuple[dict, ...]:
    """sd-webui-controlnet's units from alwayson_scripts (its key in any case), each a dict of its field names."""
    unknown = [key for key in scripts if key.lower() != "controlnet"]
    if unknown:  # as A1111: a script that is not installed is an error, not silently left out
        raise UserError(f"alwayson_scripts: {', '.join(map(repr, unknown))} not installed; available: controlnet.")
    script = next((value for key, value in scripts.items() if key.lower() == "controlnet"), None)
    if not script:
        return ()
    args = script.get("args") if isinstance(script, Mapping) else script
    if not isinstance(args, list):
        raise UserError("alwayson_scripts.controlnet.args must be a list of ControlNet units.")
    return tuple(_unit(arg, index, registry) for index, arg in enumerate(args))


def _unit(arg: Any, index: int, registry: ModelRegistry) -> dict:
    where = f"alwayson_scripts.controlnet.args[{index}]"
    if not isinstance(arg, Mapping):
        raise UserError(f"{where} must be an object with sd-webui-controlnet's unit fields.")
    unit = dict(arg)
    if "guidance" in unit and "guidance_end" not in unit:  # its oldest name for the end
        unit["guidance_end"] = unit.pop("guidance")
    image = unit.pop("image", None) or unit.pop("input_image", None)
    if isinstance(image, Mapping):  # {"image": …, "mask": …}; the mask is not used by our units
        image = image.get("image")
    unit["image"] = to_image(image, f"{where}.image") if image else None
    if isinstance(unit.get("resize_mode"), str):
        unit["resize_mode"] = CONTROL_RESIZE_ALIASES.get(unit["resize_mode"].lower(), unit["resize_mode"])
    model = unit.get("model")
    if model and model != "None":
        try:
            unit["model"] = registry.find("controlnet", str(model).rsplit(" [", 1)[0]).name
        except UserError:
            names = [registry.title(entry) for entry in registry.list("controlnet")]
            raise UserError(f"{where}: no ControlNet model {model!r}; choose one of: {', '.join(names)}.") from None
    return unit


def encoded_images(result: Result, keep_files: bool) -> list[str]:
    """base64 PNGs holding their infotext ("parameters" chunk), as A1111 sends them. A job that was not asked to
    save (A1111's save_images is off by default) has its files removed once read: the worker always writes the
    PNG (that is how its pixels reach this process), so removing it is how "not saved" is kept."""
    encoded = []
    for generated in result.images:
        if generated.path is not None:
            data = generated.path.read_bytes()
            if not keep_files:
                generated.path.unlink(missing_ok=True)
            encoded.append(base64.b64encode(data).decode("ascii"))
        else:  # an in-process engine hands the pixels over
            encoded.append(png_base64(generated.image, generated.infotext))
    return encoded


def png_base64(image, infotext: str | None = None) -> str:
    """A PNG as base64 text, with the infotext in its "parameters" chunk when there is one."""
    return base64.b64encode(png_with_text(image, {"parameters": infotext})).decode("ascii")


def info_json(request: GenerationRequest, result: Result, started: float) -> str:
    """A1111's Processed.js(): the keys its clients read, from the request and the images' own infotexts."""
    infotexts = [image.infotext for image in result.images]
    prompt, negative, params = parse_infotext(infotexts[0]) if infotexts else (request.prompt, "", {})
    seeds = [image.seed for image in result.images] or [request.seed]
    count = max(1, len(result.images))
    info = {
        "prompt": prompt,
        "all_prompts": [parse_infotext(text)[0] for text in infotexts] or [prompt],
        "negative_prompt": negative,
        "all_negative_prompts": [parse_infotext(text)[1] for text in infotexts] or [negative],
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * count,
        "subseed_strength": 0,
        "width": request.width,
        "height": request.height,
        "sampler_name": request.sampler_name,
        "scheduler": params.get("Schedule type", request.scheduler),
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "batch_size": request.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": params.get("Model"),
        "sd_model_hash": params.get("Model hash"),
        "sd_vae_name": params.get("VAE"),
        "sd_vae_hash": params.get("VAE hash"),
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": request.denoising_strength if request.init_image is not None else None,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": list(request.styles),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(started)),
        "clip_skip": request.clip_skip,
        "is_using_inpainting_conditioning": request.is_inpaint,
        "version": "sd-studio",
        "interrupted": result.interrupted,
    }
    return json.dumps(info, ensure_ascii=False)


def png_info(text: str | None, items: Mapping[str, Any]) -> dict[str, Any]:
    """POST png-info's answer: the parameters text, the image's other text chunks, and the parsed fields with
    A1111's "Size-1"/"Size-2" split."""
    if not text:
        return {"info": "", "items": dict(items), "parameters": {}}
    prompt, negative, params = parse_infotext(text)
    parsed: dict[str, Any] = {"Prompt": prompt, "Negative prompt": negative, **params}
    if "x" in params.get("Size", ""):
        parsed["Size-1"], parsed["Size-2"] = params["Size"].split("x", 1)
    return {"info": text, "items": dict(items), "parameters": parsed}
