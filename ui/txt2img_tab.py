"""The txt2img tab: prompt and generation controls in, live previews and a result gallery out."""

from __future__ import annotations

import gradio as gr

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
from ui.services import Services

MODE = "txt2img"


def build_txt2img_tab(services: Services, pickers: ModelPickers) -> GenerationTab:
    prompt_row = build_prompt_row(MODE)
    with gr.Row():
        with gr.Column(scale=1):
            controls = build_sampling_controls(MODE, services.settings)
        with gr.Column(scale=1):
            results = build_result_panel(MODE)
    tab = GenerationTab(MODE, prompt_row, controls, results, None, {})
    connect_generation(MODE, services, pickers, prompt_row, results, tab.fields)
    connect_job_controls(services, prompt_row, controls, results)
    tab.remembered.update(remembered_values(tab.fields, services.settings))
    return tab
