"""The Inpaint tab: draw the mask over the image in the browser (or upload one), A1111's inpainting options, and
one-click outpainting (extend the canvas and paint the new border)."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from core.request import INPAINT_AREAS, MASK_MODES, MASKED_CONTENT, MAX_MASK_BLUR, MAX_PADDING
from core.services import Services
from ui.checked_uploads import CheckedImage, CheckedImageEditor
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
from ui.img2img_tab import apply_size_mode, build_resize_controls, follow_image_size
from ui.model_pickers import ModelPickers

MODE = "inpaint"
OUTPAINT_SIDES = {"left": "outpaint_left", "right": "outpaint_right", "up": "outpaint_top", "down": "outpaint_bottom"}


def build_inpaint_tab(services: Services, pickers: ModelPickers) -> GenerationTab:
    prompt_row = build_prompt_row(MODE, services)
    with gr.Row():
        with gr.Column(scale=1):
            editor = CheckedImageEditor(
                type="pil",
                sources=["upload", "clipboard"],
                label="Image: draw over the part to repaint",
                brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size="auto"),
                eraser=gr.Eraser(default_size="auto"),
                layers=False,
                transforms=(),
                format="png",  # never a lossy copy: pixels outside the mask must come back unchanged
                height=420,
                elem_id="inpaint_editor",
            )
            with gr.Accordion("Upload a mask instead (white = repaint)", open=False):
                mask_upload = CheckedImage(
                    type="pil", sources=["upload", "clipboard"], image_mode="L", label="Mask", elem_id="inpaint_mask"
                )
            options = build_inpaint_options()
            with gr.Accordion("Outpainting: extend the picture", open=False):
                with gr.Row():
                    sides = gr.CheckboxGroup(
                        list(OUTPAINT_SIDES), value=["right"], label="Sides", elem_id="outpaint_sides"
                    )
                    pixels = gr.Slider(8, 1024, value=128, step=8, label="Pixels to add", elem_id="outpaint_pixels")
                outpaint = gr.Button("Outpaint", variant="primary", elem_id="inpaint_outpaint")
            resize = build_resize_controls(MODE)
            controls = build_sampling_controls(MODE, services.settings, denoising=True)
            units = build_controlnet_units(MODE, services, has_input_image=True)
        with gr.Column(scale=1):
            results = build_result_panel(MODE)
    tab = GenerationTab(MODE, prompt_row, controls, results, editor, {}, units)
    fields = {**tab.fields, "editor": editor, "mask_upload": mask_upload, **options, **resize, **units}
    outpaint_fields = {**fields, "outpaint_sides": sides, "outpaint_pixels": pixels}
    connect_generation(MODE, services, pickers, prompt_row, results, fields, prepare=inpaint_values)
    connect_generation(
        MODE,
        services,
        pickers,
        prompt_row,
        results,
        outpaint_fields,
        outpaint_values,
        button=outpaint,
        api_name="outpaint",
    )
    connect_job_controls(services, prompt_row, controls, results)
    follow_image_size(editor, controls.fields, editor_background)
    remembered = remembered_values({**tab.fields, **options, **resize, "outpaint_pixels": pixels}, services)
    tab.remembered.update(remembered)
    return tab


def build_inpaint_options() -> dict[str, gr.components.Component]:
    """A1111's inpainting options, with its names and defaults."""
    blur = gr.Slider(0, MAX_MASK_BLUR, value=4, step=1, label="Mask blur", elem_id="inpaint_mask_blur")
    with gr.Row():
        invert = gr.Radio(list(MASK_MODES), value=MASK_MODES[0], label="Mask mode", elem_id="inpaint_mask_mode")
        fill = gr.Radio(list(MASKED_CONTENT), value="original", label="Masked content", elem_id="inpaint_fill")
    with gr.Row():
        area = gr.Radio(list(INPAINT_AREAS), value=INPAINT_AREAS[0], label="Inpaint area", elem_id="inpaint_area")
        padding = gr.Slider(
            0, MAX_PADDING, value=32, step=4, label="Only masked padding, pixels", elem_id="inpaint_padding"
        )
    return {
        "mask_blur": blur,
        "inpainting_mask_invert": invert,
        "inpainting_fill": fill,
        "inpaint_full_res": area,
        "inpaint_full_res_padding": padding,
    }


def editor_background(value) -> Image.Image | None:
    background = value.get("background") if isinstance(value, dict) else None
    return background.convert("RGB") if isinstance(background, Image.Image) else None


def drawn_mask(value) -> Image.Image | None:
    """The strokes drawn over the image (the editor's layer), or None when nothing is drawn."""
    layers = value.get("layers") if isinstance(value, dict) else None
    layer = layers[0] if layers else None
    if not isinstance(layer, Image.Image):
        return None
    alpha = np.asarray(layer.convert("RGBA"))[..., 3]
    return Image.fromarray(np.where(alpha > 0, 255, 0).astype(np.uint8), "L") if alpha.any() else None


def _take_image_and_mask(values: dict) -> dict:
    """The image from the editor; the mask from an uploaded mask, else from the strokes (None when neither)."""
    editor, uploaded = values.pop("editor", None), values.pop("mask_upload", None)
    values["init_image"] = editor_background(editor)
    values["mask"] = uploaded if isinstance(uploaded, Image.Image) else drawn_mask(editor)
    return values


def inpaint_values(values: dict) -> dict:
    values = _take_image_and_mask(values)
    if values["init_image"] is not None and values["mask"] is None:
        raise gr.Error("No mask: draw over the part of the image to repaint, or upload a mask.", duration=None)
    return apply_size_mode(values)


def outpaint_values(values: dict) -> dict:
    """Outpainting needs no mask (a drawn one is inpainted too): the chosen sides grow by the pixels."""
    sides, pixels = values.pop("outpaint_sides", None) or [], int(values.pop("outpaint_pixels", 0) or 0)
    if not sides:
        raise gr.Error("Choose at least one side to extend.", duration=None)
    values = _take_image_and_mask(values)
    values.update({OUTPAINT_SIDES[side]: pixels for side in sides if side in OUTPAINT_SIDES})
    return apply_size_mode(values)
