"""The txt2img tab: prompt and generation controls in, live previews and a result gallery out."""

from __future__ import annotations

import gradio as gr

from core.services import Services
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
from ui.hires_controls import build_hires_controls
from ui.model_pickers import ModelPickers
from ui.size_follows_model import follow_checkpoint

MODE = "txt2img"


def build_txt2img_tab(services: Services, pickers: ModelPickers) -> GenerationTab:
    return build_prompt_tab(MODE, services, pickers)


def build_prompt_tab(mode: str, services: Services, pickers: ModelPickers, *, units_open: bool = False):
    """A tab that generates from a prompt: txt2img, and the ControlNet tab (the same with its units open)."""
    prompt_row = build_prompt_row(mode, services)
    with gr.Row():
        with gr.Column(scale=1):
            if units_open:
                units = build_controlnet_units(mode, services, has_input_image=False, open=True)
            controls = build_sampling_controls(mode, services.settings)
            if mode == MODE:  # A1111's Hires fix belongs to txt2img
                fields = controls.fields
                fields.update(build_hires_controls(mode, fields["width"], fields["height"], services.registry))
            follow_checkpoint(services, pickers.checkpoint, controls.fields["width"], controls.fields["height"])
            if not units_open:
                units = build_controlnet_units(mode, services, has_input_image=False)
        with gr.Column(scale=1):
            results = build_result_panel(mode)
    tab = GenerationTab(mode, prompt_row, controls, results, None, {}, units)
    connect_generation(mode, services, pickers, prompt_row, results, {**tab.fields, **units})
    connect_job_controls(services, prompt_row, controls, results)
    tab.remembered.update(remembered_values(tab.fields, services))
    return tab
