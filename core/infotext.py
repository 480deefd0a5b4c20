"""Writes and reads the PNG "parameters" text exactly as A1111 does, so tools that read A1111 images read ours."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from core.hires import hires_fields, hires_params
from core.preprocessors import PREPROCESSORS
from core.request import (
    CONTROL_MODES,
    CONTROL_RESIZE_MODES,
    INPAINT_AREAS,
    MASK_MODES,
    MASKED_CONTENT,
    MAX_CONTROLNET_UNITS,
    ControlNetUnit,
    GenerationRequest,
)
from core.samplers import schedule_type_label, split_legacy_sampler_name

# A1111's modules/infotext_utils.py re_param: a key, then a JSON-quoted value or anything up to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"
_OUTPAINT_SIDES = ("left", "right", "top", "bottom")
_OUTPAINT = re.compile(r"\b(left|right|top|bottom) (\d+)")
_INPAINT_KEYS = ("Mask blur", "Mask mode", "Masked content", "Inpaint area", "Masked area padding", "Outpaint")
_CONTROLNET_KEY = re.compile(r"^ControlNet (\d+)$")
_MODEL_HASH = re.compile(r"\s*\[[0-9a-fA-F]+\]$")


def _text(value: object) -> str:
    # A1111's values come from Gradio sliders as ints where whole ("CFG scale: 7"); ours are typed floats.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def quote(value: object) -> str:
    """A1111's infotext_utils.quote: JSON-quote a value only when it holds ',', ':' or a newline."""
    text = _text(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """A1111's infotext_utils.unquote: undo quote(); anything that is not valid JSON stays as it is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def render_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """The text A1111's create_infotext returns for these prompts and parameters (None values are left out)."""
    params_text = ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in params.items() if v is not None)
    negative_text = f"\n{_NEGATIVE} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_text}\n{params_text}".strip()


def generation_params(
    request: GenerationRequest,
    *,
    seed: int,
    model_name: str,
    model_hash: str | None,
    vae_name: str | None = None,
    vae_hash: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The infotext fields of one image, in A1111's create_infotext order (fields we do not have are skipped).

    `extra` goes last, like A1111's extra_generation_params; a key that is already a fixed field (e.g.
    "Denoising strength") keeps the fixed field's place and takes the extra value, as dict unpacking does there.
    """
    params: dict[str, object] = {
        "Steps": request.steps,
        "Sampler": request.sampler_name,
        "Schedule type": schedule_type_label(request.sampler_name, request.scheduler),
        "CFG scale": request.cfg_scale,
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": model_hash,
        "Model": model_name,
        "VAE hash": vae_hash,
        "VAE": vae_name,
        # A1111 writes it for img2img (and hires fix, through `extra`); txt2img requests leave it out.
        "Denoising strength": request.denoising_strength if request.init_image is not None else None,
        "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
        "Step cache": request.step_cache if request.step_cache > 1 else None,  # ours: how the picture was made
        # The prompts above have these styles applied (as A1111 writes them); naming them lets "paste" undo that.
        "Styles": ", ".join(request.styles) or None,
    }
    params.update(inpaint_params(request))
    params.update(hires_params(request))
    params.update(extra or {})
    return {k: v for k, v in params.items() if v is not None}


def inpaint_params(request: GenerationRequest) -> dict[str, object]:
    """The inpainting fields, as A1111's extra_generation_params has them, in its order; then our "Outpaint".

    A1111 writes "Mask mode" only when inverted, "Mask blur" only when not 0 and "Masked area padding" only for
    "Only masked"; "Masked content" and "Inpaint area" are always written here (A1111 omits the defaults), with
    A1111's labels, which its "paste parameters" reads.
    """
    if not request.is_inpaint:
        return {}
    params: dict[str, object] = {}
    if request.inpainting_mask_invert:
        params["Mask mode"] = MASK_MODES[request.inpainting_mask_invert]
    if request.mask_blur > 0:
        params["Mask blur"] = request.mask_blur
    params["Inpaint area"] = INPAINT_AREAS[request.inpaint_full_res and not request.is_outpaint]
    if request.inpaint_full_res and not request.is_outpaint:
        params["Masked area padding"] = request.inpaint_full_res_padding
    params["Masked content"] = MASKED_CONTENT[request.inpainting_fill]
    if request.is_outpaint:
        sides = zip(_OUTPAINT_SIDES, request.outpaint, strict=True)
        params["Outpaint"] = ", ".join(f"{side} {pixels}" for side, pixels in sides if pixels)
    return params


def controlnet_params(request: GenerationRequest, titles: Mapping[int, str]) -> dict[str, str]:
    """ "ControlNet N" fields of the enabled units, N being the unit's number; `titles`: "model [hash]" by N."""
    return {f"ControlNet {i}": controlnet_unit_text(unit, titles[i]) for i, unit in request.enabled_units}


def controlnet_unit_text(unit: ControlNetUnit, model_title: str) -> str:
    """One unit as sd-webui-controlnet's serialize_unit writes it: "Module: canny, Model: name [hash], Weight:
    1.0, …". Like its -1 values, the thresholds and resolution a preprocessor has no slider for are left out."""
    preprocessor = PREPROCESSORS.get(unit.module)
    a, b = preprocessor.thresholds(unit.threshold_a, unit.threshold_b) if preprocessor else (None, None)
    uses_resolution = preprocessor is None or preprocessor.uses_resolution
    values = {
        "Module": unit.module,
        "Model": model_title,
        "Weight": float(unit.weight),
        "Resize Mode": CONTROL_RESIZE_MODES[unit.resize_mode],
        "Processor Res": unit.processor_res if uses_resolution else None,
        "Threshold A": _text(a) if a is not None else None,
        "Threshold B": _text(b) if b is not None else None,
        "Guidance Start": float(unit.guidance_start),
        "Guidance End": float(unit.guidance_end),
        "Pixel Perfect": unit.pixel_perfect,
        "Control Mode": CONTROL_MODES[unit.control_mode],
    }
    return ", ".join(f"{key}: {value}" for key, value in values.items() if value is not None)


