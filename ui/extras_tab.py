"""A1111's Extras tab: upscale finished pictures (one, or a batch of uploads) by a factor or to a size, with one or
two upscalers; results are saved under outputs/extras-images/ with their parameters kept."""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from core.errors import UserError
from core.extras import MAX_EXTRAS_SCALE, RESIZE_MODES, ExtrasRequest
from core.hires import PIXEL_UPSCALERS
from core.services import Services
from core.untrusted_images import open_image
from core.upscaler_files import upscaler_files
from ui.generation_panel import GALLERY_HEIGHT, size_label
from ui.job_limits import GPU_QUEUE
from ui.request_origin import from_this_machine

MAX_BATCH_FILES = 64
PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def folder_pictures(folder: Path) -> list[Path]:
    """The pictures directly in a folder (by suffix, sorted), at most MAX_BATCH_FILES + 1 (the caller refuses more)."""
    if not folder.is_dir():
        raise gr.Error(f"No folder {folder}.")
    pictures = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in PICTURE_SUFFIXES:
            pictures.append(path)
            if len(pictures) > MAX_BATCH_FILES:
                break
    return pictures


def build_extras_tab(services: Services) -> gr.Image:
    """Returns the single-image input (PNG Info sends pictures to it)."""
    upscalers = [*PIXEL_UPSCALERS, *upscaler_files(services.registry.models_dir)]
    with gr.Row():
        with gr.Column():
            with gr.Tabs():
                with gr.Tab("Single Image", id="extras_single"):
                    single = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Source",
                                      elem_id="extras_image")  # fmt: skip
                with gr.Tab("Batch Process", id="extras_batch"):
                    batch = gr.File(file_count="multiple", file_types=["image"], label="Batch Process",
                                    elem_id="extras_image_batch")  # fmt: skip
                with gr.Tab("Batch from Directory", id="extras_batch_dir"):
                    folder = gr.Textbox(label="Input directory (on the server; only from a browser on its machine)",
                                        elem_id="extras_batch_input_dir")  # fmt: skip
            mode = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], type="index", label="Resize mode",
                            elem_id="extras_resize_mode")  # fmt: skip
            scale = gr.Slider(
                1, MAX_EXTRAS_SCALE, value=2, step=0.05, label="Resize", elem_id="extras_upscaling_resize"
            )
            with gr.Row():
                width = gr.Number(512, label="Width", precision=0, elem_id="extras_upscaling_resize_w")
                height = gr.Number(512, label="Height", precision=0, elem_id="extras_upscaling_resize_h")
                crop = gr.Checkbox(True, label="Crop to fit", elem_id="extras_upscaling_crop")
            with gr.Row():
                first = gr.Dropdown(upscalers, value="None", label="Upscaler 1", elem_id="extras_upscaler_1")
                second = gr.Dropdown(upscalers, value="None", label="Upscaler 2", elem_id="extras_upscaler_2")
            visibility = gr.Slider(0, 1, value=0, step=0.001, label="Upscaler 2 visibility",
                                   elem_id="extras_upscaler_2_visibility")  # fmt: skip
            generate = gr.Button("Generate", variant="primary", elem_id="extras_generate")
        with gr.Column():
            gallery = gr.Gallery(label="Result", columns=2, height=GALLERY_HEIGHT, format="png", object_fit="contain",
                                 elem_id="extras_gallery", elem_classes="result-gallery")  # fmt: skip
            info = gr.HTML(elem_id="extras_info")

    def run(request: gr.Request, path, files, directory, resize_mode, by, to_w, to_h, crop_to_fit, upscaler_1,
            upscaler_2, visible):  # fmt: skip
        sources = [path] if path else [getattr(f, "name", f) for f in (files or [])]
        if not sources and directory and directory.strip():
            if not from_this_machine(request):  # a visitor must not read the server's folders
                raise gr.Error("A folder on the server can be read only from a browser on the server's machine.")
            sources = folder_pictures(Path(directory.strip()).expanduser())
        if not sources:
            raise gr.Error("Upload a picture to upscale (or several, under Batch Process).")
        if len(sources) > MAX_BATCH_FILES:
            raise gr.Error(f"At most {MAX_BATCH_FILES} pictures at once, not {len(sources)}.")
        extras = ExtrasRequest(
            resize_mode=int(resize_mode), upscaling_resize=float(by), upscaling_resize_w=int(to_w or 0),
            upscaling_resize_h=int(to_h or 0), upscaling_crop=bool(crop_to_fit), upscaler_1=upscaler_1,
            upscaler_2=upscaler_2, extras_upscaler_2_visibility=float(visible),
        )  # fmt: skip
        shown, text = [], ""
        try:
            for index, source in enumerate(sources):
                image = open_image(source, f"picture {index + 1}" if len(sources) > 1 else "picture")
                result = services.generator.run_extras(extras.with_image(image), save=True)
                shown.append((str(result.path), f"{result.path.name} · {size_label(result.path)}"))
                text = result.postprocessing
        except UserError as exc:
            raise gr.Error(str(exc), duration=None) from exc
        return shown, f'<div class="job-done">{html.escape(text)}</div>'

    generate.click(
        run,
        inputs=[single, batch, folder, mode, scale, width, height, crop, first, second, visibility],
        outputs=[gallery, info],
        concurrency_id=GPU_QUEUE,  # in line with every generation job
        concurrency_limit=services.generator.parallel_jobs,
        api_visibility="private",  # programs use the REST API's extra-single-image
    )
    return single
