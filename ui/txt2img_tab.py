"""The txt2img tab: prompt and generation controls in, live previews and a result gallery out."""

from __future__ import annotations

import gradio as gr

from core.outputs import read_infotext
from core.request import MAX_BATCH_COUNT, MAX_CLIP_SKIP, MAX_STEPS, GenerationRequest
from core.samplers import SAMPLERS, SCHEDULE_TYPES
from ui.job_runner import run_job
from ui.model_pickers import ModelPickers
from ui.remembered import Remembered
from ui.services import Services
from ui.symbols import RANDOM_SEED, REUSE_SEED

MODE = "txt2img"


def build_txt2img_tab(services: Services, pickers: ModelPickers) -> dict[str, Remembered]:
    """Builds the tab; returns the widgets whose values the browser remembers across reloads."""
    s = services.settings
    with gr.Row():
        with gr.Column(scale=5):
            prompt = gr.Textbox(
                label="Prompt", lines=3, placeholder="Prompt (Ctrl+Enter to generate)", elem_id="txt2img_prompt"
            )
            negative = gr.Textbox(label="Negative prompt", lines=2, elem_id="txt2img_neg_prompt")
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id="txt2img_interrupt", min_width=60)
                skip = gr.Button("Skip", elem_id="txt2img_skip", min_width=60)
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                sampler = gr.Dropdown(
                    list(SAMPLERS), value=s.default_sampler, label="Sampling method", elem_id="txt2img_sampler"
                )
                schedule = gr.Dropdown(
                    SCHEDULE_TYPES, value=s.default_schedule_type, label="Schedule type", elem_id="txt2img_schedule"
                )
            steps = gr.Slider(
                1, MAX_STEPS, value=s.default_steps, step=1, label="Sampling steps", elem_id="txt2img_steps"
            )
            with gr.Row():
                width = gr.Slider(64, 2048, value=s.default_width, step=8, label="Width", elem_id="txt2img_width")
                height = gr.Slider(64, 2048, value=s.default_height, step=8, label="Height", elem_id="txt2img_height")
            with gr.Row():
                n_iter = gr.Slider(1, MAX_BATCH_COUNT, value=1, step=1, label="Batch count", elem_id="txt2img_n_iter")
                batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id="txt2img_batch_size")
            cfg = gr.Slider(
                1, 30, value=s.default_cfg_scale, step=0.5, label="CFG Scale", elem_id="txt2img_cfg_scale"
            )
            with gr.Row(equal_height=True):
                seed = gr.Number(-1, label="Seed", precision=0, scale=4, elem_id="txt2img_seed")
                random_seed = gr.Button(
                    RANDOM_SEED, scale=0, min_width=40, elem_id="txt2img_random_seed", elem_classes="tool-button"
                )
                reuse_seed = gr.Button(
                    REUSE_SEED, scale=0, min_width=40, elem_id="txt2img_reuse_seed", elem_classes="tool-button"
                )
            clip_skip = gr.Slider(1, MAX_CLIP_SKIP, value=1, step=1, label="Clip skip", elem_id="txt2img_clip_skip")
        with gr.Column(scale=1):
            progress = gr.HTML(elem_id="txt2img_progress")
            # Shown only while a job runs, so the gallery sits at the top of the column the rest of the time.
            preview = gr.Image(
                label="Live preview", interactive=False, visible=False, height=320, elem_id="txt2img_preview"
            )
            gallery = gr.Gallery(
                label="Output", columns=2, height=420, format="png", object_fit="contain", elem_id="txt2img_gallery"
            )
            infotext = gr.Textbox(label="Generation parameters", lines=4, interactive=False, elem_id="txt2img_infotext")
    last_seeds = gr.State([])
    checkpoint, vae = pickers.checkpoint, pickers.vae

    # Names and widgets come from one list, so a new control cannot shift the others (keyword, not position).
    fields = [
        ("prompt", prompt),
        ("negative_prompt", negative),
        ("checkpoint", checkpoint),
        ("vae", vae),
        ("sampler_name", sampler),
        ("scheduler", schedule),
        ("steps", steps),
        ("width", width),
        ("height", height),
        ("n_iter", n_iter),
        ("batch_size", batch_size),
        ("cfg_scale", cfg),
        ("seed", seed),
        ("clip_skip", clip_skip),
    ]
    names = [name for name, _ in fields]

    def txt2img(request: gr.Request, *values):
        settings = services.settings
        values_by_name = dict(zip(names, values, strict=True))
        values_by_name.update(
            preview_method=settings.preview_method, preview_every_n_steps=settings.preview_every_n_steps
        )
        job = GenerationRequest.from_dict(values_by_name)
        session = request.session_hash if request else "api"
        for preview_image, progress_html, result in run_job(services, job, session, MODE):
            if result is None:
                shown = gr.update(value=preview_image, visible=True) if preview_image is not None else gr.skip()
                yield shown, progress_html, gr.skip(), gr.skip(), gr.skip()
            else:
                images = [(str(img.path), f"Seed {img.seed}") for img in result.images]
                first_info = result.images[0].infotext if result.images else ""
                seeds = [img.seed for img in result.images]
                yield gr.update(value=None, visible=False), progress_html, images, first_info, seeds

    generate_event = dict(
        fn=txt2img,
        inputs=[component for _, component in fields],
        outputs=[preview, progress, gallery, infotext, last_seeds],
        concurrency_id="gpu",  # every GPU job of every tab shares one queue
        concurrency_limit=1,
    )
    generate.click(**generate_event, api_name="txt2img")

    def interrupt_job(request: gr.Request):
        control = services.jobs.get(request.session_hash)
        if control:
            control.interrupt()

    def skip_job(request: gr.Request):
        control = services.jobs.get(request.session_hash)
        if control:
            control.skip()

    interrupt.click(interrupt_job, queue=False, api_name=False)
    skip.click(skip_job, queue=False, api_name=False)
    random_seed.click(lambda: -1, outputs=seed, queue=False, api_name=False)
    reuse_seed.click(
        lambda seeds: seeds[0] if seeds else -1, inputs=last_seeds, outputs=seed, queue=False, api_name=False
    )

    gallery.select(_select_infotext, outputs=infotext, api_name=False)

    remembered = {
        "prompt": Remembered(prompt, lambda: ""),
        "negative_prompt": Remembered(negative, lambda: ""),
        "sampler_name": Remembered(sampler, lambda: services.settings.default_sampler),
        "scheduler": Remembered(schedule, lambda: services.settings.default_schedule_type),
        "steps": Remembered(steps, lambda: services.settings.default_steps),
        "width": Remembered(width, lambda: services.settings.default_width),
        "height": Remembered(height, lambda: services.settings.default_height),
        "n_iter": Remembered(n_iter, lambda: 1),
        "batch_size": Remembered(batch_size, lambda: 1),
        "cfg_scale": Remembered(cfg, lambda: services.settings.default_cfg_scale),
        "clip_skip": Remembered(clip_skip, lambda: 1),
    }
    return remembered


def _select_infotext(evt: gr.SelectData) -> str:
    """The infotext of the image clicked in the gallery, read back from its PNG."""
    image = evt.value.get("image") if isinstance(evt.value, dict) else None
    path = image.get("path") if isinstance(image, dict) else None
    try:
        return (read_infotext(path) or "") if path else gr.skip()
    except OSError:  # the file was moved or deleted since it was shown
        return gr.skip()