def build_infotext(
    request: GenerationRequest,
    *,
    seed: int,
    model_name: str,
    model_hash: str | None,
    vae_name: str | None = None,
    vae_hash: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> str:
    """The complete "parameters" text of one image of this request."""
    params = generation_params(
        request,
        seed=seed,
        model_name=model_name,
        model_hash=model_hash,
        vae_name=vae_name,
        vae_hash=vae_hash,
        extra=extra,
    )
    return render_infotext(request.prompt, request.negative_prompt, params)


def parse_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """Prompt, negative prompt and parameters, read as A1111's parse_generation_parameters reads them.

    The last line is the parameters line when it holds at least three `key: value` pairs; lines before it up to
    "Negative prompt:" are the prompt, the rest the negative prompt (each line stripped, as in A1111). Unlike
    A1111 we return the raw fields only: no "Size-1"/"Size-2" split and no defaults for missing keys, so that
    parse_infotext(render_infotext(p, n, params)) gives back p, n and the text of each value.
    """
    *lines, last = text.replace("\r\n", "\n").strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""

    # Same line handling as A1111, quirks included, so a text reads the same in both.
    prompt = negative_prompt = ""
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE):
            in_negative = True
            line = line[len(_NEGATIVE) :].strip()
        if in_negative:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line

    params = {key: unquote(value) for key, value in _PARAM.findall(last)}
    return prompt, negative_prompt, params


def request_fields(text: str) -> dict[str, Any]:
    """GenerationRequest fields found in an infotext (for GenerationRequest.from_dict / "paste parameters").

    The checkpoint is not included: "Model"/"Model hash" need the model registry to resolve.
    """
    prompt, negative_prompt, params = parse_infotext(text)
    fields: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative_prompt}
    simple = {"Steps": "steps", "CFG scale": "cfg_scale", "Seed": "seed", "Clip skip": "clip_skip",
              "Step cache": "step_cache"}  # fmt: skip
    if params:
        fields["clip_skip"] = 1  # A1111 leaves "Clip skip" out when it is 1
    fields.update({name: params[key] for key, name in simple.items() if key in params})
    if "Sampler" in params:
        # Images from A1111 before 1.9 name the schedule inside the sampler ("DPM++ 2M Karras").
        sampler, schedule_type = split_legacy_sampler_name(params["Sampler"])
        fields["sampler_name"] = sampler
        fields["scheduler"] = params.get("Schedule type", schedule_type)
    elif "Schedule type" in params:
        fields["scheduler"] = params["Schedule type"]
    size = _SIZE.match(params.get("Size", ""))
    if size:
        fields["width"], fields["height"] = int(size.group(1)), int(size.group(2))
    if "Denoising strength" in params:
        fields["denoising_strength"] = params["Denoising strength"]
    fields.update(_inpaint_fields(params))
    fields.update(hires_fields(params))
    fields.update(_controlnet_fields(params))
    return fields


def _inpaint_fields(params: dict[str, str]) -> dict[str, Any]:
    """Inpainting fields of an inpainting infotext, with A1111's meaning for the fields it leaves out."""
    if not any(key in params for key in _INPAINT_KEYS):
        return {}
    fields: dict[str, Any] = {
        "mask_blur": params.get("Mask blur", 0),
        "inpainting_mask_invert": params.get("Mask mode", MASK_MODES[0]),  # labels: from_dict takes them
        "inpainting_fill": params.get("Masked content", MASKED_CONTENT[1]),
        "inpaint_full_res": params.get("Inpaint area", INPAINT_AREAS[0]),
    }
    if "Masked area padding" in params:
        fields["inpaint_full_res_padding"] = params["Masked area padding"]
    for side, pixels in _OUTPAINT.findall(params.get("Outpaint", "")):
        fields[f"outpaint_{side}"] = int(pixels)
    return fields


def _controlnet_fields(params: dict[str, str]) -> dict[str, Any]:
    """`controlnet_units` (dicts for from_dict) from "ControlNet N" fields; the numbers missing are disabled units.
    The control images are not in an infotext: the user supplies them again, as in sd-webui-controlnet."""
    units: dict[int, dict[str, Any]] = {}
    for key, text in params.items():
        match = _CONTROLNET_KEY.match(key)
        if match and int(match.group(1)) < MAX_CONTROLNET_UNITS:
            units[int(match.group(1))] = _controlnet_unit_fields(text)
    if not units:
        return {}
    return {"controlnet_units": [units.get(i, {"enabled": False}) for i in range(max(units) + 1)]}


def _controlnet_unit_fields(text: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"enabled": True}
    for item in text.split(","):
        key, _, value = item.strip().partition(": ")
        fields["_".join(key.lower().split())] = value  # "Processor Res" → processor_res, as the extension does
    if "model" in fields:
        fields["model"] = _MODEL_HASH.sub("", fields["model"])  # registry names match the file stem
    return fields
