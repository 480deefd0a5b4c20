"""The widgets every generation tab shares (prompt row, sampling controls, result panel) and the wiring that
turns their values into a GenerationRequest job and renders its events."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr
from PIL import Image

from core.errors import UserError
from core.outputs import read_infotext
from core.request import MAX_BATCH_COUNT, MAX_CLIP_SKIP, MAX_PROMPT_LENGTH, MAX_STEPS, GenerationRequest
from core.samplers import SAMPLERS, SCHEDULE_TYPES
from core.served_files import produced_file
from core.services import Services
from core.settings import Settings
from core.step_cache import STEP_CACHE_PRESETS
from ui.controlnet_units import take_units
from ui.job_runner import run_job
from ui.model_pickers import ModelPickers
from ui.network_browser import build_network_browser
from ui.prompt_tools import build_style_picker, connect_style_picker, token_counter
from ui.remembered import Remembered
from ui.symbols import RANDOM_SEED, REUSE_SEED

GALLERY_HEIGHT = 420  # px; app_ui.CSS keeps every picture inside it, whole

# Turns the tab's widget values (by request field name) into request values: e.g. the inpaint tab reads its mask
# from the editor's drawn layer. Raises gr.Error for input it cannot use.
Prepare = Callable[[dict], dict]


@dataclass(frozen=True)
class PromptRow:
    prompt: gr.Textbox
    negative: gr.Textbox
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    styles: gr.Dropdown


def build_prompt_row(mode: str, services: Services) -> PromptRow:
    """Prompt and negative prompt with token counters, Generate/Interrupt/Skip, styles, and the LoRA/embedding
    browser below, as A1111 lays them out."""
    styles = services.styles
    with gr.Row():
        with gr.Column(scale=5):
            prompt = gr.Textbox(
                label="Prompt",
                lines=3,
                placeholder="Prompt (Ctrl+Enter to generate)",
                max_length=MAX_PROMPT_LENGTH,
                elem_id=f"{mode}_prompt",
            )
            token_counter(prompt, f"{mode}_token_counter")
            negative = gr.Textbox(
                label="Negative prompt", lines=2, max_length=MAX_PROMPT_LENGTH, elem_id=f"{mode}_neg_prompt"
            )
            token_counter(negative, f"{mode}_negative_token_counter")
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{mode}_generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{mode}_interrupt", min_width=60)
                skip = gr.Button("Skip", elem_id=f"{mode}_skip", min_width=60)
            picker = build_style_picker(mode, styles)
    connect_style_picker(picker, styles, prompt, negative)
    build_network_browser(mode, services.registry, prompt)
    return PromptRow(prompt, negative, generate, interrupt, skip, picker.dropdown)


@dataclass(frozen=True)
class SamplingControls:
    fields: dict[str, gr.components.Component]  # request field name → widget
    random_seed: gr.Button
    reuse_seed: gr.Button


def build_sampling_controls(mode: str, settings: Settings, *, denoising: bool = False) -> SamplingControls:
    """Sampler, steps, size, batch, CFG, (denoising strength), seed and clip skip, as A1111 lays them out."""
    s = settings
    with gr.Row():
        sampler = gr.Dropdown(
            list(SAMPLERS), value=s.default_sampler, label="Sampling method", elem_id=f"{mode}_sampler"
        )
        schedule = gr.Dropdown(
            SCHEDULE_TYPES, value=s.default_schedule_type, label="Schedule type", elem_id=f"{mode}_schedule"
        )
    steps = gr.Slider(1, MAX_STEPS, value=s.default_steps, step=1, label="Sampling steps", elem_id=f"{mode}_steps")
    with gr.Row():
        width = gr.Slider(64, 2048, value=s.default_width, step=8, label="Width", elem_id=f"{mode}_width")
        height = gr.Slider(64, 2048, value=s.default_height, step=8, label="Height", elem_id=f"{mode}_height")
    with gr.Row():
        n_iter = gr.Slider(1, MAX_BATCH_COUNT, value=1, step=1, label="Batch count", elem_id=f"{mode}_n_iter")
        batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{mode}_batch_size")
    cfg = gr.Slider(1, 30, value=s.default_cfg_scale, step=0.5, label="CFG Scale", elem_id=f"{mode}_cfg_scale")
    fields = dict(
        sampler_name=sampler, scheduler=schedule, steps=steps, width=width, height=height, n_iter=n_iter
    ) | dict(batch_size=batch_size, cfg_scale=cfg)
    if denoising:
        fields["denoising_strength"] = gr.Slider(
            0, 1, value=0.75, step=0.01, label="Denoising strength", elem_id=f"{mode}_denoising_strength"
        )
    with gr.Row(equal_height=True):
        fields["seed"] = gr.Number(-1, label="Seed", precision=0, scale=4, elem_id=f"{mode}_seed")
        random_seed = gr.Button(
            RANDOM_SEED, scale=0, min_width=40, elem_id=f"{mode}_random_seed", elem_classes="tool-button"
        )
        reuse_seed = gr.Button(
            REUSE_SEED, scale=0, min_width=40, elem_id=f"{mode}_reuse_seed", elem_classes="tool-button"
        )
    fields["clip_skip"] = gr.Slider(1, MAX_CLIP_SKIP, value=1, step=1, label="Clip skip", elem_id=f"{mode}_clip_skip")
    return SamplingControls(fields, random_seed, reuse_seed)


@dataclass(frozen=True)
class ResultPanel:
    progress: gr.HTML
    preview: gr.Image
    gallery: gr.Gallery
    infotext: gr.Textbox
    send_to_img2img: gr.Button
    send_to_inpaint: gr.Button
    seeds: gr.State  # seeds of the last job's images (♻ reuses the first)
    paths: gr.State  # the files of the last job's images, in gallery order (kept on the server, never sent)
    selected: gr.State  # path of the image chosen in the gallery (the first one of a new result)


def build_result_panel(mode: str) -> ResultPanel:
    progress = gr.HTML(elem_id=f"{mode}_progress")
    # Shown only while a job runs, so the gallery sits at the top of the column the rest of the time.
    preview = gr.Image(
        label="Live preview",
        interactive=False,
        visible=False,
        height=320,
        elem_id=f"{mode}_preview",
        elem_classes="live-preview",
    )
    gallery = gr.Gallery(
        label="Output",
        columns=2,
        height=GALLERY_HEIGHT,
        format="png",
        object_fit="contain",
        elem_id=f"{mode}_gallery",
        elem_classes="result-gallery",
    )
    with gr.Row():
        send_to_img2img = gr.Button("Send to img2img", size="sm", elem_id=f"{mode}_send_to_img2img")
        send_to_inpaint = gr.Button("Send to inpaint", size="sm", elem_id=f"{mode}_send_to_inpaint")
    infotext = gr.Textbox(label="Generation parameters", lines=4, interactive=False, elem_id=f"{mode}_infotext")
    return ResultPanel(
        progress, preview, gallery, infotext, send_to_img2img, send_to_inpaint, gr.State([]), gr.State([]), gr.State()
    )


@dataclass(frozen=True)
class GenerationTab:
    """What other parts of the page need from a tab: its widgets by request field, its image input (for "Send
    to"), and which widgets the browser remembers."""

    mode: str
    prompt_row: PromptRow
    controls: SamplingControls
    results: ResultPanel
    image_input: gr.components.Component | None
    remembered: dict[str, Remembered]
    units: dict[str, gr.components.Component] = field(default_factory=dict)  # ControlNet unit widgets by field_key

    @property
    def fields(self) -> dict[str, gr.components.Component]:
        row = self.prompt_row
        # Styles last: the API's positional arguments of the earlier widgets keep their places.
        return {"prompt": row.prompt, "negative_prompt": row.negative, **self.controls.fields, "styles": row.styles}


def connect_generation(
    mode: str,
    services: Services,
    pickers: ModelPickers,
    prompt_row: PromptRow,
    results: ResultPanel,
    fields: dict[str, gr.components.Component],
    prepare: Prepare | None = None,
    *,
    button: gr.Button | None = None,
    api_name: str | None = None,
) -> None:
    """Generate (button or API) → GenerationRequest → engine → previews, progress and the result gallery."""
    # The API's argument order: prompt, negative prompt, checkpoint, VAE, then the tab's controls.
    models = {"checkpoint": pickers.checkpoint, "vae": pickers.vae}
    all_fields = {k: v for k, v in fields.items() if k in ("prompt", "negative_prompt")} | models | fields

    def generate(request: gr.Request, **values_by_name):
        settings = services.settings
        values_by_name.update(
            preview_method=settings.preview_method,
            preview_every_n_steps=settings.preview_every_n_steps,
            step_cache=STEP_CACHE_PRESETS[settings.step_cache],
        )
        try:
            if prepare:
                values_by_name = prepare(values_by_name)
            job = GenerationRequest.from_dict(take_units(values_by_name))
        except UserError as exc:  # a value the request cannot take: say which, as the engine's own checks do
            raise gr.Error(str(exc), duration=None) from exc
        session = request.session_hash if request else "api"
        # A1111 saves inpainting with img2img (outputs/img2img-images); with no image the engine says so.
        output_mode = "img2img" if mode in ("img2img", "inpaint") else "txt2img"
        for preview_image, progress_html, result in run_job(services, job, session, output_mode):
            if result is None:
                shown = gr.update(value=preview_image, visible=True) if preview_image is not None else gr.skip()
                yield shown, progress_html, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            else:
                images = [(str(img.path), f"Seed {img.seed} · {size_label(img.path)}") for img in result.images]
                first = result.images[0] if result.images else None
                seeds = [img.seed for img in result.images]
                paths = [str(img.path) for img in result.images]
                selected = str(first.path) if first and first.path else None
                hidden = gr.update(value=None, visible=False)
                yield hidden, progress_html, images, first.infotext if first else "", seeds, paths, selected

    # Every parameter optional for API callers: those without a widget default (images, a unit's image) are None.
    keyword = inspect.Parameter.KEYWORD_ONLY
    generate.__signature__ = inspect.Signature(
        [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)]
        + [inspect.Parameter(name, keyword, default=None) for name in all_fields]
    )
    (button or prompt_row.generate).click(
        generate,
        # By name: gradio_client users call the endpoint with prompt=…, steps=… (each with its widget's default),
        # and a widget added later takes no one's place.
        inputs_kwargs=all_fields,
        outputs=[
            *(results.preview, results.progress, results.gallery, results.infotext),
            *(results.seeds, results.paths, results.selected),
        ],
        concurrency_id="gpu",  # every GPU job of every tab shares one queue, served by every worker
        concurrency_limit=services.generator.parallel_jobs,
        api_name=api_name or mode,
    )


