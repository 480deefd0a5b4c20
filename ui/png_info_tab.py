"""A1111's PNG Info tab: an image's generation parameters as text and as a table, and "Send to" buttons that fill
the tabs with every field the infotext names."""

from __future__ import annotations

import gradio as gr

from core.errors import UserError
from core.image_info import image_parameters
from core.infotext import parse_infotext
from core.services import Services
from core.styles import pasted_fields
from core.untrusted_images import open_image
from ui.generation_panel import GenerationTab
from ui.send_to import SENT_FIELDS, image_for, pasted_values

# Beyond what a result's "Send to" carries: what a pasted infotext can also set.
PASTED_FIELDS = (*SENT_FIELDS, "denoising_strength", "enable_hr", "hr_scale", "hr_resize_x", "hr_resize_y",
                 "hr_upscaler", "hr_second_pass_steps", "hr_sampler_name", "hr_scheduler", "hr_prompt",
                 "hr_negative_prompt")  # fmt: skip
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
    image_output = [target.image_input] if target.image_input is not None else []

    def send(path: str | None, parameters: str):
        if not parameters or parameters == NO_PARAMETERS:
            raise gr.Error(NO_PARAMETERS if path else "Drop an image here first.")
        values = pasted_values(pasted_fields(parameters, services.styles), names)
        image = [image_for(target, open_image(path, "image").convert("RGB"))] if image_output and path else []
        return [*(image or [gr.skip()] * len(image_output)), *values, gr.Tabs(selected=target.mode)]

    outputs = [*image_output, *(target.fields[name] for name in names), tabs]
    button.click(send, inputs=[source, text], outputs=outputs, api_visibility="private")
