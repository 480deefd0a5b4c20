"""ControlNet units as sd-webui-controlnet shows them: one sub-tab per unit, with a preprocessor preview. The same
widgets serve the ControlNet tab and the txt2img, img2img and inpaint tabs."""

from __future__ import annotations

from dataclasses import dataclass, fields

import gradio as gr

from core.errors import UserError
from core.preprocessors import PREPROCESSORS, Slider
from core.request import CONTROL_MODES, CONTROL_RESIZE_MODES, MAX_CONTROL_WEIGHT, ControlNetUnit
from core.services import Services
from ui.checked_uploads import CheckedImage
from ui.symbols import REFRESH


@dataclass(frozen=True)
class UnitWidgets:
    """The widgets of one unit, named as ControlNetUnit's fields."""

    enabled: gr.Checkbox
    image: gr.Image
    module: gr.Dropdown
    model: gr.Dropdown
    weight: gr.Slider
    guidance_start: gr.Slider
    guidance_end: gr.Slider
    control_mode: gr.Radio
    resize_mode: gr.Radio
    pixel_perfect: gr.Checkbox
    processor_res: gr.Slider
    threshold_a: gr.Slider
    threshold_b: gr.Slider
    use_input_image: gr.Checkbox

    def by_field(self) -> dict[str, gr.components.Component]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def field_key(index: int, name: str) -> str:
    """The key of a unit widget among a tab's widgets: "controlnet_0_weight"."""
    return f"controlnet_{index}_{name}"


def controlnet_choices(services: Services) -> list[str]:
    return ["None", *(entry.name for entry in services.registry.list("controlnet"))]


def build_controlnet_units(
    mode: str, services: Services, *, has_input_image: bool, open: bool = False
) -> dict[str, gr.components.Component]:
    """An accordion with the configured number of units; returns their widgets by field_key()."""
    widgets: dict[str, gr.components.Component] = {}
    with gr.Accordion("ControlNet", open=open, elem_id=f"{mode}_controlnet"), gr.Tabs():
        for index in range(services.settings.controlnet_unit_count):
            with gr.Tab(f"ControlNet Unit {index}"):
                unit = _build_unit(mode, index, services, has_input_image)
            widgets.update({field_key(index, name): widget for name, widget in unit.by_field().items()})
    return widgets


def _build_unit(mode: str, index: int, services: Services, has_input_image: bool) -> UnitWidgets:
    prefix = f"{mode}_controlnet_{index}"
    with gr.Row():
        image = CheckedImage(
            type="pil", sources=["upload", "clipboard"], label="Control image", elem_id=f"{prefix}_image"
        )
        detected = gr.Image(label="Preprocessor preview", interactive=False, format="png", elem_id=f"{prefix}_map")
    with gr.Row():
        enabled = gr.Checkbox(False, label="Enable", elem_id=f"{prefix}_enabled")
        pixel_perfect = gr.Checkbox(False, label="Pixel Perfect", elem_id=f"{prefix}_pixel_perfect")
        use_input_image = gr.Checkbox(
            False, label="Use the tab's input image", visible=has_input_image, elem_id=f"{prefix}_use_input"
        )
    with gr.Row(equal_height=True):
        module = gr.Dropdown(list(PREPROCESSORS), value="none", label="Preprocessor", elem_id=f"{prefix}_module")
        model = gr.Dropdown(controlnet_choices(services), value="None", label="Model", elem_id=f"{prefix}_model")
        refresh = gr.Button(REFRESH, scale=0, min_width=40, elem_classes="tool-button", elem_id=f"{prefix}_refresh")
    preview = gr.Button("Preview the preprocessor's map", size="sm", elem_id=f"{prefix}_preview")
    weight = gr.Slider(0, MAX_CONTROL_WEIGHT, value=1, step=0.05, label="Control Weight", elem_id=f"{prefix}_weight")
    with gr.Row():
        start = gr.Slider(0, 1, value=0, step=0.01, label="Starting Control Step", elem_id=f"{prefix}_start")
        end = gr.Slider(0, 1, value=1, step=0.01, label="Ending Control Step", elem_id=f"{prefix}_end")
    with gr.Row():
        resolution = gr.Slider(64, 2048, value=512, step=8, label="Preprocessor Resolution", elem_id=f"{prefix}_res")
        # -1: the preprocessor's default (sd-webui-controlnet's API value); shown once a preprocessor has one.
        threshold_a = gr.Slider(-1, 255, value=-1, visible=False, label="Threshold A", elem_id=f"{prefix}_threshold_a")
        threshold_b = gr.Slider(-1, 255, value=-1, visible=False, label="Threshold B", elem_id=f"{prefix}_threshold_b")
    control_mode = gr.Radio(list(CONTROL_MODES), value=CONTROL_MODES[0], label="Control Mode", elem_id=f"{prefix}_mode")
    resize_mode = gr.Radio(
        list(CONTROL_RESIZE_MODES), value=CONTROL_RESIZE_MODES[1], label="Resize Mode", elem_id=f"{prefix}_resize"
    )
    unit = UnitWidgets(
        enabled, image, module, model, weight, start, end, control_mode, resize_mode, pixel_perfect, resolution,
        threshold_a, threshold_b, use_input_image,
    )  # fmt: skip
    refresh.click(lambda: gr.update(choices=controlnet_choices(services)), outputs=model, api_name=False)
    module.change(_preprocessor_sliders, inputs=module, outputs=[resolution, threshold_a, threshold_b], api_name=False)
    image.upload(lambda: True, outputs=enabled, api_name=False)  # as the extension: a new image enables the unit

    def preview_map(*values):
        values = dict(zip(unit.by_field(), values, strict=True))
        if values["image"] is None:
            raise gr.Error("Upload a control image first.")
        try:
            return services.generator.run_preprocessor(
                unit_from_values(values), values["image"], int(values["processor_res"]), int(values["processor_res"])
            )
        except UserError as exc:
            raise gr.Error(str(exc), duration=None) from exc

    preview.click(preview_map, inputs=list(unit.by_field().values()), outputs=detected, api_name=False)
    return unit


def _preprocessor_sliders(name: str):
    """Resolution shown only where the preprocessor uses it; threshold sliders with its labels and ranges."""
    preprocessor = PREPROCESSORS.get(name)
    if preprocessor is None:
        return gr.skip(), gr.skip(), gr.skip()
    return (
        gr.update(visible=preprocessor.uses_resolution),
        _slider_update(preprocessor.threshold_a),
        _slider_update(preprocessor.threshold_b),
    )


def _slider_update(slider: Slider | None):
    if slider is None:
        return gr.update(visible=False, value=-1)
    return gr.update(
        visible=True,
        label=slider.label,
        minimum=slider.minimum,
        maximum=slider.maximum,
        step=slider.step,
        value=slider.default,
    )


def unit_from_values(values: dict) -> ControlNetUnit:
    """A ControlNetUnit from one unit's widget values (the request's own coercion: labels or indexes, numbers)."""
    return ControlNetUnit.from_dict({name: value for name, value in values.items() if value is not None})


def take_units(values: dict) -> dict:
    """Moves the unit widgets' values out of a tab's values into `controlnet_units`. Disabled units stay (and do
    nothing), so "ControlNet 1" in the infotext is the unit the user set up as Unit 1."""
    names = [f.name for f in fields(UnitWidgets)]
    units = []
    index = 0
    while field_key(index, "enabled") in values:
        units.append(unit_from_values({name: values.pop(field_key(index, name)) for name in names}))
        index += 1
    values["controlnet_units"] = tuple(units)
    return values