def size_label(path) -> str:
    """ "128×96": read from the PNG's header (the worker wrote the file; its pixels are not decoded here)."""
    try:
        with Image.open(path) as image:
            return f"{image.width}×{image.height}"
    except OSError:
        return ""


def connect_job_controls(services: Services, prompt_row: PromptRow, controls: SamplingControls, results: ResultPanel):
    """Interrupt/Skip reach only this browser session's job; the seed buttons; clicking an image shows its
    infotext and chooses it for "Send to"."""

    def interrupt_job(request: gr.Request):
        control = services.jobs.get(request.session_hash)
        if control:
            control.interrupt()

    def skip_job(request: gr.Request):
        control = services.jobs.get(request.session_hash)
        if control:
            control.skip()

    seed = controls.fields["seed"]
    prompt_row.interrupt.click(interrupt_job, queue=False, api_name=False)
    prompt_row.skip.click(skip_job, queue=False, api_name=False)
    controls.random_seed.click(lambda: -1, outputs=seed, queue=False, api_name=False)
    controls.reuse_seed.click(
        lambda seeds: seeds[0] if seeds else -1, inputs=results.seeds, outputs=seed, queue=False, api_name=False
    )
    outputs_dir = services.outputs_dir

    def select_image(paths: list[str], evt: gr.SelectData):
        """The infotext of the image clicked in the gallery, read back from its PNG, and its path. The browser
        says only which place was clicked; the file is the one this server put there (never a path it sends)."""
        index = evt.index if isinstance(evt.index, int) else -1
        if not 0 <= index < len(paths):
            return gr.skip(), gr.skip()
        try:
            path = produced_file(paths[index], outputs_dir)
            return read_infotext(path) or "", str(path)
        except (UserError, OSError):  # the file was moved or deleted since it was shown
            return gr.skip(), gr.skip()

    results.gallery.select(
        select_image, inputs=results.paths, outputs=[results.infotext, results.selected], api_name=False
    )


def remembered_values(tab_fields: dict[str, gr.components.Component], services: Services) -> dict[str, Remembered]:
    """Every widget but the seed is remembered; defaults come from the settings when the page loads."""
    settings, styles = services.settings, services.styles
    defaults: dict[str, Callable[[], object]] = {
        "sampler_name": lambda: settings.default_sampler,
        "scheduler": lambda: settings.default_schedule_type,
        "steps": lambda: settings.default_steps,
        "width": lambda: settings.default_width,
        "height": lambda: settings.default_height,
        "cfg_scale": lambda: settings.default_cfg_scale,
    }
    remembered = {}
    for name, component in tab_fields.items():
        if name == "seed" or isinstance(component, gr.Image | gr.ImageEditor | gr.State):
            continue
        initial = component.value
        if name == "styles":  # styles.csv may change while the server runs: check against its current names
            remembered[name] = Remembered(component, list, styles.names if styles else list)
            continue
        remembered[name] = Remembered(component, defaults.get(name, lambda initial=initial: initial))
    return remembered
