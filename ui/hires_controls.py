"""The txt2img tab's Hires. fix accordion, with A1111's labels, and the size it will make shown beside it."""

from __future__ import annotations

import gradio as gr

from core.hires import HIRES_UPSCALERS, hires_size
from core.registry import ModelRegistry
from core.request import (
    MAX_HR_SCALE,
    MAX_STEPS,
    SAME_CHECKPOINT,
    SAME_SAMPLER,
    SAME_SCHEDULER,
    GenerationRequest,
)
from core.samplers import SAMPLERS, SCHEDULE_TYPES
from core.upscaler_files import upscaler_files


def build_hires_controls(
    mode: str, width: gr.Slider, height: gr.Slider, registry: ModelRegistry
) -> dict[str, gr.components.Component]:
    """The request fields of Hires fix, by name. Denoising strength is the request's own (0.7 here, A1111's UI).
    The upscalers: the built-in ones, then the model upscalers found in models/ when the page was built."""
    upscalers = [*HIRES_UPSCALERS, *upscaler_files(registry.models_dir)]
    checkpoints = [SAME_CHECKPOINT, *(entry.name for entry in registry.list("checkpoint"))]
    with gr.Accordion("Hires. fix", open=False, elem_id=f"{mode}_hires_fix") as accordion:
        with gr.Row():
            enable = gr.Checkbox(False, label="Hires. fix", elem_id=f"{mode}_enable_hr")
            summary = gr.Markdown(elem_id=f"{mode}_hires_size")
        with gr.Row():
            upscaler = gr.Dropdown(upscalers, value="Latent", label="Upscaler", elem_id=f"{mode}_hr_upscaler")
            steps = gr.Slider(0, MAX_STEPS, value=0, step=1, label="Hires steps", elem_id=f"{mode}_hires_steps")
            denoising = gr.Slider(0, 1, value=0.7, step=0.01, label="Denoising strength", elem_id=f"{mode}_denoising")
        with gr.Row():
            scale = gr.Slider(1, MAX_HR_SCALE, value=2, step=0.05, label="Upscale by", elem_id=f"{mode}_hr_scale")
            resize_x = gr.Slider(0, 2048, value=0, step=8, label="Resize width to", elem_id=f"{mode}_hr_resize_x")
            resize_y = gr.Slider(0, 2048, value=0, step=8, label="Resize height to", elem_id=f"{mode}_hr_resize_y")
        with gr.Row():
            checkpoint = gr.Dropdown(
                checkpoints, value=SAME_CHECKPOINT, label="Hires checkpoint", elem_id=f"{mode}_hr_checkpoint"
            )
            sampler = gr.Dropdown(
                [SAME_SAMPLER, *SAMPLERS], value=SAME_SAMPLER, label="Hires sampling method",
                elem_id=f"{mode}_hr_sampler",
            )  # fmt: skip
            scheduler = gr.Dropdown(
                [SAME_SCHEDULER, *SCHEDULE_TYPES], value=SAME_SCHEDULER, label="Hires schedule type",
                elem_id=f"{mode}_hr_scheduler",
            )  # fmt: skip
        with gr.Row():
            prompt = gr.Textbox(label="Hires prompt", lines=2, placeholder="(the prompt)", elem_id=f"{mode}_hr_prompt")
            negative = gr.Textbox(
                label="Hires negative prompt", lines=2, placeholder="(the negative prompt)", elem_id=f"{mode}_hr_neg"
            )
    # Turned on (by hand, or by pasted parameters): the accordion opens, as A1111's checkbox accordion does.
    enable.change(lambda on: gr.Accordion(open=True) if on else gr.skip(), inputs=enable, outputs=accordion,
                  queue=False, api_visibility="private", show_progress="hidden")  # fmt: skip
    sizes = [enable, width, height, scale, resize_x, resize_y]

    def describe(enabled, w, h, by, x, y) -> str:
        request = GenerationRequest(width=int(w), height=int(h), hr_scale=float(by), hr_resize_x=int(x),
                                    hr_resize_y=int(y))  # fmt: skip
        size = hires_size(request)
        final = size.crop or (size.width, size.height)
        text = f"from {int(w)}x{int(h)} to {final[0]}x{final[1]}"
        return text if enabled else f"<span style='opacity:.6'>{text}</span>"

    for component in sizes:
        component.change(describe, inputs=sizes, outputs=summary, queue=False, api_visibility="private",
                         show_progress="hidden")  # fmt: skip
    return {
        "enable_hr": enable,
        "hr_upscaler": upscaler,
        "hr_second_pass_steps": steps,
        "denoising_strength": denoising,
        "hr_scale": scale,
        "hr_resize_x": resize_x,
        "hr_resize_y": resize_y,
        "hr_sampler_name": sampler,
        "hr_scheduler": scheduler,
        "hr_prompt": prompt,
        "hr_negative_prompt": negative,
        "hr_checkpoint_name": checkpoint,
    }
