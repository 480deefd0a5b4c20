"""The img2img tab: a starting image (upload, paste, drop, or "Send to img2img"), resize mode, denoising strength,
and every txt2img control."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from core.request import RESIZE_MODES
from core.services import Services
from ui.checked_uploads import CheckedImage
from ui.controlnet_units import build_controlnet_units
from ui.generation_panel import (
    GenerationTab,
    build_prompt_row,
    build_result_panel,
    build_sampling_controls,
    connect_generation,
    connect_job_controls,
    remembered_values,
)
from ui.model_pickers import ModelPickers

MODE = "img2img"
SIZE_MODES = ("Resize to", "Resize by")
MAX_SLIDER_SIDE = 2048


def build_img2img_tab(services: Services, pickers: ModelPickers) -> GenerationTab:
    prompt_row = build_prompt_row(MODE, services)
    with gr.Row():
        with gr.Column(scale=1):
            image = CheckedImage(
                type="pil",
                sources=["upload", "clipboard"],
                label="Image for img2img (drop, paste or upload)",
                image_mode="RGB",
                height=360,
                elem_id="img2img_image",
            )
            extra = build_resize_controls(MODE)
            controls = build_sampling_controls(MODE, services.settings, denoising=True)
            units = build_controlnet_units(MODE, services, has_input_image=True)
        with gr.Column(scale=1):
            results = build_result_panel(MODE)
    tab = GenerationTab(MODE, prompt_row, controls, results, image, {}, units)
    fields = {**tab.fields, "init_image": image, **extra, **units}
    connect_generation(MODE, services, pickers, prompt_row, results, fields, prepare=apply_size_mode)
    connect_job_controls(services, prompt_row, controls, results)
    follow_image_size(image, controls.fields, lambda value: value)
    tab.remembered.update(remembered_values({**tab.fields, **extra}, services))
    return tab


def build_resize_controls(mode: str) -> dict[str, gr.components.Component]:
    """Resize mode, and whether the output size is given (width/height) or a scale of the input image."""
    with gr.Row():
        resize_mode = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], label="Resize mode", elem_id=f"{mode}_resize")
    with gr.Row():
        size_mode = gr.Radio(list(SIZE_MODES), value=SIZE_MODES[0], label="Output size", elem_id=f"{mode}_size_mode")
        scale_by = gr.Slider(0.05, 4, value=1, step=0.05, label="Scale", elem_id=f"{mode}_scale_by")
    return {"resize_mode": resize_mode, "size_mode": size_mode, "scale_by": scale_by}


def apply_size_mode(values: dict) -> dict:
    """ "Resize by": width and height from the input image times the scale, rounded down to 8 as A1111 does."""
    image = values.get("init_image")
    if values.pop("size_mode", SIZE_MODES[0]) == SIZE_MODES[1] and isinstance(image, Image.Image):
        scale = float(values.get("scale_by") or 1)
        values["width"] = max(64, int(image.width * scale) // 8 * 8)
        values["height"] = max(64, int(image.height * scale) // 8 * 8)
    values.pop("scale_by", None)
    return values


def follow_image_size(component: gr.components.Component, sampling: dict, image_of) -> None:
    """An upload into `component` sets the tab's width and height to the image's size (`image_of` reads the
    picture from the component's value)."""
    component.upload(
        lambda value: size_of(image_of(value)),
        inputs=component,
        outputs=[sampling["width"], sampling["height"]],
        show_progress="hidden",
        api_name=False,
    )


def size_of(image: Image.Image | None):
    """A new image sets the output size to its own (to 8 px, within the sliders), so nothing is stretched."""
    if image is None:
        return gr.skip(), gr.skip()
    scale = min(1.0, MAX_SLIDER_SIDE / max(image.size))
    return tuple(max(64, int(side * scale) // 8 * 8) for side in image.size)
