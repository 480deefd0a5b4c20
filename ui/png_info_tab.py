"""A1111's PNG Info tab: an image's generation parameters as text and as a table, and "Send to" buttons that fill
the tabs with every field the infotext names."""

from __future__ import annotations

import gradio as gr

from core.errors import UserError
from core.image_info import image_parameters
from core.infotext import parse_infotext
from core.request import CONTROL_MODES, CONTROL_RESIZE_MODES, MAX_PROMPT_LENGTH, ControlNetUnit
from core.services import Services
from core.styles import pasted_fields
from core.untrusted_images import open_image
from ui.controlnet_units import field_key
from ui.generation_panel import GenerationTab
from ui.send_to import SENT_FIELDS, image_for, pasted_values

# Beyond what a result's "Send to" carries: what a pasted infotext can also set.
PASTED_FIELDS = (*SENT_FIELDS, "denoising_strength", "enable_hr", "hr_scale", "hr_resize_x", "hr_resize_y",
                 "hr_upscaler", "hr_second_pass_steps", "hr_sampler_name", "hr_scheduler", "hr_prompt",
                 "hr_negative_prompt", "hr_checkpoint_name")  # fmt: skip
MAX_PARAMETERS_LENGTH = 3 * MAX_PROMPT_LENGTH  # two prompts and the parameters line
NO_PARAMETERS = "This image holds no generation parameters (no PNG 'parameters' text, no EXIF comment)."


def build_png_info_tab(services: Services, tabs: gr.Tabs, targets: list[GenerationTab], extras_image: gr.Image) -> None:
    with gr.Row():
        with gr.Column():
            source = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Source", elem_id="pnginfo_image")
        with gr.Column():
            text = gr.Textbox(label="Parameters", lines=6, interactive=False, elem_id="pnginfo_parameters")
            table = gr.Dataframe(
                headers=["Field", "Value"], interactive=False, wrap=True, elem_id="pnginfo_table", visible=False
            )
            buttons = {}
            with gr.Row():
                for target in targets:
                    buttons[target.mode] = gr.Button(f"Send to {target.mode}", size="sm",
                                                     elem_id=f"pnginfo_send_to_{target.mode}")  # fmt: skip
                to_extras = gr.Button("Send to extras", size="sm", elem_id="pnginfo_send_to_extras")

    def read(path: str | None):
        if not path:
            return "", gr.update(value=None, visible=False)
        try:
            parameters = image_parameters(open_image(path, "image"))
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        if not parameters:
            return NO_PARAMETERS, gr.update(value=None, visible=False)
        prompt, negative, params = parse_infotext(parameters)
        rows = [["Prompt", prompt], ["Negative prompt", negative], *([k, v] for k, v in params.items())]
        return parameters, gr.update(value=rows, visible=True)

    source.change(read, inputs=source, outputs=[text, table], api_visibility="private")
    for target in targets:
        connect_paste(target, buttons[target.mode], source, text, tabs, services)

    def send_to_extras(path: str | None):
        if not path:
            raise gr.Error("Drop an image here first.")
        return path, gr.Tabs(selected="extras")

    to_extras.click(send_to_extras, inputs=source, outputs=[extras_image, tabs], api_visibility="private")


def connect_paste(
    target: GenerationTab, button: gr.Button, source: gr.Image, text: gr.Textbox, tabs: gr.Tabs, services: Services
) -> None:
    names = [name for name in PASTED_FIELDS if name in target.fields]
    unit_keys = [key for key in target.units if not key.endswith("image")]  # not the pictures, nor "use input image"
    image_output = [target.image_input] if target.image_input is not None else []

    def send(path: str | None, parameters: str):
        if not parameters or parameters == NO_PARAMETERS:
            raise gr.Error(NO_PARAMETERS if path else "Drop an image here first.")
        if len(parameters) > MAX_PARAMETERS_LENGTH:  # what a crafted request sends is read no further
            raise gr.Error(f"The parameters are over {MAX_PARAMETERS_LENGTH:,} characters; no infotext is that long.")
        parsed = pasted_fields(parameters, services.styles)
        if "hr_checkpoint_name" in parsed:  # the infotext names it by its stem; the dropdown by its file name
            try:
                parsed["hr_checkpoint_name"] = services.registry.find("checkpoint", parsed["hr_checkpoint_name"]).name
            except UserError:
                del parsed["hr_checkpoint_name"]
        values = pasted_values(parsed, names)
        units = pasted_unit_values(parsed.get("controlnet_units") or [], unit_keys, services)
        image = [image_for(target, open_image(path, "image").convert("RGB"))] if image_output and path else []
        return [*(image or [gr.skip()] * len(image_output)), *values, *units, gr.Tabs(selected=target.mode)]

    outputs = [*image_output, *(target.fields[name] for name in names), *(target.units[k] for k in unit_keys), tabs]
    button.click(send, inputs=[source, text], outputs=outputs, api_visibility="private")


def pasted_unit_values(units: list[dict], keys: list[str], services: Services) -> list:
    """The ControlNet unit widgets' values from the infotext's "ControlNet N" fields (their control images are
    not in an infotext: the user gives them again, as in sd-webui-controlnet); units it does not name keep theirs."""
    by_key: dict[str, object] = {}
    for index, values in enumerate(units):
        unit = ControlNetUnit.from_dict(values)
        shown = {
            "enabled": unit.enabled, "module": unit.module, "model": _controlnet_name(unit.model, services),
            "weight": unit.weight, "guidance_start": unit.guidance_start, "guidance_end": unit.guidance_end,
            "control_mode": CONTROL_MODES[unit.control_mode], "resize_mode": CONTROL_RESIZE_MODES[unit.resize_mode],
            "pixel_perfect": unit.pixel_perfect, "processor_res": unit.processor_res,
            "threshold_a": unit.threshold_a, "threshold_b": unit.threshold_b,
        }  # fmt: skip
        by_key.update({field_key(index, name): value for name, value in shown.items() if value is not None})
    return [by_key.get(key, gr.skip()) for key in keys]


def _controlnet_name(model: str, services: Services) -> str | None:
    """The infotext names the model by its stem (and hash); the dropdown by its file name."""
    try:
        return services.registry.find("controlnet", model).name
    except UserError:
        return None
